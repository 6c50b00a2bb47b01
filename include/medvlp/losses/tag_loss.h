#pragma once
// `tag`: ASG's image-tag recognition — a query decoder over image tokens predicts each finding's
// existence; uncertain and unmentioned labels (-1) are ignored.

#include <string>

#include <torch/nn/modules/container/modulelist.h>

#include "medvlp/losses/loss.h"

namespace medvlp::losses {

/// Options of TagLoss; the asymmetric-loss defaults are those of Ridnik et al. (ASL).
struct TagLossOptions {
  int64_t tags = 0;        // K, the number of label columns
  int64_t token_dim = 0;   // C of Encoded.image_tokens
  int64_t layers = 1;      // decoder layers
  int64_t heads = 4;
  double dropout = 0.0;
  /// Decoder layout. "post": torch's post-norm TransformerDecoderLayer, one classifier per query.
  /// "pre" (ASG's irl_model.py): pre-norm layers, a final LayerNorm, dropout on the query features,
  /// one Linear(C, 1) head shared by every tag.
  std::string decoder = "post";
  int64_t ff_dim = 0;              // feed-forward width; 0: 4·token_dim (ASG: 1024)
  /// Decoder queries. "learnt": a parameter per tag. "tag_names" (ASG): the text encoder's pooled
  /// features of the tag names, computed once when the experiment is built (with the pretrained
  /// text weights) and kept frozen; mapped by a learnt Linear when text_dim differs from token_dim.
  std::string queries = "learnt";
  int64_t text_dim = 0;            // C of the text encoder's features (queries: tag_names)
  std::string objective = "bce";  // "bce" or "asl"
  double gamma_pos = 0.0;
  double gamma_neg = 4.0;
  double clip = 0.05;
  bool focal_grad = false;         // ASL: the focusing weight is computed without gradient (its default)
  std::string reduction;           // "mean" over known entries or "sum"; empty: mean for bce, sum for asl (ASL's -loss.sum())
  std::string unknown = "ignore";   // -1 entries: "ignore" (masked out) or "negative" (ASG's BCE sets -1 to 0)
  std::string targets = "labels";  // "labels": Batch.labels; "tags": Batch.tags from the parsed reports (ASG)
};

class TagLossImpl : public LossImpl {
 public:
  explicit TagLossImpl(const TagLossOptions& options);
  LossOutput forward(const models::Encoded& encoded, const data::Batch& batch, const LossContext& context) override;
  std::string name() const override { return "tag"; }
  std::vector<std::string> needs() const override {
    return {"Encoded.image_tokens", options_.targets == "tags" ? "Batch.tags" : "Batch.labels"};
  }
  /// Tag logits [b,K] from image tokens [b,N,C].
  at::Tensor logits(const at::Tensor& tokens);
  const TagLossOptions& options() const { return options_; }
  /// queries: tag_names — the frozen tag-name features [K,text_dim] (stored as buffer "query_features").
  void set_query_features(const at::Tensor& features);

 private:
  TagLossOptions options_;
  at::Tensor queries_;      // [K,C]
  torch::nn::ModuleList decoder_{nullptr};
  at::Tensor head_weight_;  // [K,C] one classifier per query (group fully connected); [1,C] shared ("pre")
  at::Tensor head_bias_;    // [K], or [1] shared
  torch::nn::ModuleList final_norm_{nullptr};  // "pre": the decoder's closing LayerNorm
  at::Tensor query_features_;                  // [K,text_dim] buffer (queries: tag_names)
  torch::nn::Linear query_proj_{nullptr};      // text_dim -> token_dim when they differ
};

/// Masked binary objective over labels in {1, 0, -1}: BCE-with-logits or ASL, mean over known entries.
at::Tensor tag_objective(const at::Tensor& logits, const at::Tensor& labels, const TagLossOptions& options);

}  // namespace medvlp::losses
