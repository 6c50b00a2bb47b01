#include "medvlp/text/report.h"

#include <algorithm>
#include <cctype>
#include <unordered_set>

namespace medvlp::text {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

struct Heading {
  const char* text;
  const char* name;
};

// Longest first where one heading starts another ("clinical history" before "history").
const Heading kHeadings[] = {
    {"findings and impression", "findings"}, {"findings", "findings"}, {"finding", "findings"},
    {"impressions", "impression"}, {"impression", "impression"}, {"conclusions", "impression"},
    {"conclusion", "impression"}, {"opinion", "impression"}, {"summary", "impression"},
    {"clinical indication", "indication"}, {"clinical history", "indication"}, {"clinical information", "indication"},
    {"clinical data", "indication"}, {"reason for examination", "indication"}, {"reason for exam", "indication"},
    {"reason for study", "indication"}, {"indications", "indication"}, {"indication", "indication"},
    {"history", "indication"}, {"comparisons", "comparison"}, {"comparison", "comparison"},
    {"techniques", "technique"}, {"technique", "technique"}, {"examination", "technique"}, {"exam", "technique"},
    {"procedure", "technique"}, {"protocol", "technique"}, {"recommendations", "recommendation"},
    {"recommendation", "recommendation"}, {"notification", "recommendation"}, {"addendum", "addendum"},
    {"final report", "body"}, {"wet read", "body"}};

// Does a heading start at `i` (at the start of a line or after a sentence end)? Sets its length
// including the colon and its canonical name.
bool heading_at(std::string_view s, size_t i, bool line_start, size_t* length, const char** name) {
  for (const Heading& h : kHeadings) {
    const size_t n = std::char_traits<char>::length(h.text);
    if (i + n > s.size()) continue;
    bool match = true;
    bool all_upper = true;
    for (size_t k = 0; k < n && match; ++k) {
      const char c = s[i + k];
      match = lower(c) == h.text[k];
      if (std::isalpha(static_cast<unsigned char>(c)) && !std::isupper(static_cast<unsigned char>(c))) all_upper = false;
    }
    if (!match) continue;
    size_t j = i + n;
    if (j < s.size() && std::isalnum(static_cast<unsigned char>(s[j]))) continue;  // "findingsX"
    while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
    if (j < s.size() && s[j] == ':') {
      *length = j + 1 - i;
      *name = h.name;
      return true;
    }
    // Without a colon: alone on its line, or in capitals at the start of a line ("FINDINGS The ...").
    const bool line_end = j >= s.size() || s[j] == '\n' || s[j] == '\r';
    if (line_start && (line_end || (all_upper && j > i + n))) {
      *length = j - i;
      *name = h.name;
      return true;
    }
  }
  return false;
}

const std::unordered_set<std::string>& abbreviations() {
  static const std::unordered_set<std::string> set = {
      "dr", "p.m", "a.m", "mr", "mrs", "ms", "vs", "e.g", "i.e", "eg", "ie", "approx", "cf", "fig", "pt", "pts", "st",
      "resp", "min", "max", "incl", "esp", "no", "nos", "ca", "al", "et", "cc", "sr", "jr", "prof", "dept", "ref"};
  return set;
}

}  // namespace

std::vector<Section> split_sections(std::string_view report) {
  std::vector<Section> out;
  Section current{"body", "", 0, 0};
  bool line_start = true;
  for (size_t i = 0; i < report.size();) {
    size_t len = 0;
    const char* name = nullptr;
    const bool after_sentence = i >= 2 && is_space(report[i - 1]) && (report[i - 2] == '.' || report[i - 2] == ':');
    if ((line_start || after_sentence) && std::isalpha(static_cast<unsigned char>(report[i])) &&
        heading_at(report, i, line_start, &len, &name)) {
      current.end = i;
      out.push_back(current);
      current = Section{name, std::string(report.substr(i, len)), i + len, 0};
      i += len;
      line_start = false;
      continue;
    }
    if (report[i] == '\n') line_start = true;
    else if (!is_space(report[i])) line_start = false;
    ++i;
  }
  current.end = report.size();
  out.push_back(current);
  // Trim each span and drop empty ones (a heading with no text keeps its entry).
  std::vector<Section> kept;
  for (auto& s : out) {
    while (s.begin < s.end && is_space(report[s.begin])) ++s.begin;
    while (s.end > s.begin && is_space(report[s.end - 1])) --s.end;
    while (!s.heading.empty() && is_space(s.heading.back())) s.heading.pop_back();
    if (s.begin < s.end || !s.heading.empty()) kept.push_back(s);
  }
  return kept;
}

std::vector<SentenceSpan> split_sentences(std::string_view text, size_t offset) {
  std::vector<SentenceSpan> out;
  size_t start = 0;
  auto emit = [&](size_t end) {
    size_t b = start, e = end;
    while (b < e && is_space(text[b])) ++b;
    while (e > b && is_space(text[e - 1])) --e;
    if (e > b) out.push_back({b + offset, e + offset});
    start = end;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      // A blank line ends a sentence; a single line break does not (reports wrap lines).
      size_t j = i + 1;
      while (j < text.size() && (text[j] == ' ' || text[j] == '\t' || text[j] == '\r')) ++j;
      if (j < text.size() && text[j] == '\n') emit(i);
      continue;
    }
    if (c != '.' && c != '!' && c != '?') continue;
    // Runs of terminators ("?." or "...") end once.
    size_t j = i;
    while (j + 1 < text.size() && (text[j + 1] == '.' || text[j + 1] == '!' || text[j + 1] == '?')) ++j;
    const bool at_end = j + 1 >= text.size();
    if (!at_end && !is_space(text[j + 1])) {
      i = j;
      continue;  // "1.5", "e.g.x", "3.0T"
    }
    if (c == '.' && j == i) {
      // The word before the period.
      size_t w = i;
      while (w > start && !is_space(text[w - 1]) && text[w - 1] != '(') --w;
      std::string word;
      for (size_t k = w; k < i; ++k) word.push_back(lower(text[k]));
      const bool number = !word.empty() && std::all_of(word.begin(), word.end(), [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)); });
      bool list_marker = false;
      if (number && word.size() <= 2) {
        // "1." starting a line or the sentence is a list marker.
        size_t b = w;
        while (b > start && (text[b - 1] == ' ' || text[b - 1] == '\t')) --b;
        list_marker = b == start || text[b - 1] == '\n';
      }
      // "No." is an answer ("Pneumothorax: No."), except before a number ("No. 3").
      size_t n = i + 1;
      while (n < text.size() && is_space(text[n])) ++n;
      const bool next_digit = n < text.size() && std::isdigit(static_cast<unsigned char>(text[n]));
      const bool abbreviation = word == "no" ? next_digit : abbreviations().count(word) > 0;
      if (list_marker || (abbreviation && !at_end)) {
        i = j;
        continue;
      }
    }
    emit(j + 1);
    i = j;
  }
  emit(text.size());
  return out;
}

std::string normalize_whitespace(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool space = false;
  for (char c : text) {
    if (is_space(c)) {
      space = !out.empty();
    } else {
      if (space) out.push_back(' ');
      space = false;
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace medvlp::text
