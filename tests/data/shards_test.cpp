// Shards: what build-shards writes reads back as the samples it came from; broken folders are refused.
#include "medvlp/data/shards.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../testing_util.h"
#include "medvlp/core/config.h"
#include "medvlp/data/build.h"
#include "medvlp/data/synthetic_cxr.h"
#include "medvlp/data/transforms.h"

namespace medvlp::data {
namespace {

TEST(Shards, RoundTripVolumesWithMasksSpacingAndReports) {
  testing_util::TempDir dir;
  const core::Config config = core::Config::parse(
      "data: {name: synthetic_ct, size: [10, 16, 16], train_size: 7, val_size: 2, test_size: 2,"
      " transforms: [{name: window, windows: [lung, abdomen]}, {name: crop_pad, size: [8, 16, 16]}]}",
      "test.yaml");
  const DatasetPtr source = build_dataset(config.root().at("data"), "train", false);
  ShardWriteOptions o;
  o.samples_per_shard = 3;  // three shards, the last one short
  o.float16 = false;
  EXPECT_EQ(write_shards(*source, dir.path() + "/train", o), 7);
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/train/shard_00002.safetensors"));
  const ShardDataset shards(dir.path() + "/train");
  ASSERT_EQ(shards.size(), 7);
  EXPECT_EQ(shards.findings(), source->findings());
  EXPECT_EQ(shards.anatomies(), source->anatomies());
  for (int64_t i = 0; i < 7; ++i) {
    const Sample a = source->get(i, 0), b = shards.get(i, 0);
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(source->patient_id(i), a.patient_id);  // without loading: phantom, through the transforms
    EXPECT_EQ(shards.patient_id(i), b.patient_id);
    EXPECT_EQ(a.report, b.report);
    EXPECT_EQ(a.spacing, b.spacing);
    EXPECT_TRUE(a.image.equal(b.image)) << i;
    EXPECT_TRUE(a.anatomy_masks.equal(b.anatomy_masks)) << i;
    EXPECT_TRUE(a.labels.equal(b.labels));
    EXPECT_TRUE(a.truth.equal(b.truth));
  }
  // float16 storage: half the bytes, values within half-precision rounding of [0,1] data.
  o.float16 = true;
  write_shards(*source, dir.path() + "/half", o);
  const ShardDataset half(dir.path() + "/half");
  EXPECT_LT((half.get(4, 0).image - source->get(4, 0).image).abs().max().item<float>(), 5e-4);
  // The test split's lesion masks (localization targets) are stored too; the training split has none.
  EXPECT_FALSE(shards.get(0, 0).lesion_masks.defined());
  const DatasetPtr test = build_dataset(config.root().at("data"), "test", false);
  write_shards(*test, dir.path() + "/test", o);
  const ShardDataset test_shards(dir.path() + "/test");
  for (int64_t i = 0; i < 2; ++i) {
    const Sample a = test->get(i, 0), b = test_shards.get(i, 0);
    ASSERT_TRUE(a.lesion_masks.defined() && b.lesion_masks.defined());
    EXPECT_EQ(b.lesion_masks.sizes(), (std::vector<int64_t>{8, 8, 16, 16}));
    EXPECT_TRUE(a.lesion_masks.equal(b.lesion_masks)) << i;
  }
}

TEST(Shards, BoxesAndTheDatasetConfig) {
  testing_util::TempDir dir;
  SyntheticCxrOptions o;
  o.image_size = 48;
  o.train_size = 40;
  const SyntheticCxrDataset cxr(o, Split::kTrain);
  write_shards(cxr, dir.path() + "/train");
  const core::Config config = core::Config::parse(
      "data: {name: shards, dir: " + dir.path() + ", transforms: [{name: random_resized_crop, size: 32}]}", "t.yaml");
  const DatasetPtr ds = build_dataset(config.root().at("data"), "train");
  ASSERT_EQ(ds->size(), 40);
  int64_t with_boxes = 0;
  for (int64_t i = 0; i < 40; ++i) {
    const Sample a = cxr.get(i, 0);
    const auto* shards = dynamic_cast<const TransformedDataset*>(ds.get());
    ASSERT_NE(shards, nullptr);
    const Sample b = shards->base()->get(i, 0);
    ASSERT_EQ(a.boxes.size(), b.boxes.size());
    for (size_t k = 0; k < a.boxes.size(); ++k) {
      EXPECT_EQ(a.boxes[k].finding, b.boxes[k].finding);
      EXPECT_FLOAT_EQ(a.boxes[k].x1, b.boxes[k].x1);
    }
    with_boxes += !a.boxes.empty();
  }
  EXPECT_GT(with_boxes, 0);
  EXPECT_EQ(ds->get(3, 0).image.sizes(), (std::vector<int64_t>{1, 32, 32}));
}

TEST(Shards, UnfinishedOrDamagedFoldersAreRefused) {
  testing_util::TempDir dir;
  SyntheticCxrOptions o;
  o.image_size = 32;
  o.train_size = 5;
  write_shards(SyntheticCxrDataset(o, Split::kTrain), dir.path() + "/s");
  std::filesystem::copy(dir.path() + "/s", dir.path() + "/cut", std::filesystem::copy_options::recursive);
  std::filesystem::remove(dir.path() + "/s/index.json");
  EXPECT_ERROR_CONTAINS(ShardDataset(dir.path() + "/s"), "build-shards` did not finish");
  const std::string shard = dir.path() + "/cut/shard_00000.safetensors";
  std::filesystem::resize_file(shard, std::filesystem::file_size(shard) / 2);
  EXPECT_ERROR_CONTAINS(ShardDataset(dir.path() + "/cut"), "shard_00000.safetensors");
  // Mixed image shapes cannot be stacked: the message says what to add.
  struct Mixed : Dataset {
    int64_t size() const override { return 2; }
    Sample get(int64_t i, int64_t) const override {
      Sample s;
      s.id = "m" + std::to_string(i);
      s.image = torch::zeros({1, 8, 8 + i});
      s.labels = torch::zeros({1});
      return s;
    }
    std::vector<std::string> findings() const override { return {"x"}; }
  };
  EXPECT_ERROR_CONTAINS(write_shards(Mixed(), dir.path() + "/mixed"), "sample m1 has image shape");
}

}  // namespace
}  // namespace medvlp::data
