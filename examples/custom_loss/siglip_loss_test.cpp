// Proving the new loss correct with medvlp's testing kit.
#include <cmath>

#include <gtest/gtest.h>
#include <medvlp/testing/gtest.h>
#include <medvlp/testing/loss_testing.h>
#include <torch/torch.h>

#include "siglip_loss.h"

namespace kit = medvlp::testing;  // plain "testing" would clash with GoogleTest's namespace

namespace {
kit::NamedTensors inputs(int64_t n) {
  torch::manual_seed(7);
  const at::Tensor i = torch::randn({n, 8}, torch::kDouble), t = torch::randn({n, 8}, torch::kDouble);
  return {{"image_embed", i / i.norm(2, 1, true)}, {"text_embed", t / t.norm(2, 1, true)}};
}
medvlp::losses::LossPtr build() {
  auto config = medvlp::core::Config::parse("{init_scale: 5, init_bias: -2}", "siglip.yaml");
  return medvlp::losses::loss_registry().create("siglip", config.root());
}
}  // namespace

TEST(SigLip, MatchesALoopOverPairs) {
  const auto in = inputs(4);
  double want = 0;
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t c = 0; c < 4; ++c) {
      const double logit = 5 * (in.at("image_embed")[r] * in.at("text_embed")[c]).sum().item<double>() - 2;
      want -= std::log(1 / (1 + std::exp(-(r == c ? 1 : -1) * logit))) / 4;
    }
  auto loss = build();
  loss->to(torch::kDouble);
  EXPECT_NEAR(kit::evaluate(*loss, in).total, want, 1e-6);  // init_scale is stored as float32 log
}

TEST(SigLip, GradientsAndInvariances) {
  auto loss = build();
  const auto in = inputs(6);
  const auto g = kit::gradient_check(*loss, in);
  EXPECT_TRUE(g) << g.message;
  const auto p = kit::permutation_invariance(*loss, in);
  EXPECT_TRUE(p) << p.message;
  const auto s = kit::swap_invariance(*loss, in, {{"image_embed", "text_embed"}});
  EXPECT_TRUE(s) << s.message;
}

TEST(SigLip, TwoRanksEqualOneRank) {
  kit::RankOptions o;
  o.child_args = kit::gtest_rerun_args();
  const auto r = kit::rank_equivalence(build, inputs(8), o);
  EXPECT_TRUE(r) << r.message;
}
