#include "medvlp/losses/tag_loss.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/losses/functional.h"

namespace medvlp::losses {

namespace {
// A pre-norm decoder layer (DETR's forward_pre, which ASG's irl_model.py copies): each block
// normalizes its input and adds its output to the residual stream.
class PreNormDecoderLayerImpl : public torch::nn::Module {
 public:
  PreNormDecoderLayerImpl(int64_t dim, int64_t heads, int64_t ff_dim, double dropout) {
    self_attn = register_module("self_attn", torch::nn::MultiheadAttention(
                                                 torch::nn::MultiheadAttentionOptions(dim, heads).dropout(dropout)));
    cross_attn = register_module("cross_attn", torch::nn::MultiheadAttention(
                                                   torch::nn::MultiheadAttentionOptions(dim, heads).dropout(dropout)));
    linear1 = register_module("linear1", torch::nn::Linear(dim, ff_dim));
    linear2 = register_module("linear2", torch::nn::Linear(ff_dim, dim));
    norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
    norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
    norm3 = register_module("norm3", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
    drop = register_module("dropout", torch::nn::Dropout(dropout));
  }
  at::Tensor forward(at::Tensor x, const at::Tensor& memory) {  // x [K,b,C], memory [N,b,C]
    at::Tensor h = norm1->forward(x);
    x = x + drop->forward(std::get<0>(self_attn->forward(h, h, h)));
    h = norm2->forward(x);
    x = x + drop->forward(std::get<0>(cross_attn->forward(h, memory, memory)));
    h = norm3->forward(x);
    return x + drop->forward(linear2->forward(drop->forward(torch::relu(linear1->forward(h)))));
  }
  torch::nn::MultiheadAttention self_attn{nullptr}, cross_attn{nullptr};
  torch::nn::Linear linear1{nullptr}, linear2{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(PreNormDecoderLayer);
}  // namespace

TagLossImpl::TagLossImpl(const TagLossOptions& options) : options_(options) {
  MEDVLP_CHECK(options_.tags > 0 && options_.token_dim > 0,
               "loss tag: options.tags (label columns) and options.token_dim (image token channels) are required");
  MEDVLP_CHECK(options_.token_dim % options_.heads == 0, "loss tag: token_dim ", options_.token_dim,
               " must be divisible by heads ", options_.heads);
  const int64_t C = options_.token_dim, K = options_.tags;
  const int64_t ff = options_.ff_dim > 0 ? options_.ff_dim : 4 * C;
  const bool pre = options_.decoder == "pre";
  if (options_.queries == "tag_names") {
    MEDVLP_CHECK(options_.text_dim > 0, "loss tag: queries: tag_names needs options.text_dim (the text encoder's width)");
    query_features_ = register_buffer("query_features", torch::zeros({K, options_.text_dim}));
    if (options_.text_dim != C) query_proj_ = register_module("query_proj", torch::nn::Linear(options_.text_dim, C));
  } else {
    queries_ = register_parameter("queries", torch::randn({K, C}) * 0.02);
  }
  decoder_ = register_module("decoder", torch::nn::ModuleList());
  for (int64_t l = 0; l < options_.layers; ++l) {
    if (pre)
      decoder_->push_back(PreNormDecoderLayer(C, options_.heads, ff, options_.dropout));
    else
      decoder_->push_back(torch::nn::TransformerDecoderLayer(
          torch::nn::TransformerDecoderLayerOptions(C, options_.heads).dim_feedforward(ff).dropout(options_.dropout)));
  }
  const int64_t heads_out = pre ? 1 : K;
  head_weight_ = register_parameter("head_weight", torch::randn({heads_out, C}) / std::sqrt(static_cast<double>(C)));
  head_bias_ = register_parameter("head_bias", torch::zeros({heads_out}));
  if (pre) {
    final_norm_ = register_module("final_norm", torch::nn::ModuleList());
    final_norm_->push_back(torch::nn::LayerNorm(torch::nn::LayerNormOptions({C})));
  }
}

void TagLossImpl::set_query_features(const at::Tensor& features) {
  MEDVLP_CHECK(options_.queries == "tag_names", "loss tag: query features are only used with queries: tag_names");
  MEDVLP_CHECK(features.dim() == 2 && features.size(0) == options_.tags && features.size(1) == options_.text_dim,
               "loss tag: tag-name features have shape ", features.sizes(), ", expected [", options_.tags, ", ",
               options_.text_dim, "] (tags, text_dim)");
  torch::NoGradGuard no_grad;
  query_features_.copy_(features);
}

at::Tensor TagLossImpl::logits(const at::Tensor& tokens) {
  const int64_t b = tokens.size(0);
  const at::Tensor memory = tokens.transpose(0, 1);                                  // [N,b,C]
  at::Tensor q = queries_;
  if (options_.queries == "tag_names") q = query_proj_ ? query_proj_->forward(query_features_) : query_features_;
  at::Tensor x = q.unsqueeze(1).expand({-1, b, -1}).to(tokens.scalar_type());  // [K,b,C]
  if (options_.decoder == "pre") {
    for (const auto& layer : *decoder_) x = layer->as<PreNormDecoderLayer>()->forward(x, memory);
    x = final_norm_[0]->as<torch::nn::LayerNorm>()->forward(x);
    // ASG: dropout on the features, then one Linear(C, 1) for every tag.
    x = torch::dropout(x, options_.dropout, is_training());
  } else {
    for (const auto& layer : *decoder_) x = layer->as<torch::nn::TransformerDecoderLayer>()->forward(x, memory);
  }
  return (x.transpose(0, 1) * head_weight_).sum(2) + head_bias_;  // [b,K]; a [1] head broadcasts
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
    at::Tensor w_pos = torch::pow(1 - p, o.gamma_pos), w_neg = torch::pow(p_neg, o.gamma_neg);
    if (!o.focal_grad) {  // ASL's disable_torch_grad_focal_loss (default True in its losses.py)
      w_pos = w_pos.detach();
      w_neg = w_neg.detach();
    }
    const at::Tensor pos = y * w_pos * torch::log(p.clamp_min(eps));
    const at::Tensor neg = (1 - y) * w_neg * torch::log((1 - p_neg).clamp_min(eps));
    per = -(pos + neg);
  }
  const std::string reduction = o.reduction.empty() ? (o.objective == "asl" ? "sum" : "mean") : o.reduction;
  if (reduction == "sum") return (per * known).sum();
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
  o.decoder = node.get_choice("decoder", o.decoder, {"post", "pre"});
  o.ff_dim = node.get_int("ff_dim", o.ff_dim, 0, 1 << 16);
  o.queries = node.get_choice("queries", o.queries, {"learnt", "tag_names"});
  o.text_dim = node.get_int("text_dim", o.text_dim, 0, 1 << 16);
  o.objective = node.get_choice("objective", o.objective, {"bce", "asl"});
  o.gamma_pos = node.get_double("gamma_pos", o.gamma_pos, 0.0, 10.0);
  o.gamma_neg = node.get_double("gamma_neg", o.gamma_neg, 0.0, 10.0);
  o.clip = node.get_double("clip", o.clip, 0.0, 0.5);
  o.focal_grad = node.get_bool("focal_grad", o.focal_grad);
  if (node.has("reduction")) o.reduction = node.get_choice("reduction", "mean", {"mean", "sum"});
  o.targets = node.get_choice("targets", o.targets, {"labels", "tags"});
  o.unknown = node.get_choice("unknown", o.unknown, {"ignore", "negative"});
  return std::make_shared<TagLossImpl>(o);
}

nlohmann::json fill_tag_options(const nlohmann::json& written, const LossEnvironment& env) {
  const bool tags = written.contains("targets") && written["targets"] == "tags";
  // Without a report section the label count stands in, so that the loss builds and the
  // experiment's needs check names the missing data.report.
  nlohmann::json o = {{"token_dim", env.token_dim},
                      {"tags", tags && env.tag_columns > 0 ? env.tag_columns : env.label_columns}};
  if (written.value("queries", std::string()) == "tag_names") o["text_dim"] = env.text_dim;
  return o;
}
}  // namespace
MEDVLP_REGISTER(loss_registry(), "tag", make_tag);
MEDVLP_REGISTER(loss_option_registry(), "tag", fill_tag_options);

}  // namespace medvlp::losses
