#include "medvlp/eval/metrics.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

TEST(RocAuc, MatchesPairCountingIncludingTies) {
  using medvlp::eval::roc_auc;
  EXPECT_DOUBLE_EQ(roc_auc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}), 0.75);
  EXPECT_DOUBLE_EQ(roc_auc({1, 2, 3}, {0, 1, 1}), 1.0);
  EXPECT_DOUBLE_EQ(roc_auc({3, 2, 1}, {0, 1, 1}), 0.0);
  // A tie between a positive and a negative counts half.
  EXPECT_DOUBLE_EQ(roc_auc({0.5, 0.5}, {0, 1}), 0.5);
  // Uncertain (-1) labels are ignored.
  EXPECT_DOUBLE_EQ(roc_auc({0.1, 0.9, 0.5}, {0, 1, -1}), 1.0);
  EXPECT_TRUE(std::isnan(roc_auc({0.1, 0.2}, {1, 1})));
}

TEST(RocAuc, AgreesWithBruteForcePairCounting) {
  torch::manual_seed(1);
  const at::Tensor s = torch::randint(0, 20, {300}, torch::kDouble);
  const at::Tensor l = torch::randint(0, 2, {300}, torch::kDouble);
  std::vector<double> sv(s.data_ptr<double>(), s.data_ptr<double>() + 300), lv(l.data_ptr<double>(), l.data_ptr<double>() + 300);
  double wins = 0, pairs = 0;
  for (size_t i = 0; i < 300; ++i)
    for (size_t j = 0; j < 300; ++j)
      if (lv[i] == 1 && lv[j] == 0) {
        pairs += 1;
        wins += sv[i] > sv[j] ? 1.0 : (sv[i] == sv[j] ? 0.5 : 0.0);
      }
  EXPECT_NEAR(medvlp::eval::roc_auc(sv, lv), wins / pairs, 1e-12);
}

TEST(RecallAtK, CountsRankOfTheMatchingColumn) {
  // Row 0 matches best; row 1's match ranks second; row 2's match ranks third.
  const at::Tensor sim = torch::tensor({0.9, 0.1, 0.0, 0.8, 0.5, 0.1, 0.9, 0.8, 0.2}).view({3, 3});
  EXPECT_NEAR(medvlp::eval::recall_at_k(sim, 1), 1.0 / 3, 1e-9);
  EXPECT_NEAR(medvlp::eval::recall_at_k(sim, 2), 2.0 / 3, 1e-9);
  EXPECT_NEAR(medvlp::eval::recall_at_k(sim, 3), 1.0, 1e-9);
}
