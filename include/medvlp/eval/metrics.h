#pragma once
// Evaluation metrics: ranking and thresholded binary metrics (optionally weighted, for the
// bootstrap), patient-level percentile bootstrap, and retrieval recall.
//
// Definitions follow scikit-learn, against which tests/python/metrics_check.py compares them:
// roc_auc_score, average_precision_score (no interpolation), f1_score / accuracy_score with
// zero_division=0, all with sample_weight; percentiles follow numpy's default ("linear").

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

namespace medvlp::eval {

/// Area under the ROC curve (Mann-Whitney U with ties counted half).
/// Labels are 1/0; entries with any other label are ignored. NaN when one class is empty.
double roc_auc(const std::vector<double>& scores, const std::vector<double>& labels);

/// Average precision: sum over distinct thresholds, from the highest, of (R_n - R_{n-1}) * P_n.
/// Labels as for roc_auc. NaN when there is no positive.
double average_precision(const std::vector<double>& scores, const std::vector<double>& labels);

/// Weighted counts of a thresholded prediction (score >= threshold predicts positive).
struct Confusion {
  double tp = 0, fp = 0, tn = 0, fn = 0;
  double accuracy() const;   // NaN when empty
  double precision() const;  // 0 when nothing is predicted positive
  double recall() const;     // 0 when there is no positive
  double f1() const;         // 2tp / (2tp + fp + fn); 0 when that is 0/0
  Confusion& operator+=(const Confusion& o);
};

/// One finding's scores and 1/0 labels, sorted once so that each weighted evaluation (a bootstrap
/// resample gives each sample a count) is a single linear pass. Samples whose label is not 1 or 0
/// are left out. Weights, where given, are indexed like the constructor's vectors.
class BinaryScores {
 public:
  BinaryScores(const std::vector<double>& scores, const std::vector<double>& labels);
  double auroc(const std::vector<double>* weights = nullptr) const;
  double auprc(const std::vector<double>* weights = nullptr) const;
  Confusion confusion(double threshold, const std::vector<double>* weights = nullptr) const;
  /// The threshold (one of the scores) at which `score >= threshold` has the highest F1, the highest
  /// such score on ties: chosen on validation, applied to test. NaN when there is no positive.
  double f1_threshold() const;
  /// The ROC curve from (0, 0) to (1, 1), one point per distinct threshold from the highest
  /// (sklearn's roc_curve with drop_intermediate=False): {false positive rates, true positive rates}.
  /// Empty when a class is missing.
  std::pair<std::vector<double>, std::vector<double>> roc_curve() const;
  int64_t positives() const;
  int64_t negatives() const;

 private:
  double weight(size_t k, const std::vector<double>* weights) const;
  std::vector<double> score_;    // ascending
  std::vector<int64_t> sample_;  // original index of each sorted entry
  std::vector<uint8_t> positive_;
};

/// The q-quantile (0..1) of `values` with numpy's default linear interpolation; NaN when empty.
double quantile(std::vector<double> values, double q);

/// Percentile bootstrap over groups (patients): each resample draws as many groups as there are,
/// with replacement, and gives every sample the number of times its group was drawn, so a patient's
/// images stay together. Deterministic in (seed, resample), the same on every platform.
class GroupBootstrap {
 public:
  GroupBootstrap(const std::vector<std::string>& groups, uint64_t seed);
  /// Per-sample weights of resample `r`.
  std::vector<double> weights(int64_t r) const;
  int64_t groups() const { return static_cast<int64_t>(members_.size()); }

 private:
  std::vector<std::vector<int64_t>> members_;  // sample indices of each group
  size_t samples_ = 0;
  uint64_t seed_;
};

/// The two-sided percentile interval at `level` of bootstrap statistics; NaN statistics (a resample
/// without one class) are dropped. {NaN, NaN} when fewer than half the resamples are usable.
struct Interval {
  double low, high;
  int64_t used;  // resamples that gave a number
};
Interval percentile_interval(const std::vector<double>& statistics, double level);

/// Fraction of rows whose matching column (row i <-> column i) ranks in the top k of similarity [N,N].
/// Ties count against the match (a pessimistic rank).
double recall_at_k(const at::Tensor& similarity, int64_t k);

}  // namespace medvlp::eval
