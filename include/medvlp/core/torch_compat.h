#pragma once
// The one place where LibTorch 1.13 (Debian, CPU) and 2.x (CUDA) differences are handled.

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#define MEDVLP_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||         \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace medvlp::compat {

/// True when at::scaled_dot_product_attention (fused flash / memory-efficient kernels) exists.
constexpr bool kHasFusedAttention = MEDVLP_TORCH_AT_LEAST(2, 0);

/// Enables CUDA autocast to `dtype` for its lifetime (no-op when `enabled` is false).
/// The autocast switch moved from set_enabled() to per-device-type calls in LibTorch 2.4.
class CudaAutocast {
 public:
  CudaAutocast(bool enabled, at::ScalarType dtype) : enabled_(enabled) {
    if (!enabled_) return;
#if MEDVLP_TORCH_AT_LEAST(2, 4)
    previous_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
    previous_enabled_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(true);
#endif
    at::autocast::increment_nesting();
  }
  ~CudaAutocast() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if MEDVLP_TORCH_AT_LEAST(2, 4)
    at::autocast::set_autocast_enabled(at::kCUDA, previous_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
#else
    at::autocast::set_enabled(previous_enabled_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
#endif
  }
  CudaAutocast(const CudaAutocast&) = delete;
  CudaAutocast& operator=(const CudaAutocast&) = delete;

 private:
  bool enabled_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kHalf;
};

/// softmax(q k^T / sqrt(d) masked) v. q: [B,H,Lq,Dh], k,v: [B,H,Lk,Dh]; `keep`: a bool mask
/// broadcastable to [B,H,Lq,Lk] (true = attend) or undefined. Uses the fused kernels (flash /
/// memory-efficient on CUDA) on LibTorch >= 2.0 and the exact composite on 1.13.
inline at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& keep) {
#if MEDVLP_TORCH_AT_LEAST(2, 0)
  return at::scaled_dot_product_attention(q, k, v, keep);
#else
  // Scaling q ([.., L, Dh]) rather than the scores ([.., L, L]) is the cheaper of the two.
  at::Tensor scores = at::matmul(q * (1.0 / std::sqrt(static_cast<double>(q.size(-1)))), k.transpose(-2, -1));
  if (keep.defined()) scores = scores.masked_fill(keep.logical_not(), -std::numeric_limits<float>::infinity());
  return at::matmul(at::softmax(scores, -1), v);
#endif
}

/// attention() with a key padding mask: key_keep [B,Lk] bool, true = a real token.
inline at::Tensor scaled_dot_product_attention(const at::Tensor& q, const at::Tensor& k,
                                               const at::Tensor& v, const at::Tensor& key_keep) {
  // [B,1,1,L]: broadcast over heads and query positions.
  return attention(q, k, v, key_keep.defined() ? key_keep.unsqueeze(1).unsqueeze(2) : at::Tensor());
}

}  // namespace medvlp::compat
