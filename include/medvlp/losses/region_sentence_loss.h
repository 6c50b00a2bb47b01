#pragma once
// `region_sentence`: ASG's anatomical region-sentence alignment, the regions of one image contrasted
// with that image's own anatomy texts.

#include <string>
#include <vector>

#include <torch/nn/modules/linear.h>

#include "medvlp/losses/functional.h"
#include "medvlp/losses/loss.h"

namespace medvlp::losses {

/// Options of RegionSentenceLoss; defaults from ASG's released code (see docs/losses.md).
struct RegionSentenceLossOptions {
  std::vector<std::string> anatomies;  // names, in mask order (A = their count)
  int64_t token_dim = 0;               // C of Encoded.image_tokens
  int64_t embed_dim = 0;               // D of Encoded.anatomy_text
  /// Which regions take part: "present" (every anatomy in the image the report states something
  /// about, its normal template included) or "described" (only those with the report's own sentences).
  std::string regions = "present";
  double min_voxels = 1;               // a region is in the image when its mask has this many voxels
};

/// Per image b, its valid regions r (mask present, text per `regions`): region features
/// R_br = mean over the region's tokens (weighted by the fraction of each token the mask covers) of
/// L2-normalized, linearly projected image tokens, as ASG's RoIAlign of normalized patch embeddings;
/// sentence features T_br = Encoded.anatomy_text. Logits S_b = R_b·T_bᵀ·s over the image's valid
/// regions only; L = CE(S_b, diag) + CE(S_bᵀ, diag), each the mean over every valid row of the
/// (all-rank) batch, as ASG's two cross-entropies with ignore_index.
class RegionSentenceLossImpl : public LossImpl {
 public:
  RegionSentenceLossImpl(const RegionSentenceLossOptions& options, const core::ConfigNode& scale_node);
  LossOutput forward(const models::Encoded& encoded, const data::Batch& batch, const LossContext& context) override;
  std::string name() const override { return "region_sentence"; }
  std::vector<std::string> needs() const override;
  const RegionSentenceLossOptions& options() const { return options_; }
  /// Region features [b,A,D] (not re-normalized, as ASG) and which regions are in the image [b,A].
  std::pair<at::Tensor, at::Tensor> region_features(const models::Encoded& encoded, const data::Batch& batch);

 private:
  RegionSentenceLossOptions options_;
  LogitScale scale_;
  torch::nn::Linear projection_{nullptr};
};

}  // namespace medvlp::losses
