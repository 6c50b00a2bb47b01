#pragma once
// Subcommands of the medvlp tool: each registers its options and returns the action to run.
#include <functional>

#include <CLI/CLI.hpp>

namespace medvlp::app {
using Action = std::function<int()>;
Action add_train(CLI::App& app);
Action add_eval(CLI::App& app);
Action add_synth(CLI::App& app);
Action add_loss_check(CLI::App& app);
Action add_convert(CLI::App& app);
Action add_existence(CLI::App& app);
Action add_parse_reports(CLI::App& app);
Action add_tokenize(CLI::App& app);
Action add_inspect(CLI::App& app);
Action add_build_shards(CLI::App& app);
}  // namespace medvlp::app
