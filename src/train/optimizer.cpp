#include "medvlp/train/optimizer.h"

#include <cmath>

#include <torch/torch.h>

#include "medvlp/core/error.h"

namespace medvlp::train {

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> named_params, AdamWOptions options)
    : params_(std::move(named_params)), options_(options) {
  for (const auto& [name, p] : params_) {
    exp_avg_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    exp_avg_sq_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_)
    if (p.grad().defined()) {
      p.mutable_grad().detach_();
      p.mutable_grad().zero_();
    }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bias1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bias2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i].second;
    if (!p.grad().defined()) continue;
    const at::Tensor& g = p.grad();
    if (p.dim() >= 2 && options_.weight_decay != 0.0) p.mul_(1.0 - lr * options_.weight_decay);
    exp_avg_[i].mul_(options_.beta1).add_(g, 1.0 - options_.beta1);
    exp_avg_sq_[i].mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
    const at::Tensor denom = (exp_avg_sq_[i].sqrt() / std::sqrt(bias2)).add_(options_.eps);
    p.addcdiv_(exp_avg_[i], denom, -lr / bias1);
  }
}

io::TensorMap AdamW::state() const {
  io::TensorMap out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out[params_[i].first + ".exp_avg"] = exp_avg_[i];
    out[params_[i].first + ".exp_avg_sq"] = exp_avg_sq_[i];
  }
  return out;
}

void AdamW::load_state(const io::TensorMap& state, int64_t steps) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto* pair : {&exp_avg_, &exp_avg_sq_}) {
      const std::string key = params_[i].first + (pair == &exp_avg_ ? ".exp_avg" : ".exp_avg_sq");
      auto it = state.find(key);
      MEDVLP_CHECK(it != state.end(), "optimizer state: missing \"", key, "\"");
      MEDVLP_CHECK(it->second.sizes() == (*pair)[i].sizes(), "optimizer state: \"", key, "\" has shape ",
                   it->second.sizes(), ", expected ", (*pair)[i].sizes());
      (*pair)[i].copy_(it->second);
    }
  }
  steps_ = steps;
}

double CosineSchedule::at(int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
  const double min_lr = lr * min_lr_ratio;
  return min_lr + (lr - min_lr) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * progress));
}

}  // namespace medvlp::train
