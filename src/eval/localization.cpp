#include "medvlp/eval/localization.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/core/registry.h"
#include "medvlp/data/loader.h"
#include "medvlp/io/files.h"

#if MEDVLP_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

// The scoring loops run over every pixel of every map: compiled for AVX2 as well as the baseline
// ISA, and picked when the program loads (GCC's function multi-versioning; ELF ifuncs). Exceptions
// do not unwind through such clones (std::terminate), so these functions neither throw nor
// allocate: checks and buffers stay in their callers.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MEDVLP_HOT_LOOP __attribute__((optimize("O3", "fast-math"), target_clones("avx2", "default")))
#else
#define MEDVLP_HOT_LOOP __attribute__((optimize("O3", "fast-math")))
#endif

namespace medvlp::eval {

namespace F = torch::nn::functional;

at::Tensor upsample_maps(const at::Tensor& maps, int64_t height, int64_t width) {
  MEDVLP_CHECK(maps.dim() == 3, "upsample_maps: expected maps [K,h,w], got ", maps.sizes());
  return upsample_maps(maps, {height, width});
}

at::Tensor upsample_maps(const at::Tensor& maps, const std::vector<int64_t>& size) {
  MEDVLP_CHECK((size.size() == 2 || size.size() == 3) && maps.dim() == static_cast<int64_t>(size.size()) + 1,
               "upsample_maps: expected maps [K,h,w] or [K,d,h,w] and a size of as many axes, got ", maps.sizes(), " and ",
               at::IntArrayRef(size));
  auto options = F::InterpolateFuncOptions().size(size).align_corners(false);
  if (size.size() == 2) options.mode(torch::kBilinear);
  else options.mode(torch::kTrilinear);
  at::Tensor up = F::interpolate(maps.to(torch::kFloat).unsqueeze(0), options).squeeze(0);  // [K,(D,)H,W]
  const at::Tensor flat = up.flatten(1);
  std::vector<int64_t> column(size.size() + 1, 1);
  column[0] = -1;
  const at::Tensor lo = std::get<0>(flat.min(1)).view(column), hi = std::get<0>(flat.max(1)).view(column);
  const at::Tensor range = hi - lo;
  // A flat map holds no evidence anywhere: zeros, not NaN.
  return torch::where(range > 0, (up - lo) / range.clamp_min(1e-30), torch::zeros_like(up));
}

at::Tensor box_mask(const std::vector<data::Box>& boxes, int64_t finding, int64_t height, int64_t width) {
  at::Tensor mask = torch::zeros({height, width}, torch::kUInt8);
  uint8_t* m = mask.data_ptr<uint8_t>();
  for (const auto& b : boxes) {
    if (b.finding != finding) continue;
    const auto x0 = std::clamp<int64_t>(std::lround(b.x0), 0, width), x1 = std::clamp<int64_t>(std::lround(b.x1), 0, width);
    const auto y0 = std::clamp<int64_t>(std::lround(b.y0), 0, height), y1 = std::clamp<int64_t>(std::lround(b.y1), 0, height);
    for (int64_t y = y0; y < y1 && x1 > x0; ++y) std::memset(m + y * width + x0, 1, static_cast<size_t>(x1 - x0));
  }
  return mask;
}

namespace {

// The scores of map values x (min `trough`, max `peak`) against mask `in` (0/1 bytes), as if the map
// had been min-max normalized with (lo, hi): thresholds move to the raw scale, and the CNR does not
// change under the affine map. Written so that the compiler vectorizes it: float and 32-bit
// accumulators over chunks, thresholds in fixed groups of 4, and fast-math for this function alone
// (sums may be reordered; callers check that the map is finite first).
struct RawCounts {
  int64_t peak_all = 0, peak_in = 0, inside = 0;
  double s_in = 0, s_out = 0, q_in = 0, q_out = 0;
};

constexpr size_t kGroup = 4;

// The pass over the pixels: `raw` holds the thresholds on the raw scale in groups of kGroup (padded
// with +inf), `predicted` and `inter` T zeroed counters.
MEDVLP_HOT_LOOP void count_raw(const float* x, const uint8_t* in, int64_t n, float trough, float peak, const float* raw,
                               size_t T, int64_t* predicted, int64_t* inter, RawCounts* counts) {
  const size_t groups = (T + kGroup - 1) / kGroup;
  int64_t peak_all = 0, peak_in = 0, inside = 0;
  double s_in = 0, s_out = 0, q_in = 0, q_out = 0;
  constexpr int64_t kChunk = 4096;  // float partial sums over short runs keep precision
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t end = std::min(n, start + kChunk);
    float c_s_in = 0, c_s_all = 0, c_q_in = 0, c_q_all = 0;
    int32_t c_inside = 0, c_peak_all = 0, c_peak_in = 0;
    for (int64_t i = start; i < end; ++i) {
      // Moments of x - trough: a flat map has exactly zero variance, and less cancellation elsewhere.
      const float v = x[i] - trough;
      const float m = static_cast<float>(in[i]);
      const int32_t b = in[i];
      c_inside += b;
      c_s_all += v;
      c_q_all += v * v;
      c_s_in += m * v;
      c_q_in += m * v * v;
      const int32_t is_peak = x[i] == peak ? 1 : 0;
      c_peak_all += is_peak;
      c_peak_in += is_peak & b;
    }
    for (size_t g = 0; g < groups; ++g) {
      const float* t = raw + g * kGroup;
      int32_t p[kGroup] = {0}, q[kGroup] = {0};
      for (int64_t i = start; i < end; ++i) {
        const float v = x[i];
        const int32_t b = in[i];
        for (size_t j = 0; j < kGroup; ++j) {
          const int32_t above = v >= t[j] ? 1 : 0;
          p[j] += above;
          q[j] += above & b;
        }
      }
      for (size_t j = 0; j < kGroup && g * kGroup + j < T; ++j) predicted[g * kGroup + j] += p[j], inter[g * kGroup + j] += q[j];
    }
    s_in += c_s_in, s_out += c_s_all - c_s_in, q_in += c_q_in, q_out += c_q_all - c_q_in;
    inside += c_inside, peak_all += c_peak_all, peak_in += c_peak_in;
  }
  *counts = {peak_all, peak_in, inside, s_in, s_out, q_in, q_out};
}

MapScores score_raw(const float* x, const uint8_t* in, int64_t n, float trough, float peak, float lo, float hi,
                    const std::vector<double>& thresholds) {
  const size_t T = thresholds.size(), groups = (T + kGroup - 1) / kGroup;
  std::vector<float> raw(std::max<size_t>(1, groups) * kGroup, std::numeric_limits<float>::infinity());
  for (size_t j = 0; j < T; ++j) {
    if (hi > lo) raw[j] = lo + static_cast<float>(thresholds[j]) * (hi - lo);
    // A flat map normalizes to zeros: only a threshold of 0 or less selects anything (everything).
    else if (thresholds[j] <= 0) raw[j] = -std::numeric_limits<float>::infinity();
  }
  std::vector<int64_t> predicted(T, 0), inter(T, 0);
  RawCounts c;
  count_raw(x, in, n, trough, peak, raw.data(), T, predicted.data(), inter.data(), &c);
  const int64_t peak_all = c.peak_all, peak_in = c.peak_in, inside = c.inside;
  const double s_in = c.s_in, s_out = c.s_out, q_in = c.q_in, q_out = c.q_out;
  MEDVLP_CHECK(inside > 0, "score_map: the target region is empty");
  MapScores out;
  out.pointing = static_cast<double>(peak_in) / static_cast<double>(peak_all);
  const double n_in = static_cast<double>(inside), n_out = static_cast<double>(n - inside);
  const double mean_in = s_in / n_in, mean_out = n_out > 0 ? s_out / n_out : 0.0;
  const double var_in = std::max(0.0, q_in / n_in - mean_in * mean_in);
  const double var_out = n_out > 0 ? std::max(0.0, q_out / n_out - mean_out * mean_out) : 0.0;
  const double noise = std::sqrt(var_in + var_out);
  // Below float noise of the map's own range, both regions count as flat.
  out.cnr = noise > 1e-6 * static_cast<double>(peak - trough) && noise > 0 ? std::abs(mean_in - mean_out) / noise : 0.0;
  for (size_t j = 0; j < T; ++j) {
    out.iou.push_back(static_cast<double>(inter[j]) / static_cast<double>(predicted[j] + inside - inter[j]));
    out.dice.push_back(2.0 * static_cast<double>(inter[j]) / static_cast<double>(predicted[j] + inside));
  }
  return out;
}

// 0/1 bytes of a mask: byte and bool masks as they are, others thresholded at 0.5.
// o = a + f (b - a) over one row, with the row's running min and max (vectorized: see score_raw).
MEDVLP_HOT_LOOP void blend_row(const float* __restrict a, const float* __restrict b, float f,
                                                            float* __restrict o, int64_t n, float* lo, float* hi) {
  float l = *lo, h = *hi;
  for (int64_t c = 0; c < n; ++c) {
    const float v = a[c] + f * (b[c] - a[c]);
    o[c] = v;
    l = v < l ? v : l;
    h = v > h ? v : h;
  }
  *lo = l;
  *hi = h;
}

// Along x first: the h rows of a [h,w] map at `width` columns.
MEDVLP_HOT_LOOP void interpolate_rows(const float* m, int64_t h, int64_t w, int64_t width, const int64_t* x0, const int64_t* x1,
                                      const float* fx, float* rows) {
  for (int64_t r = 0; r < h; ++r)
    for (int64_t c = 0; c < width; ++c) {
      const float a = m[r * w + x0[c]], b = m[r * w + x1[c]];
      rows[r * width + c] = a + fx[c] * (b - a);
    }
}

at::Tensor mask_bytes(const at::Tensor& target) {
  if (target.scalar_type() == torch::kUInt8 || target.scalar_type() == torch::kBool)
    return (target.scalar_type() == torch::kBool ? target.view(torch::kUInt8) : target).contiguous();
  return target.gt(0.5).to(torch::kUInt8).contiguous();
}

}  // namespace

MapScores score_map(const at::Tensor& map, const at::Tensor& target, const std::vector<double>& thresholds) {
  MEDVLP_CHECK(map.sizes() == target.sizes(), "score_map: map ", map.sizes(), " and target ", target.sizes(), " differ");
  const at::Tensor m = map.to(torch::kFloat).contiguous(), t = mask_bytes(target);
  MEDVLP_CHECK(torch::isfinite(m).all().item<bool>(), "score_map: the map holds NaN or infinity");
  return score_raw(m.data_ptr<float>(), t.data_ptr<uint8_t>(), m.numel(), m.min().item<float>(), m.max().item<float>(),
                   0.0f, 1.0f, thresholds);
}

__attribute__((optimize("O3", "fast-math"))) std::vector<MapScores> score_grid_maps(const at::Tensor& maps, const std::vector<at::Tensor>& targets, int64_t height,
                                       int64_t width, const std::vector<double>& thresholds) {
  MEDVLP_CHECK(maps.dim() == 3 && static_cast<size_t>(maps.size(0)) == targets.size(), "score_grid_maps: expected maps [K,h,w] "
               "and K targets, got ", maps.sizes(), " and ", targets.size());
  const at::Tensor src = maps.to(torch::kFloat).contiguous();
  // The loops below run under fast-math, where NaN and infinity are not handled.
  MEDVLP_CHECK(torch::isfinite(src).all().item<bool>(), "localization: a similarity map holds NaN or infinity");
  const int64_t K = src.size(0), h = src.size(1), w = src.size(2);
  // Bilinear weights with half-pixel centres, clamped at the border (torch, align_corners=false).
  const auto axis = [](int64_t in, int64_t out, std::vector<int64_t>& i0, std::vector<int64_t>& i1, std::vector<float>& f) {
    const double scale = static_cast<double>(in) / static_cast<double>(out);
    for (int64_t d = 0; d < out; ++d) {
      const double s = std::max(0.0, (static_cast<double>(d) + 0.5) * scale - 0.5);
      const auto a = static_cast<int64_t>(s);
      i0.push_back(a);
      i1.push_back(a < in - 1 ? a + 1 : a);
      f.push_back(static_cast<float>(s - static_cast<double>(a)));
    }
  };
  std::vector<int64_t> x0, x1, y0, y1;
  std::vector<float> fx, fy;
  axis(w, width, x0, x1, fx);
  axis(h, height, y0, y1, fy);
  // Reused between calls: a fresh megabyte per image costs more in page faults than the scoring.
  thread_local std::vector<float> rows, up;
  rows.resize(static_cast<size_t>(h * width));
  up.resize(static_cast<size_t>(height * width));
  std::vector<MapScores> out(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) {
    const at::Tensor& target = targets[static_cast<size_t>(k)];
    if (!target.defined()) continue;
    MEDVLP_CHECK(target.dim() == 2 && target.size(0) == height && target.size(1) == width, "score_grid_maps: target ", k,
                 " is ", target.sizes(), ", expected [", height, ", ", width, "]");
    const float* m = src.data_ptr<float>() + k * h * w;
    interpolate_rows(m, h, w, width, x0.data(), x1.data(), fx.data(), rows.data());
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (int64_t y = 0; y < height; ++y)
      blend_row(rows.data() + y0[static_cast<size_t>(y)] * width, rows.data() + y1[static_cast<size_t>(y)] * width,
                fy[static_cast<size_t>(y)], up.data() + y * width, width, &lo, &hi);
    const at::Tensor t = mask_bytes(target);
    out[static_cast<size_t>(k)] = score_raw(up.data(), t.data_ptr<uint8_t>(), height * width, lo, hi, lo, hi, thresholds);
  }
  return out;
}

namespace {

#if MEDVLP_WITH_OPENCV
// The grey image under the JET map, enlarged for small phantoms; `scale` receives the enlargement.
cv::Mat blend_heat_map(const at::Tensor& image, const at::Tensor& map, int* scale) {
  MEDVLP_CHECK(image.dim() == 2 && map.sizes() == image.sizes(), "write_heat_map: expected an image [H,W] and a map of "
               "its shape, got ", image.sizes(), " and ", map.sizes());
  const at::Tensor img = image.to(torch::kFloat).contiguous();
  const float lo = img.min().item<float>(), hi = img.max().item<float>();
  const at::Tensor grey = ((img - lo) / std::max(hi - lo, 1e-6f) * 255).clamp(0, 255).to(torch::kUInt8).contiguous();
  const at::Tensor heat = (map.to(torch::kFloat) * 255).clamp(0, 255).to(torch::kUInt8).contiguous();
  const int h = static_cast<int>(img.size(0)), w = static_cast<int>(img.size(1));
  cv::Mat g(h, w, CV_8UC1, grey.data_ptr<uint8_t>()), m(h, w, CV_8UC1, heat.data_ptr<uint8_t>());
  cv::Mat base, colour, out;
  cv::cvtColor(g, base, cv::COLOR_GRAY2BGR);
  cv::applyColorMap(m, colour, cv::COLORMAP_JET);
  cv::addWeighted(base, 0.55, colour, 0.45, 0.0, out);
  // Small phantoms are enlarged so that outlines and the label stay legible.
  *scale = std::max(1, 256 / std::max(h, w));
  if (*scale > 1) cv::resize(out, out, cv::Size(w * *scale, h * *scale), 0, 0, cv::INTER_NEAREST);
  return out;
}

void write_png(const std::string& path, const cv::Mat& out, const std::string& label) {
  cv::Mat labelled = out;
  cv::putText(labelled, label, {4, 14}, cv::FONT_HERSHEY_SIMPLEX, 0.4, cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  std::vector<uchar> png;
  MEDVLP_CHECK(cv::imencode(".png", labelled, png), path, ": PNG encoding failed");
  io::write_file_atomic(path, std::string(png.begin(), png.end()));
}
#endif

}  // namespace

void write_heat_map(const std::string& path, const at::Tensor& image, const at::Tensor& map, const at::Tensor& target,
                    const std::string& label) {
#if MEDVLP_WITH_OPENCV
  int scale = 1;
  cv::Mat out = blend_heat_map(image, map, &scale);
  if (target.defined()) {
    MEDVLP_CHECK(target.sizes() == image.sizes(), "write_heat_map: the target is ", target.sizes(), ", the image ",
                 image.sizes());
    const at::Tensor t = target.gt(0.5).to(torch::kUInt8).mul(255).contiguous();
    cv::Mat mask(static_cast<int>(t.size(0)), static_cast<int>(t.size(1)), CV_8UC1, t.data_ptr<uint8_t>()), big;
    cv::resize(mask, big, out.size(), 0, 0, cv::INTER_NEAREST);
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(big, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
    cv::drawContours(out, contours, -1, cv::Scalar(255, 255, 255), 1);
  }
  write_png(path, out, label);
#else
  (void)image, (void)map, (void)target, (void)label;
  throw Error(path + ": heat maps need OpenCV, which this build of medvlp was configured without");
#endif
}

void write_heat_map(const std::string& path, const at::Tensor& image, const at::Tensor& map,
                    const std::vector<data::Box>& boxes, int64_t finding, const std::string& label) {
#if MEDVLP_WITH_OPENCV
  int scale = 1;
  cv::Mat out = blend_heat_map(image, map, &scale);
  for (const auto& b : boxes)
    if (b.finding == finding)
      cv::rectangle(out, cv::Point(static_cast<int>(b.x0 * scale), static_cast<int>(b.y0 * scale)),
                    cv::Point(static_cast<int>(b.x1 * scale) - 1, static_cast<int>(b.y1 * scale) - 1), cv::Scalar(255, 255, 255), 1);
  write_png(path, out, label);
#else
  (void)image, (void)map, (void)boxes, (void)finding, (void)label;
  throw Error(path + ": heat maps need OpenCV, which this build of medvlp was configured without");
#endif
}

std::string file_safe(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' ? c : '_';
  return out;
}

FindingMaps::FindingMaps(models::VlpModel model, const text::Tokenizer& tokenizer,
                         const std::vector<std::pair<std::string, std::vector<std::string>>>& prompts,
                         int64_t max_text_len, const c10::Device& device, const std::string& mode)
    : model_(std::move(model)), device_(device), mode_(mode) {
  if (mode_ == "auto") mode_ = model_->local_dim() > 0 ? "tokens" : "embedding";
  MEDVLP_CHECK(mode_ == "tokens" || mode_ == "sentences" || mode_ == "embedding",
               "localization maps are auto, tokens, sentences or embedding, got \"", mode, "\"");
  std::vector<std::string> texts;
  std::vector<int64_t> owner;
  for (size_t k = 0; k < prompts.size(); ++k) {
    MEDVLP_CHECK(!prompts[k].second.empty(), "localization: no prompt for \"", prompts[k].first, "\"");
    for (const auto& t : prompts[k].second) texts.push_back(t), owner.push_back(static_cast<int64_t>(k));
  }
  const auto tokens = tokenizer.encode(texts, max_text_len);
  ids_ = tokens.ids.to(device);
  mask_ = tokens.mask.to(device);
  weights_ = torch::zeros({static_cast<int64_t>(prompts.size()), static_cast<int64_t>(texts.size())});
  for (size_t t = 0; t < texts.size(); ++t) weights_[owner[t]][static_cast<int64_t>(t)] = 1.0;
  weights_ = weights_ / weights_.sum(1, true);
}

at::Tensor FindingMaps::operator()(const at::Tensor& image) const {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> grid;
  const at::Tensor sim =
      model_->patch_similarity(image.unsqueeze(0).to(device_), ids_, mask_, mode_, &grid)[0].to(torch::kFloat).cpu();  // [T,N]
  MEDVLP_CHECK(static_cast<int64_t>(grid.size()) == image.dim() - 1, "localization: the image encoder's patch grid has ",
               grid.size(), " axes but the image ", image.dim() - 1);
  std::vector<int64_t> shape = {-1};
  shape.insert(shape.end(), grid.begin(), grid.end());
  return weights_.matmul(sim).view(shape);
}

namespace {

std::string threshold_key(double t) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%g", t);
  return buf;
}

}  // namespace

nlohmann::json localize(models::VlpModel& model, const data::DatasetPtr& dataset, const text::Tokenizer& tokenizer,
                        const std::vector<std::pair<std::string, std::vector<std::string>>>& prompts,
                        const LocalizationOptions& options, int64_t max_text_len, const c10::Device& device,
                        float image_mean, float image_std, const std::string& overlay_dir) {
  torch::NoGradGuard no_grad;
  const std::vector<std::string> findings = dataset->findings();
  std::vector<int64_t> column;
  for (const auto& p : prompts) {
    const auto it = std::find(findings.begin(), findings.end(), p.first);
    MEDVLP_CHECK(it != findings.end(), "localization: \"", p.first, "\" is not a finding of the evaluation set; it has: ",
                 core::join(findings));
    column.push_back(static_cast<int64_t>(it - findings.begin()));
  }
  // All prompts in one text batch; each finding's map is the mean of its prompts' maps.
  const FindingMaps finding_maps(model, tokenizer, prompts, max_text_len, device, options.maps);
  const std::string& mode = finding_maps.mode();
  const bool was_training = model->is_training();
  model->eval();
  if (!overlay_dir.empty()) io::make_directories(overlay_dir);
  struct Acc {
    int64_t cases = 0, overlays = 0;
    double pointing = 0, cnr = 0;
    std::vector<double> iou, dice;
  };
  std::vector<Acc> acc(prompts.size());
  for (auto& a : acc) a.iou.assign(options.thresholds.size(), 0.0), a.dice.assign(options.thresholds.size(), 0.0);
  int64_t targeted = 0;
  for (int64_t i = 0; i < dataset->size(); ++i) {
    const data::Sample s = dataset->get(i, 0);
    if (s.boxes.empty() && !s.lesion_masks.defined()) continue;
    const std::vector<int64_t> shape(s.image.sizes().begin() + 1, s.image.sizes().end());  // (D,)H,W
    // Lesion masks where the dataset has them (2D or 3D), else the boxes (2D).
    std::vector<at::Tensor> targets(prompts.size());
    if (s.lesion_masks.defined()) {
      MEDVLP_CHECK(s.lesion_masks.dim() == s.image.dim() && s.lesion_masks.size(0) == static_cast<int64_t>(findings.size()) &&
                       std::equal(shape.begin(), shape.end(), s.lesion_masks.sizes().begin() + 1),
                   "localization: ", s.id, ": lesion masks ", s.lesion_masks.sizes(), " do not match ", findings.size(),
                   " findings over the image ", s.image.sizes());
      for (size_t k = 0; k < prompts.size(); ++k) {
        at::Tensor target = s.lesion_masks[column[k]].gt(0.5).to(torch::kUInt8);
        if (target.any().item<bool>()) targets[k] = std::move(target);
      }
    } else {
      MEDVLP_CHECK(s.image.dim() == 3, "localization: ", s.id, ": boxes are 2D, but the image is ", s.image.sizes());
      for (size_t k = 0; k < prompts.size(); ++k) {
        at::Tensor target = box_mask(s.boxes, column[k], shape[0], shape[1]);
        if (target.any().item<bool>()) targets[k] = std::move(target);
      }
    }
    if (std::none_of(targets.begin(), targets.end(), [](const at::Tensor& t) { return t.defined(); })) continue;
    ++targeted;
    const at::Tensor per_finding = finding_maps((s.image - image_mean) / image_std);  // [K,(d,)h,w]
    // One finding's map upsampled at a time: a CT volume's stack of them would take gigabytes.
    const auto upsampled = [&](size_t k) { return upsample_maps(per_finding.narrow(0, static_cast<int64_t>(k), 1), shape)[0]; };
    std::vector<MapScores> scores(prompts.size());
    std::vector<at::Tensor> maps(prompts.size());  // upsampled volumes, kept for their overlays
    if (shape.size() == 2) {
      scores = score_grid_maps(per_finding, targets, shape[0], shape[1], options.thresholds);
    } else {
      MEDVLP_CHECK(torch::isfinite(per_finding).all().item<bool>(), "localization: a similarity map holds NaN or infinity");
      for (size_t k = 0; k < prompts.size(); ++k) {
        if (!targets[k].defined()) continue;
        const at::Tensor map = upsampled(k);
        scores[k] = score_map(map, targets[k], options.thresholds);
        if (!overlay_dir.empty() && acc[k].overlays < options.overlays) maps[k] = map;
      }
    }
    for (size_t k = 0; k < prompts.size(); ++k) {
      if (!targets[k].defined()) continue;
      const MapScores& sc = scores[k];
      Acc& a = acc[k];
      ++a.cases;
      a.pointing += sc.pointing;
      a.cnr += sc.cnr;
      for (size_t j = 0; j < options.thresholds.size(); ++j) a.iou[j] += sc.iou[j], a.dice[j] += sc.dice[j];
#if MEDVLP_WITH_OPENCV
      if (!overlay_dir.empty() && a.overlays < options.overlays) {
        ++a.overlays;
        const at::Tensor map = maps[k].defined() ? maps[k] : upsampled(k);
        const std::string png = overlay_dir + "/" + file_safe(prompts[k].first) + "_" + file_safe(s.id) + ".png";
        if (shape.size() == 3) {
          // The axial slice that holds most of the target.
          const int64_t z = targets[k].sum({1, 2}).argmax().item<int64_t>();
          write_heat_map(png, s.image[0][z], map[z], targets[k][z], prompts[k].first + " (slice " + std::to_string(z) + ")");
        } else if (s.lesion_masks.defined()) {
          write_heat_map(png, s.image[0], map, targets[k], prompts[k].first);
        } else {
          write_heat_map(png, s.image[0], map, s.boxes, column[k], prompts[k].first);
        }
      }
#endif
    }
  }
  if (was_training) model->train();
  MEDVLP_CHECK(targeted > 0, "localization: none of the ", dataset->size(),
               " evaluation cases has lesion boxes or lesion masks of a prompted finding");
  nlohmann::json per = nlohmann::json::object();
  nlohmann::json mean = {{"pointing_game", 0.0}, {"miou", 0.0}, {"mdice", 0.0}, {"cnr", 0.0}};
  std::vector<double> mean_iou(options.thresholds.size(), 0.0), mean_dice(options.thresholds.size(), 0.0);
  int64_t scored = 0;
  for (size_t k = 0; k < prompts.size(); ++k) {
    const Acc& a = acc[k];
    if (a.cases == 0) continue;
    const auto n = static_cast<double>(a.cases);
    nlohmann::json iou = nlohmann::json::object(), dice = nlohmann::json::object();
    double miou = 0, mdice = 0;
    for (size_t j = 0; j < options.thresholds.size(); ++j) {
      iou[threshold_key(options.thresholds[j])] = a.iou[j] / n;
      dice[threshold_key(options.thresholds[j])] = a.dice[j] / n;
      miou += a.iou[j] / n;
      mdice += a.dice[j] / n;
      mean_iou[j] += a.iou[j] / n;
      mean_dice[j] += a.dice[j] / n;
    }
    const auto nt = static_cast<double>(options.thresholds.size());
    per[prompts[k].first] = {{"cases", a.cases},      {"pointing_game", a.pointing / n}, {"iou", iou}, {"dice", dice},
                             {"miou", miou / nt},     {"mdice", mdice / nt},            {"cnr", a.cnr / n}};
    mean["pointing_game"] = mean["pointing_game"].get<double>() + a.pointing / n;
    mean["miou"] = mean["miou"].get<double>() + miou / nt;
    mean["mdice"] = mean["mdice"].get<double>() + mdice / nt;
    mean["cnr"] = mean["cnr"].get<double>() + a.cnr / n;
    ++scored;
  }
  if (scored > 0) {
    for (const char* key : {"pointing_game", "miou", "mdice", "cnr"}) mean[key] = mean[key].get<double>() / static_cast<double>(scored);
    nlohmann::json iou = nlohmann::json::object(), dice = nlohmann::json::object();
    for (size_t j = 0; j < options.thresholds.size(); ++j) {
      iou[threshold_key(options.thresholds[j])] = mean_iou[j] / static_cast<double>(scored);
      dice[threshold_key(options.thresholds[j])] = mean_dice[j] / static_cast<double>(scored);
    }
    mean["iou"] = iou;
    mean["dice"] = dice;
  } else {
    mean = nullptr;
  }
  return {{"findings", per}, {"mean", mean}, {"maps", mode}, {"cases", targeted}};
}

}  // namespace medvlp::eval
