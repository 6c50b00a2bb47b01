#include "medvlp/losses/soft_target_loss.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"

namespace medvlp::losses {

SoftTargetLossImpl::SoftTargetLossImpl(const SoftTargetOptions& options) : options_(options) {
  MEDVLP_CHECK(options_.form == "labels" || options_.form == "entities",
               "loss soft_target: form must be labels or entities, got \"", options_.form, "\"");
  scale_ = LogitScale(*this, options_.temperature, options_.learnable, 1e-6, options_.max_scale, name());
}

at::Tensor label_soft_targets(const at::Tensor& labels, const SoftTargetOptions& o) {
  torch::NoGradGuard no_grad;
  // In the labels' own floating type (the loss passes the embeddings' type): the similarities are
  // small integers or ratios, exact enough in fp32, and fp64 would double the [N,N] softmax's cost.
  const auto dtype = labels.is_floating_point() ? labels.scalar_type() : torch::kFloat;
  at::Tensor pos = (labels > 0).to(dtype);
  if (o.normal_class) pos = torch::cat({pos, pos.sum(1, true).eq(0).to(dtype)}, 1);
  at::Tensor sim;
  if (o.similarity == "signed") {
    // MedCLIP (losses.py): label_sim = labels · labelsᵀ in its coding 1 positive, -1 negative,
    // 0 uncertain or not mentioned (medvlp's -1).
    const at::Tensor known = (labels >= 0).to(dtype);
    at::Tensor v = (2 * pos.narrow(1, 0, labels.size(1)) - 1) * known;
    if (o.normal_class) v = torch::cat({v, 2 * pos.narrow(1, labels.size(1), 1) - 1}, 1);
    sim = v.matmul(v.t());
  } else if (o.similarity == "dot") {
    sim = pos.matmul(pos.t());
  } else if (o.similarity == "cosine") {
    const at::Tensor n = pos.norm(2, 1, true).clamp_min(1e-12);
    sim = (pos / n).matmul((pos / n).t());
  } else {
    const at::Tensor inter = pos.matmul(pos.t());
    const at::Tensor count = pos.sum(1, true);
    const at::Tensor uni = count + count.t() - inter;
    sim = torch::where(uni > 0, inter / uni.clamp_min(1.0), torch::ones_like(inter));  // two empty sets agree
  }
  // The identity share goes onto the diagonal in place: no [N,N] identity is built.
  if (o.target_form == "linear") {
    // ASG (main.py): F.normalize(0.8·I + 0.2·cos + 1e-6, p=1) — every entry positive, rows sum to 1.
    at::Tensor mixed = (1.0 - o.identity_mix) * sim + 1e-6;
    mixed.diagonal().add_(o.identity_mix);
    return mixed / mixed.sum(1, true);
  }
  at::Tensor targets = torch::softmax(sim / o.target_temperature, 1);
  if (o.identity_mix > 0) {
    targets = targets * (1.0 - o.identity_mix);
    targets.diagonal().add_(o.identity_mix);
  }
  return targets;
}

std::vector<std::string> SoftTargetLossImpl::needs() const {
  if (options_.form == "labels") return {"Encoded.image_embed", "Encoded.text_embed", "Batch.labels"};
  std::vector<std::string> out = {"Encoded.image_embed", "Encoded.entity_embed", "Batch.entity_disease",
                                  "Batch.entity_mask"};
  if (options_.source == "encoder") out.push_back("Encoded.entity_reference");
  return out;
}

LossOutput SoftTargetLossImpl::forward(const models::Encoded& encoded, const data::Batch& batch,
                                       const LossContext& context) {
  return options_.form == "labels" ? labels_form(encoded, batch, context) : entities_form(encoded, batch, context);
}

LossOutput SoftTargetLossImpl::labels_form(const models::Encoded& encoded, const data::Batch& batch,
                                           const LossContext& context) {
  require(encoded.image_embed, "image_embed");
  require(encoded.text_embed, "text_embed");
  require_batch(batch.labels, "labels");
  const at::Tensor image = fn::upcast(encoded.image_embed), text = fn::upcast(encoded.text_embed);
  const int64_t b = image.size(0);
  require_shape(batch.labels, "Batch.labels", {b, -1}, "[B,K] with B = " + std::to_string(b));
  const at::Tensor labels_all = context.all_gather(batch.labels.detach().to(image.device(), image.scalar_type()));
  const at::Tensor targets = label_soft_targets(labels_all, options_);
  const at::Tensor s = scale_();
  // The label similarity is symmetric, so softmax(simᵀ) = softmax(sim): both directions share targets.
  const at::Tensor image_all = context.all_gather(image), text_all = context.all_gather(text);
  at::Tensor i2t, t2i;
  if (options_.objective == "ce") {
    std::tie(i2t, t2i) = fn::contrast(image_all, text_all, s, targets, targets, context, b, options_.rows);
  } else {
    // ASG: F.kl_div(log_softmax(scores), Y) and F.kl_div(log Y, softmax(scores)), batch means, averaged.
    const auto kl_sym = [](const at::Tensor& logits, const at::Tensor& y) {
      const at::Tensor logp = torch::log_softmax(logits, 1), logy = y.log();
      return ((y * (logy - logp)).sum(1).mean() + (logp.exp() * (logp - logy)).sum(1).mean()) / 2.0;
    };
    if (options_.rows == RowMode::Full || b == image_all.size(0)) {
      const at::Tensor logits = s * image_all.matmul(text_all.t());  // one product, both directions
      i2t = kl_sym(logits, targets);
      t2i = kl_sym(logits.t(), targets);
    } else {
      const int64_t offset = context.row_offset(b);
      const at::Tensor y = targets.narrow(0, offset, b);
      i2t = kl_sym(s * image_all.narrow(0, offset, b).matmul(text_all.t()), y);
      t2i = kl_sym(s * text_all.narrow(0, offset, b).matmul(image_all.t()), y);
    }
  }
  LossOutput out;
  out.total = (i2t + t2i) / 2.0;
  out.terms = {{"i2t", i2t.detach()}, {"t2i", t2i.detach()}, {"logit_scale", s.detach()}};
  return out;
}

LossOutput SoftTargetLossImpl::entities_form(const models::Encoded& encoded, const data::Batch& batch,
                                             const LossContext& context) {
  require(encoded.image_embed, "image_embed");
  require(encoded.entity_embed, "entity_embed");
  require_batch(batch.entity_disease, "entity_disease");
  require_batch(batch.entity_mask, "entity_mask");
  if (options_.source == "encoder") require(encoded.entity_reference, "entity_reference");
  const at::Tensor image = fn::upcast(encoded.image_embed);
  const int64_t b = image.size(0);
  const at::Tensor entities = fn::upcast(encoded.entity_embed);
  require_shape(entities, "Encoded.entity_embed", {b, -1, image.size(1)}, "[B,E,D] matching image_embed");
  const int64_t E = entities.size(1);
  require_shape(batch.entity_disease, "Batch.entity_disease", {b, E}, "[B,E] matching entity_embed");
  require_shape(batch.entity_mask, "Batch.entity_mask", {b, E}, "[B,E] matching entity_embed");
  const auto dev = image.device();

  const at::Tensor image_all = context.all_gather(image);                         // [N,D]
  const at::Tensor entities_all = context.all_gather(entities).flatten(0, 1);     // [N·E,D]
  const at::Tensor disease = context.all_gather(batch.entity_disease.to(dev)).flatten();
  const at::Tensor valid = context.all_gather(batch.entity_mask.to(dev)).flatten() > 0;
  const int64_t N = image_all.size(0);

  at::Tensor targets;  // [N, N·E]: max over image i's own entities of same-disease × similarity
  {
    torch::NoGradGuard no_grad;
    at::Tensor sim;
    if (options_.source == "encoder") {
      const at::Tensor ref = fn::upcast(encoded.entity_reference);
      require_shape(ref, "Encoded.entity_reference", {b, E, -1}, "[B,E,R] matching entity_embed");
      const at::Tensor r = torch::nn::functional::normalize(context.all_gather(ref.detach()).flatten(0, 1),
                                                            torch::nn::functional::NormalizeFuncOptions().dim(1));
      sim = r.matmul(r.t());
    } else if (options_.source == "labels") {
      sim = torch::ones({N * E, N * E}, image.options());
    } else {
      // identity: an entity text is a positive of its own image only (the ablation of MedFILIP's
      // similarity matrix); with the disease test below, a repeated disease within one report is too.
      const at::Tensor owner = torch::arange(N * E, image.options().dtype(torch::kLong)).div(E, "floor");
      sim = owner.unsqueeze(1).eq(owner.unsqueeze(0)).to(image.scalar_type());
    }
    const at::Tensor same = disease.unsqueeze(1).eq(disease.unsqueeze(0)).to(sim.scalar_type());
    at::Tensor per_entity = (same * sim).masked_fill(valid.logical_not().unsqueeze(1), -1e9);  // invalid e never wins
    // MedFILIP keeps negative same-disease cosines (no clamp at 0); an image without any valid
    // entity (only possible for hand-made inputs) gets target 0.
    targets = std::get<0>(per_entity.view({N, E, N * E}).max(1));
    targets = targets.masked_fill(targets < -1e8, 0.0);
  }
  const at::Tensor columns = valid.nonzero().squeeze(1);
  const at::Tensor ent = entities_all.index_select(0, columns);  // [T,D]
  at::Tensor rows_image = image_all, rows_targets = targets.index_select(1, columns);
  if (options_.rows == RowMode::Local) {
    rows_image = image_all.narrow(0, context.row_offset(b), b);
    rows_targets = rows_targets.narrow(0, context.row_offset(b), b);
  }
  const at::Tensor s = scale_();
  const at::Tensor logits = s * rows_image.matmul(ent.t());
  const at::Tensor mse = torch::mse_loss(logits, rows_targets);
  const at::Tensor bce = torch::binary_cross_entropy_with_logits(logits, rows_targets);
  LossOutput out;
  out.total = options_.mse_weight * mse + options_.bce_weight * bce;
  out.terms = {{"mse", mse.detach()}, {"bce", bce.detach()}, {"logit_scale", s.detach()}};
  return out;
}

namespace {
LossPtr make_soft_target(const core::ConfigNode& node) {
  SoftTargetOptions o;
  o.form = node.get_choice("form", o.form, {"labels", "entities"});
  o.similarity = node.get_choice("similarity", o.similarity, {"dot", "cosine", "jaccard", "signed"});
  o.target_temperature = node.get_double("target_temperature", o.target_temperature, 1e-4, 1e4);
  o.identity_mix = node.get_double("identity_mix", o.identity_mix, 0.0, 1.0);
  o.target_form = node.get_choice("target_form", o.target_form, {"softmax", "linear"});
  o.objective = node.get_choice("objective", o.objective, {"ce", "kl_sym"});
  if (o.objective == "kl_sym" && o.target_form != "linear")
    node.fail("objective", "kl_sym needs strictly positive targets: use it with target_form: linear");
  o.normal_class = node.get_bool("normal_class", o.normal_class);
  o.source = node.get_choice("source", o.source, {"encoder", "labels", "identity"});
  o.mse_weight = node.get_double("mse_weight", o.mse_weight, 0.0, 1e6);
  o.bce_weight = node.get_double("bce_weight", o.bce_weight, 0.0, 1e6);
  o.temperature = node.get_double("temperature", o.temperature, 1e-4, 10.0);
  o.learnable = node.get_bool("learnable", o.learnable);
  // MedFILIP does not clamp its logit scale: the entities form's default bound is far away.
  o.max_scale = node.get_double("max_scale", o.form == "entities" ? 1e4 : o.max_scale, 1.0, 1e4);
  o.rows = parse_row_mode(node);
  return std::make_shared<SoftTargetLossImpl>(o);
}
}  // namespace
MEDVLP_REGISTER(loss_registry(), "soft_target", make_soft_target);

}  // namespace medvlp::losses
