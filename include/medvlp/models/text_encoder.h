#pragma once
// Text encoders: a pooled feature plus per-token features.

#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "medvlp/core/config.h"
#include "medvlp/core/registry.h"

namespace medvlp::models {

/// Output of a text encoder: pooled [B,C] and tokens [B,L,C].
struct TextFeatures {
  at::Tensor pooled;  // [B,C]
  at::Tensor tokens;  // [B,L,C]
};

/// Base of every text encoder; out_dim() is C of TextFeatures.
class TextEncoderImpl : public torch::nn::Module {
 public:
  virtual TextFeatures forward(const at::Tensor& ids, const at::Tensor& mask) = 0;  // [B,L] each
  virtual int64_t out_dim() const = 0;
  /// Names the parameter layout for load_weights()/export_weights() ("resnet", "vit", "bert", ...).
  virtual std::string family() const { return "medvlp"; }
  /// Name prefixes of medvlp-only parameters (pooling heads) that the original library's
  /// checkpoints lack; loading such a checkpoint leaves them at their initial values.
  virtual std::vector<std::string> extra_parameters() const { return {}; }
};
using TextEncoderPtr = std::shared_ptr<TextEncoderImpl>;

/// Registry of text encoders, built from `model.text` config nodes plus the tokenizer's vocabulary size.
core::Registry<TextEncoderPtr, const core::ConfigNode&, int64_t>& text_encoder_registry();

/// Options of SmallTransformer.
struct SmallTransformerOptions {
  int64_t vocab_size = 512;
  int64_t dim = 128;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t ff_dim = 256;
  int64_t max_len = 128;
  std::string pooling = "mean";  // mean over real tokens | first (the begin token)
};

/// One pre-LayerNorm transformer encoder block (self-attention + GELU MLP).
class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(int64_t dim, int64_t heads, int64_t ff_dim);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& keep);  // x: [B,L,C], keep: [B,L] bool

 private:
  int64_t heads_;
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Linear qkv_{nullptr}, out_{nullptr}, fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(TransformerBlock);

/// A small transformer text encoder with learned positions (the demo's encoder).
class SmallTransformerImpl : public TextEncoderImpl {
 public:
  explicit SmallTransformerImpl(const SmallTransformerOptions& options);
  TextFeatures forward(const at::Tensor& ids, const at::Tensor& mask) override;
  int64_t out_dim() const override { return options_.dim; }

 private:
  SmallTransformerOptions options_;
  torch::nn::Embedding token_embed_{nullptr};
  torch::Tensor position_embed_;  // [max_len, C]
  std::vector<TransformerBlock> blocks_;
  torch::nn::LayerNorm final_norm_{nullptr};
};

}  // namespace medvlp::models
