#include "medvlp/core/version.h"

#include <torch/cuda.h>
#include <torch/version.h>

namespace medvlp::core {

std::string version() { return MEDVLP_VERSION_STRING; }

std::string build_summary() {
  std::string cuda = "no";
  if (torch::cuda::is_available()) {
    const auto n = torch::cuda::device_count();
    cuda = "yes, " + std::to_string(n) + (n == 1 ? " device" : " devices");
  }
  return "medvlp " + version() + " (LibTorch " + TORCH_VERSION + ", CUDA: " + cuda + ")";
}

}  // namespace medvlp::core
