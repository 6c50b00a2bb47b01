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
  std::string objective = "bce";  // "bce" or "asl"
  double gamma_pos = 0.0;
  double gamma_neg = 4.0;
  double clip = 0.05;
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

 private:
  TagLossOptions options_;
  at::Tensor queries_;      // [K,C]
  torch::nn::ModuleList decoder_{nullptr};
  at::Tensor head_weight_;  // [K,C], one classifier per query (group fully connected)
  at::Tensor head_bias_;    // [K]
};

/// Masked binary objective over labels in {1, 0, -1}: BCE-with-logits or ASL, mean over known entries.
at::Tensor tag_objective(const at::Tensor& logits, const at::Tensor& labels, const TagLossOptions& options);

}  // namespace medvlp::losses
