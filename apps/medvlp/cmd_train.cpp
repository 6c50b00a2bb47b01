// medvlp train -c CONFIG [--set k=v ...] [-o RUN_DIR] [--resume | --overwrite]
// Several ranks: torchrun --nproc_per_node N --no_python medvlp train ..., or srun medvlp train ...
#include <iostream>
#include <optional>

#include "commands.h"
#include "medvlp/core/config.h"
#include "medvlp/core/error.h"
#include "medvlp/core/logging.h"
#include "medvlp/io/files.h"
#include "medvlp/train/distributed.h"
#include "medvlp/train/trainer.h"

namespace medvlp::app {

namespace {

struct Args {
  std::string device, config, run_dir = "runs/latest";
  std::vector<std::string> sets;
  bool resume = false, overwrite = false;
};

int train_run(const Args& args, core::Config config, const std::shared_ptr<train::ProcessGroup>& group) {
  const bool writer = !group || group->rank() == 0;
  // Rank 0 alone looks after the run folder; the others hear its verdict (and which checkpoint to
  // resume), so a refused folder stops every rank with rank 0's reason.
  std::optional<train::RunFolder> folder;
  nlohmann::json plan = nlohmann::json::object();
  if (writer) {
    try {
      folder.emplace(args.run_dir, args.resume      ? train::ExistingRun::resume
                                   : args.overwrite ? train::ExistingRun::overwrite
                                                    : train::ExistingRun::refuse);
      core::add_log_file(args.run_dir + "/train.log");
      if (args.resume) {
        plan["resume_from"] = train::latest_checkpoint(args.run_dir);
        // The tokenizer trained by the first run is part of the experiment: training another would
        // overwrite it and change every token id.
        const nlohmann::json& tree = config.tree();
        const bool has_text = tree.contains("text") && tree["text"].is_object();
        const bool configured = has_text && tree["text"].contains("model");
        const bool wordpiece = has_text && tree["text"].value("tokenizer", std::string()) == "wordpiece";
        const std::string tok = args.run_dir + (wordpiece ? "/vocab.txt" : "/tokenizer.model");
        if (!configured && io::path_exists(tok)) plan["text_model"] = tok;
      }
    } catch (const Error& err) {
      if (!group) throw;
      plan = {{"error", err.what()}};
    }
  }
  if (group) {
    std::string bytes = plan.dump();
    group->broadcast(bytes, 0);
    plan = nlohmann::json::parse(bytes);
  }
  if (plan.contains("error")) {
    if (writer) throw Error(plan["error"].get<std::string>());
    throw Error("rank 0 stopped: " + plan["error"].get<std::string>());
  }
  const std::string resume_from = plan.value("resume_from", std::string());
  if (plan.contains("text_model")) config.set("text.model=" + plan["text_model"].get<std::string>());
  train::Experiment experiment = train::Experiment::build(std::move(config), args.run_dir, group);
  if (folder) folder->commit();  // the config built: only now is a replaced run gone for good
  if (writer) experiment.config.save(args.run_dir + "/config.yaml");
  train::Trainer trainer(experiment);
  if (!resume_from.empty()) trainer.resume(resume_from);
  trainer.run();
  if (writer)
    std::cout << "trained " << trainer.completed_steps() << " steps"
              << (group ? " on " + std::to_string(group->world_size()) + " ranks" : std::string())
              << "; checkpoint in " << train::latest_checkpoint(args.run_dir) << "\n";
  return 0;
}

}  // namespace

Action add_train(CLI::App& app) {
  auto args = std::make_shared<Args>();
  app.add_option("-c,--config", args->config, "experiment config (YAML or JSON)")->required();
  app.add_option("--set", args->sets, "override a config key: a.b.c=value (repeatable)");
  app.add_option("--device", args->device, "auto, cpu, cuda or cuda:N (overrides the config's `device`)");
  app.add_option("-o,--run-dir", args->run_dir, "run folder (config, metrics, checkpoints)");
  auto* resume = app.add_flag("--resume", args->resume, "continue from the newest checkpoint in the run folder");
  auto* overwrite = app.add_flag("--overwrite", args->overwrite,
                                 "replace the run the folder holds (its checkpoints, metrics, config, tokenizer)");
  resume->excludes(overwrite);
  return [args] {
    core::Config config = load_config(args->config, args->sets, args->device);
    // Under torchrun or srun (or their environment contract), join the other ranks first.
    const train::DistOptions dist = train::DistOptions::resolve(config.root().child("distributed"));
    std::shared_ptr<train::ProcessGroup> group;
    if (dist.world_size > 1) group = std::make_shared<train::ProcessGroup>(dist);
    try {
      return train_run(*args, std::move(config), group);
    } catch (const std::exception& err) {
      if (group) group->report_failure(err.what());
      throw;
    }
  };
}

}  // namespace medvlp::app
