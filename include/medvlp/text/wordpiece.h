#pragma once
// BERT's WordPiece tokenizer, reproducing Hugging Face's BertTokenizer(Fast) from a vocab.txt,
// and a WordPiece vocabulary trainer for report corpora.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "medvlp/text/tokenizer.h"

namespace medvlp::text {

/// Normalization and splitting switches, named as in Hugging Face's BertNormalizer.
struct WordPieceOptions {
  bool clean_text = true;           // drop control characters, map white space to ' '
  bool handle_chinese_chars = true; // CJK ideographs become single words
  bool lowercase = true;
  int strip_accents = -1;           // -1: follow `lowercase` (as Hugging Face does), 0 off, 1 on
  int64_t max_input_chars_per_word = 100;  // longer words become [UNK]
  std::string continuing_prefix = "##";
  std::string unk = "[UNK]", cls = "[CLS]", sep = "[SEP]", pad = "[PAD]", mask = "[MASK]";
};

/// BERT's basic tokenizer (clean-up, CJK isolation, lower-casing, accent stripping, splitting on
/// white space and punctuation): the words WordPiece then splits. Throws on invalid UTF-8.
std::vector<std::string> bert_pre_tokenize(std::string_view text, const WordPieceOptions& options);

/// WordPiece over a vocabulary (one token per line of vocab.txt, id = line number). Special tokens
/// written literally in the input ("[CLS]", "[MASK]", ...) are kept whole, as Hugging Face does.
class WordPieceTokenizer : public Tokenizer {
 public:
  WordPieceTokenizer(std::vector<std::string> vocab, WordPieceOptions options = {});
  /// Reads vocab.txt; medvlp::Error naming the file when it is missing, empty, has duplicate
  /// tokens or lacks the [UNK]/[CLS]/[SEP]/[PAD] tokens.
  static std::shared_ptr<WordPieceTokenizer> load(const std::string& vocab_path, WordPieceOptions options = {});

  /// The word pieces of `text`, without [CLS]/[SEP].
  std::vector<std::string> tokenize(std::string_view text) const;
  std::vector<int64_t> encode_plain(const std::string& text) const override;
  /// Joins pieces as Hugging Face's decode(skip_special_tokens=True) does, incl. its clean-up of
  /// spaces before punctuation.
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }
  int64_t pad_id() const override { return pad_; }
  int64_t begin_id() const override { return cls_; }
  int64_t end_id() const override { return sep_; }
  int64_t unk_id() const { return unk_; }
  /// Id of `token`, or -1.
  int64_t id(std::string_view token) const;
  const std::vector<std::string>& vocab() const { return vocab_; }
  const WordPieceOptions& options() const { return options_; }
  /// Writes vocab.txt (atomically).
  void save(const std::string& vocab_path) const;

 private:
  void word_pieces(const std::string& word, std::vector<int64_t>* ids) const;
  void encode_segment(std::string_view text, std::vector<int64_t>* ids) const;

  std::vector<std::string> vocab_;
  WordPieceOptions options_;
  std::unordered_map<std::string_view, int64_t> start_;  // pieces that begin a word
  std::unordered_map<std::string_view, int64_t> cont_;   // continuation pieces, prefix removed
  std::vector<std::pair<std::string, int64_t>> specials_;
  int64_t unk_ = 0, cls_ = 0, sep_ = 0, pad_ = 0;
};

/// Options of the vocabulary trainer.
struct WordPieceTrainOptions {
  int64_t vocab_size = 8000;   // including special tokens and the alphabet
  int64_t min_frequency = 2;   // a merge must occur at least this often
  WordPieceOptions tokenizer;  // normalization used to split the corpus, and the special tokens
};

/// Learns a WordPiece vocabulary from `corpus` the way Hugging Face's WordPieceTrainer does:
/// byte-pair merges over the pre-tokenized words with `##` on continuation pieces, most frequent
/// pair first (ties: the lexicographically smaller pair). Specials come first: [PAD], [UNK],
/// [CLS], [SEP], [MASK]. Deterministic.
std::vector<std::string> train_wordpiece(const std::vector<std::string>& corpus, const WordPieceTrainOptions& options = {});

}  // namespace medvlp::text
