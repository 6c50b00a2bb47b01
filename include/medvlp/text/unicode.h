#pragma once
// UTF-8 and the Unicode properties the tokenizers and the report parser rely on (ICU underneath).

#include <cstdint>
#include <string>
#include <string_view>

#include "medvlp/core/utf8.h"

namespace medvlp::text {

/// Byte offset of the first invalid UTF-8 sequence in `s`, or npos when `s` is valid UTF-8
/// (overlong forms, surrogates and code points above U+10FFFF are invalid); lives in core, where
/// the config reader uses it too.
using core::invalid_utf8_offset;

/// Decodes UTF-8; medvlp::Error naming `what` and the byte offset on invalid input.
std::u32string decode_utf8(std::string_view s, std::string_view what = "text");
std::string encode_utf8(std::u32string_view s);
/// `s` with every occurrence of `from` (non-empty) replaced by `to`, left to right.
std::string replace_all(std::string s, const std::string& from, const std::string& to);
void append_utf8(std::string& out, char32_t c);

/// White_Space property (what BERT's basic tokenizer and JavaScript's \s treat as blanks).
bool is_whitespace(char32_t c);
/// Control, format, private-use, surrogate or unassigned (general category C*), except \t \n \r.
bool is_control(char32_t c);
/// General category P*, plus every non-alphanumeric printable ASCII character (BERT's rule).
bool is_punctuation(char32_t c);
/// The CJK Unified Ideograph blocks that BERT isolates as single tokens.
bool is_cjk(char32_t c);
bool is_letter(char32_t c);  // L*
bool is_number(char32_t c);  // N*
bool is_mark_nonspacing(char32_t c);  // Mn

/// Full Unicode lower-casing of a whole string (context-sensitive: final sigma).
std::u32string to_lower(std::u32string_view s);
/// Canonical decomposition (NFD) and composition (NFC).
std::u32string nfd(std::u32string_view s);
std::u32string nfc(std::u32string_view s);

}  // namespace medvlp::text
