#pragma once
// `soft_target`: contrast against a soft target matrix instead of the identity, in the MedCLIP/ASG
// form (targets from label similarity) or the MedFILIP form (image vs entity texts, MSE + BCE).

#include <random>
#include <string>

#include "medvlp/losses/functional.h"
#include "medvlp/losses/loss.h"

namespace medvlp::losses {

/// Options of SoftTargetLoss. See docs/losses.md for the formulas and where each default comes from.
struct SoftTargetOptions {
  std::string form = "labels";        // "labels" (MedCLIP/ASG) or "entities" (MedFILIP)
  // labels form
  std::string similarity = "dot";     // "dot", "cosine" or "jaccard" between positive-label sets
  double target_temperature = 1.0;    // targets = softmax(similarity / τ) per row (MedCLIP: τ = 1)
  double identity_mix = 0.0;          // targets = α·I + (1-α)·softmax(...)
  bool normal_class = true;           // a "no finding" column, so normal reports resemble each other
  // entities form
  std::string source = "encoder";     // "encoder": Encoded.entity_reference; "labels": same disease ⇒ 1
  double mse_weight = 1.0;
  double bce_weight = 1.0;
  // both
  double temperature = 0.07;          // initial 1/scale (CLIP's 0.07)
  bool learnable = true;
  double max_scale = 100.0;
  RowMode rows = RowMode::Local;
};

/// Labels form: L = (softCE(s·I·Tᵀ, Y) + softCE(s·T·Iᵀ, Yᵀ)) / 2 with Y from Batch.labels.
/// Entities form: logits s·image·entityᵀ over every valid entity of the batch, target
/// y_it = max_{e of image i} [disease(e) = disease(t)]·cos(ref_e, ref_t), L = MSE + BCE-with-logits.
class SoftTargetLossImpl : public LossImpl {
 public:
  explicit SoftTargetLossImpl(const SoftTargetOptions& options);
  LossOutput forward(const models::Encoded& encoded, const data::Batch& batch, const LossContext& context) override;
  std::string name() const override { return "soft_target"; }
  const SoftTargetOptions& options() const { return options_; }

 private:
  LossOutput labels_form(const models::Encoded& encoded, const data::Batch& batch, const LossContext& context);
  LossOutput entities_form(const models::Encoded& encoded, const data::Batch& batch, const LossContext& context);
  SoftTargetOptions options_;
  LogitScale scale_;
};

/// Soft targets of the labels form over gathered label rows [N,K] (1 present; ≤ 0 not): [N,N].
at::Tensor label_soft_targets(const at::Tensor& labels, const SoftTargetOptions& options);

/// One extracted disease detail of a report (MedFILIP's <location, detail, disease> triplet).
struct EntityDetail {
  std::string location;
  std::string detail;
  std::string disease;
};

/// MedFILIP's entity text "location detail disease. knowledge": each of the three elements is
/// replaced by "mask" with `mask_probability` (training-time augmentation, 0.5 in MedFILIP); the
/// knowledge description is appended only when the disease itself was kept and `knowledge` is non-empty.
std::string entity_text(const EntityDetail& entity, const std::string& knowledge, double mask_probability,
                        std::mt19937_64& rng);

}  // namespace medvlp::losses
