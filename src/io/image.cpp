#include "medvlp/io/image.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/io/dicom.h"
#include "medvlp/io/files.h"

#if MEDVLP_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace medvlp::io {

at::Tensor read_image(const std::string& path) {
  if (!has_suffix(path, ".dcm") && !has_suffix(path, ".dicom") && !looks_like_dicom(path)) return read_grey_image(path);
  at::Tensor shown = to_display(read_dicom(path));
  if (shown.size(0) >= 3) {
    // ITU-R BT.601 luma, as OpenCV's RGB->GRAY (a palette's alpha channel, if any, is left out).
    shown = (0.299 * shown[0] + 0.587 * shown[1] + 0.114 * shown[2]).unsqueeze(0);
  }
  return shown.contiguous();
}

#if !MEDVLP_WITH_OPENCV
at::Tensor read_grey_image(const std::string& path) {
  throw Error(path + ": cannot read image: medvlp was built without OpenCV (MEDVLP_WITH_OPENCV=OFF)");
}
void write_grey_png(const std::string& path, const at::Tensor&, int) {
  throw Error(path + ": cannot write PNG: medvlp was built without OpenCV (MEDVLP_WITH_OPENCV=OFF)");
}
bool image_codecs_available() { return false; }
#else
bool image_codecs_available() { return true; }

at::Tensor read_grey_image(const std::string& path) {
  cv::Mat raw = cv::imread(path, cv::IMREAD_UNCHANGED);
  MEDVLP_CHECK(!raw.empty(), path, ": cannot read image (missing, corrupt or not PNG/JPEG)");
  if (raw.channels() == 3) cv::cvtColor(raw, raw, cv::COLOR_BGR2GRAY);
  else if (raw.channels() == 4) cv::cvtColor(raw, raw, cv::COLOR_BGRA2GRAY);
  double scale = 1.0;
  switch (raw.depth()) {
    case CV_8U: scale = 1.0 / 255.0; break;
    case CV_16U: scale = 1.0 / 65535.0; break;
    default: throw Error(path + ": expected an 8- or 16-bit image");
  }
  cv::Mat grey;
  raw.convertTo(grey, CV_32F, scale);
  return torch::from_blob(grey.data, {1, grey.rows, grey.cols}, torch::kFloat32).clone();
}

void write_grey_png(const std::string& path, const at::Tensor& image, int bits) {
  MEDVLP_CHECK(bits == 8 || bits == 16, path, ": PNG bit depth must be 8 or 16, got ", bits);
  at::Tensor img = image.detach().to(at::kCPU, at::kFloat);
  if (img.dim() == 3) {
    MEDVLP_CHECK(img.size(0) == 1, path, ": expected one channel, got ", img.size(0));
    img = img[0];
  }
  MEDVLP_CHECK(img.dim() == 2, path, ": expected a [H,W] image, got ", img.dim(), " dimensions");
  const double max = bits == 8 ? 255.0 : 65535.0;
  img = (img.clamp(0.0, 1.0) * max).round().contiguous();
  cv::Mat as_float(static_cast<int>(img.size(0)), static_cast<int>(img.size(1)), CV_32F, img.data_ptr<float>());
  cv::Mat out;
  as_float.convertTo(out, bits == 8 ? CV_8U : CV_16U);
  MEDVLP_CHECK(cv::imwrite(path, out), path, ": cannot write PNG");
}

#endif

}  // namespace medvlp::io
