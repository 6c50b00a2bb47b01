#include "medvlp/losses/anatomy_loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "../testing_util.h"
#include "loss_inputs.h"
#include "medvlp/testing/gtest.h"
#include "medvlp/testing/loss_testing.h"

using namespace medvlp;
namespace kit = medvlp::testing;  // "testing" alone would clash with GoogleTest's namespace

namespace {

constexpr int64_t kC = 8, kD = 4, kA = 3;

losses::LossPtr build(const std::string& extra = "") {
  const std::string yaml = "{anatomies: [lung, heart, liver], token_dim: 8, embed_dim: 4, min_voxels: 4, temperature: 0.2" +
                           extra + "}";
  return losses::loss_registry().create("anatomy", core::Config::parse(yaml, "anat.yaml").root());
}

// B samples with 8x8 masks over a 4x4 token grid; sample-dependent presence and abnormality.
kit::NamedTensors inputs(int64_t B, uint64_t seed) {
  torch::manual_seed(seed);
  kit::NamedTensors in;
  in["image_tokens"] = torch::randn({B, 16, kC}, torch::kDouble);
  in["grid"] = torch::tensor({4, 4}, torch::kLong);
  at::Tensor masks = torch::zeros({B, kA, 8, 8}, torch::kDouble);
  for (int64_t i = 0; i < B; ++i) {
    masks[i][0].narrow(0, 0, 4).fill_(1);                         // lung: top half
    masks[i][1].narrow(0, 4, 3).narrow(1, 2, 3).fill_(1);         // heart: a 3x3 block (9 voxels)
    if (i % 3 != 0) masks[i][2].narrow(0, 6, 2).narrow(1, 0, 1 + i % 2).fill_(1);  // liver: 2 or 4 voxels
  }
  in["anatomy_masks"] = masks;
  in["anatomy_text"] = test_inputs::unit_rows(torch::randn({B, kA, kD}, torch::kDouble));
  at::Tensor abnormal = torch::zeros({B, kA}, torch::kDouble);
  abnormal[1][0] = 1;  // lung abnormal in one sample; heart never; liver in one
  abnormal[B - 1][2] = 1;
  in["anatomy_abnormal"] = abnormal;
  in["anatomy_text_hash"] = torch::randint(0, 3, {B, kA}, torch::kLong);
  in["anatomy_normal"] = 1 - abnormal;
  return in;
}

// The same computation by loops: presence by voxel count, mean of the tokens whose 2x2 pixel
// block touches the mask, the anatomy's linear projection, then CLIP on the present samples.
double naive(losses::LossImpl& loss, const kit::NamedTensors& in, double scale, std::map<std::string, double>* terms) {
  const at::Tensor tokens = in.at("image_tokens"), masks = in.at("anatomy_masks"), text = in.at("anatomy_text");
  const at::Tensor abnormal = in.at("anatomy_abnormal");
  const int64_t B = tokens.size(0);
  auto params = loss.named_parameters();
  const char* names[] = {"lung", "heart", "liver"};
  double total = 0;
  for (int64_t a = 0; a < kA; ++a) {
    std::vector<int64_t> rows;
    bool any_abnormal = false;
    for (int64_t i = 0; i < B; ++i) {
      if (masks[i][a].sum().item<double>() >= 4) {
        rows.push_back(i);
        any_abnormal = any_abnormal || abnormal[i][a].item<double>() > 0;
      }
    }
    if (!any_abnormal || rows.size() < 2) continue;
    const at::Tensor W = params["projections." + std::to_string(a) + ".weight"];
    const at::Tensor bias = params["projections." + std::to_string(a) + ".bias"];
    std::vector<at::Tensor> feats;
    for (int64_t i : rows) {
      at::Tensor sum = torch::zeros({kC}, torch::kDouble);
      double count = 0;
      for (int64_t ty = 0; ty < 4; ++ty)
        for (int64_t tx = 0; tx < 4; ++tx)
          if (masks[i][a].narrow(0, 2 * ty, 2).narrow(1, 2 * tx, 2).sum().item<double>() > 0) {
            sum += tokens[i][ty * 4 + tx];
            count += 1;
          }
      const at::Tensor f = W.matmul(sum / count) + bias;
      feats.push_back(f / f.norm());
    }
    const int64_t n = static_cast<int64_t>(rows.size());
    double term = 0;
    for (int dir = 0; dir < 2; ++dir)
      for (int64_t r = 0; r < n; ++r) {
        double z = 0;
        for (int64_t c = 0; c < n; ++c) {
          const at::Tensor& x = dir == 0 ? feats[r] : text[rows[r]][a];
          const at::Tensor& y = dir == 0 ? text[rows[c]][a] : feats[c];
          z += std::exp(scale * (x * y).sum().item<double>());
        }
        const double own = scale * (feats[r] * text[rows[r]][a]).sum().item<double>();
        term += (std::log(z) - own) / n / 2;
      }
    (*terms)[std::string("anatomy/") + names[a]] = term;
    total += term;
  }
  return total;
}

}  // namespace

TEST(AnatomyLoss, MatchesPerAnatomyContrastWrittenOut) {
  const auto in = inputs(6, 31);
  auto loss = build();
  loss->to(torch::kDouble);
  std::map<std::string, double> want;
  const auto e = kit::evaluate(*loss, in);
  const double total = naive(*loss, in, e.terms.at("logit_scale"), &want);
  EXPECT_NEAR(e.total, total, 1e-9);
  // The heart is never abnormal, so only lung and liver contribute; liver only where it has ≥ 4 voxels.
  ASSERT_EQ(want.size(), 2u);
  for (const auto& [name, value] : want) EXPECT_NEAR(e.terms.at(name), value, 1e-9) << name;
  EXPECT_EQ(e.terms.count("anatomy/heart"), 0u);
  EXPECT_EQ(e.terms.at("anatomies_used"), 2.0);
}

TEST(AnatomyLoss, MeanReductionAndFalseNegativeCalibrationCompose) {
  const auto in = inputs(6, 32);
  torch::manual_seed(0);
  auto sum = build();
  torch::manual_seed(0);
  auto mean = build(", reduction: mean");
  sum->to(torch::kDouble);
  mean->to(torch::kDouble);
  const auto es = kit::evaluate(*sum, in), em = kit::evaluate(*mean, in);
  EXPECT_NEAR(em.total, es.total / 2, 1e-12);
  torch::manual_seed(0);
  auto calibrated = build(", false_negative: {pairing: text}");
  calibrated->to(torch::kDouble);
  EXPECT_NE(kit::evaluate(*calibrated, in).total, es.total);
}

TEST(AnatomyLoss, PassesTheKitsChecks) {
  for (const std::string extra : {"", ", pooling: attention", ", false_negative: {pairing: text, handling: mask}"}) {
    auto loss = build(extra);
    const auto in = inputs(6, 33);
    const auto g = kit::gradient_check(*loss, in);
    EXPECT_TRUE(g) << extra << g.message;
    const auto p = kit::permutation_invariance(*loss, in, 8);
    EXPECT_TRUE(p) << extra << p.message;
  }
}

TEST(AnatomyLoss, KeepInsideDropsAnatomiesTheCropCut) {
  // fVLM keeps an organ only when none of its voxels lies on a face of the crop: the lung (top
  // half) and the liver (bottom rows) touch faces, the heart (rows 4-6, columns 2-4) does not.
  const auto in = inputs(3, 37);
  auto loss = std::dynamic_pointer_cast<losses::AnatomyLossImpl>(build(", keep: inside"));
  ASSERT_TRUE(loss);
  loss->to(torch::kDouble);
  const auto [encoded, batch] = kit::bind_inputs(in);
  const at::Tensor present = loss->anatomy_features(encoded, batch).second;
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_FALSE(present[i][0].item<bool>()) << i;
    EXPECT_TRUE(present[i][1].item<bool>()) << i;
    EXPECT_FALSE(present[i][2].item<bool>()) << i;
  }
  // The same masks in 3D: a block in the middle is inside, one on the last slice is not.
  kit::NamedTensors in3;
  in3["image_tokens"] = torch::randn({1, 8, kC}, torch::kDouble);
  in3["grid"] = torch::tensor({2, 2, 2}, torch::kLong);
  at::Tensor m = torch::zeros({1, kA, 4, 4, 4}, torch::kDouble);
  m[0][0].narrow(0, 1, 2).narrow(1, 1, 2).narrow(2, 1, 2).fill_(1);
  m[0][1].narrow(0, 3, 1).narrow(1, 1, 2).narrow(2, 1, 2).fill_(1);
  in3["anatomy_masks"] = m;
  in3["anatomy_text"] = test_inputs::unit_rows(torch::randn({1, kA, kD}, torch::kDouble));
  in3["anatomy_abnormal"] = torch::ones({1, kA}, torch::kDouble);
  const auto [e3, b3] = kit::bind_inputs(in3);
  const at::Tensor p3 = loss->anatomy_features(e3, b3).second;
  EXPECT_TRUE(p3[0][0].item<bool>());
  EXPECT_FALSE(p3[0][1].item<bool>());
  EXPECT_FALSE(p3[0][2].item<bool>());  // empty
}

TEST(AnatomyLoss, WorksOnThreeDimensionalMasks) {
  torch::manual_seed(34);
  kit::NamedTensors in;
  in["image_tokens"] = torch::randn({4, 8, kC}, torch::kDouble);
  in["grid"] = torch::tensor({2, 2, 2}, torch::kLong);
  in["anatomy_masks"] = torch::ones({4, kA, 4, 4, 4}, torch::kDouble);
  in["anatomy_text"] = test_inputs::unit_rows(torch::randn({4, kA, kD}, torch::kDouble));
  in["anatomy_abnormal"] = torch::eye(4, kA, torch::kDouble);
  auto loss = build();
  const auto g = kit::gradient_check(*loss, in);
  EXPECT_TRUE(g) << g.message;
}

TEST(AnatomyLoss, ExplainsBadConfigAndInputs) {
  EXPECT_ERROR_CONTAINS(losses::loss_registry().create("anatomy", core::Config::parse("{token_dim: 8, embed_dim: 4}", "a.yaml").root()),
                        "anatomies: required");
  auto in = inputs(4, 35);
  in["grid"] = torch::tensor({3, 4}, torch::kLong);
  EXPECT_ERROR_CONTAINS(kit::evaluate(*build(), in), "loss anatomy: Encoded.grid [3, 4] does not describe the 16 image tokens");
  in = inputs(4, 35);
  in.erase("anatomy_abnormal");
  EXPECT_ERROR_CONTAINS(kit::evaluate(*build(), in), "loss anatomy: needs Batch.anatomy_abnormal");
}

TEST(AnatomyLoss, TwoRanksEqualOneRank) {
  kit::RankOptions o;
  o.child_args = kit::gtest_rerun_args();
  for (const std::string extra : {"", ", pooling: attention, false_negative: {pairing: text}"}) {
    const auto r = kit::rank_equivalence([&] { return build(extra); }, inputs(6, 36), o);
    EXPECT_TRUE(r) << extra << r.message;
  }
}
