#include "medvlp/text/wordpiece.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include "medvlp/core/error.h"
#include "medvlp/io/files.h"
#include "medvlp/text/unicode.h"

namespace medvlp::text {

namespace {

bool strip_accents_on(const WordPieceOptions& o) { return o.strip_accents < 0 ? o.lowercase : o.strip_accents != 0; }

// HF's clean_up_tokenization: the spaces WordPiece decoding leaves before punctuation and clitics.
std::string clean_up_spaces(std::string s) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
      {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) {
    const std::string f(from), t(to);
    std::string out;
    size_t pos = 0;
    for (size_t hit; (hit = s.find(f, pos)) != std::string::npos; pos = hit + f.size()) out.append(s, pos, hit - pos).append(t);
    out.append(s, pos, std::string::npos);
    s.swap(out);
  }
  return s;
}

}  // namespace

std::vector<std::string> bert_pre_tokenize(std::string_view text, const WordPieceOptions& options) {
  std::u32string chars = decode_utf8(text, "WordPiece input");
  std::u32string cleaned;
  cleaned.reserve(chars.size() + 8);
  for (char32_t c : chars) {
    if (options.clean_text) {
      if (c == 0 || c == 0xFFFD || is_control(c)) continue;
      if (is_whitespace(c)) c = ' ';
    }
    if (options.handle_chinese_chars && c >= 0x3400 && is_cjk(c)) {
      cleaned.push_back(' ');
      cleaned.push_back(c);
      cleaned.push_back(' ');
    } else {
      cleaned.push_back(c);
    }
  }
  if (options.lowercase) cleaned = to_lower(cleaned);
  if (strip_accents_on(options)) {
    std::u32string decomposed = nfd(cleaned);
    cleaned.clear();
    for (char32_t c : decomposed)
      if (c < 0x300 || !is_mark_nonspacing(c)) cleaned.push_back(c);
  }
  std::vector<std::string> words;
  std::string current;
  auto flush = [&] {
    if (!current.empty()) words.push_back(std::move(current));
    current.clear();
  };
  for (char32_t c : cleaned) {
    if (is_whitespace(c)) {
      flush();
    } else if (is_punctuation(c)) {
      flush();
      append_utf8(current, c);
      flush();
    } else {
      append_utf8(current, c);
    }
  }
  flush();
  return words;
}

WordPieceTokenizer::WordPieceTokenizer(std::vector<std::string> vocab, WordPieceOptions options)
    : vocab_(std::move(vocab)), options_(std::move(options)) {
  MEDVLP_CHECK(!vocab_.empty(), "WordPiece: the vocabulary is empty");
  MEDVLP_CHECK(options_.max_input_chars_per_word > 0, "WordPiece: max_input_chars_per_word must be positive");
  const std::string& prefix = options_.continuing_prefix;
  for (size_t i = 0; i < vocab_.size(); ++i) {
    const std::string& t = vocab_[i];
    MEDVLP_CHECK(!t.empty(), "WordPiece: empty token at line ", i + 1);
    const bool inserted = start_.emplace(std::string_view(t), static_cast<int64_t>(i)).second;
    MEDVLP_CHECK(inserted, "WordPiece: token \"", t, "\" appears twice (lines ", start_[t] + 1, " and ", i + 1, ")");
    if (!prefix.empty() && t.size() > prefix.size() && t.compare(0, prefix.size(), prefix) == 0)
      cont_.emplace(std::string_view(t).substr(prefix.size()), static_cast<int64_t>(i));
  }
  auto need = [&](const std::string& token, const char* role) {
    const int64_t i = id(token);
    MEDVLP_CHECK(i >= 0, "WordPiece: the vocabulary has no ", role, " token \"", token, "\"");
    return i;
  };
  unk_ = need(options_.unk, "unknown");
  cls_ = need(options_.cls, "begin");
  sep_ = need(options_.sep, "end");
  pad_ = need(options_.pad, "padding");
  for (const std::string* s : {&options_.cls, &options_.sep, &options_.pad, &options_.unk, &options_.mask})
    if (id(*s) >= 0) specials_.emplace_back(*s, id(*s));
  // Longest first, so that a special that contains another is matched whole.
  std::sort(specials_.begin(), specials_.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

std::shared_ptr<WordPieceTokenizer> WordPieceTokenizer::load(const std::string& vocab_path, WordPieceOptions options) {
  std::ifstream in(vocab_path, std::ios::binary);
  MEDVLP_CHECK(in, vocab_path, ": cannot open the WordPiece vocabulary");
  std::vector<std::string> vocab;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t bad = invalid_utf8_offset(line);
    MEDVLP_CHECK(bad == std::string::npos, vocab_path, ":", vocab.size() + 1, ": invalid UTF-8 at byte ", bad);
    vocab.push_back(line);
  }
  // A trailing empty line is the file's final newline, not a token.
  while (!vocab.empty() && vocab.back().empty()) vocab.pop_back();
  try {
    return std::make_shared<WordPieceTokenizer>(std::move(vocab), std::move(options));
  } catch (const Error& e) {
    throw e.with_context(vocab_path);
  }
}

int64_t WordPieceTokenizer::id(std::string_view token) const {
  auto it = start_.find(token);
  return it == start_.end() ? -1 : it->second;
}

void WordPieceTokenizer::word_pieces(const std::string& word, std::vector<int64_t>* ids) const {
  // Byte offsets of the characters, plus the end.
  std::vector<size_t> bounds;
  bounds.reserve(word.size() + 1);
  for (size_t i = 0; i < word.size(); ++i)
    if ((static_cast<unsigned char>(word[i]) & 0xC0) != 0x80) bounds.push_back(i);
  const size_t n = bounds.size();
  bounds.push_back(word.size());
  if (static_cast<int64_t>(n) > options_.max_input_chars_per_word) {
    ids->push_back(unk_);
    return;
  }
  const size_t mark = ids->size();
  const std::string_view w(word);
  for (size_t start = 0; start < n;) {
    const auto& table = start == 0 ? start_ : cont_;
    size_t end = n;
    int64_t found = -1;
    for (; end > start; --end) {
      auto it = table.find(w.substr(bounds[start], bounds[end] - bounds[start]));
      if (it != table.end()) {
        found = it->second;
        break;
      }
    }
    if (found < 0) {
      ids->resize(mark);
      ids->push_back(unk_);
      return;
    }
    ids->push_back(found);
    start = end;
  }
}

void WordPieceTokenizer::encode_segment(std::string_view text, std::vector<int64_t>* ids) const {
  for (const std::string& word : bert_pre_tokenize(text, options_)) word_pieces(word, ids);
}

std::vector<int64_t> WordPieceTokenizer::encode_plain(const std::string& text) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::string_view rest(text);
  while (!rest.empty()) {
    size_t best = std::string_view::npos;
    const std::pair<std::string, int64_t>* which = nullptr;
    for (const auto& s : specials_) {
      const size_t at = rest.find(s.first);
      if (at < best) {
        best = at;
        which = &s;
      }
    }
    if (!which) {
      encode_segment(rest, &ids);
      break;
    }
    encode_segment(rest.substr(0, best), &ids);
    ids.push_back(which->second);
    rest.remove_prefix(best + which->first.size());
  }
  return ids;
}

std::vector<std::string> WordPieceTokenizer::tokenize(std::string_view text) const {
  std::vector<std::string> out;
  for (int64_t i : encode_plain(std::string(text))) out.push_back(vocab_[static_cast<size_t>(i)]);
  return out;
}

std::string WordPieceTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  const std::string& prefix = options_.continuing_prefix;
  for (int64_t i : ids) {
    MEDVLP_CHECK(i >= 0 && i < vocab_size(), "WordPiece decode: id ", i, " outside the vocabulary [0, ", vocab_size(), ")");
    bool special = false;
    for (const auto& s : specials_) special = special || s.second == i;
    if (special) continue;
    const std::string& t = vocab_[static_cast<size_t>(i)];
    if (!prefix.empty() && t.size() > prefix.size() && t.compare(0, prefix.size(), prefix) == 0 && !out.empty()) {
      out.append(t, prefix.size(), std::string::npos);
    } else {
      if (!out.empty()) out.push_back(' ');
      out += t;
    }
  }
  return clean_up_spaces(out);
}

void WordPieceTokenizer::save(const std::string& vocab_path) const {
  std::string text;
  for (const auto& t : vocab_) text += t + "\n";
  io::write_file_atomic(vocab_path, text);
}

std::vector<std::string> train_wordpiece(const std::vector<std::string>& corpus, const WordPieceTrainOptions& options) {
  const WordPieceOptions& tok = options.tokenizer;
  const std::string& prefix = tok.continuing_prefix;
  std::map<std::string, int64_t> word_counts;
  for (const auto& doc : corpus)
    for (auto& w : bert_pre_tokenize(doc, tok)) ++word_counts[w];

  std::vector<std::string> vocab = {tok.pad, tok.unk, tok.cls, tok.sep, tok.mask};
  std::set<std::string> known(vocab.begin(), vocab.end());
  // Symbols are interned; a word is its first character, then "##"-prefixed characters.
  std::vector<std::string> symbols;
  std::unordered_map<std::string, int32_t> symbol_id;
  auto intern = [&](const std::string& s) {
    auto [it, inserted] = symbol_id.emplace(s, static_cast<int32_t>(symbols.size()));
    if (inserted) symbols.push_back(s);
    return it->second;
  };
  struct Word {
    std::vector<int32_t> symbols;
    int64_t count;
  };
  std::vector<Word> words;
  std::set<std::string> alphabet;
  for (const auto& [w, count] : word_counts) {
    const std::u32string chars = decode_utf8(w);
    if (static_cast<int64_t>(chars.size()) > tok.max_input_chars_per_word) continue;  // would be [UNK]
    Word word{{}, count};
    for (size_t i = 0; i < chars.size(); ++i) {
      std::string s = i == 0 ? "" : prefix;
      append_utf8(s, chars[i]);
      alphabet.insert(s);
      word.symbols.push_back(intern(s));
    }
    words.push_back(std::move(word));
  }
  for (const auto& s : alphabet)
    if (known.insert(s).second) vocab.push_back(s);

  auto key = [](int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); };
  while (static_cast<int64_t>(vocab.size()) < options.vocab_size) {
    std::unordered_map<uint64_t, int64_t> pairs;
    for (const auto& w : words)
      for (size_t i = 0; i + 1 < w.symbols.size(); ++i) pairs[key(w.symbols[i], w.symbols[i + 1])] += w.count;
    int32_t best_a = -1, best_b = -1;
    int64_t best_count = 0;
    for (const auto& [k, c] : pairs) {
      const auto a = static_cast<int32_t>(k >> 32), b = static_cast<int32_t>(k & 0xffffffffu);
      // Ties go to the lexicographically smaller pair, so training is deterministic.
      if (c > best_count || (c == best_count && best_a >= 0 &&
                             std::tie(symbols[static_cast<size_t>(a)], symbols[static_cast<size_t>(b)]) <
                                 std::tie(symbols[static_cast<size_t>(best_a)], symbols[static_cast<size_t>(best_b)]))) {
        best_a = a;
        best_b = b;
        best_count = c;
      }
    }
    if (best_a < 0 || best_count < options.min_frequency) break;
    const std::string& sb = symbols[static_cast<size_t>(best_b)];
    const std::string merged_text =
        symbols[static_cast<size_t>(best_a)] + (sb.compare(0, prefix.size(), prefix) == 0 ? sb.substr(prefix.size()) : sb);
    const int32_t merged = intern(merged_text);
    for (auto& w : words) {
      size_t o = 0;
      for (size_t i = 0; i < w.symbols.size(); ++i, ++o) {
        if (i + 1 < w.symbols.size() && w.symbols[i] == best_a && w.symbols[i + 1] == best_b) {
          w.symbols[o] = merged;
          ++i;
        } else {
          w.symbols[o] = w.symbols[i];
        }
      }
      w.symbols.resize(o);
    }
    if (known.insert(merged_text).second) vocab.push_back(merged_text);
  }
  return vocab;
}

}  // namespace medvlp::text
