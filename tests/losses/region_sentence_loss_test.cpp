// ASG's anatomical region-sentence alignment: the regions of one image against that image's own
// anatomy texts, checked against ASG's main.py computation written out voxel by voxel.
#include "medvlp/losses/region_sentence_loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "../testing_util.h"
#include "loss_inputs.h"
#include "medvlp/testing/gtest.h"
#include "medvlp/testing/loss_testing.h"

using namespace medvlp;
namespace kit = medvlp::testing;

namespace {

constexpr int64_t kC = 6, kD = 4, kA = 4;

losses::LossPtr build(const std::string& extra = "") {
  const std::string yaml = "{anatomies: [right lung, left lung, heart, spine], token_dim: 6, embed_dim: 4, min_voxels: 3" +
                           extra + "}";
  return losses::loss_registry().create("region_sentence", core::Config::parse(yaml, "rs.yaml").root());
}

// B images with 8x8 masks over a 4x4 token grid: regions cover cells partly (RoIAlign's averaging
// matters), the heart is absent from every third image, the spine has 2 voxels (under min_voxels).
kit::NamedTensors inputs(int64_t B, uint64_t seed) {
  torch::manual_seed(seed);
  kit::NamedTensors in;
  in["image_tokens"] = torch::randn({B, 16, kC}, torch::kDouble);
  in["grid"] = torch::tensor({4, 4}, torch::kLong);
  at::Tensor masks = torch::zeros({B, kA, 8, 8}, torch::kDouble);
  for (int64_t i = 0; i < B; ++i) {
    masks[i][0].narrow(0, 0, 5).narrow(1, 0, 3 + i % 2).fill_(1);
    masks[i][1].narrow(0, 1, 5).narrow(1, 5, 3).fill_(1);
    if (i % 3 != 0) masks[i][2].narrow(0, 4, 3).narrow(1, 3, 3).fill_(1);
    masks[i][3].narrow(0, 7, 1).narrow(1, 3, 2).fill_(1);
  }
  in["anatomy_masks"] = masks;
  in["anatomy_text"] = test_inputs::unit_rows(torch::randn({B, kA, kD}, torch::kDouble));
  // Text states: described (own sentences), normal (template), or neither (an empty report).
  at::Tensor described = torch::zeros({B, kA}, torch::kDouble), normal = torch::zeros({B, kA}, torch::kDouble);
  for (int64_t i = 0; i < B; ++i)
    for (int64_t a = 0; a < kA; ++a) {
      const int64_t k = (i * 3 + a) % 5;
      if (i == B - 1) continue;  // the last report is empty
      (k < 2 ? described : normal)[i][a] = 1;
    }
  in["anatomy_described"] = described;
  in["anatomy_normal"] = normal;
  return in;
}

// ASG main.py's loss_arsa with a voxel-level RoIAlign: a region's feature is the mean, over its
// voxels, of the normalized projected token of the voxel's cell; scores are feature · sentence /
// 0.07 over the image's valid regions; cross-entropy both ways, each averaged over all valid rows.
double asg_written_out(losses::LossImpl& loss, const kit::NamedTensors& in, bool described_only, double scale,
                       double* rows) {
  const at::Tensor tokens = in.at("image_tokens"), masks = in.at("anatomy_masks"), text = in.at("anatomy_text");
  const at::Tensor described = in.at("anatomy_described"), normal = in.at("anatomy_normal");
  auto params = loss.named_parameters();
  const at::Tensor W = params["projection.weight"], bias = params["projection.bias"];
  const int64_t B = tokens.size(0);
  double sum_i2t = 0, sum_t2i = 0, count = 0;
  for (int64_t i = 0; i < B; ++i) {
    std::vector<int64_t> valid;
    std::vector<at::Tensor> feats;
    for (int64_t a = 0; a < kA; ++a) {
      const bool stated = described[i][a].item<double>() > 0 || (!described_only && normal[i][a].item<double>() > 0);
      if (!stated || masks[i][a].sum().item<double>() < 3) continue;
      at::Tensor f = torch::zeros({kD}, torch::kDouble);
      double voxels = 0;
      for (int64_t y = 0; y < 8; ++y)
        for (int64_t x = 0; x < 8; ++x) {
          if (masks[i][a][y][x].item<double>() < 0.5) continue;
          const at::Tensor p = W.matmul(tokens[i][(y / 2) * 4 + x / 2]) + bias;
          f += p / p.norm();
          voxels += 1;
        }
      valid.push_back(a);
      feats.push_back(f / voxels);
    }
    const auto n = static_cast<int64_t>(valid.size());
    for (int64_t r = 0; r < n; ++r) {
      double z_row = 0, z_col = 0;
      for (int64_t c = 0; c < n; ++c) {
        z_row += std::exp((feats[r] * text[i][valid[c]]).sum().item<double>() * scale);
        z_col += std::exp((feats[c] * text[i][valid[r]]).sum().item<double>() * scale);
      }
      const double own = (feats[r] * text[i][valid[r]]).sum().item<double>() * scale;
      sum_i2t += std::log(z_row) - own;
      sum_t2i += std::log(z_col) - own;
      count += 1;
    }
  }
  *rows = count;
  return (sum_i2t + sum_t2i) / count;
}

}  // namespace

TEST(RegionSentenceLoss, MatchesAsgsAlignmentWrittenOut) {
  for (const bool described_only : {false, true}) {
    const auto in = inputs(6, 41);
    auto loss = build(described_only ? ", regions: described" : "");
    loss->to(torch::kDouble);
    const auto e = kit::evaluate(*loss, in);
    double rows = 0;
    // ASG's fixed temperature 0.07 (stored as θ = log(1/0.07) in float32).
    EXPECT_NEAR(e.terms.at("logit_scale"), 1 / 0.07, 1e-5);
    const double want = asg_written_out(*loss, in, described_only, e.terms.at("logit_scale"), &rows);
    EXPECT_NEAR(e.total, want, 1e-9) << (described_only ? "described" : "present");
    EXPECT_EQ(e.terms.at("regions"), rows);
  }
}

TEST(RegionSentenceLoss, PassesTheKitsChecks) {
  auto loss = build();
  const auto in = inputs(6, 42);
  const auto g = kit::gradient_check(*loss, in);
  EXPECT_TRUE(g) << g.message;
  const auto p = kit::permutation_invariance(*loss, in, 8);
  EXPECT_TRUE(p) << p.message;
}

TEST(RegionSentenceLoss, NoValidRegionGivesZeroWithAGraph) {
  auto in = inputs(4, 43);
  in["anatomy_described"] = torch::zeros({4, kA}, torch::kDouble);
  in["anatomy_normal"] = torch::zeros({4, kA}, torch::kDouble);
  auto loss = build();
  loss->to(torch::kDouble);
  const auto e = kit::evaluate(*loss, in);
  EXPECT_EQ(e.total, 0.0);
  EXPECT_EQ(e.terms.at("regions"), 0.0);
}

TEST(RegionSentenceLoss, ExplainsBadConfigAndInputs) {
  EXPECT_ERROR_CONTAINS(losses::loss_registry().create("region_sentence", core::Config::parse("{token_dim: 6, embed_dim: 4}", "r.yaml").root()),
                        "anatomies: required");
  EXPECT_ERROR_CONTAINS(build(", regions: all"), "regions");
  auto in = inputs(4, 44);
  in.erase("anatomy_described");
  EXPECT_ERROR_CONTAINS(kit::evaluate(*build(), in), "loss region_sentence: needs Batch.anatomy_described");
  in = inputs(4, 44);
  in["grid"] = torch::tensor({2, 8}, torch::kLong);
  in["anatomy_masks"] = in["anatomy_masks"].narrow(2, 0, 4);
  auto loss = build();
  loss->to(torch::kDouble);
  EXPECT_NO_THROW(kit::evaluate(*loss, in));  // a non-square grid with masks to match
  in["grid"] = torch::tensor({3, 4}, torch::kLong);
  EXPECT_ERROR_CONTAINS(kit::evaluate(*loss, in), "does not describe the 16 image tokens");
}

TEST(RegionSentenceLoss, TwoRanksEqualOneRank) {
  kit::RankOptions o;
  o.child_args = kit::gtest_rerun_args();
  const auto r = kit::rank_equivalence([] { return build(); }, inputs(6, 45), o);
  EXPECT_TRUE(r) << r.message;
}
