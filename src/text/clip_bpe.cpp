#include "medvlp/text/clip_bpe.h"

#include <nlohmann/json.hpp>

#include <array>
#include <climits>
#include <sstream>

#include "medvlp/core/error.h"
#include "medvlp/io/files.h"
#include "medvlp/text/unicode.h"

namespace medvlp::text {

namespace {

const char* kSot = "<|startoftext|>";
const char* kEot = "<|endoftext|>";
const char* kSuffix = "</w>";

// GPT-2's reversible byte -> printable code point table.
const std::array<char32_t, 256>& byte_to_char() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[static_cast<size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

bool is_contraction_at(const std::u32string& s, size_t i, size_t* len) {
  if (s[i] != '\'' || i + 1 >= s.size()) return false;
  static const char* kForms[] = {"s", "t", "re", "ve", "m", "ll", "d"};
  for (const char* f : kForms) {
    size_t k = 0;
    while (f[k] && i + 1 + k < s.size() && s[i + 1 + k] == static_cast<char32_t>(f[k])) ++k;
    if (!f[k]) {
      *len = 1 + k;
      return true;
    }
  }
  return false;
}

}  // namespace

ClipBpeTokenizer::ClipBpeTokenizer(std::unordered_map<std::string, int64_t> vocab, const std::vector<std::string>& merges)
    : vocab_(std::move(vocab)) {
  MEDVLP_CHECK(!vocab_.empty(), "CLIP BPE: the vocabulary is empty");
  int64_t max_id = -1;
  for (const auto& [t, i] : vocab_) {
    MEDVLP_CHECK(i >= 0 && i < static_cast<int64_t>(vocab_.size()) * 4 + 1024, "CLIP BPE: token \"", t, "\" has id ", i,
                 ", outside the vocabulary");
    max_id = std::max(max_id, i);
  }
  tokens_.assign(static_cast<size_t>(max_id + 1), "");
  for (const auto& [t, i] : vocab_) tokens_[static_cast<size_t>(i)] = t;
  for (size_t r = 0; r < merges.size(); ++r) {
    const std::string& m = merges[r];
    const size_t sp = m.find(' ');
    MEDVLP_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < m.size() && m.find(' ', sp + 1) == std::string::npos,
                 "CLIP BPE: merge ", r + 1, " \"", m, "\" is not two tokens separated by one space");
    ranks_.emplace(m, static_cast<int64_t>(r));
  }
  auto need = [&](const char* t) {
    auto it = vocab_.find(t);
    MEDVLP_CHECK(it != vocab_.end(), "CLIP BPE: the vocabulary has no ", t, " token");
    return it->second;
  };
  sot_ = need(kSot);
  eot_ = need(kEot);
}

std::shared_ptr<ClipBpeTokenizer> ClipBpeTokenizer::load(const std::string& vocab_json, const std::string& merges_txt) {
  std::unordered_map<std::string, int64_t> vocab;
  {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(io::read_file(vocab_json));
    } catch (const nlohmann::json::exception& e) {
      throw Error(vocab_json + ": not valid JSON (" + e.what() + ")");
    }
    MEDVLP_CHECK(j.is_object(), vocab_json, ": expected a JSON object mapping tokens to ids");
    for (auto it = j.begin(); it != j.end(); ++it) {
      MEDVLP_CHECK(it.value().is_number_integer(), vocab_json, ": token \"", it.key(), "\": expected an integer id");
      vocab.emplace(it.key(), it.value().get<int64_t>());
    }
  }
  std::vector<std::string> merges;
  std::istringstream in(io::read_file(merges_txt));
  std::string line;
  for (bool first = true; std::getline(in, line); first = false) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (first && line.rfind("#version", 0) == 0) continue;
    if (line.empty()) continue;
    merges.push_back(line);
  }
  try {
    return std::make_shared<ClipBpeTokenizer>(std::move(vocab), merges);
  } catch (const Error& e) {
    throw e.with_context(vocab_json + " + " + merges_txt);
  }
}

void ClipBpeTokenizer::bpe(const std::string& word, std::vector<int64_t>* ids) const {
  // The word's bytes as printable characters, the last one closing the word.
  std::vector<std::string> parts;
  parts.reserve(word.size());
  const auto& table = byte_to_char();
  for (unsigned char b : word) {
    std::string s;
    append_utf8(s, table[b]);
    parts.push_back(std::move(s));
  }
  if (parts.empty()) return;
  parts.back() += kSuffix;
  std::string key;
  while (parts.size() > 1) {
    int64_t best = LLONG_MAX;
    size_t at = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      key.assign(parts[i]).append(" ").append(parts[i + 1]);
      auto it = ranks_.find(key);
      if (it != ranks_.end() && it->second < best) {
        best = it->second;
        at = i;
      }
    }
    if (best == LLONG_MAX) break;
    // Merge every occurrence of the best pair, left to right.
    const std::string a = parts[at], b = parts[at + 1];
    std::vector<std::string> merged;
    merged.reserve(parts.size());
    for (size_t i = 0; i < parts.size(); ++i) {
      if (i + 1 < parts.size() && parts[i] == a && parts[i + 1] == b) {
        merged.push_back(a + b);
        ++i;
      } else {
        merged.push_back(std::move(parts[i]));
      }
    }
    parts.swap(merged);
  }
  for (const auto& p : parts) {
    auto it = vocab_.find(p);
    ids->push_back(it == vocab_.end() ? eot_ : it->second);
  }
}

void ClipBpeTokenizer::encode_segment(std::string_view text, std::vector<int64_t>* ids) const {
  const std::u32string raw = nfc(decode_utf8(text, "CLIP BPE input"));
  std::u32string spaced;
  spaced.reserve(raw.size());
  for (char32_t c : raw) {
    if (is_whitespace(c)) {
      if (spaced.empty() || spaced.back() != ' ') spaced.push_back(' ');
    } else {
      spaced.push_back(c);
    }
  }
  const std::u32string s = to_lower(spaced);
  for (size_t i = 0; i < s.size();) {
    size_t len = 0;
    if (is_contraction_at(s, i, &len)) {
    } else if (is_letter(s[i])) {
      while (i + len < s.size() && is_letter(s[i + len])) ++len;
    } else if (is_number(s[i])) {
      len = 1;
    } else if (!is_whitespace(s[i])) {
      while (i + len < s.size() && !is_whitespace(s[i + len]) && !is_letter(s[i + len]) && !is_number(s[i + len])) ++len;
    } else {
      ++i;
      continue;
    }
    bpe(encode_utf8(std::u32string_view(s).substr(i, len)), ids);
    i += len;
  }
}

std::vector<int64_t> ClipBpeTokenizer::encode_plain(const std::string& text) const {
  std::vector<int64_t> ids;
  std::string_view rest(text);
  while (!rest.empty()) {
    const size_t a = rest.find(kSot), b = rest.find(kEot);
    const size_t at = std::min(a, b);
    if (at == std::string_view::npos) {
      encode_segment(rest, &ids);
      break;
    }
    encode_segment(rest.substr(0, at), &ids);
    ids.push_back(at == a ? sot_ : eot_);
    rest.remove_prefix(at + (at == a ? std::char_traits<char>::length(kSot) : std::char_traits<char>::length(kEot)));
  }
  return ids;
}

std::vector<std::string> ClipBpeTokenizer::tokenize(std::string_view text) const {
  std::vector<std::string> out;
  for (int64_t i : encode_plain(std::string(text))) out.push_back(tokens_[static_cast<size_t>(i)]);
  return out;
}

std::string ClipBpeTokenizer::decode(const std::vector<int64_t>& ids) const {
  static const std::unordered_map<char32_t, unsigned char> inverse = [] {
    std::unordered_map<char32_t, unsigned char> m;
    const auto& t = byte_to_char();
    for (size_t b = 0; b < 256; ++b) m[t[b]] = static_cast<unsigned char>(b);
    return m;
  }();
  std::string joined;
  for (int64_t i : ids) {
    MEDVLP_CHECK(i >= 0 && i < vocab_size(), "CLIP BPE decode: id ", i, " outside the vocabulary");
    if (i == sot_ || i == eot_) continue;
    joined += tokens_[static_cast<size_t>(i)];
  }
  std::string bytes;
  std::string_view rest(joined);
  while (!rest.empty()) {
    if (rest.substr(0, 4) == kSuffix) {
      bytes.push_back(' ');
      rest.remove_prefix(4);
      continue;
    }
    size_t n = 1;
    while (n < rest.size() && (static_cast<unsigned char>(rest[n]) & 0xC0) == 0x80) ++n;
    const std::u32string c = decode_utf8(rest.substr(0, n), "CLIP BPE token");
    auto it = inverse.find(c.empty() ? 0 : c[0]);
    if (it != inverse.end()) bytes.push_back(static_cast<char>(it->second));
    rest.remove_prefix(n);
  }
  while (!bytes.empty() && bytes.back() == ' ') bytes.pop_back();
  return bytes;
}

}  // namespace medvlp::text
