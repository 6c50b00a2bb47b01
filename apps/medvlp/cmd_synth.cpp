// medvlp synth --out DIR [--size N] [--seed S] [--train N --val N --test N]
#include <iostream>

#include "commands.h"
#include "medvlp/data/manifest.h"
#include "medvlp/data/synthetic_cxr.h"

namespace medvlp::app {

Action add_synth(CLI::App& app) {
  struct Args {
    std::string out, kind = "cxr";
    data::SyntheticCxrOptions options;
  };
  auto args = std::make_shared<Args>();
  args->options.train_size = 200;
  args->options.val_size = 50;
  args->options.test_size = 100;
  app.add_option("-o,--out", args->out, "output folder (images/ and manifest.jsonl)")->required();
  app.add_option("--kind", args->kind, "phantom kind")->check(CLI::IsMember({"cxr"}));
  app.add_option("--size", args->options.image_size, "image side in pixels")->check(CLI::Range(32, 2048));
  app.add_option("--seed", args->options.seed, "generation seed");
  app.add_option("--train", args->options.train_size, "training cases")->check(CLI::NonNegativeNumber);
  app.add_option("--val", args->options.val_size, "validation cases")->check(CLI::NonNegativeNumber);
  app.add_option("--test", args->options.test_size, "test cases")->check(CLI::NonNegativeNumber);
  return [args] {
    int64_t total = 0;
    for (auto split : {data::Split::kTrain, data::Split::kVal, data::Split::kTest})
      total += data::write_synthetic_cxr(args->options, split, args->out);
    std::cout << "wrote " << total << " cases to " << args->out << "/manifest.jsonl\n";
    return 0;
  };
}

}  // namespace medvlp::app
