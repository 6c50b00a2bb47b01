// DICOM throughput on one core: decode + modality LUT (medvlp::io::read_dicom, DCMTK) + resize to
// 512x512 (OpenCV INTER_AREA), the preprocessing of a chest X-ray loader. `--make DIR` first
// writes CR-like test files (12-bit phantoms at 2560x2048) so that bench/io_bench.py can time
// pydicom + OpenCV-python on exactly the same files. Prints one JSON line per timed folder.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include "medvlp/data/synthetic_cxr.h"
#include "medvlp/io/dicom.h"

using namespace medvlp;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  CLI::App app{"medvlp DICOM benchmark"};
  std::string make, dir;
  int64_t files = 8, repeats = 3;
  app.add_option("--make", make, "write the CR-like test files into this folder and exit");
  app.add_option("--files", files, "files to write with --make");
  app.add_option("--dir", dir, "time every .dcm file in this folder");
  app.add_option("--repeats", repeats, "passes over the folder (the best one counts)");
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(1);
  cv::setNumThreads(1);
  if (!make.empty()) {
    fs::create_directories(make);
    data::SyntheticCxrOptions o;
    o.image_size = 512;
    torch::manual_seed(0);
    for (int64_t i = 0; i < files; ++i) {
      const at::Tensor img = data::render_cxr_case(o, data::Split::kTest, i).image.unsqueeze(0);
      at::Tensor big = torch::upsample_bicubic2d(img, {2560, 2048}, false)[0][0];
      big = ((big * 4095.0) + torch::randn_like(big) * 12.0).clamp(0, 4095).round();
      io::DicomWriteSpec s;
      s.values = big;
      s.modality = "CR";
      s.pixel_spacing = {0.15, 0.15};
      s.window_center = 2048;
      s.window_width = 4096;
      io::write_dicom(make + "/cr_" + std::to_string(i) + ".dcm", s);
    }
    return 0;
  }
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".dcm") paths.push_back(e.path().string());
  std::sort(paths.begin(), paths.end());
  double best = 1e300, checksum = 0;
  for (int64_t r = 0; r < repeats; ++r) {
    double seconds = 0;  // decode + resize only: the checksum below is not timed
    checksum = 0;
    for (const auto& p : paths) {
      const auto t0 = Clock::now();
      const io::DicomImage img = io::read_dicom(p);
      at::Tensor frame = img.pixels[0][0].contiguous();
      cv::Mat src(static_cast<int>(frame.size(0)), static_cast<int>(frame.size(1)), CV_32F, frame.data_ptr<float>());
      cv::Mat out;
      cv::resize(src, out, cv::Size(512, 512), 0, 0, cv::INTER_AREA);
      seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      // Weighted by position (rows 1..2, columns 1..4), so a flip or transpose changes it; io_bench.py matches.
      cv::Mat rows(out.rows, 1, CV_64F), cols(1, out.cols, CV_64F), weighted;
      for (int y = 0; y < out.rows; ++y) rows.at<double>(y) = 1.0 + static_cast<double>(y) / std::max(out.rows - 1, 1);
      for (int x = 0; x < out.cols; ++x) cols.at<double>(x) = 1.0 + 3.0 * x / std::max(out.cols - 1, 1);
      cv::Mat out64;
      out.convertTo(out64, CV_64F);
      checksum += cv::sum(out64.mul(rows * cols))[0];
    }
    best = std::min(best, seconds);
  }
  nlohmann::json j{{"what", "dicom"}, {"dir", dir}, {"files", paths.size()}, {"seconds", best},
                   {"files_per_s", static_cast<double>(paths.size()) / best}, {"checksum", checksum}};
  std::cout << j.dump() << "\n";
  return 0;
}
