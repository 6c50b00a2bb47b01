// medvlp build-shards -c CONFIG -o DIR [--splits train,val,test] [--per-shard N] [--float32] [--workers N]
#include <iostream>

#include "commands.h"
#include "medvlp/core/config.h"
#include "medvlp/data/build.h"
#include "medvlp/data/shards.h"

namespace medvlp::app {

Action add_build_shards(CLI::App& app) {
  struct Args {
    std::string config, out;
    std::vector<std::string> sets, splits = {"train", "val", "test"};
    data::ShardWriteOptions options;
    bool float32 = false;
  };
  auto args = std::make_shared<Args>();
  app.add_option("-c,--config", args->config, "config whose `data` section names the dataset and its transforms")
      ->required();
  app.add_option("--set", args->sets, "override a config key: a.b.c=value (repeatable)");
  app.add_option("-o,--out", args->out, "output folder; each split goes to OUT/SPLIT")->required();
  app.add_option("--splits", args->splits, "splits to write")->delimiter(',')->check(CLI::IsMember({"train", "val", "test"}));
  app.add_option("--per-shard", args->options.samples_per_shard, "samples per shard file")->check(CLI::PositiveNumber);
  app.add_option("--workers", args->options.workers, "decoding threads")->check(CLI::Range(1, 256));
  app.add_flag("--float32", args->float32, "store images as float32 (default float16)");
  return [args] {
    core::Config config = load_config(args->config, args->sets);
    args->options.float16 = !args->float32;
    for (const auto& split : args->splits) {
      // Random steps take their evaluation form: shards hold the deterministic preprocessing, and
      // augmentation belongs to the `shards` dataset's own transforms at training time.
      const data::DatasetPtr ds = data::build_dataset(config.root().at("data"), split, /*augment=*/false);
      const int64_t n = data::write_shards(*ds, args->out + "/" + split, args->options);
      std::cout << "wrote " << n << " " << split << " samples to " << args->out << "/" << split << "\n";
    }
    return 0;
  };
}

}  // namespace medvlp::app
