// Linear probe: patient sampling, learning a separable signal (and not an absent one), early
// stopping on validation, and the figures' layout.
#include "medvlp/eval/probe.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "../testing_util.h"

using namespace medvlp;

namespace {
// N cases of P patients; findings: the first two follow x's first two coordinates, the third is noise.
eval::Features make(int64_t n, int64_t seed, bool signal) {
  torch::manual_seed(seed);
  eval::Features f;
  f.x = torch::randn({n, 6});
  const at::Tensor noise = torch::randn({n, 3}) * 0.3;
  at::Tensor y = torch::stack({f.x.select(1, 0), f.x.select(1, 1) - f.x.select(1, 2), torch::randn({n})}, 1) + noise;
  if (!signal) y = torch::randn({n, 3});
  f.y = (y > 0.3).to(torch::kFloat);
  f.y.index_put_({torch::rand({n}) < 0.05, 0}, -1.0);  // some unmentioned labels
  for (int64_t i = 0; i < n; ++i) {
    f.ids.push_back("c" + std::to_string(seed) + "_" + std::to_string(i));
    f.patients.push_back("p" + std::to_string(seed) + "_" + std::to_string(i / 2));
  }
  f.findings = {"a", "b", "noise"};
  return f;
}
}  // namespace

TEST(Probe, SamplesWholePatientsBySeed) {
  std::vector<std::string> patients;
  for (int i = 0; i < 300; ++i) patients.push_back("p" + std::to_string(i / 3));  // 100 patients, 3 images each
  const auto a = eval::sample_patients(patients, 0.1, 1);
  EXPECT_EQ(a.size(), 30u);  // 10 patients, all their images
  std::set<std::string> drawn;
  for (int64_t i : a) drawn.insert(patients[static_cast<size_t>(i)]);
  EXPECT_EQ(drawn.size(), 10u);
  EXPECT_EQ(a, eval::sample_patients(patients, 0.1, 1));
  EXPECT_NE(a, eval::sample_patients(patients, 0.1, 2));
  EXPECT_EQ(eval::sample_patients(patients, 0.001, 1).size(), 3u);  // at least one patient
  EXPECT_EQ(eval::sample_patients(patients, 1.0, 1).size(), 300u);
  EXPECT_ERROR_CONTAINS(eval::sample_patients(patients, 0.0, 1), "the label fraction must lie in (0, 1]");
}

TEST(Probe, LearnsALinearSignalAndNotNoise) {
  eval::ProbeOptions o;
  o.summary.resamples = 200;
  o.fraction = 0.5;
  const nlohmann::json r = eval::linear_probe(make(400, 1, true), make(200, 2, true), make(400, 3, true), o);
  EXPECT_GT(r["findings"]["a"]["auroc"].get<double>(), 0.95) << r.dump();
  EXPECT_GT(r["findings"]["b"]["auroc"].get<double>(), 0.9);
  EXPECT_LT(std::abs(r["findings"]["noise"]["auroc"].get<double>() - 0.5), 0.1);
  EXPECT_EQ(r["train_patients"], 100);
  EXPECT_EQ(r["train_cases"], 200);
  EXPECT_TRUE(r["mean"].contains("f1_macro"));  // thresholds from validation
  EXPECT_TRUE(r["mean"]["auroc_ci"].is_array());
  // Labels unrelated to the features: nothing to learn.
  const nlohmann::json z = eval::linear_probe(make(400, 4, false), make(200, 5, false), make(400, 6, false), o);
  EXPECT_LT(std::abs(z["mean"]["auroc"].get<double>() - 0.5), 0.08) << z.dump();
}

TEST(Probe, MoreLabelsDoNotHurtAndValidationPicksTheEpoch) {
  eval::ProbeOptions o;
  o.summary.resamples = 0;
  o.fraction = 0.02;  // 2 patients
  const double few = eval::linear_probe(make(400, 1, true), make(200, 2, true), make(400, 3, true), o)["mean"]["auroc"].get<double>();
  o.fraction = 1.0;
  const nlohmann::json all = eval::linear_probe(make(400, 1, true), make(200, 2, true), make(400, 3, true), o);
  EXPECT_GT(all["mean"]["auroc"].get<double>(), few);
  EXPECT_GE(all["best_epoch"].get<int64_t>(), 5);
  EXPECT_LE(all["best_epoch"].get<int64_t>(), o.max_epochs);
}
