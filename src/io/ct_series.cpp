#include "medvlp/io/ct_series.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

#include <torch/torch.h>

#include "../core/log.h"
#include "medvlp/core/error.h"
#include "medvlp/io/dicom.h"

namespace medvlp::io {
namespace fs = std::filesystem;

namespace {

std::array<double, 3> cross(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
double dot(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

struct Slice {
  DicomInfo info;
  double along = 0;  // position along the slice normal
};

}  // namespace

Volume read_ct_series(const std::string& dir, const SeriesOptions& options) {
  std::error_code ec;
  MEDVLP_CHECK(fs::is_directory(dir, ec), dir, ": not a folder of DICOM slices");
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file()) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  // Group by series; files that are not DICOM at all (notes, DICOMDIR-less exports) are skipped,
  // but a file with the DICOM preamble that fails to read is an error.
  std::map<std::string, std::vector<Slice>> series;
  for (const auto& f : files) {
    DicomInfo info;
    try {
      info = read_dicom_info(f);
    } catch (const Error&) {
      if (looks_like_dicom(f)) throw;
      continue;
    }
    if (info.rows == 0) continue;  // not an image (structured report, presentation state...)
    series[info.series_uid].push_back(Slice{std::move(info), 0.0});
  }
  MEDVLP_CHECK(!series.empty(), dir, ": no DICOM image slices found");
  std::vector<Slice>* chosen = nullptr;
  if (!options.series_uid.empty()) {
    auto it = series.find(options.series_uid);
    MEDVLP_CHECK(it != series.end(), dir, ": no slices of series ", options.series_uid);
    chosen = &it->second;
  } else {
    if (series.size() > 1) {
      std::ostringstream list;
      for (const auto& [uid, s] : series) list << (list.tellp() > 0 ? ", " : "") << uid << " (" << s.size() << " files)";
      throw Error(dir + ": mixed series: " + std::to_string(series.size()) + " series in one folder: " + list.str() +
                  "; choose one with series_uid");
    }
    chosen = &series.begin()->second;
  }
  std::vector<Slice>& slices = *chosen;
  const DicomInfo& first = slices.front().info;
  MEDVLP_CHECK(first.image_orientation && first.image_position, first.path,
               ": CT slice has no ImagePositionPatient/ImageOrientationPatient, so slices cannot be ordered");
  const auto& o = *first.image_orientation;
  const std::array<double, 3> row{o[0], o[1], o[2]}, col{o[3], o[4], o[5]};
  const std::array<double, 3> normal = cross(row, col);
  for (auto& s : slices) {
    const DicomInfo& i = s.info;
    MEDVLP_CHECK(i.image_orientation && i.image_position, i.path, ": slice has no ImagePositionPatient/ImageOrientationPatient");
    for (int k = 0; k < 6; ++k)
      MEDVLP_CHECK(std::abs((*i.image_orientation)[k] - o[k]) < 1e-3, i.path, ": slice orientation differs from ",
                   first.path, " (a tilted or mixed acquisition)");
    MEDVLP_CHECK(i.rows == first.rows && i.columns == first.columns, i.path, ": slice is ", i.rows, "x", i.columns,
                 ", the series' first slice ", first.rows, "x", first.columns);
    s.along = dot(*i.image_position, normal);
  }
  std::sort(slices.begin(), slices.end(), [](const Slice& a, const Slice& b) { return a.along < b.along; });
  std::vector<double> steps;
  for (size_t i = 1; i < slices.size(); ++i) {
    const double step = slices[i].along - slices[i - 1].along;
    MEDVLP_CHECK(step > 1e-4, dir, ": duplicate slice position ", slices[i].along, " mm (", slices[i - 1].info.path,
                 " and ", slices[i].info.path, ")");
    steps.push_back(step);
  }
  double step = 1.0;
  if (!steps.empty()) {
    std::vector<double> sorted = steps;
    std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
    step = sorted[sorted.size() / 2];
    for (size_t i = 0; i < steps.size(); ++i) {
      const double dev = (steps[i] - step) / step;
      if (std::abs(dev) <= options.spacing_tolerance) continue;
      std::ostringstream msg;
      msg << dir << ": "
          << (dev > 0.5 ? "missing slice(s)" : "inconsistent slice spacing") << " between positions "
          << slices[i].along << " and " << slices[i + 1].along << " mm (step " << steps[i] << " mm, the series' usual step "
          << step << " mm)";
      MEDVLP_CHECK(options.allow_irregular, msg.str(), "; set allow_irregular to read it anyway");
      core::log_warn(msg.str(), "; reading it with the mean step");
      step = (slices.back().along - slices.front().along) / static_cast<double>(slices.size() - 1);
      break;
    }
  }
  const int64_t d = static_cast<int64_t>(slices.size());
  at::Tensor data = torch::empty({d, first.rows, first.columns}, torch::kFloat32);
  for (int64_t k = 0; k < d; ++k) {
    const DicomImage img = read_dicom(slices[k].info.path);
    MEDVLP_CHECK(img.pixels.size(0) == 1 && img.pixels.size(1) == 1, slices[k].info.path,
                 ": expected a single-frame greyscale slice, got ", img.pixels.size(0), " frame(s) x ", img.pixels.size(1),
                 " channel(s)");
    data[k] = img.pixels[0][0];
  }
  const std::array<double, 2> ps = first.pixel_spacing.value_or(std::array<double, 2>{1.0, 1.0});
  auto p0 = *slices.front().info.image_position;
  // Gantry tilt: each slice's origin moves within the image plane from one slice to the next, so
  // the stack is sheared. shift[k] = that in-plane displacement from slice 0, in pixels (column, row).
  std::vector<std::array<double, 2>> shift(static_cast<size_t>(d), {0.0, 0.0});
  double lo_u = 0, hi_u = 0, lo_v = 0, hi_v = 0;
  for (int64_t k = 1; k < d; ++k) {
    const auto& pk = *slices[k].info.image_position;
    std::array<double, 3> off{};
    for (int r = 0; r < 3; ++r) off[r] = pk[r] - p0[r] - (slices[k].along - slices[0].along) * normal[r];
    shift[k] = {dot(off, row) / ps[1], dot(off, col) / ps[0]};
    lo_u = std::min(lo_u, shift[k][0]), hi_u = std::max(hi_u, shift[k][0]);
    lo_v = std::min(lo_v, shift[k][1]), hi_v = std::max(hi_v, shift[k][1]);
  }
  const bool tilted = hi_u - lo_u > 0.01 || hi_v - lo_v > 0.01;
  bool corrected = false;
  if (tilted) {
    const double in_plane = std::hypot(shift.back()[0] * ps[1], shift.back()[1] * ps[0]);
    const double degrees = std::atan2(in_plane, slices.back().along - slices.front().along) * 180.0 / 3.14159265358979323846;
    if (options.correct_tilt) {
      // As dcm2niix does: every slice resampled onto one orthogonal grid, widened so no slice is cut;
      // the slice displaced furthest back keeps its pixels, the others are interpolated linearly and
      // the uncovered border takes the volume's minimum (air, like outside the scanned field).
      const int64_t h = first.rows, w = first.columns;
      const int64_t wide = w + static_cast<int64_t>(std::ceil(hi_u - lo_u - 1e-6));
      const int64_t tall = h + static_cast<int64_t>(std::ceil(hi_v - lo_v - 1e-6));
      const float fill = data.min().item<float>();
      at::Tensor out = torch::full({d, tall, wide}, fill, torch::kFloat32);
      const auto src = data.accessor<float, 3>();
      auto dst = out.accessor<float, 3>();
      for (int64_t k = 0; k < d; ++k) {
        const double du = lo_u - shift[k][0], dv = lo_v - shift[k][1];  // corrected (i, j) reads (i + du, j + dv)
        for (int64_t j = 0; j < tall; ++j) {
          const double y = static_cast<double>(j) + dv;
          const auto y0 = static_cast<int64_t>(std::floor(y));
          const double fy = y - static_cast<double>(y0);
          if (y < -1e-6 || y > static_cast<double>(h - 1) + 1e-6) continue;
          for (int64_t i = 0; i < wide; ++i) {
            const double x = static_cast<double>(i) + du;
            if (x < -1e-6 || x > static_cast<double>(w - 1) + 1e-6) continue;
            const auto x0 = static_cast<int64_t>(std::floor(x));
            const double fx = x - static_cast<double>(x0);
            const int64_t x1 = std::min(x0 + 1, w - 1), y1 = std::min(y0 + 1, h - 1);
            const int64_t xa = std::max<int64_t>(x0, 0), ya = std::max<int64_t>(y0, 0);
            dst[k][j][i] = static_cast<float>((1 - fy) * ((1 - fx) * src[k][ya][xa] + fx * src[k][ya][x1]) +
                                              fy * ((1 - fx) * src[k][y1][xa] + fx * src[k][y1][x1]));
          }
        }
      }
      data = out;
      for (int r = 0; r < 3; ++r) p0[r] += lo_u * ps[1] * row[r] + lo_v * ps[0] * col[r];
      corrected = true;
      core::log_info(dir, ": gantry tilt of ", degrees, " degrees corrected (slices resampled onto an orthogonal ",
                     wide, "x", tall, " grid; set correct_tilt to false to keep them with a sheared affine)");
    } else {
      core::log_warn(dir, ": gantry tilt of ", degrees, " degrees kept: the affine is sheared, and the voxel spacing "
                     "is along the slice normal");
    }
  }
  // Voxel (i, j, k) = (column, row, slice). LPS -> RAS flips the first two world axes.
  Affine a{};
  std::array<double, 3> kdir = normal;
  if (d > 1 && !corrected) {
    const auto& pl = *slices.back().info.image_position;
    for (int r = 0; r < 3; ++r) kdir[r] = (pl[r] - p0[r]) / static_cast<double>(d - 1);
  } else if (d > 1) {
    const double mean_step = (slices.back().along - slices.front().along) / static_cast<double>(d - 1);
    for (int r = 0; r < 3; ++r) kdir[r] = normal[r] * mean_step;
  } else {
    for (int r = 0; r < 3; ++r) kdir[r] = normal[r] * first.slice_thickness.value_or(1.0);
  }
  for (int r = 0; r < 3; ++r) {
    const double s = r < 2 ? -1.0 : 1.0;
    a[r][0] = s * row[r] * ps[1];
    a[r][1] = s * col[r] * ps[0];
    a[r][2] = s * kdir[r];
    a[r][3] = s * p0[r];
  }
  a[3][3] = 1.0;
  Volume v;
  v.data = data;
  v.affine = a;
  v.spacing = {d > 1 ? step : first.slice_thickness.value_or(1.0), ps[0], ps[1]};
  return v;
}

}  // namespace medvlp::io
