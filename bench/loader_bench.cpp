// Loader throughput: PNG chest X-rays (512x512, 8-bit) -> random resized crop to 224 -> small affine
// -> brightness/contrast -> batches of 32 with tokenized reports, through medvlp::data::Loader with 1
// and 2 worker threads. `--make DIR` writes the PNG manifest that bench/loader_bench.py reads with
// torch's DataLoader + torchvision. Prints one JSON line per worker count.
#include <chrono>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "medvlp/core/config.h"
#include "medvlp/data/build.h"
#include "medvlp/data/loader.h"
#include "medvlp/data/manifest.h"
#include "medvlp/text/wordpiece.h"

using namespace medvlp;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  CLI::App app{"medvlp loader benchmark"};
  std::string make, dir;
  int64_t files = 256, batches = 8;
  std::vector<int64_t> workers = {1, 2};
  app.add_option("--make", make, "write the PNG manifest into this folder and exit");
  app.add_option("--files", files, "images to write with --make");
  app.add_option("--dir", dir, "folder with manifest.jsonl");
  app.add_option("--batches", batches, "batches of 32 to time per worker count");
  app.add_option("--workers", workers, "worker counts");
  CLI11_PARSE(app, argc, argv);
  if (!make.empty()) {
    data::SyntheticCxrOptions o;
    o.image_size = 512;
    o.train_size = files;
    data::write_synthetic_cxr(o, data::Split::kTrain, make);
    return 0;
  }
  torch::set_num_threads(1);
  const core::Config config = core::Config::parse(
      "data: {name: manifest, manifest: " + dir +
          "/manifest.jsonl, transforms: [{name: random_resized_crop, size: 224, scale: [0.7, 1.0]},"
          " {name: affine, degrees: 5, translate: 0.03}, {name: intensity, brightness: 0.1, contrast: 0.1}]}",
      "loader_bench");
  const data::DatasetPtr ds = data::build_dataset(config.root().at("data"), "train");
  std::vector<std::string> corpus;
  for (int64_t i = 0; i < std::min<int64_t>(ds->size(), 200); ++i) corpus.push_back(ds->get(i, 0).report);
  text::WordPieceTrainOptions wo;
  wo.vocab_size = 500;
  auto tokenizer = std::make_shared<text::WordPieceTokenizer>(text::train_wordpiece(corpus, wo));
  for (int64_t w : workers) {
    data::LoaderOptions lo;
    lo.batch_size = 32;
    lo.workers = w;
    lo.prefetch = 4;
    data::Loader loader(ds, tokenizer, lo);
    loader.start(0);
    data::Batch b;
    loader.next(&b);  // warm-up: threads started, first batch built
    const auto t0 = Clock::now();
    int64_t images = 0;
    for (int64_t i = 0; i < batches && loader.next(&b); ++i) images += b.size();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::cout << nlohmann::json{{"what", "loader"}, {"workers", w}, {"images", images}, {"seconds", s},
                                {"images_per_s", static_cast<double>(images) / s}}
                     .dump()
              << "\n";
  }
  return 0;
}
