#pragma once
// An experiment: every component an experiment config describes, built and validated in one place.

#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "medvlp/core/config.h"
#include "medvlp/data/dataset.h"
#include "medvlp/data/loader.h"
#include "medvlp/data/report_structure.h"
#include "medvlp/eval/evaluator.h"
#include "medvlp/losses/loss.h"
#include "medvlp/models/vlp_model.h"
#include "medvlp/text/tokenizer.h"
#include "medvlp/train/distributed.h"
#include "medvlp/train/optimizer.h"

namespace medvlp::train {

/// The `train` section.
struct TrainOptions {
  int64_t steps = 1000;
  int64_t batch_size = 64;         // the global batch of one optimizer step (all ranks, all micro-batches)
  int64_t accumulate = 1;          // micro-batches per optimizer step (the loader's batch is batch_size / accumulate)
  int64_t log_every = 10;
  int64_t checkpoint_every = 500;  // 0: only at the end
  int64_t keep_checkpoints = 2;    // 0: keep all
  std::string precision = "auto";  // auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
  double grad_clip = 1.0;          // max global gradient norm; 0 disables
  int64_t threads = 0;             // torch intra-op threads; 0 keeps torch's default
  bool progress = true;            // a live progress bar when stderr is a terminal
  /// Validation during training: every `eval_every` steps (0: never) zero-shot AUC and retrieval on
  /// the val split (no bootstrap, no thresholds), logged to validation.jsonl; the best by
  /// `eval_metric` (higher is better) is kept as RUN/best; `early_stop` evaluations without
  /// improvement end the run (0: never).
  int64_t eval_every = 0;
  std::string eval_metric = "mean_auc";  // mean_auc | mean_auprc | image_to_text.R@K | text_to_image.R@K
  int64_t early_stop = 0;
};

/// A fully built experiment. Construction reads every config key and rejects unknown ones,
/// so a typo fails before any training starts.
struct Experiment {
  explicit Experiment(core::Config c) : config(std::move(c)) {}
  core::Config config;
  std::string run_dir;
  uint64_t seed = 0;
  c10::Device device{c10::kCPU};
  std::shared_ptr<text::Tokenizer> tokenizer;
  data::DatasetPtr train_set;
  data::DatasetPtr eval_set;
  data::DatasetPtr threshold_set;  // the eval.thresholds_from split, or null
  data::DatasetPtr val_set;        // the val split when train.eval_every > 0, else null
  models::VlpModel model{nullptr};
  std::vector<losses::WeightedLoss> losses;
  /// The structured-report stage (data.report), or null; the loader adds its units to batches.
  std::shared_ptr<const data::ReportStructurer> reports;
  /// The process group the losses gather through; null on one process.
  std::shared_ptr<ProcessGroup> group;
  data::LoaderOptions loader;
  AdamWOptions optim;
  CosineSchedule schedule;
  TrainOptions train;
  eval::EvalOptions eval;
  float image_mean = 0.5f, image_std = 0.25f;

  /// Builds from `config`. Without `text.model`, a SentencePiece model is trained on the training
  /// reports and saved to `run_dir/tokenizer.model` (the resolved config then points to it).
  /// Loss options the model and data determine (token_dim, embed_dim, anatomies, tags) are filled
  /// in when a loss entry leaves them out; every field a loss needs() is checked against what the
  /// data and model can provide, failing with the loss, the field and the key that would provide it.
  /// With a process group of several ranks, rank 0 alone writes into `run_dir` (and trains the
  /// tokenizer, which it sends to the others); each rank loads its share of every global batch.
  static Experiment build(core::Config config, const std::string& run_dir,
                          std::shared_ptr<ProcessGroup> group = nullptr);
  /// Whether this process writes the run folder: one process, or rank 0 of several.
  bool writes_run() const { return !group || group->rank() == 0; }

  /// Model parameters and buffers, and loss parameters under "losses.<i>.": what checkpoints store.
  io::TensorMap state_tensors() const;
  /// Copies `tensors` into the model and losses; every entry must match by name and shape.
  void load_state_tensors(const io::TensorMap& tensors);
  /// The first `anatomy` loss, whose pooled anatomy features score the findings the `eval` section
  /// scores per anatomy; null when there is none.
  std::shared_ptr<losses::AnatomyLossImpl> anatomy_loss() const;
  /// Zero-shot classification and retrieval on `eval_set` with the `eval` section's settings
  /// (thresholds for accuracy and F1 chosen on `threshold_set`); `predictions` receives the per-case scores.
  /// With eval.localization, the heat-map overlays go to `overlay_dir` ("" writes none).
  nlohmann::json evaluate(eval::Predictions* predictions = nullptr, const std::string& overlay_dir = "");
  /// The validation figures (train.eval_every): zero-shot and retrieval on `val_set` without
  /// bootstrap or thresholds, and the value of train.eval_metric in them. medvlp::Error when that
  /// value is undefined (no finding with both classes among the validation cases).
  nlohmann::json validate(double* metric_value);
  /// Trainable tensors by name, in a fixed order (model first, then losses).
  std::vector<std::pair<std::string, at::Tensor>> trainable() const;
};

}  // namespace medvlp::train
