// libFuzzer target: parse_safetensors() on arbitrary bytes must either return tensors whose byte
// sizes fit in the input, or throw medvlp::Error. Anything else (a crash, a sanitizer report, an
// allocation far beyond the input) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const medvlp::io::SafetensorsFile file = medvlp::io::parse_safetensors(bytes, "fuzz.safetensors");
    size_t total = 0;
    for (const auto& [name, t] : file.tensors) total += t.numel() * t.element_size();
    if (total > size) __builtin_trap();  // tensors claim more bytes than the file holds
  } catch (const medvlp::Error&) {
  }
  return 0;
}
