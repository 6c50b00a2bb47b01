#pragma once
// 2D image files (PNG, JPEG) through OpenCV.

#include <string>

#include <ATen/Tensor.h>

namespace medvlp::io {

/// Reads an 8- or 16-bit PNG/JPEG as grey float [1,H,W] scaled to [0,1] by the type's maximum.
/// Colour images are converted to grey; an unreadable file throws medvlp::Error naming it.
at::Tensor read_grey_image(const std::string& path);

/// Reads any 2D image a dataset may point at as grey float [1,H,W] in [0,1]: DICOM (by its .dcm /
/// .dicom extension or its preamble; first frame, VOI window from the file as in to_display(),
/// MONOCHROME1 inverted, RGB reduced to luma) or else PNG/JPEG as read_grey_image().
at::Tensor read_image(const std::string& path);

/// Writes a [H,W] or [1,H,W] float image with values in [0,1] as an 8- or 16-bit grey PNG.
void write_grey_png(const std::string& path, const at::Tensor& image, int bits = 8);

/// False when medvlp was built with MEDVLP_WITH_OPENCV=OFF (image files then throw medvlp::Error).
bool image_codecs_available();

}  // namespace medvlp::io
