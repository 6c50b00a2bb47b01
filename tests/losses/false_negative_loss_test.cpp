#include "medvlp/losses/false_negative_loss.h"

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

losses::LossPtr build(const std::string& yaml) {
  return losses::loss_registry().create("false_negative", core::Config::parse(yaml, "fn.yaml").root());
}

// fVLM's calibration written out: positives are the diagonal, identical texts and normal-normal pairs.
double naive(const kit::NamedTensors& in, double scale, bool mask_mode) {
  const at::Tensor img = in.at("image_embed"), txt = in.at("text_embed");
  const at::Tensor hash = in.at("report_hash"), normal = in.at("report_normal");
  const int64_t B = img.size(0);
  auto positive = [&](int64_t i, int64_t j) {
    return i == j || hash[i].item<int64_t>() == hash[j].item<int64_t>() ||
           (normal[i].item<double>() > 0 && normal[j].item<double>() > 0);
  };
  double total = 0;
  for (int dir = 0; dir < 2; ++dir) {
    const at::Tensor a = dir == 0 ? img : txt, b = dir == 0 ? txt : img;
    double sum = 0;
    for (int64_t i = 0; i < B; ++i) {
      double z = 0, npos = 0;
      for (int64_t j = 0; j < B; ++j) {
        if (mask_mode && j != i && positive(i, j)) continue;
        z += std::exp(scale * (a[i] * b[j]).sum().item<double>());
        if (positive(i, j)) npos += 1;
      }
      for (int64_t j = 0; j < B; ++j) {
        const double logp = scale * (a[i] * b[j]).sum().item<double>() - std::log(z);
        if (mask_mode) {
          if (j == i) sum -= logp;
        } else if (positive(i, j)) {
          sum -= logp / npos;
        }
      }
    }
    total += sum / B;
  }
  return total / 2;
}

}  // namespace

TEST(FalseNegativeLoss, MatchesFvlmCalibrationWrittenOut) {
  const auto in = test_inputs::global(7, 5, 3, 21);
  auto positive = build("{temperature: 0.2}");
  EXPECT_NEAR(kit::evaluate(*positive, in).total, naive(in, 5.0, false), 1e-9);
  auto masked = build("{temperature: 0.2, handling: mask}");
  EXPECT_NEAR(kit::evaluate(*masked, in).total, naive(in, 5.0, true), 1e-9);
}

TEST(FalseNegativeLoss, WithoutFalseNegativesItIsClip) {
  auto in = test_inputs::global(5, 4, 3, 22);
  in["report_hash"] = torch::arange(5, torch::kLong);
  in["report_normal"] = torch::zeros({5}, torch::kDouble);
  auto fn = build("{temperature: 0.1}");
  auto clip = losses::loss_registry().create("clip", core::Config::parse("{temperature: 0.1}", "c.yaml").root());
  EXPECT_NEAR(kit::evaluate(*fn, in).total, kit::evaluate(*clip, in).total, 1e-12);
}

TEST(FalseNegativeLoss, PairsFromLabelsAndEmbeddings) {
  const at::Tensor labels = torch::tensor({1., 0., 1., -1., 0., 0., 0., -1.}, torch::kDouble).view({4, 2});
  losses::FalseNegativeOptions o;
  o.pairing = "labels";
  const at::Tensor p = losses::false_negative_pairs(o, {}, {}, labels, {});
  // Rows 0 and 1 both have exactly {finding 0}; rows 2 and 3 have no positive finding.
  const at::Tensor want = torch::tensor({0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0}, torch::kBool).view({4, 4});
  EXPECT_TRUE(p.equal(want)) << p;
  o.pairing = "embedding";
  o.threshold = 0.95;
  const at::Tensor text = torch::tensor({1., 0., 0.99, 0.141, 0., 1.}, torch::kDouble).view({3, 2});
  const at::Tensor e = losses::false_negative_pairs(o, {}, {}, {}, text);
  EXPECT_TRUE(e[0][1].item<bool>() && e[1][0].item<bool>() && !e[0][2].item<bool>() && !e[0][0].item<bool>());
}

TEST(FalseNegativeLoss, AllPositiveProblemIsSkippedLikeFvlm) {
  auto in = test_inputs::global(4, 3, 2, 23);
  in["report_normal"] = torch::ones({4}, torch::kDouble);
  auto loss = build("{}");
  const auto e = kit::evaluate(*loss, in);
  EXPECT_EQ(e.total, 0.0);
  EXPECT_EQ(e.grads.at("grad/image_embed").abs().sum().item<double>(), 0.0);
}

TEST(FalseNegativeLoss, PassesTheKitsChecks) {
  for (const std::string yaml : {"{}", "{handling: mask}", "{pairing: labels, rows: full}", "{pairing: embedding, threshold: 0.2}"}) {
    auto loss = build(yaml);
    const auto in = test_inputs::global(8, 4, 3, 24);
    const auto g = kit::gradient_check(*loss, in);
    EXPECT_TRUE(g) << yaml << g.message;
    const auto p = kit::permutation_invariance(*loss, in, 7);
    EXPECT_TRUE(p) << yaml << p.message;
    const auto s = kit::swap_invariance(*loss, in, {{"image_embed", "text_embed"}});
    if (yaml.find("embedding") == std::string::npos) {
      EXPECT_TRUE(s) << yaml << s.message;
    }
  }
}

TEST(FalseNegativeLoss, NamesMissingBatchFields) {
  auto in = test_inputs::global(4, 3, 2, 25);
  in.erase("report_hash");
  EXPECT_ERROR_CONTAINS(kit::evaluate(*build("{}"), in), "loss false_negative: needs Batch.report_hash");
  EXPECT_ERROR_CONTAINS(build("{pairing: words}"), "fn.yaml:1: pairing");
}

TEST(FalseNegativeLoss, TwoRanksEqualOneRank) {
  kit::RankOptions o;
  o.child_args = kit::gtest_rerun_args();
  for (const std::string yaml : {"{}", "{handling: mask, rows: full}"}) {
    const auto r = kit::rank_equivalence([&] { return build(yaml); }, test_inputs::global(8, 5, 3, 26), o);
    EXPECT_TRUE(r) << yaml << r.message;
  }
}
