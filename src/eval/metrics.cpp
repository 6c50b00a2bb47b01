#include "medvlp/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/data/rng.h"

namespace medvlp::eval {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}

double Confusion::accuracy() const {
  const double n = tp + fp + tn + fn;
  return n > 0 ? (tp + tn) / n : kNaN;
}
double Confusion::precision() const { return tp + fp > 0 ? tp / (tp + fp) : 0.0; }
double Confusion::recall() const { return tp + fn > 0 ? tp / (tp + fn) : 0.0; }
double Confusion::f1() const {
  const double d = 2 * tp + fp + fn;
  return d > 0 ? 2 * tp / d : 0.0;
}
Confusion& Confusion::operator+=(const Confusion& o) {
  tp += o.tp;
  fp += o.fp;
  tn += o.tn;
  fn += o.fn;
  return *this;
}

BinaryScores::BinaryScores(const std::vector<double>& scores, const std::vector<double>& labels) {
  MEDVLP_CHECK(scores.size() == labels.size(), "metrics: ", scores.size(), " scores but ", labels.size(), " labels");
  std::vector<int64_t> order;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] != 1.0 && labels[i] != 0.0) continue;
    MEDVLP_CHECK(!std::isnan(scores[i]), "metrics: the score of sample ", i, " is NaN");
    order.push_back(static_cast<int64_t>(i));
  }
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return scores[a] < scores[b]; });
  for (int64_t i : order) {
    score_.push_back(scores[i]);
    sample_.push_back(i);
    positive_.push_back(labels[i] == 1.0 ? 1 : 0);
  }
}

double BinaryScores::weight(size_t k, const std::vector<double>* weights) const {
  return weights ? (*weights)[static_cast<size_t>(sample_[k])] : 1.0;
}

int64_t BinaryScores::positives() const { return std::accumulate(positive_.begin(), positive_.end(), int64_t{0}); }
int64_t BinaryScores::negatives() const { return static_cast<int64_t>(positive_.size()) - positives(); }

double BinaryScores::auroc(const std::vector<double>* weights) const {
  // Ascending tie groups: each positive beats the negatives below its group and ties half of its own.
  double u = 0, pos = 0, neg = 0;
  for (size_t i = 0; i < score_.size();) {
    double gp = 0, gn = 0;
    size_t j = i;
    for (; j < score_.size() && score_[j] == score_[i]; ++j) (positive_[j] ? gp : gn) += weight(j, weights);
    u += gp * (neg + 0.5 * gn);
    pos += gp;
    neg += gn;
    i = j;
  }
  return pos > 0 && neg > 0 ? u / (pos * neg) : kNaN;
}

double BinaryScores::auprc(const std::vector<double>* weights) const {
  double total = 0;
  for (size_t k = 0; k < score_.size(); ++k)
    if (positive_[k]) total += weight(k, weights);
  if (!(total > 0)) return kNaN;
  // Descending tie groups: each distinct threshold adds its recall step times its precision.
  double ap = 0, tp = 0, fp = 0;
  for (size_t end = score_.size(); end > 0;) {
    double gp = 0, gn = 0;
    size_t begin = end;
    for (; begin > 0 && score_[begin - 1] == score_[end - 1]; --begin) (positive_[begin - 1] ? gp : gn) += weight(begin - 1, weights);
    tp += gp;
    fp += gn;
    if (gp > 0) ap += (gp / total) * (tp / (tp + fp));
    end = begin;
  }
  return ap;
}

Confusion BinaryScores::confusion(double threshold, const std::vector<double>* weights) const {
  Confusion c;
  for (size_t k = 0; k < score_.size(); ++k) {
    const double w = weight(k, weights);
    const bool predicted = score_[k] >= threshold;
    if (positive_[k]) (predicted ? c.tp : c.fn) += w;
    else (predicted ? c.fp : c.tn) += w;
  }
  return c;
}

double BinaryScores::f1_threshold() const {
  const auto total = static_cast<double>(positives());
  if (total == 0) return kNaN;
  double best = -1, threshold = kNaN, tp = 0, fp = 0;
  for (size_t end = score_.size(); end > 0;) {
    size_t begin = end;
    for (; begin > 0 && score_[begin - 1] == score_[end - 1]; --begin) (positive_[begin - 1] ? tp : fp) += 1;
    const double f1 = 2 * tp / (tp + fp + total);
    if (f1 > best) {
      best = f1;
      threshold = score_[end - 1];
    }
    end = begin;
  }
  return threshold;
}

std::pair<std::vector<double>, std::vector<double>> BinaryScores::roc_curve() const {
  const auto pos = static_cast<double>(positives()), neg = static_cast<double>(negatives());
  std::vector<double> fpr{0.0}, tpr{0.0};
  if (pos == 0 || neg == 0) return {};
  double tp = 0, fp = 0;
  for (size_t end = score_.size(); end > 0;) {
    size_t begin = end;
    for (; begin > 0 && score_[begin - 1] == score_[end - 1]; --begin) (positive_[begin - 1] ? tp : fp) += 1;
    fpr.push_back(fp / neg);
    tpr.push_back(tp / pos);
    end = begin;
  }
  return {fpr, tpr};
}

double roc_auc(const std::vector<double>& scores, const std::vector<double>& labels) {
  return BinaryScores(scores, labels).auroc();
}

double average_precision(const std::vector<double>& scores, const std::vector<double>& labels) {
  return BinaryScores(scores, labels).auprc();
}

double quantile(std::vector<double> values, double q) {
  if (values.empty()) return kNaN;
  std::sort(values.begin(), values.end());
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (pos - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

GroupBootstrap::GroupBootstrap(const std::vector<std::string>& groups, uint64_t seed) : samples_(groups.size()), seed_(seed) {
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < groups.size(); ++i) {
    // A sample without a patient id is its own patient.
    if (groups[i].empty()) {
      members_.push_back({static_cast<int64_t>(i)});
      continue;
    }
    const auto [it, fresh] = index.emplace(groups[i], members_.size());
    if (fresh) members_.emplace_back();
    members_[it->second].push_back(static_cast<int64_t>(i));
  }
}

std::vector<double> GroupBootstrap::weights(int64_t r) const {
  std::vector<double> w(samples_, 0.0);
  data::Rng rng(data::mix_seed(seed_, 0x626f6f7473747270ull, static_cast<uint64_t>(r)));
  const auto n = static_cast<int64_t>(members_.size());
  for (int64_t d = 0; d < n; ++d)
    for (int64_t i : members_[static_cast<size_t>(rng.below(n))]) w[static_cast<size_t>(i)] += 1.0;
  return w;
}

Interval percentile_interval(const std::vector<double>& statistics, double level) {
  MEDVLP_CHECK(level > 0 && level < 1, "metrics: a confidence level must lie in (0, 1), got ", level);
  std::vector<double> ok;
  for (double s : statistics)
    if (!std::isnan(s)) ok.push_back(s);
  const auto used = static_cast<int64_t>(ok.size());
  if (ok.empty() || 2 * ok.size() < statistics.size()) return {kNaN, kNaN, used};
  const double alpha = 1.0 - level;
  return {quantile(ok, alpha / 2), quantile(ok, 1.0 - alpha / 2), used};
}

double recall_at_k(const at::Tensor& similarity, int64_t k) {
  MEDVLP_CHECK(similarity.dim() == 2 && similarity.size(0) == similarity.size(1),
               "recall_at_k: expected a square similarity matrix, got ", similarity.sizes());
  const at::Tensor sim = similarity.to(torch::kFloat).cpu();
  const at::Tensor matched = sim.diagonal().unsqueeze(1);      // [N,1]
  const at::Tensor rank = (sim >= matched).sum(1) - 1;         // others scoring at least as high
  return (rank < k).to(torch::kDouble).mean().item<double>();
}

}  // namespace medvlp::eval
