#include "medvlp/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <torch/torch.h>

#include "medvlp/core/error.h"

namespace medvlp::eval {

double roc_auc(const std::vector<double>& scores, const std::vector<double>& labels) {
  MEDVLP_CHECK(scores.size() == labels.size(), "roc_auc: ", scores.size(), " scores but ", labels.size(), " labels");
  std::vector<std::pair<double, int>> items;
  for (size_t i = 0; i < scores.size(); ++i)
    if (labels[i] == 1.0 || labels[i] == 0.0) items.emplace_back(scores[i], labels[i] == 1.0 ? 1 : 0);
  std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  // Sum of positive ranks with ties sharing their average rank.
  double rank_sum = 0.0;
  double positives = 0.0;
  for (size_t i = 0; i < items.size();) {
    size_t j = i;
    while (j < items.size() && items[j].first == items[i].first) ++j;
    const double avg_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    for (size_t t = i; t < j; ++t)
      if (items[t].second) {
        rank_sum += avg_rank;
        positives += 1.0;
      }
    i = j;
  }
  const double negatives = static_cast<double>(items.size()) - positives;
  if (positives == 0.0 || negatives == 0.0) return std::numeric_limits<double>::quiet_NaN();
  return (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives);
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
