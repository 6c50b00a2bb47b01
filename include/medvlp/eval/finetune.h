#pragma once
// Fine-tuning (label-efficient transfer): the whole image encoder and a linear head trained on a
// fraction of the training patients, the encoder at a lower learning rate than the head, early-
// stopped on the validation AUROC, thresholds from validation, and the test figures with bootstrap
// intervals — the counterpart of linear_probe() that moves the encoder too.

#include <cstdint>
#include <string>

#include <c10/core/Device.h>
#include <torch/nn/modules/linear.h>
#include <nlohmann/json.hpp>

#include "medvlp/data/dataset.h"
#include "medvlp/eval/predictions.h"
#include "medvlp/models/image_encoder.h"

namespace medvlp::eval {

/// Settings of fine_tune().
struct FineTuneOptions {
  double fraction = 1.0;       // of the training patients (sample_patients())
  uint64_t seed = 0;           // which patients, the head's initialization and the batch order
  std::string objective = "bce";  // "bce": multi-label, -1 labels ignored; "ce": single-label softmax
  int64_t max_steps = 400;     // optimizer steps at most
  int64_t batch_size = 64;
  int64_t eval_every = 20;     // steps between validations
  int64_t patience = 5;        // validations without a better mean AUROC before stopping
  double lr = 1e-3;            // AdamW, the head
  double encoder_lr = 1e-4;    // AdamW, the encoder (0 freezes it, BatchNorm statistics included: a linear
                               // probe trained by minibatch steps on augmented images)
  double weight_decay = 1e-4;
  float image_mean = 0.0f, image_std = 1.0f;  // the pretraining normalization
  SummaryOptions summary;      // bootstrap of the test figures (thresholds are filled from validation)
};

/// Trains `encoder` (in place) and a new linear head on `fraction` of `train`'s patients with its
/// augmentation (train->get(i, epoch)), validates on `val` every `eval_every` steps and restores the
/// encoder and head of the best validation mean AUROC, chooses F1 thresholds on validation, and
/// returns summarize() of the test predictions plus {"fraction", "objective", "train_cases",
/// "train_patients", "best_step", "steps", "val_auroc"} and, for "ce", "accuracy_top1" (argmax
/// against the one positive finding). Labels are the datasets' ground truth where they have it,
/// else the reports' (1, 0, -1 = not used); "ce" requires exactly one positive per training case.
/// `head`, when given, receives the trained head (out_dim() -> findings).
nlohmann::json fine_tune(const models::ImageEncoderPtr& encoder, const data::DatasetPtr& train, const data::DatasetPtr& val,
                         const data::DatasetPtr& test, const c10::Device& device, const FineTuneOptions& options,
                         Predictions* test_predictions = nullptr, torch::nn::Linear* head = nullptr);

}  // namespace medvlp::eval
