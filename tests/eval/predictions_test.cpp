// Predictions: the CSV round trip, its error messages, and summarize()'s averaging rules.
#include "medvlp/eval/predictions.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "../testing_util.h"

using namespace medvlp;

namespace {
eval::Predictions sample() {
  eval::Predictions p;
  p.findings = {"effusion", "nodule, small"};
  p.ids = {"a", "b", "c", "d"};
  p.patient_ids = {"p1", "p1", "p2", "p3"};
  p.scores = {{0.1, 0.9, 0.4, 0.3}, {1e-20, -2.5, std::nan(""), 0.25}};
  p.labels = {{0, 1, 1, -1}, {1, 0, std::nan(""), 0}};
  return p;
}
}  // namespace

TEST(Predictions, CsvRoundTripsExactly) {
  testing_util::TempDir dir;
  const eval::Predictions p = sample();
  eval::write_predictions_csv(dir.path() + "/p.csv", p);
  const eval::Predictions q = eval::read_predictions_csv(dir.path() + "/p.csv");
  EXPECT_EQ(q.findings, p.findings);  // the comma in a finding's name survives quoting
  EXPECT_EQ(q.ids, p.ids);
  EXPECT_EQ(q.patient_ids, p.patient_ids);
  for (size_t k = 0; k < p.findings.size(); ++k)
    for (size_t i = 0; i < p.ids.size(); ++i) {
      if (std::isnan(p.scores[k][i])) EXPECT_TRUE(std::isnan(q.scores[k][i]));
      else EXPECT_EQ(q.scores[k][i], p.scores[k][i]);  // %.17g: bit-exact
      if (std::isnan(p.labels[k][i])) EXPECT_TRUE(std::isnan(q.labels[k][i]));
      else EXPECT_EQ(q.labels[k][i], p.labels[k][i]);
    }
}

TEST(Predictions, BadCsvNamesFileLineAndColumn) {
  testing_util::TempDir dir;
  const auto write = [&](const std::string& text) {
    std::ofstream(dir.path() + "/p.csv") << text;
    return dir.path() + "/p.csv";
  };
  EXPECT_ERROR_CONTAINS(eval::read_predictions_csv(write("id,patient_id,score:a,label:a\nx,p,abc,1\n")),
                        "p.csv:2: column \"score:a\": expected a number or an empty cell, got \"abc\"");
  EXPECT_ERROR_CONTAINS(eval::read_predictions_csv(write("id,patient_id,score:a,label:a\nx,p,inf,1\n")),
                        "column \"score:a\": a score must be finite");
  EXPECT_ERROR_CONTAINS(eval::read_predictions_csv(write("id,patient_id,score:a,label:a\nx,p,,1\n")),
                        "p.csv:2: finding \"a\" has a label but no score");
  EXPECT_ERROR_CONTAINS(eval::read_predictions_csv(write("id,patient_id,score:a\nx,p,1\n")), "label:a");
  EXPECT_ERROR_CONTAINS(eval::read_predictions_csv(write("id,patient_id,x\nx,p,1\n")), "no \"score:<finding>\" columns");
}

TEST(Summarize, MeanIsNanWhenNoFindingIsScorable) {
  eval::Predictions p = sample();
  p.labels = {{0, 0, 0, -1}, {1, 1, std::nan(""), 1}};  // one class only in each
  eval::SummaryOptions o;
  o.resamples = 20;
  const nlohmann::json r = eval::summarize(p, o);
  EXPECT_TRUE(r["mean"]["auroc"].is_null()) << r.dump();
  EXPECT_TRUE(r["mean"]["auroc_ci"].is_null());
  EXPECT_TRUE(r["findings"]["effusion"]["auroc"].is_null());
  EXPECT_EQ(r["mean"]["findings"], nlohmann::json::array());
}

TEST(Summarize, ThresholdsComeFromValidationAndUnknownOnesAreRejected) {
  const eval::Predictions p = sample();
  const auto t = eval::choose_thresholds(p);
  EXPECT_DOUBLE_EQ(t.at("effusion"), 0.4);  // >= 0.4 catches both positives and no negative
  eval::SummaryOptions o;
  o.resamples = 0;
  o.thresholds = t;
  const nlohmann::json r = eval::summarize(p, o);
  EXPECT_DOUBLE_EQ(r["findings"]["effusion"]["f1"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(r["findings"]["effusion"]["accuracy"].get<double>(), 1.0);
  o.thresholds["pneumothorax"] = 0.5;
  EXPECT_ERROR_CONTAINS(eval::summarize(p, o), "a threshold for \"pneumothorax\", which the predictions do not have");
}
