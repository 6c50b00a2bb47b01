#pragma once
// `clip`: symmetric image-report InfoNCE (CLIP / ConVIRT), the global objective of every method.

#include "medvlp/losses/functional.h"
#include "medvlp/losses/loss.h"

namespace medvlp::losses {

/// Options of ClipLoss; defaults follow CLIP (initial temperature 0.07, scale capped at 100).
struct ClipLossOptions {
  double temperature = 0.07;  // initial (or fixed) temperature; logits = sim / temperature
  bool learnable = true;      // learn log(1/temperature)
  double max_scale = 100.0;   // clamp of 1/temperature
  RowMode rows = RowMode::Local;  // on N ranks: own rows vs all columns, or the full problem
};

/// L = (CE(s·I·Tᵀ, diag) + CE(s·T·Iᵀ, diag)) / 2 over L2-normalized embeddings, s = exp(log_scale).
/// On N ranks each rank scores its own rows against the gathered columns ("local" mode).
class ClipLossImpl : public LossImpl {
 public:
  explicit ClipLossImpl(const ClipLossOptions& options);
  LossOutput forward(const models::Encoded& encoded, const data::Batch& batch, const LossContext& context) override;
  std::string name() const override { return "clip"; }
  /// The current logit scale exp(log_scale), clamped.
  at::Tensor scale() const;

 private:
  ClipLossOptions options_;
  LogitScale scale_;  // parameter (or buffer) "log_scale"
};

}  // namespace medvlp::losses
