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

TEST(AveragePrecision, MatchesHandComputedSteps) {
  using medvlp::eval::average_precision;
  // Descending: 0.9 (pos) P=1 R=.5; 0.8 (neg); 0.7 (pos) P=2/3 R=1 -> AP = .5*1 + .5*2/3.
  EXPECT_NEAR(average_precision({0.9, 0.8, 0.7, 0.1}, {1, 0, 1, 0}), 0.5 + 0.5 * 2.0 / 3.0, 1e-12);
  // A tie of a positive and a negative is one threshold: P = 1/2 there.
  EXPECT_NEAR(average_precision({0.5, 0.5}, {1, 0}), 0.5, 1e-12);
  EXPECT_NEAR(average_precision({0.1, 0.2}, {1, 1}), 1.0, 1e-12);
  EXPECT_TRUE(std::isnan(average_precision({0.1, 0.2}, {0, 0})));
}

TEST(BinaryScores, WeightsEqualRepeatedSamples) {
  // A bootstrap weight of 3 must count like three copies of the sample.
  torch::manual_seed(2);
  const at::Tensor s = torch::randint(0, 8, {60}, torch::kDouble);
  const at::Tensor l = torch::randint(0, 2, {60}, torch::kDouble);
  const at::Tensor w = torch::randint(0, 4, {60}, torch::kDouble);
  std::vector<double> sv, lv, wv, rep_s, rep_l;
  for (int64_t i = 0; i < 60; ++i) {
    sv.push_back(s[i].item<double>());
    lv.push_back(l[i].item<double>());
    wv.push_back(w[i].item<double>());
    for (int c = 0; c < static_cast<int>(wv.back()); ++c) {
      rep_s.push_back(sv.back());
      rep_l.push_back(lv.back());
    }
  }
  const medvlp::eval::BinaryScores weighted(sv, lv), repeated(rep_s, rep_l);
  EXPECT_NEAR(weighted.auroc(&wv), repeated.auroc(), 1e-12);
  EXPECT_NEAR(weighted.auprc(&wv), repeated.auprc(), 1e-12);
  const auto a = weighted.confusion(4.0, &wv), b = repeated.confusion(4.0);
  EXPECT_EQ(a.tp, b.tp);
  EXPECT_EQ(a.fp, b.fp);
  EXPECT_EQ(a.tn, b.tn);
  EXPECT_EQ(a.fn, b.fn);
}

TEST(BinaryScores, F1ThresholdIsTheBestCutAndF1FollowsItsDefinition) {
  const medvlp::eval::BinaryScores b({0.1, 0.4, 0.35, 0.8, 0.7}, {0, 0, 1, 1, 0});
  // Cuts: >=0.8 -> tp1 fp0 F1=2/3; >=0.7 -> tp1 fp1 F1=.5; >=0.4 -> .4; >=0.35 -> tp2 fp2 F1=4/6.
  // Equal best F1 at 0.8 and 0.35: the higher threshold wins.
  EXPECT_DOUBLE_EQ(b.f1_threshold(), 0.8);
  const auto c = b.confusion(0.35);
  EXPECT_EQ(c.tp, 2);
  EXPECT_EQ(c.fp, 2);
  EXPECT_EQ(c.tn, 1);
  EXPECT_NEAR(c.f1(), 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(c.accuracy(), 0.6, 1e-12);
  EXPECT_EQ(medvlp::eval::Confusion{}.f1(), 0.0);  // sklearn's zero_division=0
}

TEST(Quantile, InterpolatesLikeNumpy) {
  using medvlp::eval::quantile;
  // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 90, 100]) = [1, 1.75, 2.5, 3.7, 4]
  EXPECT_DOUBLE_EQ(quantile({4, 1, 3, 2}, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(quantile({4, 1, 3, 2}, 0.25), 1.75);
  EXPECT_DOUBLE_EQ(quantile({4, 1, 3, 2}, 0.5), 2.5);
  EXPECT_NEAR(quantile({4, 1, 3, 2}, 0.9), 3.7, 1e-12);
  EXPECT_DOUBLE_EQ(quantile({4, 1, 3, 2}, 1.0), 4.0);
  EXPECT_TRUE(std::isnan(quantile({}, 0.5)));
}

TEST(GroupBootstrap, KeepsPatientsTogetherAndIsSeeded) {
  const std::vector<std::string> patients{"a", "a", "b", "c", "c", "c", ""};
  const medvlp::eval::GroupBootstrap boot(patients, 9);
  EXPECT_EQ(boot.groups(), 4);  // the unnamed sample is a patient of its own
  for (int64_t r = 0; r < 50; ++r) {
    const auto w = boot.weights(r);
    EXPECT_EQ(w[0], w[1]);
    EXPECT_EQ(w[3], w[4]);
    EXPECT_EQ(w[4], w[5]);
    EXPECT_DOUBLE_EQ(w[0] + w[2] + w[3] + w[6], 4.0);  // four patients drawn, each image counted per draw
    EXPECT_EQ(w, boot.weights(r));
  }
  EXPECT_NE(boot.weights(0), medvlp::eval::GroupBootstrap(patients, 10).weights(0));
}

TEST(GroupBootstrap, IntervalOfAProportionMatchesTheNormalApproximation) {
  // 400 one-image patients, 30 % positive: the bootstrap interval of the proportion approaches
  // p +- 1.96 sqrt(p (1 - p) / n) = 0.3 +- 0.0449.
  std::vector<std::string> patients;
  std::vector<double> y;
  for (int i = 0; i < 400; ++i) {
    patients.push_back("p" + std::to_string(i));
    y.push_back(i % 10 < 3 ? 1.0 : 0.0);
  }
  const medvlp::eval::GroupBootstrap boot(patients, 1);
  std::vector<double> stats;
  for (int64_t r = 0; r < 4000; ++r) {
    const auto w = boot.weights(r);
    double pos = 0, all = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      pos += w[i] * y[i];
      all += w[i];
    }
    stats.push_back(pos / all);
  }
  const auto ci = medvlp::eval::percentile_interval(stats, 0.95);
  EXPECT_EQ(ci.used, 4000);
  EXPECT_NEAR(ci.low, 0.3 - 0.0449, 0.005);
  EXPECT_NEAR(ci.high, 0.3 + 0.0449, 0.005);
  // Mostly undefined statistics give no interval.
  const auto none = medvlp::eval::percentile_interval({std::nan(""), std::nan(""), 0.5}, 0.95);
  EXPECT_TRUE(std::isnan(none.low));
}
