#include "medvlp/data/transforms.h"

#include <algorithm>
#include <cmath>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "../core/large_tensor.h"
#include "medvlp/core/error.h"

namespace medvlp::data {

namespace {

constexpr double kPi = 3.141592653589793;

int64_t spatial_dims(const Sample& s, const std::string& step) {
  MEDVLP_CHECK(s.image.defined() && (s.image.dim() == 3 || s.image.dim() == 4), "transform ", step, ": sample ",
               s.id, " has image shape ", s.image.defined() ? s.image.sizes() : at::IntArrayRef{},
               "; expected [C,H,W] or [C,D,H,W]");
  return s.image.dim() - 1;
}

std::vector<int64_t> spatial_size(const at::Tensor& t) {
  return std::vector<int64_t>(t.sizes().begin() + 1, t.sizes().end());
}

// Interpolates the spatial axes of a [C, ...] tensor to `size`.
at::Tensor interpolate(const at::Tensor& t, const std::vector<int64_t>& size, bool nearest) {
  namespace F = torch::nn::functional;
  if (spatial_size(t) == size) return t;
  auto options = F::InterpolateFuncOptions().size(size);
  if (nearest) {
    options.mode(torch::kNearest);
  } else {
    if (size.size() == 2) options.mode(torch::kBilinear);
    else options.mode(torch::kTrilinear);
    options.align_corners(false);
    // Shrinking without a low-pass filter aliases (moire on ribs and grids); torch only has it in 2D.
    if (size.size() == 2 && (size[0] < t.size(1) || size[1] < t.size(2))) options.antialias(true);
  }
  return F::interpolate(t.unsqueeze(0), options).squeeze(0);
}

// Boxes under x' = x * sx + ox, y' = y * sy + oy, clipped to the new [0,w]x[0,h]; empty ones dropped.
void map_boxes(Sample& s, double sx, double sy, double ox, double oy, double w, double h) {
  std::vector<Box> kept;
  for (Box b : s.boxes) {
    b.x0 = static_cast<float>(std::clamp(b.x0 * sx + ox, 0.0, w));
    b.x1 = static_cast<float>(std::clamp(b.x1 * sx + ox, 0.0, w));
    b.y0 = static_cast<float>(std::clamp(b.y0 * sy + oy, 0.0, h));
    b.y1 = static_cast<float>(std::clamp(b.y1 * sy + oy, 0.0, h));
    if (b.x1 > b.x0 && b.y1 > b.y0) kept.push_back(b);
  }
  s.boxes = std::move(kept);
}

// Crops/pads every spatial field of `s` to the window (start, size); boxes follow in 2D.
void crop_pad_sample(Sample& s, const std::vector<int64_t>& start, const std::vector<int64_t>& size,
                     double pad_value) {
  s.image = crop_pad(s.image, start, size, pad_value);
  if (s.anatomy_masks.defined()) s.anatomy_masks = crop_pad(s.anatomy_masks, start, size, 0.0);
  if (s.lesion_masks.defined()) s.lesion_masks = crop_pad(s.lesion_masks, start, size, 0.0);
  if (size.size() == 2)
    map_boxes(s, 1, 1, -static_cast<double>(start[1]), -static_cast<double>(start[0]), static_cast<double>(size[1]),
              static_cast<double>(size[0]));
}

// Resizes every spatial field of `s` to `size`; spacing and boxes follow.
void resize_sample(Sample& s, const std::vector<int64_t>& size) {
  const std::vector<int64_t> old = spatial_size(s.image);
  if (old == size) return;
  s.image = interpolate(s.image, size, false);
  if (s.anatomy_masks.defined()) s.anatomy_masks = interpolate(s.anatomy_masks, size, true);
  if (s.lesion_masks.defined()) s.lesion_masks = interpolate(s.lesion_masks, size, true);
  if (s.spacing.size() == size.size())
    for (size_t a = 0; a < size.size(); ++a)
      s.spacing[a] *= static_cast<double>(old[a]) / static_cast<double>(size[a]);
  if (size.size() == 2) {
    const double sy = static_cast<double>(size[0]) / static_cast<double>(old[0]);
    const double sx = static_cast<double>(size[1]) / static_cast<double>(old[1]);
    map_boxes(s, sx, sy, 0, 0, static_cast<double>(size[1]), static_cast<double>(size[0]));
  }
}

// A size key: one number for every spatial axis, or one per axis.
std::vector<int64_t> read_size(const core::ConfigNode& node, const std::string& key) {
  const nlohmann::json* v = node.raw(key);
  if (v == nullptr) node.fail(key, "missing; expected a size (one number, or [H, W] / [D, H, W])");
  std::vector<int64_t> size;
  if (v->is_number_integer()) size.push_back(v->get<int64_t>());
  else if (v->is_array())
    for (const auto& x : *v) {
      if (!x.is_number_integer()) node.fail(key, "expected integers");
      size.push_back(x.get<int64_t>());
    }
  else node.fail(key, "expected a size (one number, or [H, W] / [D, H, W])");
  if (size.empty() || size.size() > 3) node.fail(key, "expected one, two or three sizes");
  for (int64_t x : size)
    if (x < 1 || x > 65536) node.fail(key, "sizes must be in [1, 65536]");
  return size;
}

std::vector<int64_t> expand(const std::vector<int64_t>& size, int64_t dims, const std::string& step, const Sample& s) {
  if (size.size() == 1) return std::vector<int64_t>(static_cast<size_t>(dims), size[0]);
  MEDVLP_CHECK(static_cast<int64_t>(size.size()) == dims, "transform ", step, ": size has ", size.size(),
               " axes but sample ", s.id, " has ", dims, " spatial axes");
  return size;
}

// One number or a list of numbers.
std::vector<double> read_numbers(const core::ConfigNode& node, const std::string& key) {
  const nlohmann::json* v = node.raw(key);
  std::vector<double> out;
  if (v != nullptr && v->is_number()) out.push_back(v->get<double>());
  else if (v != nullptr && v->is_array())
    for (const auto& x : *v) {
      if (!x.is_number()) node.fail(key, "expected numbers, got " + x.dump());
      out.push_back(x.get<double>());
    }
  return out;
}

std::pair<double, double> read_range(const core::ConfigNode& node, const std::string& key,
                                     std::pair<double, double> fallback, double lo, double hi) {
  const auto v = node.get_doubles(key, {fallback.first, fallback.second});
  if (v.size() != 2 || v[0] > v[1] || v[0] < lo || v[1] > hi)
    node.fail(key, "expected [min, max] within [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return {v[0], v[1]};
}

// ---- steps ----

class Resize : public Transform {
 public:
  explicit Resize(const core::ConfigNode& n)
      : size_(read_size(n, "size")), keep_aspect_(n.get_bool("keep_aspect", true)),
        pad_value_(n.get_double("pad_value", 0.0)) {}
  std::string name() const override { return "resize"; }
  void apply(Sample& s, Rng&, bool) const override {
    const int64_t dims = spatial_dims(s, name());
    const auto size = expand(size_, dims, name(), s);
    if (!keep_aspect_) return resize_sample(s, size);
    const auto old = spatial_size(s.image);
    double scale = 1e300;
    for (int64_t a = 0; a < dims; ++a)
      scale = std::min(scale, static_cast<double>(size[a]) / static_cast<double>(old[a]));
    std::vector<int64_t> inner(static_cast<size_t>(dims)), start(static_cast<size_t>(dims));
    for (int64_t a = 0; a < dims; ++a) {
      inner[a] = std::clamp<int64_t>(std::llround(static_cast<double>(old[a]) * scale), 1, size[a]);
      start[a] = -((size[a] - inner[a]) / 2);  // centred padding
    }
    resize_sample(s, inner);
    crop_pad_sample(s, start, size, pad_value_);
  }

 private:
  std::vector<int64_t> size_;
  bool keep_aspect_;
  double pad_value_;
};

class RandomResizedCrop : public Transform {
 public:
  explicit RandomResizedCrop(const core::ConfigNode& n)
      : size_(read_size(n, "size")), scale_(read_range(n, "scale", {0.7, 1.0}, 1e-3, 1.0)),
        ratio_(read_range(n, "ratio", {3.0 / 4.0, 4.0 / 3.0}, 1e-2, 1e2)) {}
  std::string name() const override { return "random_resized_crop"; }
  void apply(Sample& s, Rng& rng, bool train) const override {
    MEDVLP_CHECK(spatial_dims(s, name()) == 2, "transform ", name(), " is 2D; sample ", s.id, " is a volume");
    const auto size = expand(size_, 2, name(), s);
    const int64_t h = s.image.size(1), w = s.image.size(2);
    int64_t ch = 0, cw = 0, top = 0, left = 0;
    bool found = false;
    // torchvision's sampler: ten tries at a random area and log-uniform aspect, then a centre crop.
    for (int attempt = 0; train && attempt < 10 && !found; ++attempt) {
      const double area = static_cast<double>(h * w) * rng.uniform(scale_.first, scale_.second);
      const double ratio = std::exp(rng.uniform(std::log(ratio_.first), std::log(ratio_.second)));
      cw = std::llround(std::sqrt(area * ratio));
      ch = std::llround(std::sqrt(area / ratio));
      if (cw > 0 && ch > 0 && cw <= w && ch <= h) {
        top = rng.below(h - ch + 1);
        left = rng.below(w - cw + 1);
        found = true;
      }
    }
    if (!found) {
      // The largest centred crop with the output's aspect (evaluation: resize + centre crop).
      const double want = static_cast<double>(size[1]) / static_cast<double>(size[0]);
      cw = w;
      ch = std::llround(static_cast<double>(w) / want);
      if (ch > h) {
        ch = h;
        cw = std::max<int64_t>(1, std::llround(static_cast<double>(h) * want));
      }
      top = (h - ch) / 2;
      left = (w - cw) / 2;
    }
    crop_pad_sample(s, {top, left}, {ch, cw}, 0.0);
    resize_sample(s, size);
  }

 private:
  std::vector<int64_t> size_;
  std::pair<double, double> scale_, ratio_;
};

class RandomAffine : public Transform {
 public:
  explicit RandomAffine(const core::ConfigNode& n)
      : degrees_(n.get_double("degrees", 0.0, 0.0, 180.0)), translate_(n.get_double("translate", 0.0, 0.0, 0.5)),
        scale_(read_range(n, "scale", {1.0, 1.0}, 0.1, 10.0)), shear_(n.get_double("shear", 0.0, 0.0, 45.0)),
        fill_(n.get_double("fill", 0.0)) {}
  std::string name() const override { return "affine"; }
  void apply(Sample& s, Rng& rng, bool train) const override {
    MEDVLP_CHECK(spatial_dims(s, name()) == 2, "transform ", name(), " is 2D; sample ", s.id, " is a volume");
    if (!train) return;
    const double h = static_cast<double>(s.image.size(1)), w = static_cast<double>(s.image.size(2));
    const double angle = rng.uniform(-degrees_, degrees_) * kPi / 180.0;
    const double shear = rng.uniform(-shear_, shear_) * kPi / 180.0;
    const double scale = rng.uniform(scale_.first, scale_.second);
    const double tx = rng.uniform(-translate_, translate_) * w, ty = rng.uniform(-translate_, translate_) * h;
    // Forward map in pixel-edge coordinates: p' = c + t + scale * R(angle) * Shear_x(shear) * (p - c).
    const double c = std::cos(angle), sn = std::sin(angle), k = std::tan(shear);
    const double a = scale * c, b = scale * (c * k - sn), d = scale * sn, e = scale * (sn * k + c);
    const double cx = w / 2, cy = h / 2;
    const double det = a * e - b * d;
    // Inverse for sampling: p = c + M^-1 (p' - c - t).
    const double ia = e / det, ib = -b / det, id = -d / det, ie = a / det;
    const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
    const at::Tensor ys = torch::arange(s.image.size(1), opts).add_(0.5).sub_(cy + ty).view({-1, 1});
    const at::Tensor xs = torch::arange(s.image.size(2), opts).add_(0.5).sub_(cx + tx).view({1, -1});
    const at::Tensor src_x = (ia * xs + ib * ys + cx) * (2.0 / w) - 1.0;
    const at::Tensor src_y = (id * xs + ie * ys + cy) * (2.0 / h) - 1.0;
    const at::Tensor grid = torch::stack({src_x, src_y}, -1).to(torch::kFloat32).unsqueeze(0);
    namespace F = torch::nn::functional;
    auto sample = [&](const at::Tensor& t, bool nearest, double fill) {
      auto o = F::GridSampleFuncOptions().padding_mode(torch::kZeros).align_corners(false);
      if (nearest) o.mode(torch::kNearest);
      else o.mode(torch::kBilinear);
      at::Tensor out = F::grid_sample((t - fill).unsqueeze(0), grid, o).squeeze(0);
      return fill != 0 ? out + fill : out;
    };
    s.image = sample(s.image, false, fill_);
    if (s.anatomy_masks.defined()) s.anatomy_masks = sample(s.anatomy_masks, true, 0.0);
    if (s.lesion_masks.defined()) s.lesion_masks = sample(s.lesion_masks, true, 0.0);
    std::vector<Box> kept;
    for (Box bx : s.boxes) {
      double x0 = 1e300, y0 = 1e300, x1 = -1e300, y1 = -1e300;
      for (double px : {static_cast<double>(bx.x0), static_cast<double>(bx.x1)})
        for (double py : {static_cast<double>(bx.y0), static_cast<double>(bx.y1)}) {
          const double qx = cx + tx + a * (px - cx) + b * (py - cy);
          const double qy = cy + ty + d * (px - cx) + e * (py - cy);
          x0 = std::min(x0, qx), x1 = std::max(x1, qx), y0 = std::min(y0, qy), y1 = std::max(y1, qy);
        }
      bx.x0 = static_cast<float>(std::clamp(x0, 0.0, w)), bx.x1 = static_cast<float>(std::clamp(x1, 0.0, w));
      bx.y0 = static_cast<float>(std::clamp(y0, 0.0, h)), bx.y1 = static_cast<float>(std::clamp(y1, 0.0, h));
      if (bx.x1 > bx.x0 && bx.y1 > bx.y0) kept.push_back(bx);
    }
    s.boxes = std::move(kept);
  }

 private:
  double degrees_, translate_;
  std::pair<double, double> scale_;
  double shear_, fill_;
};

class Intensity : public Transform {
 public:
  explicit Intensity(const core::ConfigNode& n)
      : brightness_(n.get_double("brightness", 0.0, 0.0, 1.0)), contrast_(n.get_double("contrast", 0.0, 0.0, 1.0)),
        gamma_(n.get_double("gamma", 0.0, 0.0, 0.9)), clamp_(n.get_bool("clamp", true)) {}
  std::string name() const override { return "intensity"; }
  void apply(Sample& s, Rng& rng, bool train) const override {
    spatial_dims(s, name());
    if (!train) return;
    const double b = rng.uniform(1 - brightness_, 1 + brightness_);
    const double c = rng.uniform(1 - contrast_, 1 + contrast_);
    const double g = rng.uniform(1 - gamma_, 1 + gamma_);
    at::Tensor x = s.image;
    // Gamma is defined on [0,1] intensities; then contrast about the mean, then brightness (scale).
    if (g != 1.0) x = x.clamp(0.0, 1.0).pow(g);
    if (c != 1.0) {
      const at::Tensor mean = x.mean();
      x = (x - mean) * c + mean;
    }
    if (b != 1.0) x = x * b;
    s.image = clamp_ ? x.clamp(0.0, 1.0) : x;
  }

 private:
  double brightness_, contrast_, gamma_;
  bool clamp_;
};

class HorizontalFlip : public Transform {
 public:
  explicit HorizontalFlip(const core::ConfigNode& n) : p_(n.get_double("p", 0.5, 0.0, 1.0)) {}
  std::string name() const override { return "hflip"; }
  void apply(Sample& s, Rng& rng, bool train) const override {
    const int64_t dims = spatial_dims(s, name());
    if (!train || !rng.bernoulli(p_)) return;
    s.image = s.image.flip({-1});
    if (s.anatomy_masks.defined()) s.anatomy_masks = s.anatomy_masks.flip({-1});
    if (s.lesion_masks.defined()) s.lesion_masks = s.lesion_masks.flip({-1});
    if (dims == 2) {
      const auto w = static_cast<float>(s.image.size(2));
      for (Box& b : s.boxes) {
        const float x0 = w - b.x1, x1 = w - b.x0;
        b.x0 = x0, b.x1 = x1;
      }
    }
  }

 private:
  double p_;
};

class Resample : public Transform {
 public:
  explicit Resample(const core::ConfigNode& n) : target_(read_numbers(n, "spacing")) {
    if (target_.empty() || target_.size() > 3) n.fail("spacing", "expected a spacing in mm (one number or one per axis)");
    for (double t : target_)
      if (!(t > 0)) n.fail("spacing", "spacings must be positive");
  }
  std::string name() const override { return "resample"; }
  void apply(Sample& s, Rng&, bool) const override {
    const int64_t dims = spatial_dims(s, name());
    MEDVLP_CHECK(static_cast<int64_t>(s.spacing.size()) == dims, "transform resample: sample ", s.id,
                 " carries no voxel spacing for its ", dims, " spatial axes (DICOM, NIfTI and CT phantoms do)");
    std::vector<double> target = target_;
    if (target.size() == 1) target.assign(static_cast<size_t>(dims), target_[0]);
    MEDVLP_CHECK(static_cast<int64_t>(target.size()) == dims, "transform resample: spacing has ", target.size(),
                 " axes but sample ", s.id, " has ", dims);
    s.image = resample(s.image, s.spacing, target, false);
    if (s.anatomy_masks.defined()) s.anatomy_masks = resample(s.anatomy_masks, s.spacing, target, true);
    if (s.lesion_masks.defined()) s.lesion_masks = resample(s.lesion_masks, s.spacing, target, true);
    if (dims == 2)
      map_boxes(s, s.spacing[1] / target[1], s.spacing[0] / target[0], 0, 0, static_cast<double>(s.image.size(2)),
                static_cast<double>(s.image.size(1)));
    s.spacing = target;
  }

 private:
  std::vector<double> target_;
};

class WindowStep : public Transform {
 public:
  explicit WindowStep(const core::ConfigNode& n) {
    const nlohmann::json* v = n.raw("windows");
    if (v == nullptr || !v->is_array() || v->empty())
      n.fail("windows", "expected a list of window names (lung, mediastinum, abdomen, bone, brain) or [lo, hi] pairs");
    for (const auto& w : *v) {
      if (w.is_string()) {
        try {
          windows_.push_back(ct_window(w.get<std::string>()));
        } catch (const Error& e) {
          n.fail("windows", e.what());
        }
      } else if (w.is_array() && w.size() == 2 && w[0].is_number() && w[1].is_number() &&
                 w[0].get<double>() < w[1].get<double>()) {
        windows_.push_back({w[0].get<double>(), w[1].get<double>()});
      } else {
        n.fail("windows", "each window is a name or [lo, hi] with lo < hi; got " + w.dump());
      }
    }
  }
  std::string name() const override { return "window"; }
  void apply(Sample& s, Rng&, bool) const override {
    spatial_dims(s, name());
    MEDVLP_CHECK(s.image.size(0) == 1, "transform window: sample ", s.id, " has ", s.image.size(0),
                 " channels; windowing needs the one-channel intensity image (put it before other channel steps)");
    s.image = apply_windows(s.image, windows_);
  }

 private:
  std::vector<Window> windows_;
};

class CropPad : public Transform {
 public:
  CropPad(const core::ConfigNode& n, bool random)
      : size_(read_size(n, "size")), pad_value_(n.get_double("pad_value", 0.0)), random_(random) {}
  std::string name() const override { return random_ ? "random_crop" : "crop_pad"; }
  void apply(Sample& s, Rng& rng, bool train) const override {
    const int64_t dims = spatial_dims(s, name());
    const auto size = expand(size_, dims, name(), s);
    const auto old = spatial_size(s.image);
    std::vector<int64_t> start(static_cast<size_t>(dims));
    for (int64_t a = 0; a < dims; ++a) {
      const int64_t slack = old[a] - size[a];
      if (slack >= 0) start[a] = random_ && train ? rng.below(slack + 1) : slack / 2;
      else start[a] = -((-slack) / 2);
    }
    crop_pad_sample(s, start, size, pad_value_);
  }

 private:
  std::vector<int64_t> size_;
  double pad_value_;
  bool random_;
};

TransformPtr make_step(const core::ConfigNode& n) {
  const std::string name = n.get_string("name");
  if (name == "resize") return std::make_shared<Resize>(n);
  if (name == "random_resized_crop") return std::make_shared<RandomResizedCrop>(n);
  if (name == "affine") return std::make_shared<RandomAffine>(n);
  if (name == "intensity") return std::make_shared<Intensity>(n);
  if (name == "hflip") return std::make_shared<HorizontalFlip>(n);
  if (name == "resample") return std::make_shared<Resample>(n);
  if (name == "window") return std::make_shared<WindowStep>(n);
  if (name == "crop_pad") return std::make_shared<CropPad>(n, false);
  if (name == "random_crop") return std::make_shared<CropPad>(n, true);
  n.fail("name", "unknown transform \"" + name +
                     "\"; known: resize, random_resized_crop, affine, intensity, hflip, resample, window, crop_pad, "
                     "random_crop");
  return nullptr;
}

}  // namespace

void Compose::apply(Sample& sample, int64_t epoch, int64_t index, bool train) const {
  for (size_t i = 0; i < steps_.size(); ++i) {
    Rng rng(mix_seed(seed_ ^ 0x7472616e73666f72ull, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index), i));
    steps_[i]->apply(sample, rng, train);
  }
}

Compose build_transforms(const core::ConfigNode& list, uint64_t seed) {
  if (!list.is_list()) list.fail("", "expected a list of transforms, each {name: ..., options}");
  std::vector<TransformPtr> steps;
  for (const auto& item : list.items()) steps.push_back(make_step(item));
  return Compose(std::move(steps), seed);
}

Sample TransformedDataset::get(int64_t index, int64_t epoch) const {
  Sample s = base_->get(index, epoch);
  transforms_.apply(s, epoch, index, train_);
  return s;
}

namespace {

// Linear (or nearest) sampling of one axis: output j reads inputs i0[j], i1[j] with weight w[j]
// on i1. Voxel 0 stays at voxel 0, so the field of view starts where it did.
struct AxisSampling {
  int64_t n = 0, m = 0;
  std::vector<int64_t> i0, i1;
  std::vector<float> w;
  bool identity = false;
};

AxisSampling axis_sampling(int64_t n, double spacing, double target, bool nearest) {
  MEDVLP_CHECK(spacing > 0 && target > 0, "resample: spacings must be positive");
  AxisSampling a;
  a.n = n;
  const double step = target / spacing;
  a.m = std::max<int64_t>(1, std::llround(static_cast<double>(n) * spacing / target));
  a.identity = a.m == n && step == 1.0;
  a.i0.resize(static_cast<size_t>(a.m));
  a.i1.resize(static_cast<size_t>(a.m));
  a.w.resize(static_cast<size_t>(a.m));
  for (int64_t j = 0; j < a.m; ++j) {
    const double p = std::min(static_cast<double>(j) * step, static_cast<double>(n - 1));
    if (nearest) {
      a.i0[j] = a.i1[j] = std::min<int64_t>(n - 1, std::llround(p));
      a.w[j] = 0;
    } else {
      a.i0[j] = static_cast<int64_t>(std::floor(p));
      a.i1[j] = std::min(a.i0[j] + 1, n - 1);
      a.w[j] = static_cast<float>(p - static_cast<double>(a.i0[j]));
    }
  }
  return a;
}

inline void lerp_rows(const float* s0, const float* s1, float w1, float* d, int64_t len) {
  if (w1 == 0.f) {
    std::copy(s0, s0 + len, d);
    return;
  }
  const float w0 = 1.f - w1;
  for (int64_t i = 0; i < len; ++i) d[i] = w0 * s0[i] + w1 * s1[i];
}

// Trilinear resampling of a contiguous [C,D,H,W] float volume in one pass over the output: each
// output slice blends two input slices that were resampled in-plane into small per-thread
// buffers (kept while consecutive output slices reuse them). The separable pass-per-axis
// version wrote two full-size intermediate volumes, whose first touch cost more than the
// arithmetic.
at::Tensor resample_volume(const at::Tensor& x, const AxisSampling& az, const AxisSampling& ay,
                           const AxisSampling& ax) {
  const int64_t c = x.size(0), d = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t md = az.m, mh = ay.m, mw = ax.m;
  at::Tensor out = core::empty_large({c, md, mh, mw}, at::kFloat);
  const float* src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  // Blend rows first (contiguous) or gather columns first, whichever touches fewer values.
  const bool rows_first = mh * w + 2 * mh * mw <= 2 * h * mw + mh * mw;
  at::parallel_for(0, c * md, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> tmp(static_cast<size_t>(rows_first ? mh * w : h * mw));
    std::vector<float> planes[2] = {std::vector<float>(static_cast<size_t>(mh * mw)),
                                    std::vector<float>(static_cast<size_t>(mh * mw))};
    int64_t held[2] = {-1, -1};
    const auto gather = [&](const float* row, float* o) {
      for (int64_t i = 0; i < mw; ++i) {
        const float w1 = ax.w[i];
        o[i] = w1 == 0.f ? row[ax.i0[i]] : (1.f - w1) * row[ax.i0[i]] + w1 * row[ax.i1[i]];
      }
    };
    // The in-plane resampled input slice `key` (= channel * D + z), computed into a slot other
    // than `keep`.
    const auto plane = [&](int64_t key, int keep) -> int {
      for (int k = 0; k < 2; ++k)
        if (held[k] == key) return k;
      const int slot = keep >= 0 ? 1 - keep : (held[0] <= held[1] ? 0 : 1);  // the older one
      const float* s = src + key * h * w;
      float* p = planes[slot].data();
      if (rows_first) {
        for (int64_t y = 0; y < mh; ++y) lerp_rows(s + ay.i0[y] * w, s + ay.i1[y] * w, ay.w[y], tmp.data() + y * w, w);
        for (int64_t y = 0; y < mh; ++y) gather(tmp.data() + y * w, p + y * mw);
      } else {
        for (int64_t y = 0; y < h; ++y) gather(s + y * w, tmp.data() + y * mw);
        for (int64_t y = 0; y < mh; ++y)
          lerp_rows(tmp.data() + ay.i0[y] * mw, tmp.data() + ay.i1[y] * mw, ay.w[y], p + y * mw, mw);
      }
      held[slot] = key;
      return slot;
    };
    for (int64_t r = begin; r < end; ++r) {
      const int64_t ch = r / md, j = r % md;
      const int s0 = plane(ch * d + az.i0[j], -1);
      const int s1 = az.w[j] == 0.f ? s0 : plane(ch * d + az.i1[j], s0);
      lerp_rows(planes[s0].data(), planes[s1].data(), az.w[j], dst + r * mh * mw, mh * mw);
    }
  });
  return out;
}

}  // namespace

at::Tensor resample(const at::Tensor& image, const std::vector<double>& spacing, const std::vector<double>& target,
                    bool nearest) {
  const int64_t k = static_cast<int64_t>(spacing.size());
  MEDVLP_CHECK(k == static_cast<int64_t>(target.size()) && image.dim() == k + 1,
               "resample: image of shape ", image.sizes(), " does not match ", k, " spacings");
  std::vector<AxisSampling> axes;
  for (int64_t a = 0; a < k; ++a) axes.push_back(axis_sampling(image.size(a + 1), spacing[a], target[a], nearest));
  at::Tensor x = image.to(at::kFloat).contiguous();
  if (std::all_of(axes.begin(), axes.end(), [](const AxisSampling& a) { return a.identity; })) return x;
  if (k == 3 && !nearest) return resample_volume(x, axes[0], axes[1], axes[2]);
  // Other ranks and nearest-neighbour labels: one pass per axis, shrinking axes first so that the
  // later passes are small.
  std::vector<int64_t> order(static_cast<size_t>(k));
  for (int64_t a = 0; a < k; ++a) order[a] = a;
  std::stable_sort(order.begin(), order.end(), [&](int64_t p, int64_t q) {
    return spacing[p] / target[p] < spacing[q] / target[q];
  });
  for (int64_t a : order) {
    const AxisSampling& s = axes[a];
    if (s.identity) continue;
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < a + 1; ++d) outer *= x.size(d);
    for (int64_t d = a + 2; d < x.dim(); ++d) inner *= x.size(d);
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape[a + 1] = s.m;
    at::Tensor y = core::empty_large(shape, at::kFloat);
    const float* src = x.data_ptr<float>();
    float* dst = y.data_ptr<float>();
    const int64_t n = s.n, m = s.m;
    at::parallel_for(0, outer * m, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)),
                     [&](int64_t begin, int64_t end) {
                       for (int64_t r = begin; r < end; ++r) {
                         const int64_t o = r / m, j = r % m;
                         lerp_rows(src + (o * n + s.i0[j]) * inner, src + (o * n + s.i1[j]) * inner, s.w[j],
                                   dst + r * inner, inner);
                       }
                     });
    x = y;
  }
  return x;
}

Window ct_window(const std::string& name) {
  if (name == "lung") return {-1350, 150};
  if (name == "mediastinum") return {-160, 240};
  if (name == "abdomen") return {-135, 215};
  if (name == "bone") return {-500, 1300};
  if (name == "brain") return {0, 80};
  throw Error("unknown CT window \"" + name + "\"; known: lung, mediastinum, abdomen, bone, brain, or [lo, hi]");
}

at::Tensor apply_windows(const at::Tensor& image, const std::vector<Window>& windows) {
  MEDVLP_CHECK(image.dim() >= 2 && image.size(0) == 1, "apply_windows: expected a one-channel image, got shape ",
               image.sizes());
  MEDVLP_CHECK(!windows.empty(), "apply_windows: no windows");
  const at::Tensor x = image[0].to(at::kFloat).contiguous();
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.insert(shape.begin(), static_cast<int64_t>(windows.size()));
  at::Tensor out = core::empty_large(shape, at::kFloat);
  const int64_t n = x.numel();
  const float* in = x.data_ptr<float>();
  for (size_t c = 0; c < windows.size(); ++c) {
    const Window& w = windows[c];
    MEDVLP_CHECK(w.hi > w.lo, "apply_windows: window [", w.lo, ", ", w.hi, "] is empty");
    const auto lo = static_cast<float>(w.lo), scale = static_cast<float>(1.0 / (w.hi - w.lo));
    float* dst = out.data_ptr<float>() + static_cast<int64_t>(c) * n;
    // One pass per channel instead of four tensor temporaries (a CT volume is ~100 MB per copy).
    at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) dst[i] = std::min(1.f, std::max(0.f, (in[i] - lo) * scale));
    });
  }
  return out;
}

at::Tensor crop_pad(const at::Tensor& image, const std::vector<int64_t>& start, const std::vector<int64_t>& size,
                    double pad_value) {
  const int64_t k = static_cast<int64_t>(size.size());
  MEDVLP_CHECK(static_cast<int64_t>(start.size()) == k && image.dim() >= k, "crop_pad: image of shape ",
               image.sizes(), " does not match a ", k, "-axis window");
  at::Tensor x = image;
  std::vector<int64_t> pad;  // constant_pad_nd order: last axis first, (before, after) pairs
  for (int64_t a = k - 1; a >= 0; --a) {
    const int64_t dim = image.dim() - k + a;
    const int64_t n = x.size(dim);
    const int64_t lo = std::max<int64_t>(start[a], 0), hi = std::min(start[a] + size[a], n);
    x = hi > lo ? x.narrow(dim, lo, hi - lo) : x.narrow(dim, 0, 0);
    const int64_t before = std::max<int64_t>(0, std::min(-start[a], size[a]));
    pad.push_back(before);
    pad.push_back(size[a] - before - std::max<int64_t>(0, hi - lo));
  }
  bool any = false;
  for (int64_t p : pad) any = any || p != 0;
  return any ? at::constant_pad_nd(x, pad, pad_value) : x.contiguous();
}

}  // namespace medvlp::data
