#include "medvlp/core/device.h"

#include <torch/cuda.h>

#include "medvlp/core/error.h"

namespace medvlp::core {

c10::Device select_device(const std::string& spec) {
  if (spec == "auto") return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  if (spec == "cpu") return c10::Device(c10::kCPU);
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    MEDVLP_CHECK(torch::cuda::is_available(), "device \"", spec,
                 "\": CUDA is not available (this LibTorch build or machine has no GPU); use cpu or auto");
    int index = 0;
    if (spec.size() > 5) {
      try {
        size_t used = 0;
        index = std::stoi(spec.substr(5), &used);
        MEDVLP_CHECK(used == spec.size() - 5, "trailing characters");
      } catch (const std::exception&) {
        throw Error("device \"" + spec + "\": expected cuda:N with N a GPU index");
      }
    }
    const int count = static_cast<int>(torch::cuda::device_count());
    MEDVLP_CHECK(index >= 0 && index < count, "device \"", spec, "\": expected a GPU index in [0, ",
                 count, ")");
    return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw Error("device \"" + spec + "\": expected auto, cpu, cuda or cuda:N");
}

}  // namespace medvlp::core
