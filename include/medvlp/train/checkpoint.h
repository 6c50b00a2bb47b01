#pragma once
// Checkpoints: written to a temporary folder, fsynced, then renamed, so a crash never leaves half a checkpoint.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "medvlp/io/safetensors.h"

namespace medvlp::train {

/// What a checkpoint folder holds: model.safetensors, optimizer.safetensors, trainer_state.json.
struct Checkpoint {
  io::TensorMap model;       // parameters and buffers by name
  io::TensorMap optimizer;   // AdamW moments by "<param>.exp_avg[_sq]"
  nlohmann::json state;      // step, epoch, batch position, seed, metrics...
};

/// Test hook: called after each file of a checkpoint is written (throw to simulate a failed write).
using CheckpointWriteHook = std::function<void(const std::string& path)>;

/// Writes `run_dir/checkpoints/step_<step>` atomically and keeps the newest `keep_last` (0 = all) of this
/// run's checkpoints besides the one `run_dir/best` points to: only those whose trainer_state.json carries the same "run_id" as `checkpoint.state`
/// are ever deleted. Returns the final folder. On failure the temporary folder is removed and earlier
/// checkpoints stay intact.
std::string save_checkpoint(const std::string& run_dir, int64_t step, const Checkpoint& checkpoint, int64_t keep_last = 0,
                            const CheckpointWriteHook& hook = {});

/// Points `run_dir/best` (a symbolic link) at `checkpoint_dir`, one of run_dir/checkpoints/step_N,
/// replacing an earlier link in one rename. save_checkpoint's pruning never deletes its target.
void mark_best_checkpoint(const std::string& run_dir, const std::string& checkpoint_dir);

/// The checkpoint folder `run_dir/best` points to, or "" when there is none.
std::string best_checkpoint(const std::string& run_dir);

/// Loads a checkpoint folder; medvlp::Error names the folder and the missing or corrupt file.
Checkpoint load_checkpoint(const std::string& dir);

/// The folder of the highest-step complete checkpoint under run_dir, or "" when there is none.
std::string latest_checkpoint(const std::string& run_dir);

/// What training does with a run folder that already holds a run (a checkpoint or logged metrics).
enum class ExistingRun {
  refuse,     // medvlp::Error naming the folder and what it holds
  resume,     // the folder must hold a checkpoint to continue from
  overwrite,  // the earlier run's files are removed first
};

/// A run folder readied for training: created, and `mode` applied to an earlier run it holds.
/// `overwrite` moves what a run writes there (checkpoints/, metrics.jsonl, train.log, config.yaml, a
/// trained tokenizer (tokenizer.model/.vocab, vocab.txt), validation.jsonl, best, curves.png and what `medvlp eval` writes there) into `.replaced/`; commit() deletes
/// it once the new run is built, and a RunFolder destroyed uncommitted (a config error) puts it back,
/// so a failed start loses nothing. Other files in the folder are never touched.
class RunFolder {
 public:
  RunFolder(std::string dir, ExistingRun mode);
  ~RunFolder();
  RunFolder(const RunFolder&) = delete;
  RunFolder& operator=(const RunFolder&) = delete;
  /// The new run is under way: the replaced run's files are removed for good.
  void commit();

 private:
  std::string dir_;
  std::vector<std::string> moved_;  // names moved into .replaced/
  bool committed_ = false;
};

/// What of an earlier run `run_dir` holds ("checkpoints step_4..step_8, metrics.jsonl"), leaving out
/// checkpoints whose run_id is `own_run_id`; "" when it holds none.
std::string describe_existing_run(const std::string& run_dir, const std::string& own_run_id = "");

/// A checkpoint folder as given, or the newest checkpoint of a run folder; medvlp::Error naming the
/// path when it is neither.
std::string resolve_checkpoint(const std::string& path);

/// The run folder a path belongs to: the path itself when it holds checkpoints/ or config.yaml,
/// `RUN` for `RUN/checkpoints/step_N`; "" otherwise.
std::string run_dir_of(const std::string& path);

}  // namespace medvlp::train
