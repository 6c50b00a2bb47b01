// medvlp train -c CONFIG [--set k=v ...] [--run-dir DIR] [--resume]
#include <sys/stat.h>

#include <iostream>

#include "commands.h"
#include "medvlp/core/config.h"
#include "medvlp/core/error.h"
#include "medvlp/core/logging.h"
#include "medvlp/io/files.h"
#include "medvlp/train/trainer.h"

namespace medvlp::app {

Action add_train(CLI::App& app) {
  struct Args {
    std::string config, run_dir = "runs/latest";
    std::vector<std::string> sets;
    bool resume = false;
  };
  auto args = std::make_shared<Args>();
  app.add_option("-c,--config", args->config, "experiment config (YAML or JSON)")->required();
  app.add_option("--set", args->sets, "override a config key: a.b.c=value (repeatable)");
  app.add_option("-o,--run-dir", args->run_dir, "run folder (config, metrics, checkpoints)");
  app.add_flag("--resume", args->resume, "continue from the newest checkpoint in the run folder");
  return [args] {
    core::Config config = core::Config::load(args->config);
    for (const auto& s : args->sets) config.set(s);
    io::make_directories(args->run_dir);
    core::add_log_file(args->run_dir + "/train.log");
    std::string resume_from;
    if (args->resume) {
      resume_from = train::latest_checkpoint(args->run_dir);
      MEDVLP_CHECK(!resume_from.empty(), args->run_dir, ": --resume given but there is no checkpoint to resume from");
      // The tokenizer trained by the first run is part of the experiment.
      const std::string tok = args->run_dir + "/tokenizer.model";
      struct stat st {};
      const nlohmann::json& tree = config.tree();
      const bool configured = tree.contains("text") && tree["text"].is_object() && tree["text"].contains("model");
      if (!configured && ::stat(tok.c_str(), &st) == 0) config.set("text.model=" + tok);
    }
    train::Experiment experiment = train::Experiment::build(std::move(config), args->run_dir);
    experiment.config.save(args->run_dir + "/config.yaml");
    train::Trainer trainer(experiment);
    if (!resume_from.empty()) trainer.resume(resume_from);
    trainer.run();
    std::cout << "trained " << trainer.completed_steps() << " steps; checkpoint in " << train::latest_checkpoint(args->run_dir)
              << "\n";
    return 0;
  };
}

}  // namespace medvlp::app
