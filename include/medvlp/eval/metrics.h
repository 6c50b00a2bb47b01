#pragma once
// Evaluation metrics on plain vectors and tensors.

#include <cstdint>
#include <vector>

#include <ATen/Tensor.h>

namespace medvlp::eval {

/// Area under the ROC curve (Mann-Whitney U with ties counted half).
/// Labels are 1/0; entries with any other label are ignored. NaN when one class is empty.
double roc_auc(const std::vector<double>& scores, const std::vector<double>& labels);

/// Fraction of rows whose matching column (row i <-> column i) ranks in the top k of similarity [N,N].
/// Ties count against the match (a pessimistic rank).
double recall_at_k(const at::Tensor& similarity, int64_t k);

}  // namespace medvlp::eval
