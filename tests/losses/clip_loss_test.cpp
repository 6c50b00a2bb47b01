#include "medvlp/losses/clip_loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "../testing_util.h"

using namespace medvlp;

namespace {
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
  losses::ClipLossImpl loss(losses::ClipLossOptions{0.5, false, 100.0});  // scale 2
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

TEST(ClipLoss, GradientMatchesFiniteDifferences) {
  torch::manual_seed(0);
  losses::ClipLossImpl loss(losses::ClipLossOptions{0.2, true, 100.0});
  at::Tensor img = torch::randn({4, 3}, torch::kDouble).requires_grad_(true);
  at::Tensor txt = torch::randn({4, 3}, torch::kDouble);
  run(loss, img, txt).total.backward();
  const at::Tensor grad = img.grad().clone();
  const double h = 1e-6;
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 3; ++j) {
      torch::NoGradGuard ng;
      at::Tensor plus = img.detach().clone(), minus = img.detach().clone();
      plus[i][j] += h;
      minus[i][j] -= h;
      const double fd = (run(loss, plus, txt).total.item<double>() - run(loss, minus, txt).total.item<double>()) / (2 * h);
      EXPECT_NEAR(grad[i][j].item<double>(), fd, 1e-5) << i << "," << j;
    }
  // The learnable temperature receives a gradient too.
  ASSERT_TRUE(loss.named_parameters()["log_scale"].grad().defined());
}

TEST(ClipLoss, PerfectAlignmentGivesLowLossAndScaleIsClamped) {
  losses::ClipLossImpl loss(losses::ClipLossOptions{0.001, true, 100.0});
  EXPECT_NEAR(loss.scale().item<float>(), 100.f, 1e-3);
  const at::Tensor eye = torch::eye(8);
  EXPECT_LT(run(loss, eye, eye).total.item<float>(), 1e-6);
  EXPECT_GT(run(loss, eye, eye.flip(0)).total.item<float>(), 10.f);
}

TEST(ClipLoss, NamesTheMissingField) {
  losses::ClipLossImpl loss(losses::ClipLossOptions{});
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
  EXPECT_ERROR_CONTAINS(losses::build_losses(typo.root().at("losses")), "l.yaml:2: losses[0].name: unknown loss \"clipp\"; known: clip");
}
