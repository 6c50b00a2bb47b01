#pragma once
// Linear probe (label-efficient transfer): a frozen image encoder's pooled features, a linear head
// trained on a fraction of the training patients with masked multi-label BCE, early-stopped on the
// validation AUROC, thresholds from validation, and the test figures with bootstrap intervals.

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include "medvlp/data/dataset.h"
#include "medvlp/eval/predictions.h"
#include "medvlp/models/vlp_model.h"

namespace medvlp::eval {

/// Features of a whole split: the image encoder's pooled output and the labels (ground truth where
/// the dataset has it, else the report's: 1, 0, -1 = not used).
struct Features {
  at::Tensor x;  // [N,C] float
  at::Tensor y;  // [N,K] float
  std::vector<std::string> ids, patients, findings;
};

/// Runs the (frozen, eval-mode) image encoder over `dataset`.
Features extract_features(models::VlpModel& model, const data::DatasetPtr& dataset, const c10::Device& device,
                          float image_mean, float image_std, int64_t batch_size = 128);

/// The sample indices of `fraction` of the patients (rounded up, at least one), drawn with `seed`:
/// a patient's images are all in or all out.
std::vector<int64_t> sample_patients(const std::vector<std::string>& patients, double fraction, uint64_t seed);

/// `scores` [N,K] of f's cases as Predictions against f's labels.
Predictions make_predictions(const Features& f, const at::Tensor& scores);

/// summarize()'s mean AUROC of `scores` without resamples; NaN when no finding has both classes.
double mean_auroc(const Features& f, const at::Tensor& scores);

/// Settings of linear_probe().
struct ProbeOptions {
  double fraction = 1.0;  // of the training patients
  uint64_t seed = 0;
  int64_t max_epochs = 300;   // full-batch AdamW steps
  int64_t eval_every = 5;     // epochs between validations
  int64_t patience = 10;      // validations without a better mean AUROC before stopping
  double lr = 1e-2;
  double weight_decay = 1e-4;
  SummaryOptions summary;     // bootstrap of the test figures (thresholds are filled from validation)
};

/// Trains the head on the sampled training patients (features standardized with their mean and
/// spread), keeps the epoch with the best validation mean AUROC, chooses F1 thresholds on
/// validation, and returns summarize() of the test predictions plus {"fraction", "train_cases",
/// "train_patients", "best_epoch", "val_auroc"}. `test_predictions` receives the test scores.
nlohmann::json linear_probe(const Features& train, const Features& val, const Features& test, const ProbeOptions& options,
                            Predictions* test_predictions = nullptr);

}  // namespace medvlp::eval
