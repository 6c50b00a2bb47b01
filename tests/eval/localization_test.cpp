// Localization metrics on constructed maps with known answers (2D and 3D), upsampling against
// torch's interpolate and a closed form, and maps of a real model end to end on 2D boxes and 3D
// lesion masks (with overlays).
#include "medvlp/eval/localization.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "../testing_util.h"
#include "medvlp/core/config.h"
#include "medvlp/data/sample.h"
#include "medvlp/io/image.h"
#include "medvlp/train/experiment.h"

using namespace medvlp;

namespace {
const std::vector<double> kThresholds{0.1, 0.2, 0.3, 0.4, 0.5};
}

TEST(Localization, AMapEqualToTheBoxScoresPerfectly) {
  const at::Tensor target = eval::box_mask({{2, 4.f, 6.f, 10.f, 9.f}, {1, 0.f, 0.f, 3.f, 3.f}}, 2, 16, 20);
  EXPECT_EQ(target.sum().item<double>(), 6 * 3);  // x 4..9, y 6..8; the other finding's box left out
  const eval::MapScores s = eval::score_map(target, target, kThresholds);
  EXPECT_DOUBLE_EQ(s.pointing, 1.0);
  for (size_t j = 0; j < kThresholds.size(); ++j) {
    EXPECT_DOUBLE_EQ(s.iou[j], 1.0);
    EXPECT_DOUBLE_EQ(s.dice[j], 1.0);
  }
  EXPECT_EQ(s.cnr, 0.0);  // both regions flat: no noise, defined as 0
}

TEST(Localization, AFlatMapScoresChance) {
  const at::Tensor target = eval::box_mask({{0, 0.f, 0.f, 5.f, 4.f}}, 0, 10, 10);  // 20 of 100 pixels
  const eval::MapScores s = eval::score_map(torch::full({10, 10}, 0.7f), target, kThresholds);
  EXPECT_DOUBLE_EQ(s.pointing, 0.2);  // every pixel is the peak: the box's area fraction
  EXPECT_DOUBLE_EQ(s.iou[0], 0.2);     // everything predicted: IoU = box / image
  EXPECT_NEAR(s.dice[0], 2 * 20.0 / 120.0, 1e-12);
  EXPECT_EQ(s.cnr, 0.0);
}

TEST(Localization, ClosedFormsOnAShiftedBox) {
  // Map = a 4x4 square of ones at (2..5, 2..5); target = 4x4 at (4..7, 2..5): overlap 2x4 = 8.
  at::Tensor map = torch::zeros({10, 10});
  map.slice(0, 2, 6).slice(1, 2, 6).fill_(1.0f);
  const at::Tensor target = eval::box_mask({{0, 4.f, 2.f, 8.f, 6.f}}, 0, 10, 10);
  const eval::MapScores s = eval::score_map(map, target, {0.5});
  EXPECT_DOUBLE_EQ(s.iou[0], 8.0 / 24.0);
  EXPECT_DOUBLE_EQ(s.dice[0], 16.0 / 32.0);
  EXPECT_DOUBLE_EQ(s.pointing, 8.0 / 16.0);
  // CNR: inside mean .5 var .25; outside 8 ones of 84: mean 8/84, var m(1-m).
  const double mo = 8.0 / 84.0;
  EXPECT_NEAR(s.cnr, (0.5 - mo) / std::sqrt(0.25 + mo * (1 - mo)), 1e-9);
  EXPECT_ERROR_CONTAINS(eval::score_map(map, torch::zeros({10, 10}), {0.5}), "the target region is empty");
}

TEST(Localization, UpsamplingMatchesTorchInterpolateThenMinMax) {
  torch::manual_seed(3);
  const at::Tensor maps = torch::randn({3, 7, 7});
  maps[2].fill_(0.25);  // a flat map
  const at::Tensor up = eval::upsample_maps(maps, 512, 512);
  const at::Tensor ref = torch::nn::functional::interpolate(
      maps.unsqueeze(0), torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{512, 512}).mode(torch::kBilinear).align_corners(false))[0];
  for (int64_t k = 0; k < 2; ++k) {
    const at::Tensor r = (ref[k] - ref[k].min()) / (ref[k].max() - ref[k].min());
    EXPECT_LE((up[k] - r).abs().max().item<double>(), 1e-6);
    EXPECT_FLOAT_EQ(up[k].max().item<float>(), 1.0f);
  }
  EXPECT_EQ(up[2].abs().max().item<float>(), 0.0f);
}

TEST(Localization, FusedScoringEqualsUpsampleThenScore) {
  // score_grid_maps upsamples itself; the reference goes through torch's interpolate.
  torch::manual_seed(6);
  const at::Tensor maps = torch::randn({4, 14, 14});
  maps[3].fill_(2.0);
  std::vector<at::Tensor> targets{eval::box_mask({{0, 100.f, 40.f, 260.f, 300.f}}, 0, 320, 352), at::Tensor(),
                                  eval::box_mask({{0, 0.f, 0.f, 30.f, 20.f}, {0, 300.f, 200.f, 352.f, 320.f}}, 0, 320, 352),
                                  eval::box_mask({{0, 5.f, 5.f, 50.f, 50.f}}, 0, 320, 352)};
  const auto fused = eval::score_grid_maps(maps, targets, 320, 352, kThresholds);
  const at::Tensor up = eval::upsample_maps(maps, 320, 352);
  for (int64_t k : {0, 2, 3}) {
    const auto ref = eval::score_map(up[k], targets[static_cast<size_t>(k)], kThresholds);
    EXPECT_NEAR(fused[k].pointing, ref.pointing, 1e-12) << k;
    EXPECT_NEAR(fused[k].cnr, ref.cnr, 1e-4) << k;
    for (size_t j = 0; j < kThresholds.size(); ++j) {
      // A pixel within float rounding of a threshold may fall on either side: allow a few.
      EXPECT_NEAR(fused[k].iou[j], ref.iou[j], 2e-4) << k << " " << j;
      EXPECT_NEAR(fused[k].dice[j], ref.dice[j], 2e-4) << k << " " << j;
    }
  }
  EXPECT_GT(fused[0].iou[0], 0.0);
}

namespace {
// A tiny model with local heads on 32 px phantoms, untrained (train.steps is never run).
const char* kLocConfig = R"(
seed: 1
device: cpu
data: {name: synthetic_cxr, image_size: 32, train_size: 16, val_size: 4, test_size: 24, workers: 1}
text: {vocab_size: 120, train_reports: 16, max_len: 24}
model:
  embed_dim: 16
  local_dim: 8
  image: {name: small_cnn, channels: [8, 16]}
  text: {name: small_transformer, dim: 16, layers: 1, heads: 2, ff_dim: 32, max_len: 24}
losses: [{name: clip}]
train: {steps: 1, batch_size: 8}
eval: {bootstrap: 0, localization: {overlays: 2}}
)";
}  // namespace

TEST(Localization, EvaluatesPhantomBoxesAndWritesOverlays) {
  testing_util::TempDir dir;
  train::Experiment e = train::Experiment::build(core::Config::parse(kLocConfig, "loc.yaml"), dir.path() + "/run");
  const nlohmann::json r = e.evaluate(nullptr, dir.path() + "/maps");
  ASSERT_TRUE(r.contains("localization")) << r.dump();
  const auto& loc = r["localization"];
  EXPECT_EQ(loc["maps"], "tokens");  // the model has local heads
  EXPECT_GT(loc["cases"].get<int64_t>(), 0);
  ASSERT_FALSE(loc["findings"].empty());
  for (auto it = loc["findings"].begin(); it != loc["findings"].end(); ++it) {
    EXPECT_GE((*it)["pointing_game"].get<double>(), 0.0);
    EXPECT_LE((*it)["pointing_game"].get<double>(), 1.0);
    EXPECT_EQ((*it)["iou"].size(), 5u);
  }
  int pngs = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir.path() + "/maps")) pngs += f.path().extension() == ".png";
  EXPECT_GT(pngs, 0);
  EXPECT_LE(pngs, 2 * static_cast<int>(e.eval_set->findings().size()));
  // Embedding maps for models without local heads; tokens maps need equal widths.
  core::Config c = core::Config::parse(kLocConfig, "loc.yaml");
  c.set("model.local_dim=0");
  c.set("model.image.channels=[8, 12]");
  train::Experiment g = train::Experiment::build(c, dir.path() + "/run2");
  EXPECT_EQ(g.evaluate()["localization"]["maps"], "embedding");
  c.set("eval.localization.maps=tokens");
  train::Experiment t = train::Experiment::build(c, dir.path() + "/run3");
  EXPECT_ERROR_CONTAINS(t.evaluate(), "are 12 and 16 wide; set model.local_dim or use maps: embedding");
}

// Tokens maps average cos(word, patch) over the prompt's words, leaving out the begin/end specials
// (GLoRIA and AFLoc drop [CLS]/[SEP]): checked pair by pair against the features forward() returns,
// whose word_mask keeps the same tokens for the word-level losses.
TEST(Localization, TokenMapsAverageTheWordsWithoutTheSpecials) {
  testing_util::TempDir dir;
  train::Experiment e = train::Experiment::build(core::Config::parse(kLocConfig, "loc.yaml"), dir.path() + "/run");
  torch::NoGradGuard no_grad;
  e.model->eval();
  std::vector<data::Sample> samples = {e.eval_set->get(0, 0), e.eval_set->get(1, 0), e.eval_set->get(2, 0)};
  data::Batch batch = data::collate(samples);
  const auto tokens = e.tokenizer->encode({"pleural effusion in the left lung.", "no edema.", "x"}, 24);
  batch.token_ids = tokens.ids;
  batch.attention_mask = tokens.mask;
  const models::Encoded enc = e.model->forward(batch);
  std::vector<int64_t> grid;
  const at::Tensor sim = e.model->patch_similarity(batch.images, tokens.ids, tokens.mask, "tokens", &grid);  // [B,T,N]
  const at::Tensor patches = enc.image_tokens / enc.image_tokens.norm(2, -1, true);
  const at::Tensor words = enc.text_tokens / enc.text_tokens.norm(2, -1, true);
  for (int64_t t = 0; t < 3; ++t) {
    const int64_t len = tokens.mask[t].sum().item<int64_t>();
    // "x" may be a single piece between the specials; a text of two tokens or fewer keeps them all.
    const int64_t first = len > 2 ? 1 : 0, last = len > 2 ? len - 2 : len - 1;
    // Encoded.word_mask, which the word-level losses align, marks the same tokens: the begin/end
    // ids the tokenizer wrote are out of it.
    EXPECT_EQ(tokens.ids[t][0].item<int64_t>(), e.tokenizer->begin_id());
    EXPECT_EQ(tokens.ids[t][len - 1].item<int64_t>(), e.tokenizer->end_id());
    const at::Tensor want_mask = torch::zeros({tokens.ids.size(1)}).index_fill_(0, torch::arange(first, last + 1), 1.0);
    EXPECT_TRUE(torch::equal(enc.word_mask[t], want_mask)) << "text " << t << ": " << enc.word_mask[t];
    for (int64_t b = 0; b < 3; ++b) {
      const at::Tensor want = patches[b].matmul(words[t].slice(0, first, last + 1).t()).mean(1);  // [N]
      EXPECT_TRUE(torch::allclose(sim[b][t], want, 1e-5, 1e-6)) << "image " << b << " text " << t;
    }
  }
}

// Volumes: score_map is shape-agnostic (a map equal to the target scores 1, a flat one chance), and
// trilinear upsampling with half-voxel centres has a closed form on a ramp along depth.
TEST(Localization, ScoresVolumesAndUpsamplesTrilinearly) {
  at::Tensor target = torch::zeros({6, 8, 8}, torch::kUInt8);
  target.slice(0, 1, 3).slice(1, 2, 5).slice(2, 4, 8).fill_(1);  // 2 x 3 x 4 = 24 of 384 voxels
  const eval::MapScores exact = eval::score_map(target.to(torch::kFloat), target, kThresholds);
  EXPECT_DOUBLE_EQ(exact.pointing, 1.0);
  for (double v : exact.iou) EXPECT_DOUBLE_EQ(v, 1.0);
  const eval::MapScores flat = eval::score_map(torch::full({6, 8, 8}, 0.3f), target, kThresholds);
  EXPECT_DOUBLE_EQ(flat.pointing, 24.0 / 384.0);
  // Depth ramp 0, 1 over two slices, upsampled to 4: source coordinates (z + 0.5) / 2 - 0.5 clamped
  // to [0, 1] give 0, 0.25, 0.75, 1, already spanning [0, 1].
  const at::Tensor ramp = torch::tensor({0.f, 1.f}).view({1, 2, 1, 1}).expand({1, 2, 3, 3}).contiguous();
  const at::Tensor up = eval::upsample_maps(ramp, {4, 6, 5});
  ASSERT_EQ(up.sizes(), (std::vector<int64_t>{1, 4, 6, 5}));
  const std::vector<float> want = {0.f, 0.25f, 0.75f, 1.f};
  for (int64_t z = 0; z < 4; ++z) EXPECT_TRUE(torch::allclose(up[0][z], torch::full({6, 5}, want[z]))) << z;
  EXPECT_ERROR_CONTAINS(eval::upsample_maps(ramp, {4, 6}), "a size of as many axes");
}

namespace {
// A tiny 3D ViT on 16 x 32 x 32 CT phantoms, untrained; CT phantoms' test split carries lesion masks.
const char* kCtLocConfig = R"(
seed: 2
device: cpu
data:
  name: synthetic_ct
  size: [16, 32, 32]
  train_size: 8
  val_size: 2
  test_size: 12
  workers: 1
  image_mean: 0.4
  image_std: 0.35
  transforms: [{name: window, windows: [lung, abdomen]}]
text: {vocab_size: 120, train_reports: 8, max_len: 32}
model:
  embed_dim: 16
  image: {name: vit3d, image_size: [16, 32, 32], patch_size: [8, 8, 8], in_channels: 2, dim: 16, depth: 1, heads: 2}
  text: {name: small_transformer, dim: 16, layers: 1, heads: 2, ff_dim: 32, max_len: 32}
losses: [{name: clip}]
train: {steps: 1, batch_size: 4}
eval:
  bootstrap: 0
  localization: {overlays: 1}
  prompts:
    hepatic lesion: {positive: [a hypodense lesion in the liver.], negative: [the liver is unremarkable.]}
    kidney cyst: {positive: [a simple cyst in the right kidney.], negative: [the kidneys are unremarkable.]}
)";
}  // namespace

// 3D localization end to end: every test case with a prompted finding is scored against its lesion
// mask (counted from the phantoms' ground truth), and the overlays show an axial slice.
TEST(Localization, EvaluatesCtPhantomLesionMasksIn3D) {
  testing_util::TempDir dir;
  train::Experiment e = train::Experiment::build(core::Config::parse(kCtLocConfig, "ct_loc.yaml"), dir.path() + "/run");
  const nlohmann::json r = e.evaluate(nullptr, dir.path() + "/maps");
  ASSERT_TRUE(r.contains("localization")) << r.dump();
  const auto& loc = r["localization"];
  EXPECT_EQ(loc["maps"], "embedding");
  // The configured prompts add to "<finding>." prompts for the findings they leave out.
  std::vector<std::string> prompted;
  for (auto it = loc["findings"].begin(); it != loc["findings"].end(); ++it) prompted.push_back(it.key());
  EXPECT_GE(prompted.size(), 6u);
  const auto& names = e.eval_set->findings();
  int64_t cases = 0;
  std::map<std::string, int64_t> per;
  for (int64_t i = 0; i < e.eval_set->size(); ++i) {
    const data::Sample s = e.eval_set->get(i, 0);
    bool any = false;
    for (const auto& f : prompted) {
      const int64_t k = std::find(names.begin(), names.end(), f) - names.begin();
      if (s.truth[k].item<float>() > 0.5f) ++per[f], any = true;
    }
    cases += any;
  }
  ASSERT_GT(cases, 0);
  EXPECT_EQ(loc["cases"].get<int64_t>(), cases);
  for (const auto& [f, n] : per) {
    ASSERT_TRUE(loc["findings"].contains(f)) << loc.dump();
    EXPECT_EQ(loc["findings"][f]["cases"].get<int64_t>(), n) << f;
    const double p = loc["findings"][f]["pointing_game"].get<double>();
    EXPECT_GE(p, 0.0);
    EXPECT_LE(p, 1.0);
  }
  int pngs = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir.path() + "/maps")) {
    if (f.path().extension() != ".png") continue;
    ++pngs;
    const at::Tensor png = io::read_image(f.path().string());
    EXPECT_EQ(png.size(1), 256) << f.path();  // one 32 x 32 axial slice, enlarged 8 times
  }
  EXPECT_EQ(pngs, static_cast<int>(per.size()));
}
