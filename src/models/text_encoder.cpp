#include "medvlp/models/text_encoder.h"

#include <torch/torch.h>

#include "medvlp/core/torch_compat.h"

namespace medvlp::models {

core::Registry<TextEncoderPtr, const core::ConfigNode&, int64_t>& text_encoder_registry() {
  static core::Registry<TextEncoderPtr, const core::ConfigNode&, int64_t> registry("text encoder");
  return registry;
}

TransformerBlockImpl::TransformerBlockImpl(int64_t dim, int64_t heads, int64_t ff_dim) : heads_(heads) {
  MEDVLP_CHECK(dim % heads == 0, "transformer: dim ", dim, " is not divisible by heads ", heads);
  norm1_ = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  qkv_ = register_module("qkv", torch::nn::Linear(dim, 3 * dim));
  out_ = register_module("out", torch::nn::Linear(dim, dim));
  norm2_ = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  fc1_ = register_module("fc1", torch::nn::Linear(dim, ff_dim));
  fc2_ = register_module("fc2", torch::nn::Linear(ff_dim, dim));
}

at::Tensor TransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& keep) {
  const int64_t B = x.size(0), L = x.size(1), C = x.size(2);
  auto qkv = qkv_->forward(norm1_->forward(x)).view({B, L, 3, heads_, C / heads_}).permute({2, 0, 3, 1, 4});
  at::Tensor attended = compat::scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], keep);  // [B,H,L,Dh]
  at::Tensor h = x + out_->forward(attended.transpose(1, 2).reshape({B, L, C}));
  return h + fc2_->forward(torch::gelu(fc1_->forward(norm2_->forward(h))));
}

SmallTransformerImpl::SmallTransformerImpl(const SmallTransformerOptions& options) : options_(options) {
  token_embed_ = register_module("token_embed", torch::nn::Embedding(options_.vocab_size, options_.dim));
  position_embed_ = register_parameter("position_embed", torch::randn({options_.max_len, options_.dim}) * 0.02);
  for (int64_t i = 0; i < options_.layers; ++i)
    blocks_.push_back(register_module("block" + std::to_string(i),
                                      TransformerBlock(options_.dim, options_.heads, options_.ff_dim)));
  final_norm_ = register_module("final_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({options_.dim})));
}

TextFeatures SmallTransformerImpl::forward(const at::Tensor& ids, const at::Tensor& mask) {
  MEDVLP_CHECK(ids.dim() == 2 && mask.sizes() == ids.sizes(), "small_transformer: expected ids and mask [B,L], got ",
               ids.sizes(), " and ", mask.sizes());
  const int64_t L = ids.size(1);
  MEDVLP_CHECK(L <= options_.max_len, "small_transformer: sequence length ", L, " exceeds max_len ", options_.max_len,
               " (raise model.text.max_len or lower text.max_len)");
  at::Tensor keep = mask.to(torch::kBool);
  at::Tensor x = token_embed_->forward(ids) + position_embed_.slice(0, 0, L).unsqueeze(0);
  for (auto& block : blocks_) x = block->forward(x, keep);
  x = final_norm_->forward(x);
  TextFeatures out;
  out.tokens = x;
  if (options_.pooling == "first") {
    out.pooled = x.select(1, 0);
  } else {
    at::Tensor weights = mask.to(x.scalar_type()).unsqueeze(-1);  // [B,L,1]
    out.pooled = (x * weights).sum(1) / weights.sum(1).clamp_min(1.0);
  }
  return out;
}

namespace {
TextEncoderPtr make_small_transformer(const core::ConfigNode& node, int64_t vocab_size) {
  SmallTransformerOptions o;
  o.vocab_size = vocab_size;
  o.dim = node.get_int("dim", o.dim, 8, 4096);
  o.layers = node.get_int("layers", o.layers, 1, 48);
  o.heads = node.get_int("heads", o.heads, 1, 64);
  o.ff_dim = node.get_int("ff_dim", o.ff_dim, 8, 16384);
  o.max_len = node.get_int("max_len", o.max_len, 2, 8192);
  o.pooling = node.get_choice("pooling", o.pooling, {"mean", "first"});
  if (o.dim % o.heads != 0) node.fail("heads", "must divide dim " + std::to_string(o.dim));
  return std::make_shared<SmallTransformerImpl>(o);
}
}  // namespace
MEDVLP_REGISTER(text_encoder_registry(), "small_transformer", make_small_transformer);

}  // namespace medvlp::models
