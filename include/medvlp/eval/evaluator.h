#pragma once
// Zero-shot classification and image-report retrieval of a trained VlpModel.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "medvlp/core/config.h"
#include "medvlp/data/dataset.h"
#include "medvlp/eval/localization.h"
#include "medvlp/eval/predictions.h"
#include "medvlp/losses/anatomy_loss.h"
#include "medvlp/models/vlp_model.h"
#include "medvlp/text/tokenizer.h"

namespace medvlp::eval {

/// Positive and negative prompts of one finding; scores average the prompt embeddings.
struct FindingPrompts {
  std::string finding;
  std::vector<std::string> positive;  // e.g. "pleural effusion."
  std::vector<std::string> negative;  // e.g. "no pleural effusion."; may be empty (score = cos(image, mean positive))
  /// Anatomies whose pooled image features score this finding (fVLM's per-organ zero-shot), in
  /// place of the global image embedding; "{anatomy}" in a prompt becomes the anatomy's name. With
  /// several, a case scores the highest of its present anatomies. Empty: the global embedding.
  std::vector<std::string> anatomies;
};

/// `texts` with "{anatomy}" replaced by `anatomy`: a per-anatomy prompt made concrete.
std::vector<std::string> with_anatomy(const std::vector<std::string>& texts, const std::string& anatomy);

/// Evaluation settings (the `eval` config section).
struct EvalOptions {
  std::string split = "test";
  int64_t batch_size = 128;
  int64_t max_text_len = 96;
  std::vector<int64_t> recall_k = {1, 5, 10};
  std::vector<FindingPrompts> prompts;  // empty: "<finding>" vs "no <finding>"
  int64_t workers = 2;
  int64_t bootstrap = 1000;   // patient-level bootstrap resamples for the confidence intervals; 0: none
  double ci_level = 0.95;
  uint64_t bootstrap_seed = 0;
  /// The split whose predictions choose each finding's F1-maximizing threshold, for accuracy and F1
  /// on `split`; "" reports threshold-free figures (AUROC, AUPRC) only.
  std::string thresholds_from = "val";
  /// `eval.localization` (present: enabled): heat maps of each finding's positive prompts scored
  /// against the evaluation set's lesion boxes.
  LocalizationOptions localization;
};

/// Reads the `eval` section. `findings` fill default prompts for findings without any.
EvalOptions parse_eval_options(const core::ConfigNode& node, const std::vector<std::string>& findings);

/// Zero-shot scores of every case of `dataset` (the scoring pass of evaluate(), no metrics).
Predictions predict_zero_shot(models::VlpModel& model, const data::DatasetPtr& dataset, const text::Tokenizer& tokenizer,
                              const EvalOptions& options, const c10::Device& device, float image_mean, float image_std,
                              const std::shared_ptr<losses::AnatomyLossImpl>& anatomy = nullptr);

/// Runs zero-shot classification (score = cos(image, mean positive) - cos(image, mean negative),
/// AUC against ground truth where the dataset has it, else the report labels) and retrieval.
/// Findings with `anatomies` are scored on the anatomy features of `anatomy` (the trained anatomy
/// loss: its pooling and projections, in eval mode) from the dataset's anatomy masks; a case none of
/// whose anatomies is present is left out of that finding's AUC (counted in "left_out").
/// With `threshold_set` (the `thresholds_from` split), each finding's threshold is the one with the
/// highest F1 there, and accuracy and F1 on `dataset` are reported with it.
/// Returns {"zero_shot": summarize()'s figures with confidence intervals plus "mean_auc" (= mean.auroc,
/// null when no finding has both classes), "per_anatomy": {finding: [anatomies]}, "left_out": {finding: n},
/// "thresholds_from": split}, "retrieval": {"image_to_text": {"R@1"...}, ...}, "n": N}.
/// `predictions`, when given, receives the per-case scores.
nlohmann::json evaluate(models::VlpModel& model, const data::DatasetPtr& dataset, const text::Tokenizer& tokenizer,
                        const EvalOptions& options, const c10::Device& device, float image_mean, float image_std,
                        const std::shared_ptr<losses::AnatomyLossImpl>& anatomy = nullptr,
                        const data::DatasetPtr& threshold_set = nullptr, Predictions* predictions = nullptr);

/// A fixed-width text table of an evaluate() result, for the terminal.
std::string format_eval_table(const nlohmann::json& result, const std::string& title = "zero-shot classification");

}  // namespace medvlp::eval
