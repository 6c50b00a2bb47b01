// medvlp probe (--checkpoint CHECKPOINT_OR_RUN_DIR | -c CONFIG --init) [--fraction F] [--seed S] [-o OUT.json]
// Linear probe of the frozen image encoder with a fraction of the training labels (per patient):
// writes the test figures (with bootstrap CIs) and the per-case test scores beside them.
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "medvlp/core/error.h"
#include "medvlp/data/build.h"
#include "medvlp/eval/evaluator.h"
#include "medvlp/eval/probe.h"
#include "medvlp/io/files.h"
#include "medvlp/train/checkpoint.h"
#include "medvlp/train/experiment.h"

namespace medvlp::app {

Action add_probe(CLI::App& app) {
  struct Args {
    ModelArgs model;
    std::string out;
    eval::ProbeOptions probe;
  };
  auto args = std::make_shared<Args>();
  args->model.add_to(app, "a checkpoint folder, RUN/best, or a run folder (its newest checkpoint)",
                     "probe the untrained encoder (the seed's initial weights): the baseline");
  app.add_option("--fraction", args->probe.fraction, "fraction of the training patients whose labels train the head")
      ->check(CLI::Range(1e-6, 1.0));
  app.add_option("--seed", args->probe.seed, "which patients are drawn (and the head's initialization)");
  app.add_option("--max-epochs", args->probe.max_epochs, "full-batch steps at most")->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  app.add_option("--lr", args->probe.lr, "AdamW learning rate of the head")->check(CLI::Range(1e-8, 10.0));
  app.add_option("--bootstrap", args->probe.summary.resamples, "patient bootstrap resamples for the test CIs (0: none)")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000}));
  app.add_option("-o,--out", args->out, "the JSON result (default: RUN/probe_<fraction>.json, or probe_init_<fraction>.json)");
  return [args] {
    train::Experiment e = args->model.build("probe");
    const std::string out = args->out.empty() ? args->model.default_result("probe", args->probe.fraction) : args->out;
    // Features of unaugmented images, as the test set's are.
    const core::ConfigNode data = e.config.root().at("data");
    const data::DatasetPtr train = data::build_dataset(data, "train", /*augment=*/false);
    const data::DatasetPtr val = data::build_dataset(data, "val", /*augment=*/false);
    const auto features = [&](const data::DatasetPtr& d) {
      return eval::extract_features(e.model, d, e.device, e.image_mean, e.image_std, e.eval.batch_size);
    };
    eval::Predictions predictions;
    nlohmann::json result =
        eval::linear_probe(features(train), features(val), features(e.eval_set), args->probe, &predictions);
    result["split"] = e.eval.split;
    const std::string stem = json_stem(out);
    eval::write_predictions_csv(stem + "_predictions.csv", predictions);
    io::write_file_atomic(out, result.dump(2) + "\n");
    char title[160];
    std::snprintf(title, sizeof title, "linear probe, %g of the training patients (%lld cases), best epoch %lld",
                  args->probe.fraction, static_cast<long long>(result["train_cases"].get<int64_t>()),
                  static_cast<long long>(result["best_epoch"].get<int64_t>()));
    nlohmann::json table = {{"n", predictions.size()}, {"zero_shot", result}};
    table["zero_shot"]["thresholds_from"] = "val";
    std::cout << eval::format_eval_table(table, title) << "written to " << out << " and " << stem << "_predictions.csv\n";
    return 0;
  };
}

}  // namespace medvlp::app
