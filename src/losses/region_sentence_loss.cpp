#include "medvlp/losses/region_sentence_loss.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"

namespace medvlp::losses {

RegionSentenceLossImpl::RegionSentenceLossImpl(const RegionSentenceLossOptions& options, const core::ConfigNode& node)
    : options_(options) {
  MEDVLP_CHECK(!options_.anatomies.empty(), "loss region_sentence: options.anatomies must name at least one anatomy");
  MEDVLP_CHECK(options_.token_dim > 0 && options_.embed_dim > 0,
               "loss region_sentence: options.token_dim and options.embed_dim are required (the model's token and "
               "embedding sizes)");
  // ASG main.py: softmax_temperature 0.07, a fixed hyper-parameter.
  scale_ = LogitScale::from_config(*this, node, name(), 0.07, false, 1.0, 1000.0);
  // ASG's local_embed of the patch features; linear, so it commutes with RoIAlign's averaging.
  projection_ = register_module("projection", torch::nn::Linear(options_.token_dim, options_.embed_dim));
}

std::pair<at::Tensor, at::Tensor> RegionSentenceLossImpl::region_features(const models::Encoded& encoded,
                                                                          const data::Batch& batch) {
  require(encoded.image_tokens, "image_tokens");
  require_batch(batch.anatomy_masks, "anatomy_masks");
  const at::Tensor tokens = fn::upcast(encoded.image_tokens);  // [b,N,C]
  const int64_t b = tokens.size(0), N = tokens.size(1);
  const auto A = static_cast<int64_t>(options_.anatomies.size());
  require_shape(tokens, "Encoded.image_tokens", {b, N, options_.token_dim},
                "[B,N,token_dim] with token_dim = " + std::to_string(options_.token_dim));
  MEDVLP_CHECK(batch.anatomy_masks.dim() >= 2 && batch.anatomy_masks.size(0) == b && batch.anatomy_masks.size(1) == A,
               "loss region_sentence: Batch.anatomy_masks has shape ", batch.anatomy_masks.sizes(),
               ", expected [B,A,...] with B = ", b, " and A = ", A, " (options.anatomies)");
  const auto& grid = encoded.grid;
  int64_t grid_tokens = 1;
  for (int64_t g : grid) grid_tokens *= g;
  MEDVLP_CHECK((grid.size() == 2 || grid.size() == 3) && grid_tokens == N && batch.anatomy_masks.dim() == 2 + static_cast<int64_t>(grid.size()),
               "loss region_sentence: Encoded.grid ", c10::IntArrayRef(grid), " does not describe the ", N,
               " image tokens of masks shaped ", batch.anatomy_masks.sizes());
  at::Tensor weights, present;  // [b,A,N], [b,A]
  {
    torch::NoGradGuard no_grad;
    const at::Tensor masks = (batch.anatomy_masks.to(tokens.device()) > 0.5).to(tokens.scalar_type());
    // The fraction of each token's cell the mask covers: RoIAlign averages over the region's area.
    const at::Tensor flat = masks.flatten(0, 1).unsqueeze(1);  // [b*A,1,*spatial]
    const at::Tensor cover = grid.size() == 2 ? torch::adaptive_avg_pool2d(flat, {grid[0], grid[1]})
                                              : torch::adaptive_avg_pool3d(flat, {grid[0], grid[1], grid[2]});
    weights = cover.view({b, A, N});
    present = masks.flatten(2).sum(2).ge(options_.min_voxels).logical_and(weights.sum(2) > 0);
  }
  const at::Tensor local = torch::nn::functional::normalize(projection_->forward(tokens),
                                                            torch::nn::functional::NormalizeFuncOptions().dim(2));
  const at::Tensor pooled = weights.matmul(local) / weights.sum(2, true).clamp_min(1e-12);  // [b,A,D]
  return {pooled, present};
}

std::vector<std::string> RegionSentenceLossImpl::needs() const {
  std::vector<std::string> out = {"Encoded.image_tokens", "Encoded.anatomy_text", "Batch.anatomy_masks",
                                  "Batch.anatomy_described"};
  if (options_.regions == "present") out.push_back("Batch.anatomy_normal");
  return out;
}

LossOutput RegionSentenceLossImpl::forward(const models::Encoded& encoded, const data::Batch& batch,
                                           const LossContext& context) {
  require(encoded.anatomy_text, "anatomy_text");
  require_batch(batch.anatomy_described, "anatomy_described");
  const auto [region, present] = region_features(encoded, batch);
  const int64_t b = region.size(0), A = region.size(1), D = region.size(2);
  const at::Tensor text = fn::upcast(encoded.anatomy_text);
  require_shape(text, "Encoded.anatomy_text", {b, A, D}, "[B,A,embed_dim]");
  require_shape(batch.anatomy_described, "Batch.anatomy_described", {b, A}, "[B,A]");
  const auto dev = region.device();
  at::Tensor stated = batch.anatomy_described.to(dev) > 0.5;
  if (options_.regions == "present") {
    require_batch(batch.anatomy_normal, "anatomy_normal");
    require_shape(batch.anatomy_normal, "Batch.anatomy_normal", {b, A}, "[B,A]");
    stated = stated.logical_or(batch.anatomy_normal.to(dev) > 0.5);
  }
  const at::Tensor valid = present.logical_and(stated);  // [b,A]
  const at::Tensor s = scale_();
  const at::Tensor logits = region.bmm(text.transpose(1, 2)) * s;  // [b,A,A]: region r vs sentence t
  // Pairs outside the image's valid regions are excluded, as ASG's -inf count matrix.
  const at::Tensor pair = valid.unsqueeze(2).logical_and(valid.unsqueeze(1));
  const double lowest = -std::numeric_limits<float>::infinity();
  const auto row_ce = [&](const at::Tensor& l) {  // [b,A]: -log softmax on the diagonal, 0 on invalid rows
    const at::Tensor masked = l.masked_fill(pair.logical_not(), lowest);
    // Invalid rows are all -inf; give them a finite row so that log_softmax stays finite.
    const at::Tensor safe = masked.masked_fill(valid.logical_not().unsqueeze(2), 0.0);
    const at::Tensor ce = -torch::log_softmax(safe, 2).diagonal(0, 1, 2);
    return ce.masked_fill(valid.logical_not(), 0.0);
  };
  const at::Tensor rows_i2t = context.all_gather(row_ce(logits));
  const at::Tensor rows_t2i = context.all_gather(row_ce(logits.transpose(1, 2)));
  const at::Tensor count = context.all_gather(valid.to(rows_i2t.scalar_type())).sum();
  const at::Tensor denom = count.clamp_min(1.0);
  const at::Tensor i2t = rows_i2t.sum() / denom, t2i = rows_t2i.sum() / denom;
  LossOutput out;
  out.total = i2t + t2i;
  out.terms["region_to_sentence"] = i2t.detach();
  out.terms["sentence_to_region"] = t2i.detach();
  out.terms["regions"] = count.detach();
  out.terms["logit_scale"] = s.detach();
  return out;
}

namespace {
LossPtr make_region_sentence(const core::ConfigNode& node) {
  RegionSentenceLossOptions o;
  const MaskLossShape shape = read_mask_loss_shape(node);
  o.anatomies = shape.anatomies;
  o.token_dim = shape.token_dim;
  o.embed_dim = shape.embed_dim;
  o.regions = node.get_choice("regions", o.regions, {"present", "described"});
  o.min_voxels = node.get_double("min_voxels", o.min_voxels, 0.0, 1e12);
  return std::make_shared<RegionSentenceLossImpl>(o, node);
}

}  // namespace
MEDVLP_REGISTER(loss_registry(), "region_sentence", make_region_sentence);
MEDVLP_REGISTER(loss_option_registry(), "region_sentence", fill_mask_loss_options);

}  // namespace medvlp::losses
