// libFuzzer target: read_nifti() (and RAS reorientation) on arbitrary bytes, as .nii or, when
// the input starts with the gzip magic, as .nii.gz. It must return a volume matching its header
// or throw medvlp::Error. nifticlib is the system library (not coverage-instrumented).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/io/nifti.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const bool gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  const std::string path = "/tmp/medvlp_nifti_fuzz_" + std::to_string(::getpid()) + (gz ? ".nii.gz" : ".nii");
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    // Every volume of a 4D-7D file (as `medvlp inspect` reads it), then the 3D path with RAS.
    const medvlp::io::Volume all = medvlp::io::read_nifti(path, /*all_volumes=*/true);
    if (all.data.dim() != 3 && all.data.dim() != 4) __builtin_trap();
    if (all.data.dim() == 3) {
      const medvlp::io::Volume v = medvlp::io::read_nifti(path);
      if (v.data.dim() != 3) __builtin_trap();
      const medvlp::io::Volume r = medvlp::io::reorient_to_ras(v);
      if (r.data.numel() != v.data.numel()) __builtin_trap();
    }
  } catch (const medvlp::Error&) {
  }
  return 0;
}
