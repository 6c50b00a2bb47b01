#pragma once
// Report structure: sections (FINDINGS, IMPRESSION, ...) and sentences, with byte spans into the
// original text so that every downstream annotation points back at what the radiologist wrote.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace medvlp::text {

/// One section: canonical name (findings, impression, indication, comparison, technique,
/// recommendation, addendum; "body" for text before any heading or a report without headings),
/// the heading as written, and the byte span [begin, end) of its text.
struct Section {
  std::string name;
  std::string heading;
  size_t begin = 0, end = 0;
};

/// Finds headings in upper or mixed case, with or without a colon (a heading without a colon must
/// stand alone on its line). Sections are in report order and cover the text after each heading.
std::vector<Section> split_sections(std::string_view report);

/// A sentence: byte span [begin, end) into the text given to split_sentences (trimmed).
struct SentenceSpan {
  size_t begin = 0, end = 0;
};

/// Splits at . ! ? followed by white space (or the end) and at blank lines, but not after
/// abbreviations ("Dr.", "vs.", "e.g.", "approx."), inside numbers ("1.5 cm"), or after list
/// markers ("1."). `offset` is added to every span.
std::vector<SentenceSpan> split_sentences(std::string_view text, size_t offset = 0);

/// White space runs to one space, trimmed; de-identification runs ("___") kept as they are.
std::string normalize_whitespace(std::string_view text);

}  // namespace medvlp::text
