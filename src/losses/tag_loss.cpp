#include "medvlp/losses/tag_loss.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/losses/functional.h"

namespace medvlp::losses {

TagLossImpl::TagLossImpl(const TagLossOptions& options) : options_(options) {
  MEDVLP_CHECK(options_.tags > 0 && options_.token_dim > 0,
               "loss tag: options.tags (label columns) and options.token_dim (image token channels) are required");
  MEDVLP_CHECK(options_.token_dim % options_.heads == 0, "loss tag: token_dim ", options_.token_dim,
               " must be divisible by heads ", options_.heads);
  const int64_t C = options_.token_dim, K = options_.tags;
  queries_ = register_parameter("queries", torch::randn({K, C}) * 0.02);
  decoder_ = register_module("decoder", torch::nn::ModuleList());
  for (int64_t l = 0; l < options_.layers; ++l)
    decoder_->push_back(torch::nn::TransformerDecoderLayer(
        torch::nn::TransformerDecoderLayerOptions(C, options_.heads).dim_feedforward(4 * C).dropout(options_.dropout)));
  head_weight_ = register_parameter("head_weight", torch::randn({K, C}) / std::sqrt(static_cast<double>(C)));
  head_bias_ = register_parameter("head_bias", torch::zeros({K}));
}

at::Tensor TagLossImpl::logits(const at::Tensor& tokens) {
  const int64_t b = tokens.size(0);
  const at::Tensor memory = tokens.transpose(0, 1);                                  // [N,b,C]
  at::Tensor x = queries_.unsqueeze(1).expand({-1, b, -1}).to(tokens.scalar_type());  // [K,b,C]
  for (const auto& layer : *decoder_) x = layer->as<torch::nn::TransformerDecoderLayer>()->forward(x, memory);
  return (x.transpose(0, 1) * head_weight_).sum(2) + head_bias_;  // [b,K]
}

at::Tensor tag_objective(const at::Tensor& logits, const at::Tensor& labels, const TagLossOptions& o) {
  const at::Tensor known = o.unknown == "negative" ? torch::ones_like(logits) : (labels >= 0).to(logits.scalar_type());
  const at::Tensor y = (labels > 0).to(logits.scalar_type());
  at::Tensor per;
  if (o.objective == "bce") {
    per = torch::binary_cross_entropy_with_logits(logits, y, {}, {}, at::Reduction::None);
  } else {
    // ASL: focusing on both sides, and a probability margin (clip) that discards easy negatives.
    const at::Tensor p = torch::sigmoid(logits);
    const at::Tensor p_neg = o.clip > 0 ? (p - o.clip).clamp_min(0.0) : p;
    const double eps = 1e-8;
    const at::Tensor pos = y * torch::pow(1 - p, o.gamma_pos) * torch::log(p.clamp_min(eps));
    const at::Tensor neg = (1 - y) * torch::pow(p_neg, o.gamma_neg) * torch::log((1 - p_neg).clamp_min(eps));
    per = -(pos + neg);
  }
  return (per * known).sum() / known.sum().clamp_min(1.0);
}

LossOutput TagLossImpl::forward(const models::Encoded& encoded, const data::Batch& batch,
                                const LossContext& /*context*/) {
  require(encoded.image_tokens, "image_tokens");
  const bool tags = options_.targets == "tags";
  const at::Tensor& targets = tags ? batch.tags : batch.labels;
  require_batch(targets, tags ? "tags" : "labels");
  const at::Tensor tokens = fn::upcast(encoded.image_tokens);
  const int64_t b = tokens.size(0);
  require_shape(tokens, "Encoded.image_tokens", {b, -1, options_.token_dim},
                "[B,N,token_dim] with token_dim = " + std::to_string(options_.token_dim));
  require_shape(targets, tags ? "Batch.tags" : "Batch.labels", {b, options_.tags},
                "[B,tags] with tags = " + std::to_string(options_.tags));
  const at::Tensor l = logits(tokens);
  LossOutput out;
  out.total = tag_objective(l, targets.to(l.device()), options_);
  out.terms["tag"] = out.total.detach();
  out.extras["tag_logits"] = l.detach();
  return out;
}

namespace {
LossPtr make_tag(const core::ConfigNode& node) {
  TagLossOptions o;
  o.tags = node.get_int("tags", 0, 1, 1 << 20);
  o.token_dim = node.get_int("token_dim", 0, 1, 1 << 16);
  if (o.tags == 0) node.fail("tags", "required: the number of label columns");
  if (o.token_dim == 0) node.fail("token_dim", "required: channels of Encoded.image_tokens");
  o.layers = node.get_int("layers", o.layers, 1, 24);
  o.heads = node.get_int("heads", o.heads, 1, 64);
  o.dropout = node.get_double("dropout", o.dropout, 0.0, 0.9);
  o.objective = node.get_choice("objective", o.objective, {"bce", "asl"});
  o.gamma_pos = node.get_double("gamma_pos", o.gamma_pos, 0.0, 10.0);
  o.gamma_neg = node.get_double("gamma_neg", o.gamma_neg, 0.0, 10.0);
  o.clip = node.get_double("clip", o.clip, 0.0, 0.5);
  o.targets = node.get_choice("targets", o.targets, {"labels", "tags"});
  o.unknown = node.get_choice("unknown", o.unknown, {"ignore", "negative"});
  return std::make_shared<TagLossImpl>(o);
}
}  // namespace
MEDVLP_REGISTER(loss_registry(), "tag", make_tag);

}  // namespace medvlp::losses
