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

/// Writes `run_dir/checkpoints/step_<step>` atomically and keeps the newest `keep_last` (0 = all).
/// Returns the final folder. On failure the temporary folder is removed and earlier checkpoints stay intact.
std::string save_checkpoint(const std::string& run_dir, int64_t step, const Checkpoint& checkpoint, int64_t keep_last = 0,
                            const CheckpointWriteHook& hook = {});

/// Loads a checkpoint folder; medvlp::Error names the folder and the missing or corrupt file.
Checkpoint load_checkpoint(const std::string& dir);

/// The folder of the highest-step complete checkpoint under run_dir, or "" when there is none.
std::string latest_checkpoint(const std::string& run_dir);

}  // namespace medvlp::train
