// medvlp eval [-c CONFIG] (--checkpoint CHECKPOINT_OR_RUN_DIR | --init) [-o eval.json]
// Writes the figures (eval.json), the per-case scores (eval_predictions.csv) and the ROC curves (eval_roc.png);
// for a checkpoint of a run, the figures, the ROC chart and the localization maps also go to the
// run's TensorBoard events (RUN/tensorboard, tags eval/SPLIT/..., at the checkpoint's step).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "commands.h"
#include "medvlp/core/config.h"
#include "medvlp/core/error.h"
#include "medvlp/eval/evaluator.h"
#include "medvlp/eval/plot.h"
#include "medvlp/io/event_file.h"
#include "medvlp/io/files.h"
#include "medvlp/train/checkpoint.h"
#include "medvlp/train/experiment.h"

namespace medvlp::app {

namespace {

// The PNG files directly in `dir`, sorted; none when it does not exist.
std::vector<std::string> pngs_in(const std::string& dir) {
  std::vector<std::string> names;
  if (!io::is_directory(dir)) return names;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (io::has_suffix(entry.path().filename().string(), ".png")) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

Action add_eval(CLI::App& app) {
  struct Args {
    ModelArgs model;
    std::string out;
  };
  auto args = std::make_shared<Args>();
  args->model.add_to(app, "a checkpoint folder (RUN/checkpoints/step_N), RUN/best, or a run folder (its newest checkpoint)",
                     "evaluate the untrained model (the seed's initial weights)");
  app.add_option("-o,--out", args->out, "where to write the JSON result (default: next to the checkpoint's run)");
  return [args] {
    train::Experiment e = args->model.build("eval");
    eval::Predictions predictions;
    std::string out = args->out;
    if (out.empty()) {
      // run/checkpoints/step_N -> run/eval.json; run/best -> run/eval_best.json
      std::string c = args->model.checkpoint;
      while (c.size() > 1 && c.back() == '/') c.pop_back();
      const auto cut = c.find("/checkpoints/");
      const bool best = c.size() >= 5 && c.compare(c.size() - 5, 5, "/best") == 0;
      out = args->model.init ? "eval_init.json"
            : best     ? c.substr(0, c.size() - 5) + "/eval_best.json"
            : cut == std::string::npos ? "eval.json"
                                       : c.substr(0, cut) + "/eval.json";
    }
    const std::string stem = json_stem(out);
    const nlohmann::json result = e.evaluate(&predictions, e.eval.localization.overlays > 0 ? stem + "_maps" : "");
    // eval.json -> eval_predictions.csv beside it: the per-case scores `medvlp metrics` recomputes from.
    const std::string predictions_path = stem + "_predictions.csv";
    eval::write_predictions_csv(predictions_path, predictions);
    if (eval::charts_available())
      eval::write_roc_chart(stem + "_roc.png", predictions,
                            "zero-shot ROC, " + e.eval.split + " split (" + std::to_string(predictions.size()) + " cases)");
    io::write_file_atomic(out, result.dump(2) + "\n");
    std::cout << eval::format_eval_table(result) << "written to " << out << ", " << predictions_path
              << (eval::charts_available() ? " and " + stem + "_roc.png" : std::string()) << "\n";
    const std::string run = args->model.checkpoint.empty() ? "" : train::run_dir_of(args->model.checkpoint);
    if (!run.empty() && args->model.step >= 0) {
      const std::string prefix = "eval/" + e.eval.split;
      std::vector<io::SummaryValue> values;
      io::append_json_scalars(&values, prefix, result);
      if (eval::charts_available()) values.push_back({prefix + "/roc", 0.0, io::read_file(stem + "_roc.png")});
      const std::string maps = stem + "_maps";
      for (const std::string& name : pngs_in(maps))
        values.push_back({prefix + "/maps/" + name.substr(0, name.size() - 4), 0.0, io::read_file(maps + "/" + name)});
      io::EventFileWriter events(run + "/tensorboard");
      events.write(args->model.step, values);
      std::cout << "TensorBoard events (step " << args->model.step << "): " << events.path() << "\n";
    }
    return 0;
  };
}

}  // namespace medvlp::app
