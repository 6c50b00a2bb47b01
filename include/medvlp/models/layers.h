#pragma once
// Building blocks shared by the transformer encoders, with the parameter names of timm's ViT.

#include <functional>
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

namespace medvlp::models {

/// Activation of a transformer MLP: exact GELU (BERT, ViT) or CLIP's x·sigmoid(1.702x).
enum class Activation { kGelu, kQuickGelu };
at::Tensor activate(const at::Tensor& x, Activation activation);

/// Two-layer MLP named fc1/fc2 (timm's Mlp, Hugging Face CLIPMLP).
class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t dim, int64_t hidden, Activation activation);
  at::Tensor forward(const at::Tensor& x);

 private:
  Activation activation_;
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(Mlp);

/// Multi-head self-attention with one fused qkv projection (timm's Attention: qkv, proj).
class SelfAttentionImpl : public torch::nn::Module {
 public:
  SelfAttentionImpl(int64_t dim, int64_t heads, bool qkv_bias);
  /// x: [B,N,C]; keep: bool mask broadcastable to [B,H,N,N] or undefined.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& keep = {});

 private:
  int64_t heads_;
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr};
};
TORCH_MODULE(SelfAttention);

/// Pre-LayerNorm transformer block of a ViT (timm's Block: norm1, attn, norm2, mlp).
class VitBlockImpl : public torch::nn::Module {
 public:
  VitBlockImpl(int64_t dim, int64_t heads, double mlp_ratio, bool qkv_bias, double eps);
  at::Tensor forward(const at::Tensor& x);

 private:
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr};
  SelfAttention attn_{nullptr};
  Mlp mlp_{nullptr};
};
TORCH_MODULE(VitBlock);

/// Splits [B,L,H*Dh] into heads [B,H,L,Dh]; merge_heads is its inverse.
at::Tensor split_heads(const at::Tensor& x, int64_t heads);
at::Tensor merge_heads(const at::Tensor& x);

/// Activation checkpointing: runs `fn(x)` keeping none of its intermediates and recomputes it in
/// the backward pass (PyTorch's reentrant torch.utils.checkpoint). Parameter gradients accumulate
/// into `.grad` as in a plain backward. The random generator of x's device is replayed for the
/// recomputation, so dropout inside fn draws the same masks twice.
at::Tensor checkpointed(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x);

/// Attention pooling over tokens with one learnable query (`query`, [C]): softmax over the real
/// tokens of (tokens · query)/sqrt(C), then the weighted sum.
class AttentionPoolImpl : public torch::nn::Module {
 public:
  explicit AttentionPoolImpl(int64_t dim);
  at::Tensor forward(const at::Tensor& tokens, const at::Tensor& mask);  // [B,L,C], [B,L] -> [B,C]

 private:
  at::Tensor query_;
};
TORCH_MODULE(AttentionPool);

/// checkpointed(fn, x) when `enabled` (and gradients are being recorded), fn(x) otherwise.
at::Tensor maybe_checkpointed(bool enabled, std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x);

/// Mean of `tokens` [B,L,C] over positions where `mask` [B,L] is nonzero.
at::Tensor masked_mean(const at::Tensor& tokens, const at::Tensor& mask);

}  // namespace medvlp::models
