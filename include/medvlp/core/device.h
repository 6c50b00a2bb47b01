#pragma once
// Device selection from a config string.

#include <string>

#include <c10/core/Device.h>

namespace medvlp::core {

/// Resolves "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N".
/// Throws medvlp::Error naming the spec when CUDA is asked for but absent, or N is out of range.
c10::Device select_device(const std::string& spec);

}  // namespace medvlp::core
