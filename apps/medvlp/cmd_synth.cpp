// medvlp synth --out DIR [--kind cxr|ct] [--size N] [--slices N] [--seed S] [--train N --val N --test N]
#include <iostream>

#include "commands.h"
#include "medvlp/data/manifest.h"
#include "medvlp/data/synthetic_ct.h"
#include "medvlp/data/synthetic_cxr.h"

namespace medvlp::app {

Action add_synth(CLI::App& app) {
  struct Args {
    std::string out, kind = "cxr";
    int64_t size = 0, slices = 32, train = 200, val = 50, test = 100;
    uint64_t seed = 0;
  };
  auto args = std::make_shared<Args>();
  app.add_option("-o,--out", args->out, "output folder (images/, masks/ and manifest.jsonl)")->required();
  app.add_option("--kind", args->kind, "cxr: PNG chest X-rays; ct: NIfTI CT volumes with organ label maps")
      ->check(CLI::IsMember({"cxr", "ct"}));
  app.add_option("--size", args->size, "image side in pixels (cxr default 96, ct default 64)")->check(CLI::Range(0, 2048));
  app.add_option("--slices", args->slices, "CT slices (ct only)")->check(CLI::Range(8, 1024));
  app.add_option("--seed", args->seed, "generation seed");
  app.add_option("--train", args->train, "training cases")->check(CLI::NonNegativeNumber);
  app.add_option("--val", args->val, "validation cases")->check(CLI::NonNegativeNumber);
  app.add_option("--test", args->test, "test cases")->check(CLI::NonNegativeNumber);
  return [args] {
    int64_t total = 0;
    for (auto split : {data::Split::kTrain, data::Split::kVal, data::Split::kTest}) {
      if (args->kind == "cxr") {
        data::SyntheticCxrOptions o;
        if (args->size > 0) o.image_size = std::max<int64_t>(32, args->size);
        o.seed = args->seed, o.train_size = args->train, o.val_size = args->val, o.test_size = args->test;
        total += data::write_synthetic_cxr(o, split, args->out);
      } else {
        data::SyntheticCtOptions o;
        const int64_t side = args->size > 0 ? std::max<int64_t>(8, args->size) : 64;
        o.size = {args->slices, side, side};
        o.seed = args->seed, o.train_size = args->train, o.val_size = args->val, o.test_size = args->test;
        total += data::write_synthetic_ct(o, split, args->out);
      }
    }
    std::cout << "wrote " << total << " cases to " << args->out << "/manifest.jsonl\n";
    return 0;
  };
}

}  // namespace medvlp::app
