// libFuzzer target: read_nifti() (and RAS reorientation) on arbitrary bytes, as .nii or, when
// the input starts with the gzip magic, as .nii.gz; an input of at least a header's 348 bytes is
// read a second time as a .hdr/.img pair (NIfTI-1 pair or ANALYZE 7.5: the header, then the rest
// as the image file). It must return a volume matching its header or throw medvlp::Error.
// nifticlib is the system library (not coverage-instrumented).
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/io/nifti.h"
#include "temp_file.h"

namespace {

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
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const bool gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  read_all(medvlp::fuzz::write_temp(bytes, "nifti_fuzz", gz ? ".nii.gz" : ".nii"));
  constexpr size_t kHeader = 348;
  if (!gz && size >= kHeader) {
    medvlp::fuzz::write_temp(bytes.substr(kHeader), "nifti_fuzz", ".img");
    read_all(medvlp::fuzz::write_temp(bytes.substr(0, kHeader), "nifti_fuzz", ".hdr"));
  }
  return 0;
}
