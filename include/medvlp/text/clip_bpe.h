#pragma once
// CLIP's byte-level BPE tokenizer (vocab.json + merges.txt), as Hugging Face's CLIPTokenizerFast.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "medvlp/text/tokenizer.h"

namespace medvlp::text {

/// CLIP's BPE: NFC, white space runs to one space, lower case; words split as CLIP's pattern
/// ('s|'t|'re|'ve|'m|'ll|'d|letters|one digit|other non-space runs); bytes mapped to printable
/// characters (GPT-2's table); merges applied by rank with "</w>" closing each word.
/// <|startoftext|> begins, <|endoftext|> ends and pads, as Hugging Face's CLIPTokenizer does.
class ClipBpeTokenizer : public Tokenizer {
 public:
  /// `vocab` maps tokens to ids; `merges` are "a b" lines in rank order.
  ClipBpeTokenizer(std::unordered_map<std::string, int64_t> vocab, const std::vector<std::string>& merges);
  /// Reads vocab.json and merges.txt (a "#version" first line is skipped); medvlp::Error naming the
  /// file on a missing file, malformed JSON, a merge line that is not two tokens, or missing specials.
  static std::shared_ptr<ClipBpeTokenizer> load(const std::string& vocab_json, const std::string& merges_txt);

  std::vector<std::string> tokenize(std::string_view text) const;
  std::vector<int64_t> encode_plain(const std::string& text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(tokens_.size()); }
  int64_t pad_id() const override { return eot_; }
  int64_t begin_id() const override { return sot_; }
  int64_t end_id() const override { return eot_; }

 private:
  void encode_segment(std::string_view text, std::vector<int64_t>* ids) const;
  void bpe(const std::string& word, std::vector<int64_t>* ids) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> tokens_;  // id -> token
  std::unordered_map<std::string, int64_t> ranks_;  // "a b" -> rank
  int64_t sot_ = 0, eot_ = 0;
};

}  // namespace medvlp::text
