// Transforms: closed-form geometry, determinism in (seed, epoch, index), and config errors.
#include "medvlp/data/transforms.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../testing_util.h"
#include "medvlp/core/config.h"
#include "medvlp/data/build.h"

namespace medvlp::data {
namespace {

Compose parse(const std::string& yaml, uint64_t seed = 1) {
  static std::vector<core::Config> keep;  // the nodes refer to their config
  keep.push_back(core::Config::parse(yaml, "test.yaml"));
  Compose c = build_transforms(keep.back().root().at("transforms"), seed);
  keep.back().check_all_used();
  return c;
}

// A sample with one bright square at rows [y0,y1), cols [x0,x1), its mask and its box.
Sample square_sample(int64_t h, int64_t w, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
  Sample s;
  s.id = "square";
  s.image = torch::zeros({1, h, w});
  s.image.slice(1, y0, y1).slice(2, x0, x1).fill_(1.0);
  s.anatomy_masks = s.image.clone();
  s.boxes.push_back({0, static_cast<float>(x0), static_cast<float>(y0), static_cast<float>(x1), static_cast<float>(y1)});
  return s;
}

// Intensity-weighted centroid (x, y) in pixel-edge coordinates.
std::pair<double, double> centroid(const at::Tensor& img) {
  const at::Tensor m = img.sum(0).to(torch::kFloat64);
  const at::Tensor ys = torch::arange(m.size(0), torch::kFloat64).add(0.5).view({-1, 1});
  const at::Tensor xs = torch::arange(m.size(1), torch::kFloat64).add(0.5).view({1, -1});
  const double total = m.sum().item<double>();
  return {(m * xs).sum().item<double>() / total, (m * ys).sum().item<double>() / total};
}

TEST(Transforms, ResizeKeepsAspectAndPadsCentred) {
  Sample s = square_sample(100, 50, 20, 40, 10, 30);
  parse("transforms: [{name: resize, size: 64, pad_value: -1}]").apply(s, 0, 0, true);
  ASSERT_EQ(s.image.sizes(), (std::vector<int64_t>{1, 64, 64}));
  // 100x50 scales by 0.64 to 64x32, padded by 16 columns on each side.
  EXPECT_EQ(s.image.slice(2, 0, 16).eq(-1).all().item<bool>(), true);
  EXPECT_EQ(s.image.slice(2, 48, 64).eq(-1).all().item<bool>(), true);
  EXPECT_GT(s.image.slice(2, 16, 48).min().item<float>(), -0.01f);
  ASSERT_EQ(s.boxes.size(), 1u);
  EXPECT_FLOAT_EQ(s.boxes[0].x0, 10 * 0.64f + 16);
  EXPECT_FLOAT_EQ(s.boxes[0].x1, 30 * 0.64f + 16);
  EXPECT_FLOAT_EQ(s.boxes[0].y0, 20 * 0.64f);
  EXPECT_FLOAT_EQ(s.boxes[0].y1, 40 * 0.64f);
  // The mask stays binary and lands where the box says.
  EXPECT_TRUE((s.anatomy_masks.eq(0) | s.anatomy_masks.eq(1)).all().item<bool>());
  const auto [cx, cy] = centroid(s.anatomy_masks);
  EXPECT_NEAR(cx, (s.boxes[0].x0 + s.boxes[0].x1) / 2, 1.0);
  EXPECT_NEAR(cy, (s.boxes[0].y0 + s.boxes[0].y1) / 2, 1.0);
}

TEST(Transforms, AffineMovesImageMasksAndBoxesTogether) {
  const Compose c = parse("transforms: [{name: affine, degrees: 20, translate: 0.1, scale: [0.8, 1.2], shear: 5}]");
  for (int64_t index = 0; index < 12; ++index) {
    Sample s = square_sample(80, 96, 30, 42, 20, 32);
    c.apply(s, 3, index, true);
    ASSERT_EQ(s.boxes.size(), 1u);
    const auto [ix, iy] = centroid(s.image);
    const auto [mx, my] = centroid(s.anatomy_masks);
    // A square's centre maps to its transformed box's centre (affine maps keep centroids).
    EXPECT_NEAR(ix, (s.boxes[0].x0 + s.boxes[0].x1) / 2, 0.3) << index;
    EXPECT_NEAR(iy, (s.boxes[0].y0 + s.boxes[0].y1) / 2, 0.3) << index;
    EXPECT_NEAR(mx, ix, 1.0);
    EXPECT_NEAR(my, iy, 1.0);
    // Mass is kept up to the scale factor squared (at most 1.2^2 x 0.8^-2 apart).
    const double mass = s.image.sum().item<double>();
    EXPECT_GT(mass, 144 * 0.6);
    EXPECT_LT(mass, 144 * 1.5);
  }
  Sample e = square_sample(80, 96, 30, 42, 20, 32);
  const at::Tensor before = e.image.clone();
  c.apply(e, 3, 0, /*train=*/false);
  EXPECT_TRUE(e.image.equal(before)) << "evaluation form of affine is the identity";
}

TEST(Transforms, DeterministicInSeedEpochAndIndex) {
  const std::string yaml =
      "transforms: [{name: random_resized_crop, size: 48}, {name: affine, degrees: 10, translate: 0.05},"
      " {name: intensity, brightness: 0.2, contrast: 0.2, gamma: 0.2}]";
  const Compose a = parse(yaml, 7), b = parse(yaml, 7), other_seed = parse(yaml, 8);
  auto run = [&](const Compose& c, int64_t epoch, int64_t index) {
    Sample s = square_sample(64, 64, 10, 30, 35, 55);
    s.image = s.image * 0.5 + torch::linspace(0, 0.4, 64).view({1, 1, 64});
    c.apply(s, epoch, index, true);
    return s.image;
  };
  EXPECT_TRUE(run(a, 2, 5).equal(run(b, 2, 5)));
  EXPECT_FALSE(run(a, 2, 5).equal(run(a, 3, 5)));
  EXPECT_FALSE(run(a, 2, 5).equal(run(a, 2, 6)));
  EXPECT_FALSE(run(a, 2, 5).equal(run(other_seed, 2, 5)));
}

TEST(Transforms, NoHorizontalFlipUnlessConfigured) {
  // Reports name left and right: without an explicit hflip step a left-sided lesion stays left.
  const Compose c = parse(
      "transforms: [{name: random_resized_crop, size: 64, scale: [0.8, 1.0]}, {name: affine, degrees: 10, translate: "
      "0.05}, {name: intensity, brightness: 0.1}]");
  for (int64_t index = 0; index < 40; ++index) {
    Sample s = square_sample(64, 64, 28, 36, 6, 14);
    c.apply(s, 0, index, true);
    EXPECT_LT(centroid(s.image).first, 32.0) << index;
  }
  const Compose flip = parse("transforms: [{name: hflip, p: 1.0}]");
  Sample s = square_sample(64, 64, 28, 36, 6, 14);
  flip.apply(s, 0, 0, true);
  EXPECT_GT(centroid(s.image).first, 32.0);
  EXPECT_FLOAT_EQ(s.boxes[0].x0, 50);
  EXPECT_FLOAT_EQ(s.boxes[0].x1, 58);
}

TEST(Transforms, IntensityIsAGammaPowerLaw) {
  const Compose c = parse("transforms: [{name: intensity, gamma: 0.5}]");
  Sample s;
  s.image = torch::linspace(0.05, 0.95, 19).view({1, 1, 19});
  const at::Tensor in = s.image.clone();
  c.apply(s, 0, 4, true);
  const at::Tensor g = s.image.log() / in.log();  // the same exponent for every pixel
  EXPECT_LT((g - g.mean()).abs().max().item<float>(), 1e-4);
  EXPECT_GT(g.mean().item<float>(), 0.49f);
  EXPECT_LT(g.mean().item<float>(), 1.51f);
}

TEST(Transforms, RandomResizedCropStaysInsideAndEvaluatesCentred) {
  const Compose c = parse("transforms: [{name: random_resized_crop, size: [32, 64], scale: [0.3, 1.0]}]");
  for (int64_t index = 0; index < 20; ++index) {
    Sample s = square_sample(90, 120, 40, 50, 50, 70);
    c.apply(s, 1, index, true);
    EXPECT_EQ(s.image.sizes(), (std::vector<int64_t>{1, 32, 64}));
    for (const Box& b : s.boxes) {
      EXPECT_GE(b.x0, 0);
      EXPECT_LE(b.x1, 64);
      EXPECT_GE(b.y0, 0);
      EXPECT_LE(b.y1, 32);
    }
  }
  // Evaluation: the largest centred 1:2 crop of 90x120 is 60x120 from row 15, resized by 32/60.
  Sample s = square_sample(90, 120, 40, 50, 50, 70);
  c.apply(s, 1, 0, false);
  ASSERT_EQ(s.boxes.size(), 1u);
  EXPECT_NEAR(s.boxes[0].y0, (40 - 15) * 32.0 / 60.0, 1e-4);
  EXPECT_NEAR(s.boxes[0].x0, 50 * 64.0 / 120.0, 1e-4);
}

TEST(Transforms, ResampleReproducesLinearFieldsExactly) {
  // Linear interpolation is exact on linear functions of physical position.
  const std::vector<double> spacing = {2.5, 0.8, 0.7}, target = {1.5, 1.5, 1.5};
  const int64_t d = 12, h = 30, w = 40;
  auto field = [](double z, double y, double x) { return 0.3 * z - 0.2 * y + 0.1 * x + 5; };
  at::Tensor vol = torch::empty({1, d, h, w});
  auto acc = vol.accessor<float, 4>();
  for (int64_t k = 0; k < d; ++k)
    for (int64_t j = 0; j < h; ++j)
      for (int64_t i = 0; i < w; ++i) acc[0][k][j][i] = static_cast<float>(field(k * 2.5, j * 0.8, i * 0.7));
  const at::Tensor out = resample(vol, spacing, target);
  // Field of view kept: n' = round(n * s / t).
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{1, 20, 16, 19}));
  auto o = out.accessor<float, 4>();
  for (int64_t k = 0; k < 20; ++k)
    for (int64_t j = 0; j < 16; ++j)
      for (int64_t i = 0; i < 19; ++i) {
        const double z = std::min(k * 1.5, (d - 1) * 2.5), y = std::min(j * 1.5, (h - 1) * 0.8),
                     x = std::min(i * 1.5, (w - 1) * 0.7);
        ASSERT_NEAR(o[0][k][j][i], field(z, y, x), 1e-4) << k << "," << j << "," << i;
      }
  // Labels resample to labels.
  const at::Tensor labels = (vol > 5).to(torch::kFloat);
  const at::Tensor nearest = resample(labels, spacing, target, true);
  EXPECT_TRUE((nearest.eq(0) | nearest.eq(1)).all().item<bool>());
}

TEST(Transforms, ResampleReproducesMultilinearFieldsInEveryChannel) {
  // Trilinear interpolation is exact on multilinear functions (cross terms included), which
  // checks how the per-slice planes are blended, not only each axis alone. The two grids take
  // the two in-plane orders (blend rows first; gather columns first) and keep one axis as it is.
  auto field = [](double z, double y, double x) { return (1 + 0.3 * z) * (2 - 0.1 * y) * (1 + 0.05 * x) + 0.01 * x * z; };
  struct Grid {
    std::vector<int64_t> size;
    std::vector<double> spacing, target;
  };
  for (const Grid& g : {Grid{{9, 30, 40}, {2.5, 0.8, 0.7}, {1.5, 1.5, 1.5}}, Grid{{7, 8, 40}, {2.0, 3.0, 0.5}, {2.0, 1.5, 1.5}}}) {
    const int64_t d = g.size[0], h = g.size[1], w = g.size[2];
    at::Tensor vol = torch::empty({2, d, h, w});
    auto acc = vol.accessor<float, 4>();
    for (int64_t k = 0; k < d; ++k)
      for (int64_t j = 0; j < h; ++j)
        for (int64_t i = 0; i < w; ++i) {
          const double f = field(k * g.spacing[0], j * g.spacing[1], i * g.spacing[2]);
          acc[0][k][j][i] = static_cast<float>(f);
          acc[1][k][j][i] = static_cast<float>(-2 * f + 1);
        }
    const at::Tensor out = resample(vol, g.spacing, g.target);
    std::vector<int64_t> m = {2};
    for (int a = 0; a < 3; ++a)
      m.push_back(std::max<int64_t>(1, std::llround(static_cast<double>(g.size[a]) * g.spacing[a] / g.target[a])));
    ASSERT_EQ(out.sizes(), m);
    auto o = out.accessor<float, 4>();
    for (int64_t k = 0; k < m[1]; ++k)
      for (int64_t j = 0; j < m[2]; ++j)
        for (int64_t i = 0; i < m[3]; ++i) {
          const double f = field(std::min(k * g.target[0], (d - 1) * g.spacing[0]),
                                 std::min(j * g.target[1], (h - 1) * g.spacing[1]),
                                 std::min(i * g.target[2], (w - 1) * g.spacing[2]));
          ASSERT_NEAR(o[0][k][j][i], f, 2e-4 * std::abs(f) + 1e-4) << k << "," << j << "," << i;
          ASSERT_NEAR(o[1][k][j][i], -2 * f + 1, 4e-4 * std::abs(f) + 2e-4) << k << "," << j << "," << i;
        }
  }
}

TEST(Transforms, VolumePipelineWindowsCropsAndTracksSpacing) {
  Sample s;
  s.id = "ct";
  s.image = torch::full({1, 20, 50, 60}, -1000.f);
  s.image.slice(1, 5, 15).slice(2, 10, 40).slice(3, 10, 50).fill_(40.f);  // soft tissue block
  s.spacing = {3.0, 0.75, 0.75};
  s.anatomy_masks = (s.image > 0).to(torch::kFloat);
  const Compose c = parse(
      "transforms: [{name: resample, spacing: 1.5}, {name: window, windows: [lung, mediastinum, [-200, 200]]},"
      " {name: random_crop, size: [32, 24, 24]}]");
  c.apply(s, 0, 3, true);
  EXPECT_EQ(s.image.sizes(), (std::vector<int64_t>{3, 32, 24, 24}));
  EXPECT_EQ(s.anatomy_masks.sizes(), (std::vector<int64_t>{1, 32, 24, 24}));
  EXPECT_EQ(s.spacing, (std::vector<double>{1.5, 1.5, 1.5}));
  // Air is 0 in every window; soft tissue (40 HU) is 1390/1500, 200/400 and 240/400.
  const at::Tensor tissue = s.anatomy_masks[0] > 0.5;
  ASSERT_GT(tissue.sum().item<int64_t>(), 0);
  // Interior tissue voxels are exact; the boundary mixes tissue and air.
  EXPECT_NEAR(s.image[0].masked_select(tissue).max().item<float>(), 1390.0 / 1500.0, 1e-5);
  EXPECT_NEAR(s.image[1].masked_select(tissue).max().item<float>(), 200.0 / 400.0, 1e-5);
  EXPECT_NEAR(s.image[2].masked_select(tissue).max().item<float>(), 240.0 / 400.0, 1e-5);
  // Air (-1000 HU) is 350/1500 in the lung window and below the others.
  EXPECT_NEAR(s.image[0].min().item<float>(), 350.0 / 1500.0, 1e-5);
  EXPECT_EQ(s.image[1].min().item<float>(), 0.f);
}

TEST(Transforms, CropPadCentresAndPads) {
  const at::Tensor x = torch::arange(10, torch::kFloat).view({1, 10});
  EXPECT_TRUE(crop_pad(x, {-2}, {14}, -1).equal(
      torch::tensor({-1.f, -1.f, 0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f, 8.f, 9.f, -1.f, -1.f}).view({1, 14})));
  EXPECT_TRUE(crop_pad(x, {3}, {4}, -1).equal(torch::tensor({3.f, 4.f, 5.f, 6.f}).view({1, 4})));
  Sample s;
  s.id = "v";
  s.image = torch::ones({1, 4, 6, 8});
  parse("transforms: [{name: crop_pad, size: [6, 6, 6], pad_value: 0}]").apply(s, 0, 0, true);
  EXPECT_EQ(s.image.sizes(), (std::vector<int64_t>{1, 6, 6, 6}));
  EXPECT_EQ(s.image.sum().item<float>(), 4 * 6 * 6);
  EXPECT_EQ(s.image[0][0].sum().item<float>(), 0);
  EXPECT_EQ(s.image[0][1].sum().item<float>(), 36);
}

TEST(Transforms, ConfigErrorsNameTheKey) {
  EXPECT_ERROR_CONTAINS(parse("transforms: [{name: blur}]"), "unknown transform \"blur\"");
  EXPECT_ERROR_CONTAINS(parse("transforms: [{name: resize}]"), "transforms[0].size");
  EXPECT_ERROR_CONTAINS(parse("transforms: [{name: resize, size: 64, colour: 1}]"), "colour");
  EXPECT_ERROR_CONTAINS(parse("transforms: [{name: window, windows: [liver]}]"), "unknown CT window \"liver\"");
  EXPECT_ERROR_CONTAINS(parse("transforms: [{name: affine, scale: [1.2, 0.9]}]"), "transforms[0].scale");
  Sample s;
  s.id = "case7";
  s.image = torch::zeros({1, 4, 4, 4});
  EXPECT_ERROR_CONTAINS(parse("transforms: [{name: resample, spacing: 1.5}]").apply(s, 0, 0, true),
                        "sample case7 carries no voxel spacing");
  EXPECT_ERROR_CONTAINS(parse("transforms: [{name: affine, degrees: 3}]").apply(s, 0, 0, true),
                        "affine is 2D; sample case7 is a volume");
}

TEST(Transforms, DatasetConfigAppliesThemToTrainingOnly) {
  const core::Config config = core::Config::parse(
      "data: {name: synthetic_cxr, image_size: 64, train_size: 4, val_size: 4, test_size: 4,"
      " transforms: [{name: random_resized_crop, size: 40}, {name: affine, degrees: 10}]}",
      "test.yaml");
  const DatasetPtr train = build_dataset(config.root().at("data"), "train");
  const DatasetPtr test = build_dataset(config.root().at("data"), "test");
  EXPECT_EQ(train->get(0, 0).image.sizes(), (std::vector<int64_t>{1, 40, 40}));
  EXPECT_FALSE(train->get(0, 0).image.equal(train->get(0, 1).image));
  EXPECT_TRUE(test->get(0, 0).image.equal(test->get(0, 1).image));
}

}  // namespace
}  // namespace medvlp::data
