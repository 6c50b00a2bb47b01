#pragma once
// `soft_target`: contrast against a soft target matrix instead of the identity, in the label form
// (MedCLIP's softmax targets or ASG's linear ones) or the MedFILIP form (image vs entity texts, MSE + BCE).

#include <random>
#include <string>

#include "medvlp/losses/functional.h"
#include "medvlp/losses/loss.h"
#include "medvlp/text/knowledge.h"

namespace medvlp::losses {

/// Options of SoftTargetLoss. See docs/losses.md for the formulas and where each default comes from.
struct SoftTargetOptions {
  std::string form = "labels";        // "labels" (MedCLIP, ASG) or "entities" (MedFILIP)
  // labels form
  std::string similarity = "dot";     // "dot", "cosine" or "jaccard" between positive-label sets; "signed": MedCLIP's label dot product
  double target_temperature = 1.0;    // targets = softmax(similarity / τ) per row (MedCLIP: τ = 1)
  double identity_mix = 0.0;          // targets = α·I + (1-α)·softmax(...)
  std::string target_form = "softmax";  // "softmax" (MedCLIP) or "linear": L1-rownorm(α·I + (1-α)·sim + 1e-6) (ASG)
  std::string objective = "ce";       // "ce": soft cross-entropy; "kl_sym": (KL(Y‖P) + KL(P‖Y)) / 2 per direction (ASG)
  bool normal_class = true;           // a "no finding" column, so normal reports resemble each other
  // entities form
  std::string source = "encoder";     // "encoder": Encoded.entity_reference; "labels": same disease ⇒ 1;
                                      // "identity": 1 for the image's own entities only (no cross-sample targets)
  double mse_weight = 1.0;
  double bce_weight = 1.0;
  // both
  double temperature = 0.07;          // initial 1/scale (CLIP's 0.07)
  bool learnable = true;
  double max_scale = 100.0;
  RowMode rows = RowMode::Local;
};

/// Labels form: L = (softCE(s·I·Tᵀ, Y) + softCE(s·T·Iᵀ, Yᵀ)) / 2 with Y from Batch.labels (or the
/// symmetric KL of ASG with objective kl_sym).
/// Entities form: logits s·image·entityᵀ over every valid entity of the batch, target
/// y_it = max_{e of image i} [disease(e) = disease(t)]·cos(ref_e, ref_t), L = MSE + BCE-with-logits.
class SoftTargetLossImpl : public LossImpl {
 public:
  explicit SoftTargetLossImpl(const SoftTargetOptions& options);
  LossOutput forward(const models::Encoded& encoded, const data::Batch& batch, const LossContext& context) override;
  std::string name() const override { return "soft_target"; }
  std::vector<std::string> needs() const override;
  const SoftTargetOptions& options() const { return options_; }

 private:
  LossOutput labels_form(const models::Encoded& encoded, const data::Batch& batch, const LossContext& context);
  LossOutput entities_form(const models::Encoded& encoded, const data::Batch& batch, const LossContext& context);
  SoftTargetOptions options_;
  LogitScale scale_;
};

/// Soft targets of the labels form over gathered label rows [N,K] (1 present; ≤ 0 not): [N,N],
/// in the labels' floating type (fp32 for integer labels).
at::Tensor label_soft_targets(const at::Tensor& labels, const SoftTargetOptions& options);

// The entity text helpers live in the text module (the data stage renders entity texts); these
// names keep code written against the loss header working.
using text::EntityDetail;
using text::entity_text;

}  // namespace medvlp::losses
