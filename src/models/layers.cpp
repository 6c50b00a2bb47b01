#include "medvlp/models/layers.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/core/torch_compat.h"

namespace medvlp::models {

at::Tensor activate(const at::Tensor& x, Activation activation) {
  if (activation == Activation::kQuickGelu) return x * torch::sigmoid(1.702 * x);
  return torch::gelu(x);
}

MlpImpl::MlpImpl(int64_t dim, int64_t hidden, Activation activation) : activation_(activation) {
  fc1_ = register_module("fc1", torch::nn::Linear(dim, hidden));
  fc2_ = register_module("fc2", torch::nn::Linear(hidden, dim));
}

at::Tensor MlpImpl::forward(const at::Tensor& x) { return fc2_->forward(activate(fc1_->forward(x), activation_)); }

at::Tensor split_heads(const at::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}

at::Tensor merge_heads(const at::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

SelfAttentionImpl::SelfAttentionImpl(int64_t dim, int64_t heads, bool qkv_bias) : heads_(heads) {
  MEDVLP_CHECK(heads > 0 && dim % heads == 0, "attention: dim ", dim, " is not divisible by heads ", heads);
  qkv_ = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(qkv_bias)));
  proj_ = register_module("proj", torch::nn::Linear(dim, dim));
}

at::Tensor SelfAttentionImpl::forward(const at::Tensor& x, const at::Tensor& keep) {
  const int64_t B = x.size(0), N = x.size(1), C = x.size(2);
  const at::Tensor qkv = qkv_->forward(x).view({B, N, 3, heads_, C / heads_}).permute({2, 0, 3, 1, 4});
  return proj_->forward(merge_heads(compat::attention(qkv[0], qkv[1], qkv[2], keep)));
}

VitBlockImpl::VitBlockImpl(int64_t dim, int64_t heads, double mlp_ratio, bool qkv_bias, double eps) {
  norm1_ = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(eps)));
  attn_ = register_module("attn", SelfAttention(dim, heads, qkv_bias));
  norm2_ = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(eps)));
  mlp_ = register_module("mlp", Mlp(dim, static_cast<int64_t>(dim * mlp_ratio), Activation::kGelu));
}

at::Tensor VitBlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = x + attn_->forward(norm1_->forward(x));
  return h + mlp_->forward(norm2_->forward(h));
}

namespace {

// Holds the recompute function for the backward pass; freed with the autograd node.
struct RecomputeHolder : torch::CustomClassHolder {
  std::function<at::Tensor(const at::Tensor&)> fn;
  at::Generator generator;  // of the input's device
  at::Tensor rng_state;     // its state when the forward ran
};

struct Checkpoint : public torch::autograd::Function<Checkpoint> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            c10::intrusive_ptr<RecomputeHolder> holder) {
    ctx->save_for_backward({x});
    ctx->saved_data["fn"] = c10::IValue::make_capsule(holder);
    torch::NoGradGuard no_grad;
    return holder->fn(x);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto holder = c10::static_intrusive_pointer_cast<RecomputeHolder>(ctx->saved_data["fn"].toCapsule());
    const at::Tensor input = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    at::Tensor output;
    {
      // Replay the forward's random draws, then put the generator back where the backward found it.
      // (The generator's lock is not held across fn: dropout takes it too.)
      at::Generator& gen = holder->generator;
      at::Tensor now;
      {
        std::lock_guard<std::mutex> lock(gen.mutex());
        now = gen.get_state();
        gen.set_state(holder->rng_state);
      }
      torch::AutoGradMode enable(true);
      output = holder->fn(input);
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(now);
    }
    // A reentrant backward: parameters inside fn receive their gradients directly.
    torch::autograd::backward({output}, {grads[0]});
    return {input.grad(), at::Tensor()};
  }
};

}  // namespace

at::Tensor checkpointed(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x) {
  if (!torch::GradMode::is_enabled()) return fn(x);
  auto holder = c10::make_intrusive<RecomputeHolder>();
  holder->fn = std::move(fn);
  holder->generator = at::globalContext().defaultGenerator(x.device());
  {
    std::lock_guard<std::mutex> lock(holder->generator.mutex());
    holder->rng_state = holder->generator.get_state();
  }
  // An input that needs no gradient still has to make the node run, or the parameters in fn
  // would get none.
  const at::Tensor input = x.requires_grad() ? x : x.detach().requires_grad_(true);
  return Checkpoint::apply(input, holder);
}

AttentionPoolImpl::AttentionPoolImpl(int64_t dim) {
  query_ = register_parameter("query", torch::randn({dim}) * (1.0 / std::sqrt(static_cast<double>(dim))));
}

at::Tensor AttentionPoolImpl::forward(const at::Tensor& tokens, const at::Tensor& mask) {
  at::Tensor scores = torch::matmul(tokens, query_) / std::sqrt(static_cast<double>(tokens.size(2)));  // [B,L]
  scores = scores.masked_fill(mask.to(torch::kBool).logical_not(), -std::numeric_limits<double>::infinity());
  return (scores.softmax(1).unsqueeze(-1) * tokens).sum(1);
}

at::Tensor maybe_checkpointed(bool enabled, std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x) {
  return enabled ? checkpointed(std::move(fn), x) : fn(x);
}

at::Tensor masked_mean(const at::Tensor& tokens, const at::Tensor& mask) {
  const at::Tensor w = mask.to(tokens.scalar_type()).unsqueeze(-1);
  return (tokens * w).sum(1) / w.sum(1).clamp_min(1.0);
}

}  // namespace medvlp::models
