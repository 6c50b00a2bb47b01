#pragma once
// AdamW and the warm-up + cosine learning-rate schedule.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "medvlp/core/config.h"
#include "medvlp/io/safetensors.h"

namespace medvlp::train {

/// AdamW hyper-parameters (torch.optim.AdamW's defaults, except weight_decay).
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.05;  // decoupled; applied to tensors of 2+ dimensions only (not biases, norms, scales)
};

/// AdamW with named state, so checkpoints store it as safetensors that Python can read.
/// Same update as torch.optim.AdamW (decoupled decay, bias-corrected moments).
class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, at::Tensor>> named_params, AdamWOptions options);
  /// One update of every parameter with a gradient, at learning rate `lr`.
  void step(double lr);
  void zero_grad();
  int64_t steps() const { return steps_; }
  const AdamWOptions& options() const { return options_; }
  /// "<param>.exp_avg" and "<param>.exp_avg_sq" tensors.
  io::TensorMap state() const;
  /// Restores state() output; throws naming any missing or mis-shaped entry.
  void load_state(const io::TensorMap& state, int64_t steps);

 private:
  std::vector<std::pair<std::string, at::Tensor>> params_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  AdamWOptions options_;
  int64_t steps_ = 0;
};

/// Linear warm-up from 0 to `lr` over `warmup_steps`, then cosine decay to lr * min_lr_ratio at `total_steps`.
struct CosineSchedule {
  double lr = 1e-3;
  int64_t warmup_steps = 100;
  int64_t total_steps = 1000;
  double min_lr_ratio = 0.0;
  /// Learning rate of the update that follows `step` completed steps.
  double at(int64_t step) const;
};

}  // namespace medvlp::train
