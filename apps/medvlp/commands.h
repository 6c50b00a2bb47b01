#pragma once
// Subcommands of the medvlp tool: each registers its options and returns the action to run.
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "medvlp/core/config.h"
#include "medvlp/train/experiment.h"

namespace medvlp::app {
using Action = std::function<int()>;
Action add_train(CLI::App& app);
Action add_eval(CLI::App& app);
Action add_metrics(CLI::App& app);
Action add_probe(CLI::App& app);
Action add_finetune(CLI::App& app);
Action add_embed(CLI::App& app);
Action add_zero_shot(CLI::App& app);
Action add_synth(CLI::App& app);
Action add_loss_check(CLI::App& app);
Action add_convert(CLI::App& app);
Action add_export(CLI::App& app);
Action add_existence(CLI::App& app);
Action add_parse_reports(CLI::App& app);
Action add_tokenize(CLI::App& app);
Action add_inspect(CLI::App& app);
/// The bash completion script for `root`'s subcommands and options (`medvlp completion bash`).
std::string bash_completion(const CLI::App& root);
Action add_build_shards(CLI::App& app);

/// Commands over many lines or files: each failure is one "error: WHERE: WHY" line on stderr, the
/// rest are still answered, and the exit status is 1 when anything failed.
class BatchErrors {
 public:
  explicit BatchErrors(std::string command) : command_(std::move(command)) {}
  void add(const std::string& message);
  size_t count() const { return failed_; }
  /// Prints "COMMAND: F of N inputs failed" when F > 0; returns the exit status.
  int finish(size_t total, const char* unit) const;

 private:
  std::string command_;
  size_t failed_ = 0;
};

/// The config at `path` with the command line's `--set` overrides, then `--device` when given.
core::Config load_config(const std::string& path, const std::vector<std::string>& sets, const std::string& device = "");

/// The model a command reads (eval, probe, convert): -c, --set, --device and --checkpoint, and
/// --init where the command offers the untrained model as an alternative to a checkpoint.
struct ModelArgs {
  std::string config, device, checkpoint;
  std::vector<std::string> sets;
  bool init = false;
  bool init_offered = false;
  int64_t step = -1;  // the step of the checkpoint build() loaded (-1: none)
  /// Registers the options; a non-empty `init_help` adds --init, which excludes --checkpoint.
  void add_to(CLI::App& app, const std::string& checkpoint_help, const std::string& init_help = "");
  /// The experiment (no run folder) with the checkpoint's weights; `command` names the command in
  /// the error when --init is offered and neither it nor --checkpoint is given.
  train::Experiment build(const std::string& command);
  /// Where a command's result goes by default: RUN/<stem>_<fraction>.json beside the checkpoint's
  /// run, or <stem>_init_<fraction>.json in the working folder for --init.
  std::string default_result(const std::string& stem, double fraction) const;
};

/// A JSON output path without ".json": the stem the files written beside it share.
std::string json_stem(const std::string& path);

/// --checkpoint accepts a checkpoint folder or a run folder (its newest checkpoint, said on stderr).
std::string resolve_checkpoint_arg(const std::string& path);
/// -c when given; otherwise the config.yaml of the run `checkpoint` belongs to (medvlp::Error when none).
std::string config_path_for(const std::string& config, const std::string& checkpoint);
}  // namespace medvlp::app
