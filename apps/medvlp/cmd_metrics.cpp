// medvlp metrics PREDICTIONS.csv [--thresholds-from VAL.csv] [--bootstrap N] [--level L] [--seed S] [-o OUT.json]
// The figures of `medvlp eval` recomputed from per-case predictions (its *_predictions.csv, or any
// CSV with id, patient_id, score:<finding> and label:<finding> columns): another bootstrap size or
// seed, or thresholds from another model's validation run, without running a model.
#include <algorithm>
#include <iostream>

#include "commands.h"
#include "medvlp/core/error.h"
#include "medvlp/eval/predictions.h"
#include "medvlp/io/files.h"

namespace medvlp::app {

Action add_metrics(CLI::App& app) {
  struct Args {
    std::string predictions, thresholds_from, out;
    int64_t bootstrap = 1000;
    double level = 0.95;
    uint64_t seed = 0;
  };
  auto args = std::make_shared<Args>();
  app.add_option("predictions", args->predictions, "per-case predictions CSV (as `medvlp eval` writes)")->required();
  app.add_option("--thresholds-from", args->thresholds_from,
                 "validation predictions CSV: each finding's threshold maximizes F1 there (adds accuracy and F1)");
  app.add_option("--bootstrap", args->bootstrap, "patient-level bootstrap resamples (0: no confidence intervals)")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000}));
  app.add_option("--level", args->level, "confidence level of the intervals")->check(CLI::Range(0.5, 0.999));
  app.add_option("--seed", args->seed, "bootstrap seed");
  app.add_option("-o,--out", args->out, "write the figures as JSON here (default: standard output only)");
  return [args] {
    const eval::Predictions p = eval::read_predictions_csv(args->predictions);
    eval::SummaryOptions o;
    o.resamples = args->bootstrap;
    o.level = args->level;
    o.seed = args->seed;
    if (!args->thresholds_from.empty()) {
      const eval::Predictions val = eval::read_predictions_csv(args->thresholds_from);
      for (const auto& f : p.findings)
        MEDVLP_CHECK(std::find(val.findings.begin(), val.findings.end(), f) != val.findings.end(), args->thresholds_from,
                     ": has no scores for \"", f, "\", a finding of ", args->predictions);
      for (const auto& [finding, t] : eval::choose_thresholds(val))
        if (std::find(p.findings.begin(), p.findings.end(), finding) != p.findings.end()) o.thresholds[finding] = t;
    }
    const nlohmann::json result = eval::summarize(p, o);
    if (!args->out.empty()) io::write_file_atomic(args->out, result.dump(2) + "\n");
    std::cout << result.dump(2) << "\n";
    return 0;
  };
}

}  // namespace medvlp::app
