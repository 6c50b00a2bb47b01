#include "medvlp/losses/tag_loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "../testing_util.h"
#include "medvlp/testing/loss_testing.h"

using namespace medvlp;
namespace kit = medvlp::testing;  // "testing" alone would clash with GoogleTest's namespace

TEST(TagLoss, BceIgnoresUncertainAndUnmentionedLabels) {
  const at::Tensor logits = torch::tensor({2.0, -1.0, 0.5, 0.0}, torch::kDouble).view({2, 2});
  const at::Tensor labels = torch::tensor({1.0, -1.0, 0.0, 1.0}, torch::kDouble).view({2, 2});
  losses::TagLossOptions o;
  const double want = (std::log1p(std::exp(-2.0)) + std::log1p(std::exp(0.5)) + std::log(2.0)) / 3;
  EXPECT_NEAR(losses::tag_objective(logits, labels, o).item<double>(), want, 1e-12);
}

TEST(TagLoss, AsymmetricLossMatchesItsClosedForm) {
  const at::Tensor logits = torch::tensor({1.0, 0.3}, torch::kDouble).view({1, 2});
  const at::Tensor labels = torch::tensor({1.0, 0.0}, torch::kDouble).view({1, 2});
  losses::TagLossOptions o;
  o.objective = "asl";
  o.gamma_pos = 1;
  const double p1 = 1 / (1 + std::exp(-1.0)), p2 = 1 / (1 + std::exp(-0.3)) - 0.05;
  const double want = -(1 - p1) * std::log(p1) - std::pow(p2, 4) * std::log(1 - p2);
  // ASL's losses.py sums (-loss.sum()); reduction: mean averages over the entries.
  EXPECT_NEAR(losses::tag_objective(logits, labels, o).item<double>(), want, 1e-12);
  o.reduction = "mean";
  EXPECT_NEAR(losses::tag_objective(logits, labels, o).item<double>(), want / 2, 1e-12);
}

TEST(TagLoss, AsymmetricLossDetachesItsFocusingWeightUnlessAsked) {
  // L = -(1-p) log p (γ+ = 1). With the weight detached, dL/dz = -(1-p)²; differentiating the
  // weight too adds p(1-p) log p.
  const double z = 0.4, p = 1 / (1 + std::exp(-z));
  for (const bool focal_grad : {false, true}) {
    const at::Tensor logits = torch::tensor({z}, torch::kDouble).view({1, 1}).requires_grad_(true);
    losses::TagLossOptions o;
    o.objective = "asl";
    o.gamma_pos = 1;
    o.focal_grad = focal_grad;
    losses::tag_objective(logits, torch::ones({1, 1}, torch::kDouble), o).backward();
    const double detached = -(1 - p) * (1 - p);
    const double full = detached + p * (1 - p) * std::log(p);
    EXPECT_NEAR(logits.grad().item<double>(), focal_grad ? full : detached, 1e-12) << focal_grad;
  }
}

TEST(TagLoss, AsgDecoderHasAsgsShape) {
  // ASG's IRLModel with d_model C, feed-forward F, L layers: per layer two attentions (4C² + 4C),
  // two linears (2CF + F + C) and three LayerNorms (6C); a final LayerNorm (2C) and one shared
  // Linear(C, 1) head. medvlp adds the K learnt queries (ASG embeds the tag names instead).
  const int64_t C = 8, F = 24, L = 2, K = 3;
  auto loss = losses::loss_registry().create(
      "tag", core::Config::parse("{tags: 3, token_dim: 8, heads: 2, layers: 2, decoder: pre, ff_dim: 24}", "t.yaml").root());
  int64_t count = 0;
  for (const auto& p : loss->parameters()) count += p.numel();
  EXPECT_EQ(count, L * (2 * (4 * C * C + 4 * C) + 2 * C * F + F + C + 6 * C) + 2 * C + C + 1 + K * C);
}

TEST(TagLoss, TagNameQueriesAreFrozenFeaturesMappedToTheTokenWidth) {
  auto loss = losses::loss_registry().create(
      "tag", core::Config::parse("{tags: 3, token_dim: 8, heads: 2, queries: tag_names, text_dim: 5}", "t.yaml").root());
  auto tag = std::dynamic_pointer_cast<losses::TagLossImpl>(loss);
  ASSERT_TRUE(tag);
  EXPECT_ERROR_CONTAINS(tag->set_query_features(torch::zeros({3, 4})), "expected [3, 5] (tags, text_dim)");
  torch::manual_seed(52);
  tag->set_query_features(torch::randn({3, 5}));
  for (const auto& p : loss->named_parameters()) EXPECT_NE(p.key(), "query_features");
  EXPECT_TRUE(loss->named_buffers().contains("query_features"));
  EXPECT_TRUE(loss->named_parameters().contains("query_proj.weight"));  // 5 -> 8
  // Different tag-name features, different logits.
  const at::Tensor tokens = torch::randn({2, 4, 8});
  const at::Tensor a = tag->logits(tokens);
  tag->set_query_features(torch::randn({3, 5}));
  EXPECT_FALSE(torch::allclose(a, tag->logits(tokens)));
  EXPECT_ERROR_CONTAINS(losses::loss_registry().create(
                            "tag", core::Config::parse("{tags: 3, token_dim: 8, queries: tag_names}", "t.yaml").root()),
                        "needs options.text_dim");
}

TEST(TagLoss, DecoderPassesTheKitsChecksAndLearns) {
  for (const char* decoder : {"post", "pre"}) {
    SCOPED_TRACE(decoder);
    // Seeded before the decoder draws its weights: LibTorch seeds its generator at random per process,
    // and about one weight draw in fifty puts a ReLU input of the post-norm decoder within the finite
    // difference's step of its kink, where the difference quotient is not the gradient.
    torch::manual_seed(51);
    auto loss = losses::loss_registry().create(
        "tag",
        core::Config::parse(std::string("{tags: 3, token_dim: 8, heads: 2, decoder: ") + decoder + "}", "t.yaml").root());
    kit::NamedTensors in;
    in["image_tokens"] = torch::randn({4, 5, 8}, torch::kDouble);
    in["labels"] = torch::tensor({1., 0., -1., 0., 1., 1., 1., 1., 0., -1., -1., 0.}, torch::kDouble).view({4, 3});
    kit::GradCheckOptions g;
    g.entries_per_input = 12;
    const auto grad = kit::gradient_check(*loss, in, g);
    EXPECT_TRUE(grad) << grad.message;
    const auto perm = kit::permutation_invariance(*loss, in, 2);
    EXPECT_TRUE(perm) << perm.message;
    // A few Adam steps on fixed tokens fit the known labels.
    torch::optim::Adam opt(loss->parameters(), torch::optim::AdamOptions(1e-2));
    const double before = kit::evaluate(*loss, in).total;
    const auto [encoded, batch] = kit::bind_inputs(in);
    for (int step = 0; step < 60; ++step) {
      opt.zero_grad();
      loss->forward(encoded, batch, {}).total.backward();
      opt.step();
    }
    EXPECT_LT(kit::evaluate(*loss, in).total, 0.2 * before);
  }
}

TEST(TagLoss, ExplainsMissingOptionsAndShapes) {
  EXPECT_ERROR_CONTAINS(losses::loss_registry().create("tag", core::Config::parse("{token_dim: 8}", "tag.yaml").root()),
                        "tags: required");
  auto loss = losses::loss_registry().create("tag", core::Config::parse("{tags: 2, token_dim: 4}", "tag.yaml").root());
  kit::NamedTensors in{{"image_tokens", torch::randn({2, 3, 4})}, {"labels", torch::zeros({2, 3})}};
  EXPECT_ERROR_CONTAINS(kit::evaluate(*loss, in), "loss tag: Batch.labels has shape [2, 3], expected [B,tags] with tags = 2");
}
