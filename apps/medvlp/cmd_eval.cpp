// medvlp eval [-c CONFIG] (--checkpoint CHECKPOINT_OR_RUN_DIR | --init) [-o eval.json]
// Writes the figures (eval.json), the per-case scores (eval_predictions.csv) and the ROC curves (eval_roc.png).
#include <fstream>
#include <iostream>

#include "commands.h"
#include "medvlp/core/config.h"
#include "medvlp/core/error.h"
#include "medvlp/eval/evaluator.h"
#include "medvlp/eval/plot.h"
#include "medvlp/io/files.h"
#include "medvlp/train/checkpoint.h"
#include "medvlp/train/experiment.h"

namespace medvlp::app {

Action add_eval(CLI::App& app) {
  struct Args {
    std::string device, config, checkpoint, out;
    std::vector<std::string> sets;
    bool init = false;
  };
  auto args = std::make_shared<Args>();
  app.add_option("-c,--config", args->config,
                 "experiment config (default: the config.yaml of the run --checkpoint belongs to)");
  app.add_option("--set", args->sets, "override a config key: a.b.c=value (repeatable)");
  app.add_option("--device", args->device, "auto, cpu, cuda or cuda:N (overrides the config's `device`)");
  auto* ckpt = app.add_option("--checkpoint", args->checkpoint, "a checkpoint folder (RUN/checkpoints/step_N) or a run folder (its newest checkpoint)");
  auto* init = app.add_flag("--init", args->init, "evaluate the untrained model (the seed's initial weights)");
  ckpt->excludes(init);
  app.add_option("-o,--out", args->out, "where to write the JSON result (default: next to the checkpoint's run)");
  return [args] {
    MEDVLP_CHECK(!args->checkpoint.empty() || args->init, "eval: give --checkpoint DIR or --init");
    if (!args->checkpoint.empty()) args->checkpoint = resolve_checkpoint_arg(args->checkpoint);
    core::Config config = load_config(config_path_for(args->config, args->checkpoint), args->sets, args->device);
    train::Experiment e = train::Experiment::build(std::move(config), "");
    if (!args->checkpoint.empty()) e.load_state_tensors(train::load_checkpoint(args->checkpoint).model);
    eval::Predictions predictions;
    std::string out = args->out;
    if (out.empty()) {
      // run/checkpoints/step_N -> run/eval.json; run/best -> run/eval_best.json
      std::string c = args->checkpoint;
      while (c.size() > 1 && c.back() == '/') c.pop_back();
      const auto cut = c.find("/checkpoints/");
      const bool best = c.size() >= 5 && c.compare(c.size() - 5, 5, "/best") == 0;
      out = args->init ? "eval_init.json"
            : best     ? c.substr(0, c.size() - 5) + "/eval_best.json"
            : cut == std::string::npos ? "eval.json"
                                       : c.substr(0, cut) + "/eval.json";
    }
    const std::string stem_of_out = out.size() > 5 && out.compare(out.size() - 5, 5, ".json") == 0 ? out.substr(0, out.size() - 5) : out;
    const nlohmann::json result = e.evaluate(&predictions, e.eval.localization.overlays > 0 ? stem_of_out + "_maps" : "");
    // eval.json -> eval_predictions.csv beside it: the per-case scores `medvlp metrics` recomputes from.
    const std::string& stem = stem_of_out;
    const std::string predictions_path = stem + "_predictions.csv";
    eval::write_predictions_csv(predictions_path, predictions);
    if (eval::charts_available())
      eval::write_roc_chart(stem + "_roc.png", predictions,
                            "zero-shot ROC, " + e.eval.split + " split (" + std::to_string(predictions.size()) + " cases)");
    io::write_file_atomic(out, result.dump(2) + "\n");
    std::cout << eval::format_eval_table(result) << "written to " << out << ", " << predictions_path
              << (eval::charts_available() ? " and " + stem + "_roc.png" : std::string()) << "\n";
    return 0;
  };
}

}  // namespace medvlp::app
