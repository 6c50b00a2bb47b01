#pragma once
// An out-of-tree loss: SigLIP's pairwise sigmoid loss (Zhai et al. 2023), added to medvlp as one
// class and one registration line (in siglip_loss.cpp).

#include <medvlp/losses/loss.h>

namespace example {

/// L = −(1/N) Σ_ij log σ(z_ij (t·⟨I_i, T_j⟩ + b)), z_ij = +1 on matched pairs and −1 elsewhere;
/// t = exp(θ) and b are learned (initial t = 10, b = −10, as in SigLIP).
class SigLipLossImpl : public medvlp::losses::LossImpl {
 public:
  SigLipLossImpl(double init_scale, double init_bias);
  medvlp::losses::LossOutput forward(const medvlp::models::Encoded& encoded, const medvlp::data::Batch& batch,
                                     const medvlp::losses::LossContext& context) override;
  std::string name() const override { return "siglip"; }

 private:
  at::Tensor log_scale_, bias_;
};

}  // namespace example
