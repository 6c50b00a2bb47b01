#pragma once
// Transformer text encoders with Hugging Face parameter names: BERT (BertModel) and CLIP's text
// transformer (CLIPTextModel).

#include <string>
#include <vector>

#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "medvlp/models/layers.h"
#include "medvlp/models/text_encoder.h"

namespace medvlp::models {

/// Options of Bert; the defaults are bert-base-uncased.
struct BertOptions {
  int64_t vocab_size = 30522;
  int64_t hidden = 768;
  int64_t layers = 12;
  int64_t heads = 12;
  int64_t intermediate = 3072;
  int64_t max_position = 512;
  int64_t type_vocab = 2;
  double eps = 1e-12;
  double dropout = 0.1;           // hidden-state dropout in training (attention probabilities: none)
  bool with_pooler = true;        // BertModel's pooler (dense + tanh on [CLS])
  std::string pooling = "cls";    // cls | mean | pooler | attention
  int64_t sum_last_layers = 1;    // tokens = sum of the last n layers' states (AFLoc uses 4)
  int64_t max_len = 512;          // longer inputs are cut to this many tokens
  bool checkpoint = false;        // activation checkpointing per layer
};

/// One BERT layer (post-LayerNorm), named attention.self.{query,key,value}, attention.output.*,
/// intermediate.dense, output.*.
class BertLayerImpl : public torch::nn::Module {
 public:
  BertLayerImpl(const BertOptions& o);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& keep);  // keep: [B,1,1,L] bool

 private:
  int64_t heads_;
  torch::nn::Linear query_{nullptr}, key_{nullptr}, value_{nullptr}, attn_dense_{nullptr}, inter_dense_{nullptr},
      out_dense_{nullptr};
  torch::nn::LayerNorm attn_norm_{nullptr}, out_norm_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
};
TORCH_MODULE(BertLayer);

/// Hugging Face BertModel: embeddings.*, encoder.layer.N.*, pooler.dense.
class BertImpl : public TextEncoderImpl {
 public:
  explicit BertImpl(const BertOptions& options);
  TextFeatures forward(const at::Tensor& ids, const at::Tensor& mask) override;
  int64_t out_dim() const override { return options_.hidden; }
  std::string family() const override { return "bert"; }
  std::vector<std::string> extra_parameters() const override { return {"pool."}; }
  /// The embedding output followed by every layer's output ([B,L,C] each), as HF's hidden_states.
  /// token_types may be undefined (all zeros).
  std::vector<at::Tensor> hidden_states(const at::Tensor& ids, const at::Tensor& mask,
                                        const at::Tensor& token_types = {});
  /// BertModel's pooler_output: tanh(dense(last layer's [CLS])); needs with_pooler.
  at::Tensor pooler(const at::Tensor& last_hidden);
  const BertOptions& options() const { return options_; }

 private:
  BertOptions options_;
  torch::nn::Embedding word_{nullptr}, position_{nullptr}, token_type_{nullptr};
  torch::nn::LayerNorm embed_norm_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
  std::vector<BertLayer> layers_;
  torch::nn::Linear pooler_dense_{nullptr};
  AttentionPool pool_{nullptr};
};
TORCH_MODULE(Bert);

class ClipLayerImpl;

/// Options of ClipText; the defaults are the text tower of CLIP ViT-B/16 (openai/clip-vit-base-patch16).
struct ClipTextOptions {
  int64_t vocab_size = 49408;
  int64_t hidden = 512;
  int64_t layers = 12;
  int64_t heads = 8;
  int64_t intermediate = 2048;
  int64_t max_position = 77;
  double eps = 1e-5;
  int64_t eos_id = 49407;        // <|endoftext|>
  std::string pooling = "eos";   // eos | mean | attention
  bool checkpoint = false;
};

/// Hugging Face CLIPTextModel: causal pre-LayerNorm transformer with quick-GELU; text_model.embeddings.*,
/// text_model.encoder.layers.N.*, text_model.final_layer_norm. Pools at the first eos_id of each row
/// (HF's rule for eos ids other than 2), or at the last real token when a row has none.
class ClipTextImpl : public TextEncoderImpl {
 public:
  explicit ClipTextImpl(const ClipTextOptions& options);
  TextFeatures forward(const at::Tensor& ids, const at::Tensor& mask) override;
  int64_t out_dim() const override { return options_.hidden; }
  std::string family() const override { return "clip_text"; }
  std::vector<std::string> extra_parameters() const override { return {"pool."}; }
  const ClipTextOptions& options() const { return options_; }

 private:
  ClipTextOptions options_;
  torch::nn::Embedding token_{nullptr}, position_{nullptr};
  std::vector<std::shared_ptr<ClipLayerImpl>> layers_;
  torch::nn::LayerNorm final_norm_{nullptr};
  AttentionPool pool_{nullptr};
};
TORCH_MODULE(ClipText);

}  // namespace medvlp::models
