#include "medvlp/losses/clip_loss.h"

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
losses::ClipLossOptions options(double temperature, bool learnable) {
  losses::ClipLossOptions o;
  o.temperature = temperature;
  o.learnable = learnable;
  return o;
}
losses::LossOutput run(losses::ClipLossImpl& loss, const at::Tensor& img, const at::Tensor& txt) {
  models::Encoded e;
  e.image_embed = img;
  e.text_embed = txt;
  return loss.forward(e, data::Batch{}, losses::LossContext{});
}
double lse(std::initializer_list<double> xs) {
  double s = 0;
  for (double x : xs) s += std::exp(x);
  return std::log(s);
}
}  // namespace

TEST(ClipLoss, MatchesAHandComputedCase) {
  losses::ClipLossImpl loss(options(0.5, false));  // scale 2
  const at::Tensor img = torch::tensor({1.0, 0.0, 0.0, 1.0}, torch::kDouble).view({2, 2});
  const at::Tensor txt = torch::tensor({0.6, 0.8, 1.0, 0.0}, torch::kDouble).view({2, 2});
  // i2t logits [[1.2, 2.0], [1.6, 0.0]], t2i logits [[1.2, 1.6], [2.0, 0.0]]; targets are the diagonal.
  const double i2t = ((lse({1.2, 2.0}) - 1.2) + (lse({1.6, 0.0}) - 0.0)) / 2;
  const double t2i = ((lse({1.2, 1.6}) - 1.2) + (lse({2.0, 0.0}) - 0.0)) / 2;
  const auto out = run(loss, img, txt);
  EXPECT_NEAR(out.total.item<double>(), (i2t + t2i) / 2, 1e-6);
  EXPECT_NEAR(out.terms.at("i2t").item<double>(), i2t, 1e-6);
  EXPECT_NEAR(out.terms.at("logit_scale").item<double>(), 2.0, 1e-6);
}

TEST(ClipLoss, PassesTheKitsGradientAndInvarianceChecks) {
  const auto in = test_inputs::global(6, 5, 4, 1);
  losses::ClipLossImpl loss(options(0.2, true));
  const auto grad = kit::gradient_check(loss, in);
  EXPECT_TRUE(grad) << grad.message;
  const auto perm = kit::permutation_invariance(loss, in, 3);
  EXPECT_TRUE(perm) << perm.message;
  const auto swap = kit::swap_invariance(loss, in, {{"image_embed", "text_embed"}});
  EXPECT_TRUE(swap) << swap.message;
}

TEST(ClipLoss, PerfectAlignmentGivesLowLossAndScaleIsClamped) {
  losses::ClipLossImpl loss(options(0.001, true));
  EXPECT_NEAR(loss.scale().item<float>(), 100.f, 1e-3);
  const at::Tensor eye = torch::eye(8);
  EXPECT_LT(run(loss, eye, eye).total.item<float>(), 1e-6);
  EXPECT_GT(run(loss, eye, eye.flip(0)).total.item<float>(), 10.f);
}

TEST(ClipLoss, NamesTheMissingField) {
  losses::ClipLossImpl loss(options(0.07, true));
  models::Encoded e;
  e.image_embed = torch::randn({2, 4});
  EXPECT_ERROR_CONTAINS(loss.forward(e, data::Batch{}, losses::LossContext{}),
                        "loss clip: needs Encoded.text_embed, which the model did not produce");
}

TEST(ClipLoss, BuiltFromConfigByName) {
  auto cfg = core::Config::parse("losses:\n  - name: clip\n    weight: 0.5\n    options: {temperature: 0.1, learnable: false}\n", "l.yaml");
  auto built = losses::build_losses(cfg.root().at("losses"));
  ASSERT_EQ(built.size(), 1u);
  EXPECT_EQ(built[0].weight, 0.5);
  EXPECT_TRUE(built[0].loss->named_parameters().is_empty());
  cfg.check_all_used();
  auto typo = core::Config::parse("losses:\n  - name: clipp\n", "l.yaml");
  EXPECT_ERROR_CONTAINS(losses::build_losses(typo.root().at("losses")), "l.yaml:2: losses[0].name: unknown loss \"clipp\"; known: ");
  auto option = core::Config::parse("losses:\n  - name: clip\n    options:\n      temprature: 0.1\n", "l.yaml");
  EXPECT_ERROR_CONTAINS(losses::build_losses(option.root().at("losses")),
                        "l.yaml:4: losses[0].options.temprature: not an option of loss \"clip\"");
  // An option set to null is unset: the loss builds with its default (how --set turns one off).
  auto unset = core::Config::parse("losses:\n  - name: clip\n    options: {temperature: null}\n", "l.yaml");
  EXPECT_EQ(losses::build_losses(unset.root().at("losses")).size(), 1u);
  unset.check_all_used();
  auto range = core::Config::parse("losses:\n  - name: clip\n    options: {temperature: -1}\n", "l.yaml");
  EXPECT_ERROR_CONTAINS(losses::build_losses(range.root().at("losses")), "loss clip: l.yaml:3: losses[0].options.temperature");
}

TEST(ClipLoss, TwoRanksEqualOneRankInBothRowModes) {
  const auto in = test_inputs::global(8, 6, 4, 2);
  for (const char* rows : {"local", "full"}) {
    kit::RankOptions o;
    o.child_args = kit::gtest_rerun_args();
    const auto result = kit::rank_equivalence(
        [&] {
          auto cfg = core::Config::parse(std::string("{temperature: 0.1, rows: ") + rows + "}", "clip.yaml");
          return losses::loss_registry().create("clip", cfg.root());
        },
        in, o);
    EXPECT_TRUE(result) << rows << ": " << result.message;
  }
}
