#pragma once
// Preprocessing and augmentation of samples, built from the `data.transforms` config list.
//
// Every step moves the image, its anatomy masks and its boxes together, and draws its randomness
// from a generator seeded by (seed, epoch, sample index, step position), so a sample looks the same
// whichever worker builds it and whenever a run resumes. Random steps have an evaluation form
// (identity, full view or centre crop) used for non-training splits.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "medvlp/core/config.h"
#include "medvlp/data/dataset.h"
#include "medvlp/data/rng.h"

namespace medvlp::data {

/// One preprocessing or augmentation step.
class Transform {
 public:
  virtual ~Transform() = default;
  /// Transforms `sample` in place. With `train` false a random step takes its evaluation form.
  virtual void apply(Sample& sample, Rng& rng, bool train) const = 0;
  /// The config name of the step (error messages).
  virtual std::string name() const = 0;
};

using TransformPtr = std::shared_ptr<const Transform>;

/// An ordered list of steps applied with per-(epoch, index, step) generators.
class Compose {
 public:
  Compose() = default;
  explicit Compose(std::vector<TransformPtr> steps, uint64_t seed = 0) : steps_(std::move(steps)), seed_(seed) {}
  void apply(Sample& sample, int64_t epoch, int64_t index, bool train) const;
  bool empty() const { return steps_.empty(); }
  const std::vector<TransformPtr>& steps() const { return steps_; }

 private:
  std::vector<TransformPtr> steps_;
  uint64_t seed_ = 0;
};

/// Builds the steps of a `transforms` list: `[{name: resize, size: 224}, ...]`. Unknown names and
/// keys fail naming the config path. See docs/data.md for every step and its keys.
Compose build_transforms(const core::ConfigNode& list, uint64_t seed);

/// A dataset whose samples pass through `transforms` (training form when `train`).
class TransformedDataset : public Dataset {
 public:
  TransformedDataset(DatasetPtr base, Compose transforms, bool train)
      : base_(std::move(base)), transforms_(std::move(transforms)), train_(train) {}
  int64_t size() const override { return base_->size(); }
  Sample get(int64_t index, int64_t epoch) const override;
  std::vector<std::string> findings() const override { return base_->findings(); }
  std::vector<std::string> anatomies() const override { return base_->anatomies(); }
  std::string patient_id(int64_t index) const override { return base_->patient_id(index); }
  const DatasetPtr& base() const { return base_; }

 private:
  DatasetPtr base_;
  Compose transforms_;
  bool train_;
};

// ---- The steps' numerical cores, usable on their own. ----

/// Linear (or nearest, for label masks) resampling of a [C, n1, ..., nk] float tensor whose last k
/// axes have voxel size `spacing` (mm) to voxel size `target`. Voxel centres are aligned at index
/// 0; each axis keeps its field of view: n' = max(1, round(n * s / t)); samples past the last
/// voxel repeat it. Returns the resampled tensor; `spacing` is not changed.
at::Tensor resample(const at::Tensor& image, const std::vector<double>& spacing, const std::vector<double>& target,
                    bool nearest = false);

/// An intensity window [lo, hi] mapped to [0, 1].
struct Window {
  double lo = 0, hi = 1;
};
/// Named CT windows: lung (-1350..150), mediastinum (-160..240), abdomen (-135..215), bone (-500..1300),
/// brain (0..80). Throws naming the known names otherwise.
Window ct_window(const std::string& name);
/// One channel per window: clamp((x - lo) / (hi - lo), 0, 1) of a one-channel [1, ...] image.
at::Tensor apply_windows(const at::Tensor& image, const std::vector<Window>& windows);

/// Crops or pads the trailing axes of `image` to `size`, window starting at `start` per axis
/// (negative: pad before). Padding takes `pad_value`.
at::Tensor crop_pad(const at::Tensor& image, const std::vector<int64_t>& start, const std::vector<int64_t>& size,
                    double pad_value);

}  // namespace medvlp::data
