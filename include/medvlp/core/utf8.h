#pragma once
// UTF-8 validation without ICU, for the modules below `text` (the config reader) and for `text`.

#include <cstddef>
#include <string_view>

namespace medvlp::core {

/// Length of the valid UTF-8 sequence starting at s[i] (its code point in *out), or 0 when it is
/// invalid: truncated, overlong, a surrogate or above U+10FFFF.
size_t utf8_sequence_length(std::string_view s, size_t i, char32_t* out);

/// Byte offset of the first invalid UTF-8 sequence in `s`, or npos when `s` is valid UTF-8.
size_t invalid_utf8_offset(std::string_view s);

}  // namespace medvlp::core
