#pragma once
// JPEG 2000 codestream decoding through OpenJPEG, for DICOM's JPEG 2000 transfer syntaxes, which
// DCMTK's free toolkit cannot decode. Library-internal.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace medvlp::io::detail {

/// One decoded image: `samples` holds components interleaved per pixel (row-major), as the
/// codestream's integers; `precision` is the codestream's (components must agree in precision and sign).
struct Jpeg2000Image {
  int64_t width = 0, height = 0, components = 0;
  int precision = 0;
  std::vector<int32_t> samples;
};

/// Decodes a J2K codestream or a JP2 file held in memory; medvlp::Error naming `where` and
/// OpenJPEG's message when it cannot, when components differ in size, precision or sign, or when
/// the codestream's header is not `width` x `height` with `components` components (checked before
/// decoding, so a corrupt header cannot make OpenJPEG allocate what the DICOM header did not claim).
Jpeg2000Image decode_jpeg2000(const uint8_t* data, size_t size, int64_t width, int64_t height, int64_t components,
                              const std::string& where);

/// True for the JPEG 2000 transfer syntaxes medvlp decodes (1.2.840.10008.1.2.4.90 and .91).
bool is_jpeg2000_syntax(const std::string& uid);

}  // namespace medvlp::io::detail
