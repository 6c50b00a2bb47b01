#pragma once
// The loss testing kit: what our own loss tests use and what a user proves a new loss with.
// Every check returns a CheckResult (ok + a message naming the input, index and values), so it
// works under any test framework: EXPECT_TRUE(result) << result.message with GoogleTest.

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "medvlp/losses/loss.h"
#include "medvlp/testing/named_inputs.h"

namespace medvlp::testing {

/// Outcome of one check.
struct CheckResult {
  bool ok = true;
  double max_error = 0.0;  // largest deviation seen
  std::string message;     // empty when ok
  explicit operator bool() const { return ok; }
};

/// A loss evaluated once: value, terms, and gradients of the total with respect to every
/// differentiable input ("grad/<input>") and every loss parameter ("param/<name>").
struct LossEvaluation {
  double total = 0.0;
  std::map<std::string, double> terms;
  NamedTensors grads;
};

/// Forward + backward on copies of `inputs` (the loss's parameter gradients are reset first).
LossEvaluation evaluate(losses::LossImpl& loss, const NamedTensors& inputs, const losses::LossContext& context = {});

/// Converts floating inputs to float64 (integer and bool tensors are kept).
NamedTensors to_double(const NamedTensors& inputs);

/// Central finite differences in float64 against autograd.
struct GradCheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-4;
  int64_t entries_per_input = 24;  // sampled entries of each input (all when smaller)
  bool parameters = true;          // also check the loss's own parameters
  uint64_t seed = 0;
};
/// Converts `loss` to float64 in place, then compares d total / d x with finite differences for
/// sampled entries of every differentiable input and parameter.
CheckResult gradient_check(losses::LossImpl& loss, const NamedTensors& inputs, const GradCheckOptions& options = {});

/// Permuting the samples of a batch must leave the total unchanged and permute the gradients.
CheckResult permutation_invariance(losses::LossImpl& loss, const NamedTensors& inputs, uint64_t seed = 0,
                                   double tolerance = 1e-9);

/// Exchanging the named inputs (e.g. {"image_embed", "text_embed"}) must leave the total unchanged.
CheckResult swap_invariance(losses::LossImpl& loss, const NamedTensors& inputs,
                            const std::vector<std::pair<std::string, std::string>>& swaps, double tolerance = 1e-9);

/// Builds a fresh loss; called after seeding torch so that every rank gets identical parameters.
using LossFactory = std::function<losses::LossPtr()>;

/// The N-rank equivalence harness. It re-runs this executable `world_size` times (with
/// `child_args`, e.g. testing::gtest_rerun_args()); each child joins a Gloo group through a file
/// store, evaluates the loss on its slice of the batch and exits. The parent checks that the mean
/// of the ranks' totals equals one rank's total on the whole batch, that each rank's input
/// gradients divided by N (DDP's averaging) equal the matching rows of the one-rank gradients, and
/// that the ranks' mean parameter gradients equal the one-rank ones. B must divide by N.
struct RankOptions {
  int64_t world_size = 2;
  std::vector<std::string> child_args;
  double timeout_seconds = 120;
  double tolerance = 1e-9;
  uint64_t seed = 0;
};
CheckResult rank_equivalence(const LossFactory& factory, const NamedTensors& inputs, const RankOptions& options);

/// Writes `inputs` plus the loss's outputs ("loss", "term/<name>", "grad/<input>", "param/<name>")
/// to a safetensors file: a reference fixture, or the output of `medvlp loss-check`.
void save_evaluation(const std::string& path, const NamedTensors& inputs, const LossEvaluation& evaluation,
                     bool include_inputs);

/// Evaluates `loss` on the inputs stored in a reference fixture and compares total, terms and
/// gradients with the stored ones (absolute tolerance + relative tolerance × |reference|).
CheckResult compare_with_reference(losses::LossImpl& loss, const std::string& fixture_path, double atol = 1e-6,
                                   double rtol = 1e-5);

}  // namespace medvlp::testing
