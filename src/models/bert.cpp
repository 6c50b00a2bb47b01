#include "medvlp/models/bert.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/core/torch_compat.h"

namespace medvlp::models {

namespace {

// An empty named container, so that parameter names nest as in the Python original.
std::shared_ptr<torch::nn::Module> scope(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

torch::nn::LayerNorm layer_norm(int64_t dim, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(eps));
}

// Cuts [B,L] inputs to at most max_len tokens.
std::pair<at::Tensor, at::Tensor> truncate(const at::Tensor& ids, const at::Tensor& mask, int64_t max_len,
                                           const char* who) {
  MEDVLP_CHECK(ids.dim() == 2 && mask.sizes() == ids.sizes(), who, ": expected ids and mask [B,L], got ", ids.sizes(),
               " and ", mask.sizes());
  MEDVLP_CHECK(ids.size(1) > 0, who, ": empty token sequences");
  if (ids.size(1) <= max_len) return {ids, mask};
  return {ids.narrow(1, 0, max_len), mask.narrow(1, 0, max_len)};
}

}  // namespace

BertLayerImpl::BertLayerImpl(const BertOptions& o) : heads_(o.heads) {
  auto attention = scope(*this, "attention");
  auto self = scope(*attention, "self");
  query_ = self->register_module("query", torch::nn::Linear(o.hidden, o.hidden));
  key_ = self->register_module("key", torch::nn::Linear(o.hidden, o.hidden));
  value_ = self->register_module("value", torch::nn::Linear(o.hidden, o.hidden));
  auto attention_output = scope(*attention, "output");
  attn_dense_ = attention_output->register_module("dense", torch::nn::Linear(o.hidden, o.hidden));
  attn_norm_ = attention_output->register_module("LayerNorm", layer_norm(o.hidden, o.eps));
  inter_dense_ = scope(*this, "intermediate")->register_module("dense", torch::nn::Linear(o.hidden, o.intermediate));
  auto output = scope(*this, "output");
  out_dense_ = output->register_module("dense", torch::nn::Linear(o.intermediate, o.hidden));
  out_norm_ = output->register_module("LayerNorm", layer_norm(o.hidden, o.eps));
  dropout_ = register_module("dropout", torch::nn::Dropout(o.dropout));
}

at::Tensor BertLayerImpl::forward(const at::Tensor& x, const at::Tensor& keep) {
  const at::Tensor q = split_heads(query_->forward(x), heads_);
  const at::Tensor k = split_heads(key_->forward(x), heads_);
  const at::Tensor v = split_heads(value_->forward(x), heads_);
  const at::Tensor context = merge_heads(compat::attention(q, k, v, keep));
  const at::Tensor h = attn_norm_->forward(x + dropout_->forward(attn_dense_->forward(context)));
  return out_norm_->forward(h + dropout_->forward(out_dense_->forward(torch::gelu(inter_dense_->forward(h)))));
}

BertImpl::BertImpl(const BertOptions& options) : options_(options) {
  const BertOptions& o = options_;
  MEDVLP_CHECK(o.hidden % o.heads == 0, "bert: hidden ", o.hidden, " is not divisible by heads ", o.heads);
  MEDVLP_CHECK(o.sum_last_layers >= 1 && o.sum_last_layers <= o.layers, "bert: sum_last_layers must be in [1, ",
               o.layers, "], got ", o.sum_last_layers);
  MEDVLP_CHECK(o.max_len >= 1 && o.max_len <= o.max_position, "bert: max_len ", o.max_len,
               " must be in [1, max_position = ", o.max_position, "]");
  MEDVLP_CHECK(o.pooling != "pooler" || o.with_pooler, "bert: pooling \"pooler\" needs with_pooler");
  auto embeddings = scope(*this, "embeddings");
  word_ = embeddings->register_module("word_embeddings", torch::nn::Embedding(o.vocab_size, o.hidden));
  position_ = embeddings->register_module("position_embeddings", torch::nn::Embedding(o.max_position, o.hidden));
  token_type_ = embeddings->register_module("token_type_embeddings", torch::nn::Embedding(o.type_vocab, o.hidden));
  embed_norm_ = embeddings->register_module("LayerNorm", layer_norm(o.hidden, o.eps));
  dropout_ = register_module("dropout", torch::nn::Dropout(o.dropout));
  auto layer_list = scope(*scope(*this, "encoder"), "layer");
  for (int64_t i = 0; i < o.layers; ++i) layers_.push_back(layer_list->register_module(std::to_string(i), BertLayer(o)));
  if (o.with_pooler) pooler_dense_ = scope(*this, "pooler")->register_module("dense", torch::nn::Linear(o.hidden, o.hidden));
  if (o.pooling == "attention") pool_ = register_module("pool", AttentionPool(o.hidden));
  // Hugging Face's initialization: normal(0, 0.02) weights, zero biases, unit LayerNorm.
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    const std::string& name = p.key();
    if (name.find("LayerNorm") != std::string::npos || name.rfind("pool.", 0) == 0) continue;
    if (name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0) p.value().zero_();
    else p.value().normal_(0.0, 0.02);
  }
}

std::vector<at::Tensor> BertImpl::hidden_states(const at::Tensor& ids_in, const at::Tensor& mask_in,
                                                const at::Tensor& token_types) {
  auto [ids, mask] = truncate(ids_in, mask_in, options_.max_len, "bert");
  const int64_t L = ids.size(1);
  at::Tensor positions = torch::arange(L, ids.options().dtype(torch::kLong)).unsqueeze(0);
  at::Tensor types = token_types.defined() ? token_types.narrow(1, 0, L) : torch::zeros_like(ids);
  at::Tensor x = word_->forward(ids) + token_type_->forward(types) + position_->forward(positions);
  x = dropout_->forward(embed_norm_->forward(x));
  const at::Tensor keep = mask.to(torch::kBool).unsqueeze(1).unsqueeze(2);  // [B,1,1,L]
  std::vector<at::Tensor> states = {x};
  for (BertLayer layer : layers_) {
    x = maybe_checkpointed(options_.checkpoint && is_training(),
                           [layer, keep](const at::Tensor& in) mutable { return layer->forward(in, keep); }, x);
    states.push_back(x);
  }
  return states;
}

at::Tensor BertImpl::pooler(const at::Tensor& last_hidden) {
  MEDVLP_CHECK(pooler_dense_, "bert: this model has no pooler (with_pooler: false)");
  return torch::tanh(pooler_dense_->forward(last_hidden.select(1, 0)));
}

TextFeatures BertImpl::forward(const at::Tensor& ids, const at::Tensor& mask) {
  const std::vector<at::Tensor> states = hidden_states(ids, mask);
  TextFeatures out;
  out.tokens = states.back();
  for (int64_t i = 2; i <= options_.sum_last_layers; ++i) out.tokens = out.tokens + states[states.size() - i];
  const at::Tensor real = mask.narrow(1, 0, out.tokens.size(1));
  if (options_.pooling == "pooler") out.pooled = pooler(states.back());
  else if (options_.pooling == "mean") out.pooled = masked_mean(out.tokens, real);
  else if (options_.pooling == "attention") out.pooled = pool_->forward(out.tokens, real);
  else out.pooled = out.tokens.select(1, 0);
  return out;
}

/// One CLIP text layer: self_attn.{q,k,v,out}_proj, layer_norm1, mlp.fc1/fc2, layer_norm2.
class ClipLayerImpl : public torch::nn::Module {
 public:
  explicit ClipLayerImpl(const ClipTextOptions& o) : heads_(o.heads) {
    auto attn = scope(*this, "self_attn");
    q_ = attn->register_module("q_proj", torch::nn::Linear(o.hidden, o.hidden));
    k_ = attn->register_module("k_proj", torch::nn::Linear(o.hidden, o.hidden));
    v_ = attn->register_module("v_proj", torch::nn::Linear(o.hidden, o.hidden));
    out_ = attn->register_module("out_proj", torch::nn::Linear(o.hidden, o.hidden));
    norm1_ = register_module("layer_norm1", layer_norm(o.hidden, o.eps));
    mlp_ = register_module("mlp", Mlp(o.hidden, o.intermediate, Activation::kQuickGelu));
    norm2_ = register_module("layer_norm2", layer_norm(o.hidden, o.eps));
  }

  at::Tensor forward(const at::Tensor& x, const at::Tensor& keep) {
    const at::Tensor h = norm1_->forward(x);
    const at::Tensor a = compat::attention(split_heads(q_->forward(h), heads_), split_heads(k_->forward(h), heads_),
                                           split_heads(v_->forward(h), heads_), keep);
    const at::Tensor y = x + out_->forward(merge_heads(a));
    return y + mlp_->forward(norm2_->forward(y));
  }

 private:
  int64_t heads_;
  torch::nn::Linear q_{nullptr}, k_{nullptr}, v_{nullptr}, out_{nullptr};
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr};
  Mlp mlp_{nullptr};
};

ClipTextImpl::ClipTextImpl(const ClipTextOptions& options) : options_(options) {
  const ClipTextOptions& o = options_;
  MEDVLP_CHECK(o.hidden % o.heads == 0, "clip_text: hidden ", o.hidden, " is not divisible by heads ", o.heads);
  auto text_model = scope(*this, "text_model");
  auto embeddings = scope(*text_model, "embeddings");
  token_ = embeddings->register_module("token_embedding", torch::nn::Embedding(o.vocab_size, o.hidden));
  position_ = embeddings->register_module("position_embedding", torch::nn::Embedding(o.max_position, o.hidden));
  auto layer_list = scope(*scope(*text_model, "encoder"), "layers");
  for (int64_t i = 0; i < o.layers; ++i)
    layers_.push_back(layer_list->register_module(std::to_string(i), std::make_shared<ClipLayerImpl>(o)));
  final_norm_ = text_model->register_module("final_layer_norm", layer_norm(o.hidden, o.eps));
  if (o.pooling == "attention") pool_ = register_module("pool", AttentionPool(o.hidden));
  torch::NoGradGuard no_grad;
  token_->weight.normal_(0.0, 0.02);
  position_->weight.normal_(0.0, 0.01);
}

TextFeatures ClipTextImpl::forward(const at::Tensor& ids_in, const at::Tensor& mask_in) {
  auto [ids, mask] = truncate(ids_in, mask_in, options_.max_position, "clip_text");
  const int64_t B = ids.size(0), L = ids.size(1);
  at::Tensor x = token_->forward(ids) + position_->forward(torch::arange(L, ids.options().dtype(torch::kLong)));
  const at::Tensor causal = torch::ones({L, L}, ids.options().dtype(torch::kBool)).tril();
  const at::Tensor keep = causal.unsqueeze(0).unsqueeze(0) & mask.to(torch::kBool).view({B, 1, 1, L});
  for (const auto& layer : layers_)
    x = maybe_checkpointed(options_.checkpoint && is_training(),
                           [layer, keep](const at::Tensor& in) { return layer->forward(in, keep); }, x);
  x = final_norm_->forward(x);
  TextFeatures out;
  out.tokens = x;
  if (options_.pooling == "mean") {
    out.pooled = masked_mean(x, mask);
  } else if (options_.pooling == "attention") {
    out.pooled = pool_->forward(x, mask);
  } else {
    // First eos per row; rows without one (cut by max_len) pool their last real token.
    const at::Tensor is_eos = (ids == options_.eos_id).logical_and(mask.to(torch::kBool));
    const at::Tensor first_eos = is_eos.to(torch::kLong).argmax(1);
    const at::Tensor last_real = (mask.to(torch::kLong).sum(1) - 1).clamp_min(0);
    const at::Tensor index = torch::where(is_eos.any(1), first_eos, last_real);
    out.pooled = x.index({torch::arange(B, index.options()), index});
  }
  return out;
}

}  // namespace medvlp::models
