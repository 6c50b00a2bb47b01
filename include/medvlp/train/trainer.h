#pragma once
// The training loop: data, model, losses, AdamW, schedule, autocast, logging, checkpoints, resume.

#include <cstdint>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "medvlp/data/loader.h"
#include "medvlp/train/checkpoint.h"
#include "medvlp/train/experiment.h"
#include "medvlp/train/optimizer.h"

namespace medvlp::io {
class EventFileWriter;
}

namespace medvlp::train {

/// Runs an Experiment. Every step is a pure function of (weights, optimizer state, seed, step),
/// so a run resumed from a checkpoint continues exactly as if it had not stopped.
class Trainer {
 public:
  explicit Trainer(Experiment& experiment);

  /// Restores weights, optimizer and position from a checkpoint folder.
  void resume(const std::string& checkpoint_dir);
  /// Trains until `until_step` completed steps (default: train.steps), checkpointing on the way and at the end.
  /// Throws medvlp::Error on a non-finite loss, before the update, so the last checkpoint stays good.
  /// A run that was not resumed refuses a run folder holding another run's checkpoints or metrics
  /// (see RunFolder), so it never truncates or prunes them.
  /// What metrics.jsonl and validation.jsonl log also goes to a TensorBoard event file in
  /// RUN/tensorboard/ (tags train/... and val/...); a resumed run first drops the events after the
  /// step it resumes from.
  /// With train.eval_every, the val split is evaluated on the way (validation.jsonl), the best
  /// checkpoint by train.eval_metric is linked as RUN/best, and train.early_stop ends the run early.
  /// On several ranks (Experiment::group), every rank runs the same steps on its share of each
  /// global batch with gradients averaged over ranks; rank 0 alone logs and checkpoints; a rank
  /// that fails records why in the rendezvous store, and the others' next collective fails naming it.
  void run(int64_t until_step = -1);
  /// One optimization step on `batch`; returns the logged metrics.
  nlohmann::json step(const data::Batch& batch);
  /// One optimization step over micro-batches (gradient accumulation): the gradient is the mean of
  /// the micro-batches' gradients and the metrics their means. A contrastive loss sees only its own
  /// micro-batch's samples (on every rank) as negatives: accumulation saves memory, it does not
  /// enlarge the set of negatives.
  nlohmann::json step(const std::vector<data::Batch>& micro_batches);
  /// Writes a checkpoint of the current state and returns its folder ("" on ranks other than 0,
  /// which write nothing).
  std::string save(const CheckpointWriteHook& hook = {});

  int64_t completed_steps() const { return step_; }
  /// Identifies this run's checkpoints (kept across resume): keep-last-N deletes only these, and a fresh
  /// run refuses a folder holding checkpoints of another.
  const std::string& run_id() const { return run_id_; }
  const AdamW& optimizer() const { return *optimizer_; }

 private:
  void run_steps(int64_t until_step);
  /// train.eval_every: evaluates the val split, logs it, keeps RUN/best; true when early stopping ends the run.
  bool validate(std::ofstream& log, io::EventFileWriter* events);
  Experiment& e_;
  std::vector<at::Tensor> params_;  // trainable tensors, for gradient clipping
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<data::Loader> loader_;
  std::unique_ptr<GradientAverager> averager_;  // several ranks only
  int64_t step_ = 0;
  std::string run_id_;
  bool resumed_ = false, started_ = false;
  int64_t saved_step_ = -1;  // the step of the last checkpoint written, so one step is not saved twice
  // Validation state (checkpointed, so a resumed run keeps its best and its patience).
  double best_value_ = -std::numeric_limits<double>::infinity();
  int64_t best_step_ = -1, since_best_ = 0;
};

}  // namespace medvlp::train
