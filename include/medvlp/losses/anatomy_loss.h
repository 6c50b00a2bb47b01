#pragma once
// `anatomy`: fVLM's anatomy-level contrast, one contrastive problem per anatomy across the batch (2D or 3D).

#include <optional>
#include <string>
#include <vector>

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/modulelist.h>

#include "medvlp/losses/false_negative_loss.h"
#include "medvlp/losses/functional.h"
#include "medvlp/losses/loss.h"

namespace medvlp::losses {

/// Options of AnatomyLoss; defaults from fVLM's public code (see docs/losses.md).
struct AnatomyLossOptions {
  std::vector<std::string> anatomies;  // names, in mask order (A = their count)
  int64_t token_dim = 0;               // C of Encoded.image_tokens
  int64_t embed_dim = 0;               // D of Encoded.anatomy_text
  std::string pooling = "mean";        // "mean" or "attention" (learnable query per anatomy)
  int64_t heads = 4;
  double dropout = 0.0;
  double min_voxels = 100;             // an anatomy is present when its mask has this many voxels
  /// "voxels": presence by min_voxels alone; "inside": also no voxel on a face of the (cropped)
  /// image, fVLM's rule for organs a random crop cut (blip_pretrain.py keeps only intact organs).
  std::string keep = "voxels";
  std::string reduction = "sum";       // over contributing anatomies: "sum" or "mean"
  std::optional<FalseNegativeOptions> false_negative;  // calibration inside each anatomy's problem
};

/// For each anatomy a with at least one abnormal, present sample in the whole (all-rank) batch:
/// contrast the present samples' pooled, projected image features with their anatomy sentence
/// embeddings (Encoded.anatomy_text), temperature learnable in fVLM's range [0.001, 0.5].
class AnatomyLossImpl : public LossImpl {
 public:
  AnatomyLossImpl(const AnatomyLossOptions& options, const core::ConfigNode& scale_node);
  LossOutput forward(const models::Encoded& encoded, const data::Batch& batch, const LossContext& context) override;
  std::string name() const override { return "anatomy"; }
  std::vector<std::string> needs() const override;
  const AnatomyLossOptions& options() const { return options_; }
  /// Pooled and projected image features [b,A,D] (L2-normalized) and presence [b,A] of one batch.
  std::pair<at::Tensor, at::Tensor> anatomy_features(const models::Encoded& encoded, const data::Batch& batch);

 private:
  AnatomyLossOptions options_;
  LogitScale scale_;
  torch::nn::ModuleList projections_{nullptr};
  torch::nn::ModuleList attention_{nullptr};
  at::Tensor queries_;  // [A,C]
};

}  // namespace medvlp::losses
