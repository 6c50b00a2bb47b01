// libFuzzer target: read_dicom_info(), read_dicom() and to_display() on arbitrary bytes must return
// consistent tensors or throw medvlp::Error. DCMTK itself is the system library (not instrumented
// for coverage), so mutations are guided by medvlp's own checks; ASan still catches crashes and
// out-of-bounds reads in medvlp's code around it.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/io/dicom.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/medvlp_dicom_fuzz_" + std::to_string(::getpid()) + ".dcm";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    (void)medvlp::io::read_dicom_info(path);
    const medvlp::io::DicomImage img = medvlp::io::read_dicom(path);
    const auto& i = img.info;
    if (img.pixels.dim() != 4 || img.pixels.size(0) != i.frames || img.pixels.size(2) != i.rows ||
        img.pixels.size(3) != i.columns)
      __builtin_trap();  // pixels disagree with the header they were decoded from
    const at::Tensor shown = medvlp::io::to_display(img);
    if (shown.numel() > 0 && (shown.min().item<float>() < 0 || shown.max().item<float>() > 1)) __builtin_trap();
  } catch (const medvlp::Error&) {
  }
  return 0;
}
