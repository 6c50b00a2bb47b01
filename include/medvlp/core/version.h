#pragma once
// What was built: medvlp's version and the LibTorch and CUDA it runs on.

#include <string>

namespace medvlp::core {

/// medvlp's version, the CMake project version ("0.1.0").
std::string version();

/// One line for `medvlp --version` and bug reports: "medvlp 0.1.0 (LibTorch 1.13.1, CUDA: no)", or
/// "CUDA: yes, 1 device (CUDA 12.x)" where a device is present.
std::string build_summary();

}  // namespace medvlp::core
