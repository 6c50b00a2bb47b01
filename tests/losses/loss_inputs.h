#pragma once
// Random loss inputs shared by the loss tests (float64, fixed seeds).

#include <torch/torch.h>

#include "medvlp/testing/named_inputs.h"

namespace medvlp::test_inputs {

inline at::Tensor unit_rows(at::Tensor x) { return x / x.norm(2, -1, true); }

/// image_embed/text_embed [B,D] (unit rows), labels [B,K] in {1,0,-1} with repeats, report ids.
inline testing::NamedTensors global(int64_t B, int64_t D, int64_t K, uint64_t seed) {
  torch::manual_seed(seed);
  testing::NamedTensors in;
  in["image_embed"] = unit_rows(torch::randn({B, D}, torch::kDouble));
  in["text_embed"] = unit_rows(torch::randn({B, D}, torch::kDouble));
  // Few distinct label rows so that soft targets and false-negative pairs actually occur.
  const at::Tensor patterns = torch::randint(-1, 2, {3, K}, torch::kLong).to(torch::kDouble);
  const at::Tensor pick = torch::randint(0, 4, {B}, torch::kLong);
  at::Tensor labels = torch::zeros({B, K}, torch::kDouble);
  for (int64_t i = 0; i < B; ++i) {
    const int64_t p = pick[i].item<int64_t>();
    if (p < 3) labels[i] = patterns[p];  // p == 3: an all-absent (normal) report
  }
  in["labels"] = labels;
  in["report_hash"] = pick.clone();
  in["report_normal"] = pick.eq(3).to(torch::kDouble);
  return in;
}

}  // namespace medvlp::test_inputs
