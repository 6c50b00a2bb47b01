// medvlp train -c CONFIG [--set k=v ...] [-o RUN_DIR] [--resume | --overwrite]
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
    std::string device, config, run_dir = "runs/latest";
    std::vector<std::string> sets;
    bool resume = false, overwrite = false;
  };
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
    // Before anything is written: a folder holding a run is refused unless the user said what to do with it.
    train::RunFolder folder(args->run_dir, args->resume      ? train::ExistingRun::resume
                                           : args->overwrite ? train::ExistingRun::overwrite
                                                             : train::ExistingRun::refuse);
    core::add_log_file(args->run_dir + "/train.log");
    std::string resume_from;
    if (args->resume) {
      resume_from = train::latest_checkpoint(args->run_dir);
      // The tokenizer trained by the first run is part of the experiment: training another would
      // overwrite it and change every token id.
      const nlohmann::json& tree = config.tree();
      const bool has_text = tree.contains("text") && tree["text"].is_object();
      const bool configured = has_text && tree["text"].contains("model");
      const bool wordpiece = has_text && tree["text"].value("tokenizer", std::string()) == "wordpiece";
      const std::string tok = args->run_dir + (wordpiece ? "/vocab.txt" : "/tokenizer.model");
      if (!configured && io::path_exists(tok)) config.set("text.model=" + tok);
    }
    train::Experiment experiment = train::Experiment::build(std::move(config), args->run_dir);
    folder.commit();  // the config built: only now is a replaced run gone for good
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
