#include "medvlp/text/unicode.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <vector>

#include "medvlp/core/error.h"
#include "medvlp/core/utf8.h"

namespace medvlp::text {

namespace {

std::u16string to_utf16(std::u32string_view s) {
  std::u16string out;
  out.reserve(s.size());
  for (char32_t c : s) {
    if (c < 0x10000) {
      out.push_back(static_cast<char16_t>(c));
    } else {
      c -= 0x10000;
      out.push_back(static_cast<char16_t>(0xD800 + (c >> 10)));
      out.push_back(static_cast<char16_t>(0xDC00 + (c & 0x3FF)));
    }
  }
  return out;
}

std::u32string from_utf16(const std::u16string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char32_t c = s[i];
    if (c >= 0xD800 && c < 0xDC00 && i + 1 < s.size() && s[i + 1] >= 0xDC00 && s[i + 1] < 0xE000) {
      c = 0x10000 + ((c - 0xD800) << 10) + (s[i + 1] - 0xDC00);
      ++i;
    }
    out.push_back(c);
  }
  return out;
}

bool all_ascii(std::u32string_view s) {
  for (char32_t c : s)
    if (c >= 0x80) return false;
  return true;
}

template <typename Fn>
std::u32string via_icu(std::u32string_view s, const char* what, Fn&& fn) {
  const std::u16string in = to_utf16(s);
  std::u16string out(in.size() * 3 + 8, u'\0');
  UErrorCode err = U_ZERO_ERROR;
  int32_t n = fn(reinterpret_cast<UChar*>(out.data()), static_cast<int32_t>(out.size()),
                 reinterpret_cast<const UChar*>(in.data()), static_cast<int32_t>(in.size()), &err);
  if (err == U_BUFFER_OVERFLOW_ERROR) {
    out.assign(static_cast<size_t>(n) + 1, u'\0');
    err = U_ZERO_ERROR;
    n = fn(reinterpret_cast<UChar*>(out.data()), static_cast<int32_t>(out.size()),
           reinterpret_cast<const UChar*>(in.data()), static_cast<int32_t>(in.size()), &err);
  }
  MEDVLP_CHECK(U_SUCCESS(err), what, ": ICU failed: ", u_errorName(err));
  out.resize(static_cast<size_t>(n));
  return from_utf16(out);
}

const UNormalizer2* normalizer(bool decompose) {
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* n = decompose ? unorm2_getNFDInstance(&err) : unorm2_getNFCInstance(&err);
  MEDVLP_CHECK(U_SUCCESS(err) && n, "ICU: no normalizer data: ", u_errorName(err));
  return n;
}

}  // namespace

std::u32string decode_utf8(std::string_view s, std::string_view what) {
  std::u32string out;
  out.reserve(s.size());
  char32_t c = 0;
  for (size_t i = 0; i < s.size();) {
    const size_t n = core::utf8_sequence_length(s, i, &c);
    MEDVLP_CHECK(n != 0, what, ": invalid UTF-8 at byte ", i);
    out.push_back(c);
    i += n;
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

bool is_whitespace(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
  return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_WHITE_SPACE) != 0;
}

bool is_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  if (c < 0x80) return c < 0x20 || c == 0x7F;
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_C_MASK) != 0;
}

bool is_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  if (c < 0x80) return false;
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_P_MASK) != 0;
}

bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool is_letter(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_L_MASK) != 0;
}

bool is_number(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK) != 0;
}

bool is_mark_nonspacing(char32_t c) {
  return c >= 0x300 && u_charType(static_cast<UChar32>(c)) == U_NON_SPACING_MARK;
}

std::u32string to_lower(std::u32string_view s) {
  if (all_ascii(s)) {
    std::u32string out(s);
    for (char32_t& c : out)
      if (c >= 'A' && c <= 'Z') c += 32;
    return out;
  }
  return via_icu(s, "lower-casing", [](UChar* dst, int32_t cap, const UChar* src, int32_t len, UErrorCode* err) {
    return u_strToLower(dst, cap, src, len, "", err);
  });
}

std::u32string nfd(std::u32string_view s) {
  if (all_ascii(s)) return std::u32string(s);
  const UNormalizer2* n = normalizer(true);
  return via_icu(s, "NFD", [n](UChar* dst, int32_t cap, const UChar* src, int32_t len, UErrorCode* err) {
    return unorm2_normalize(n, src, len, dst, cap, err);
  });
}

std::u32string nfc(std::u32string_view s) {
  if (all_ascii(s)) return std::u32string(s);
  const UNormalizer2* n = normalizer(false);
  return via_icu(s, "NFC", [n](UChar* dst, int32_t cap, const UChar* src, int32_t len, UErrorCode* err) {
    return unorm2_normalize(n, src, len, dst, cap, err);
  });
}

}  // namespace medvlp::text
