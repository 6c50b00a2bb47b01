#pragma once
// Per-sample predictions of a multi-label classifier and the headline figures computed from them:
// AUROC, AUPRC and, with thresholds chosen on validation, accuracy and F1 (per finding, macro and
// micro), each with a patient-level percentile bootstrap confidence interval.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace medvlp::eval {

/// What `medvlp eval` writes as *_predictions.csv and `medvlp metrics` reads: one row per sample with
/// its id, patient id, a score and a label per finding. A label is 1 (present), 0 (absent), -1
/// (uncertain or unmentioned: not scored) or NaN (the sample was left out of this finding, its score
/// NaN too: fVLM's per-anatomy scoring of a case without the anatomy).
struct Predictions {
  std::vector<std::string> findings;
  std::vector<std::string> ids, patient_ids;
  std::vector<std::vector<double>> scores;  // [finding][sample]
  std::vector<std::vector<double>> labels;  // [finding][sample]

  int64_t size() const { return static_cast<int64_t>(ids.size()); }
  /// Throws when the shapes disagree (names the finding).
  void validate() const;
};

/// Columns id, patient_id, score:<finding>..., label:<finding>...; NaN as an empty cell. Atomic.
void write_predictions_csv(const std::string& path, const Predictions& predictions);
/// Reads what write_predictions_csv wrote; medvlp::Error names the file, line and column of a bad cell.
Predictions read_predictions_csv(const std::string& path);

/// Settings of summarize().
struct SummaryOptions {
  int64_t resamples = 1000;  // bootstrap resamples; 0: no confidence intervals
  double level = 0.95;
  uint64_t seed = 0;
  /// Per-finding thresholds (score >= threshold predicts present), from choose_thresholds() on the
  /// validation predictions. Empty: no accuracy/F1.
  std::map<std::string, double> thresholds;
};

/// For each finding, the threshold with the highest F1 on `validation` (NaN where it has no positive).
std::map<std::string, double> choose_thresholds(const Predictions& validation);

/// {"findings": {f: {"auroc", "auroc_ci": [lo, hi], "auprc", "auprc_ci", "positives", "negatives",
///                   and with thresholds "threshold", "accuracy"(+_ci), "f1"(+_ci), "precision", "recall"}},
///  "mean": {"auroc"(+_ci), "auprc"(+_ci), "findings": [the findings averaged], and with thresholds
///           "accuracy"(+_ci), "f1_macro"(+_ci), "f1_micro"(+_ci)},
///  "bootstrap": {"resamples", "used", "level", "seed", "patients"}}.
/// Means run over the findings with both classes present (AUROC defined); with none, they are NaN
/// (null in JSON), never 0. Every resample draws patients with replacement (GroupBootstrap), and all
/// figures of one resample come from the same draw.
nlohmann::json summarize(const Predictions& predictions, const SummaryOptions& options);

/// The ROC curve of every finding with both classes, with its AUROC in the legend, as a PNG chart.
void write_roc_chart(const std::string& path, const Predictions& predictions, const std::string& title);

}  // namespace medvlp::eval
