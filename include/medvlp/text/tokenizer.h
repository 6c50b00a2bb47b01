#pragma once
// The tokenizer interface shared by every text encoder.

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace medvlp::text {

/// Token ids and attention mask for a batch: both [B,L] int64, mask 1 on real tokens.
struct TokenBatch {
  at::Tensor ids;   // [B, L]
  at::Tensor mask;  // [B, L]
};

/// Turns text into ids. encode() adds the begin/end specials, truncates to max_len
/// (keeping the end token) and pads with pad_id(); the mask marks the real tokens.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// Ids of the text without special tokens.
  virtual std::vector<int64_t> encode_plain(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t pad_id() const = 0;
  virtual int64_t begin_id() const = 0;  // [CLS] / <s>
  virtual int64_t end_id() const = 0;    // [SEP] / </s>

  /// Fixed-length encoding of a batch of texts.
  TokenBatch encode(const std::vector<std::string>& texts, int64_t max_len) const;
};

}  // namespace medvlp::text
