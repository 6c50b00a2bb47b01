#pragma once
// `false_negative`: fVLM's false-negative calibration of an image-report contrastive problem.

#include <cstdint>
#include <string>

#include "medvlp/losses/functional.h"
#include "medvlp/losses/loss.h"

namespace medvlp::losses {

/// How pairs other than the diagonal are recognized as positives, and what is done with them.
struct FalseNegativeOptions {
  std::string pairing = "text";   // "text": identical text or both normal (fVLM); "labels": same
                                  // positive finding set; "embedding": text cosine ≥ threshold
  std::string handling = "positive";  // "positive": extra targets (fVLM); "mask": drop from denominators
  double threshold = 0.9;         // for pairing "embedding"
};

/// Reads `pairing`, `handling`, `threshold` from a loss's options.
FalseNegativeOptions parse_false_negative_options(const core::ConfigNode& node);

/// Off-diagonal [N,N] bool matrix of pairs that are not true negatives. For "text": `hash` [N] and
/// `normal` [N]; for "labels": `labels` [N,K]; for "embedding": `text` [N,D] (L2-normalized).
at::Tensor false_negative_pairs(const FalseNegativeOptions& options, const at::Tensor& hash, const at::Tensor& normal,
                                const at::Tensor& labels, const at::Tensor& text);

/// Computes {i2t, t2i} for one calibrated problem on gathered rows (targets I + pairs, rows
/// normalized; or the identity with pairs excluded). `skipped` is set when every pair is positive
/// (fVLM skips such problems: their loss is a constant).
std::pair<at::Tensor, at::Tensor> calibrated_contrast(const at::Tensor& image_all, const at::Tensor& text_all,
                                                      const at::Tensor& scale, const at::Tensor& pairs,
                                                      const FalseNegativeOptions& options,
                                                      const LossContext& context, int64_t local_rows, RowMode mode,
                                                      bool* skipped);

/// L = (softCE(s·I·Tᵀ, Y) + softCE(s·T·Iᵀ, Y)) / 2 with Y = rownorm(I + P) on image/text embeddings.
class FalseNegativeLossImpl : public LossImpl {
 public:
  FalseNegativeLossImpl(const FalseNegativeOptions& options, const core::ConfigNode& scale_node);
  LossOutput forward(const models::Encoded& encoded, const data::Batch& batch, const LossContext& context) override;
  std::string name() const override { return "false_negative"; }
  std::vector<std::string> needs() const override;

 private:
  FalseNegativeOptions options_;
  LogitScale scale_;
  RowMode rows_;
};

}  // namespace medvlp::losses
