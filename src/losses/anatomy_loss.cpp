#include "medvlp/losses/anatomy_loss.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"

namespace medvlp::losses {

AnatomyLossImpl::AnatomyLossImpl(const AnatomyLossOptions& options, const core::ConfigNode& node)
    : options_(options) {
  const int64_t A = static_cast<int64_t>(options_.anatomies.size());
  MEDVLP_CHECK(A > 0, "loss anatomy: options.anatomies must name at least one anatomy");
  MEDVLP_CHECK(options_.token_dim > 0 && options_.embed_dim > 0,
               "loss anatomy: options.token_dim and options.embed_dim are required (the model's token and "
               "embedding sizes)");
  // fVLM: temperature 0.07, learnable, clamped to [0.001, 0.5].
  scale_ = LogitScale::from_config(*this, node, name(), 0.07, true, 2.0, 1000.0);
  projections_ = register_module("projections", torch::nn::ModuleList());
  for (int64_t a = 0; a < A; ++a) projections_->push_back(torch::nn::Linear(options_.token_dim, options_.embed_dim));
  if (options_.pooling == "attention") {
    MEDVLP_CHECK(options_.token_dim % options_.heads == 0, "loss anatomy: token_dim ", options_.token_dim,
                 " must be divisible by heads ", options_.heads);
    queries_ = register_parameter("queries", torch::zeros({A, options_.token_dim}));
    attention_ = register_module("attention", torch::nn::ModuleList());
    attention_->push_back(torch::nn::MultiheadAttention(
        torch::nn::MultiheadAttentionOptions(options_.token_dim, options_.heads).dropout(options_.dropout)));
  }
}

std::pair<at::Tensor, at::Tensor> AnatomyLossImpl::anatomy_features(const models::Encoded& encoded,
                                                                    const data::Batch& batch) {
  require(encoded.image_tokens, "image_tokens");
  require_batch(batch.anatomy_masks, "anatomy_masks");
  const at::Tensor tokens = fn::upcast(encoded.image_tokens);  // [b,N,C]
  const int64_t b = tokens.size(0), N = tokens.size(1), C = tokens.size(2);
  const int64_t A = static_cast<int64_t>(options_.anatomies.size());
  require_shape(tokens, "Encoded.image_tokens", {b, N, options_.token_dim},
                "[B,N,token_dim] with token_dim = " + std::to_string(options_.token_dim));
  MEDVLP_CHECK(batch.anatomy_masks.dim() >= 2 && batch.anatomy_masks.size(0) == b && batch.anatomy_masks.size(1) == A,
               "loss anatomy: Batch.anatomy_masks has shape ", batch.anatomy_masks.sizes(), ", expected [B,A,...] with B = ",
               b, " and A = ", A, " (options.anatomies)");
  int64_t grid_tokens = 1;
  for (int64_t g : encoded.grid) grid_tokens *= g;
  MEDVLP_CHECK(!encoded.grid.empty() && grid_tokens == N, "loss anatomy: Encoded.grid ", c10::IntArrayRef(encoded.grid),
               " does not describe the ", N, " image tokens");
  at::Tensor present, in_token;  // [b,A], [b,A,N]
  {
    torch::NoGradGuard no_grad;
    const at::Tensor masks = batch.anatomy_masks.to(tokens.device());
    const at::Tensor voxels = (masks > 0.5).flatten(2).sum(2);
    in_token = fn::masks_to_tokens(masks > 0.5, encoded.grid);
    present = (voxels >= options_.min_voxels).logical_and(in_token.any(2));
    if (options_.keep == "inside") {
      const at::Tensor inside = masks > 0.5;
      at::Tensor on_face = torch::zeros_like(present);
      for (int64_t d = 2; d < inside.dim(); ++d)
        for (const int64_t at_index : {int64_t{0}, inside.size(d) - 1})
          on_face = on_face.logical_or(inside.select(d, at_index).flatten(2).any(2));
      present = present.logical_and(on_face.logical_not());
    }
  }
  std::vector<at::Tensor> feats;
  const at::Tensor token_weights = in_token.to(tokens.scalar_type());  // [b,A,N]
  at::Tensor pooled;                                                   // [b,A,C]
  if (options_.pooling == "mean") {
    pooled = token_weights.matmul(tokens) / token_weights.sum(2, true).clamp_min(1.0);
  } else {
    auto mha = attention_[0]->as<torch::nn::MultiheadAttention>();
    const at::Tensor kv = tokens.transpose(0, 1);  // [N,b,C]
    std::vector<at::Tensor> per;
    for (int64_t a = 0; a < A; ++a) {
      // Absent anatomies attend to every token (their feature is unused) so no row is all-masked.
      const at::Tensor ignore = in_token.select(1, a).logical_not().logical_and(present.select(1, a).unsqueeze(1));
      const at::Tensor q = queries_[a].to(tokens.scalar_type()).view({1, 1, C}).expand({1, b, C});
      per.push_back(std::get<0>(mha->forward(q, kv, kv, ignore)).squeeze(0));  // [b,C]
    }
    pooled = torch::stack(per, 1);
  }
  for (int64_t a = 0; a < A; ++a)
    feats.push_back(projections_[a]->as<torch::nn::Linear>()->forward(pooled.select(1, a)));
  const at::Tensor projected = torch::nn::functional::normalize(torch::stack(feats, 1),
                                                                torch::nn::functional::NormalizeFuncOptions().dim(2));
  return {projected, present};
}

std::vector<std::string> AnatomyLossImpl::needs() const {
  std::vector<std::string> out = {"Encoded.image_tokens", "Encoded.anatomy_text", "Batch.anatomy_masks",
                                  "Batch.anatomy_abnormal"};
  if (options_.false_negative && options_.false_negative->pairing == "text")
    out.insert(out.end(), {"Batch.anatomy_text_hash", "Batch.anatomy_normal"});
  if (options_.false_negative && options_.false_negative->pairing == "labels") out.push_back("Batch.labels");
  return out;
}

LossOutput AnatomyLossImpl::forward(const models::Encoded& encoded, const data::Batch& batch,
                                    const LossContext& context) {
  require(encoded.anatomy_text, "anatomy_text");
  require_batch(batch.anatomy_abnormal, "anatomy_abnormal");
  const auto [image, present] = anatomy_features(encoded, batch);
  const int64_t b = image.size(0), A = image.size(1), D = image.size(2);
  const at::Tensor text = fn::upcast(encoded.anatomy_text);
  require_shape(text, "Encoded.anatomy_text", {b, A, D}, "[B,A,embed_dim]");
  require_shape(batch.anatomy_abnormal, "Batch.anatomy_abnormal", {b, A}, "[B,A]");
  const auto dev = image.device();
  at::Tensor hash, normal;
  if (options_.false_negative && options_.false_negative->pairing == "text") {
    require_batch(batch.anatomy_text_hash, "anatomy_text_hash");
    require_batch(batch.anatomy_normal, "anatomy_normal");
    require_shape(batch.anatomy_text_hash, "Batch.anatomy_text_hash", {b, A}, "[B,A]");
    require_shape(batch.anatomy_normal, "Batch.anatomy_normal", {b, A}, "[B,A]");
    hash = context.all_gather(batch.anatomy_text_hash.to(dev));
    normal = context.all_gather(batch.anatomy_normal.to(dev));
  }
  at::Tensor labels;
  if (options_.false_negative && options_.false_negative->pairing == "labels") {
    require_batch(batch.labels, "labels");
    labels = context.all_gather(batch.labels.to(dev));
  }
  const at::Tensor image_all = context.all_gather(image), text_all = context.all_gather(text);
  const at::Tensor present_all = context.all_gather(present.to(torch::kFloat)) > 0;
  const at::Tensor abnormal_all = context.all_gather(batch.anatomy_abnormal.to(dev).to(torch::kFloat)) > 0;
  const at::Tensor contributes = abnormal_all.logical_and(present_all).any(0).cpu();  // [A]
  const at::Tensor s = scale_();

  LossOutput out;
  at::Tensor total = (image_all.sum() + text_all.sum()) * 0.0;  // defined even when no anatomy contributes
  int64_t used = 0;
  LossContext whole = context;  // every rank computes each (small) anatomy problem in full
  for (int64_t a = 0; a < A; ++a) {
    if (!contributes[a].item<bool>()) continue;
    const at::Tensor rows = present_all.select(1, a).nonzero().squeeze(1);
    if (rows.size(0) < 2) continue;
    const at::Tensor img = image_all.select(1, a).index_select(0, rows);
    const at::Tensor txt = text_all.select(1, a).index_select(0, rows);
    at::Tensor term;
    if (options_.false_negative) {
      const FalseNegativeOptions& fo = *options_.false_negative;
      const at::Tensor pairs = false_negative_pairs(
          fo, hash.defined() ? hash.select(1, a).index_select(0, rows) : hash,
          normal.defined() ? normal.select(1, a).index_select(0, rows) : normal,
          labels.defined() ? labels.index_select(0, rows) : labels, fo.pairing == "embedding" ? txt.detach() : at::Tensor());
      bool skipped = false;
      const auto [i2t, t2i] = calibrated_contrast(img, txt, s, pairs, fo, whole, rows.size(0), RowMode::Full, &skipped);
      if (skipped) continue;
      term = (i2t + t2i) / 2.0;
    } else {
      const auto [i2t, t2i] = fn::contrast(img, txt, s, {}, {}, whole, rows.size(0), RowMode::Full);
      term = (i2t + t2i) / 2.0;
    }
    out.terms["anatomy/" + options_.anatomies[static_cast<size_t>(a)]] = term.detach();
    total = total + term;
    ++used;
  }
  if (options_.reduction == "mean" && used > 0) total = total / static_cast<double>(used);
  out.total = total;
  out.terms["anatomies_used"] = torch::full({}, static_cast<double>(used));
  out.terms["logit_scale"] = s.detach();
  return out;
}

namespace {
LossPtr make_anatomy(const core::ConfigNode& node) {
  AnatomyLossOptions o;
  const MaskLossShape shape = read_mask_loss_shape(node);
  o.anatomies = shape.anatomies;
  o.token_dim = shape.token_dim;
  o.embed_dim = shape.embed_dim;
  o.pooling = node.get_choice("pooling", o.pooling, {"mean", "attention"});
  o.heads = node.get_int("heads", o.heads, 1, 64);
  o.dropout = node.get_double("dropout", o.dropout, 0.0, 0.9);
  o.min_voxels = node.get_double("min_voxels", o.min_voxels, 0.0, 1e12);
  o.reduction = node.get_choice("reduction", o.reduction, {"sum", "mean"});
  o.keep = node.get_choice("keep", o.keep, {"voxels", "inside"});
  if (node.has("false_negative")) o.false_negative = parse_false_negative_options(node.at("false_negative"));
  return std::make_shared<AnatomyLossImpl>(o, node);
}

}  // namespace
MEDVLP_REGISTER(loss_registry(), "anatomy", make_anatomy);
MEDVLP_REGISTER(loss_option_registry(), "anatomy", fill_mask_loss_options);

}  // namespace medvlp::losses
