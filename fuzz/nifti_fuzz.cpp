// libFuzzer target: read_nifti() (and RAS reorientation) on arbitrary bytes, as .nii or, when
// the input starts with the gzip magic, as .nii.gz; an input of at least a header's 348 bytes is
// read a second time as a .hdr/.img pair (NIfTI-1 pair or ANALYZE 7.5: the header, then the rest
// as the image file). It must return a volume matching its header or throw medvlp::Error.
// nifticlib is the system library (not coverage-instrumented).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/io/nifti.h"

namespace {

bool write_file(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  return true;
}

void read_all(const std::string& path) {
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
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const bool gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  const std::string stem = "/tmp/medvlp_nifti_fuzz_" + std::to_string(::getpid());
  if (write_file(stem + (gz ? ".nii.gz" : ".nii"), data, size)) read_all(stem + (gz ? ".nii.gz" : ".nii"));
  constexpr size_t kHeader = 348;
  if (!gz && size >= kHeader && write_file(stem + ".hdr", data, kHeader) &&
      write_file(stem + ".img", data + kHeader, size - kHeader))
    read_all(stem + ".hdr");
  return 0;
}
