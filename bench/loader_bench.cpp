// Loader throughput: PNG chest X-rays (512x512, 8-bit) -> random resized crop to 224 -> small affine
// -> brightness/contrast -> batches of 32 with tokenized reports, through medvlp::data::Loader with 1
// and 2 worker threads. `--make DIR` writes the PNG manifest that bench/loader_bench.py reads with
// torch's DataLoader + torchvision. Prints one JSON line per worker count.
// `--reports N`: the structured-report stage on the demo's data (64 px chest phantoms, batches of
// 64, one worker): reports structured per second, and loader images/s over N batches without the
// stage and with all four units (anatomy texts, sentences, entity texts, tags) tokenized.
#include <chrono>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "medvlp/core/config.h"
#include "medvlp/data/build.h"
#include "medvlp/data/loader.h"
#include "medvlp/data/manifest.h"
#include "medvlp/data/report_structure.h"
#include "medvlp/text/wordpiece.h"

using namespace medvlp;
using Clock = std::chrono::steady_clock;

namespace {
// Images/s over `batches` batches after a warm-up batch (threads started, first batch built),
// as one JSON object with `what` and the timing fields.
nlohmann::json time_loader(const data::DatasetPtr& ds, const std::shared_ptr<const text::Tokenizer>& tokenizer,
                           const data::LoaderOptions& options, int64_t batches) {
  data::Loader loader(ds, tokenizer, options);
  loader.start(0);
  data::Batch b;
  loader.next(&b);
  const auto t0 = Clock::now();
  int64_t images = 0;
  for (int64_t i = 0; i < batches && loader.next(&b); ++i) images += b.size();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return {{"images", images}, {"seconds", s}, {"images_per_s", static_cast<double>(images) / s}};
}
}  // namespace

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
  int64_t report_batches = 0;
  app.add_option("--reports", report_batches, "time the structured-report stage over this many demo batches");
  CLI11_PARSE(app, argc, argv);
  if (report_batches > 0) {
    torch::set_num_threads(1);
    const core::Config config = core::Config::parse(
        "data: {name: synthetic_cxr, image_size: 64, train_size: 20000, augment: true, shuffle_sentences: true,"
        " report: {lexicon: chest_xray, knowledge: chest_xray}}",
        "report_bench");
    const core::ConfigNode data_node = config.root().at("data");
    const data::DatasetPtr ds = data::build_dataset(data_node, "train");
    std::vector<std::string> reports, ids;
    for (int64_t i = 0; i < 2000; ++i) {
      const data::Sample sample = ds->get(i, 0);
      reports.push_back(sample.report);
      ids.push_back(sample.id);
    }
    text::WordPieceTrainOptions wo;
    wo.vocab_size = 500;
    auto tokenizer = std::make_shared<text::WordPieceTokenizer>(
        text::train_wordpiece(std::vector<std::string>(reports.begin(), reports.begin() + 200), wo));
    data::ReportStructureOptions ro =
        data::ReportStructurer::parse_options(data_node.at("report"), ds->anatomies(), ds->findings());
    ro.units = {true, true, true, true};
    {
      const data::ReportStructurer structurer(ro);
      const auto t0 = Clock::now();
      for (size_t i = 0; i < reports.size(); ++i) structurer.structure(reports[i], ids[i]);
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      std::cout << nlohmann::json{{"what", "structure"}, {"reports", reports.size()}, {"seconds", s},
                                  {"reports_per_s", static_cast<double>(reports.size()) / s}}
                       .dump()
                << "\n";
    }
    for (const bool with_reports : {false, true, false, true}) {  // interleaved: drift on a shared VM hits both
      data::LoaderOptions lo;
      lo.batch_size = 64;
      lo.workers = 1;
      lo.max_text_len = 80;
      if (with_reports) lo.reports = std::make_shared<const data::ReportStructurer>(ro);  // cold cache
      nlohmann::json row = time_loader(ds, tokenizer, lo, report_batches);
      row["what"] = "loader_reports";
      row["report_units"] = with_reports;
      std::cout << row.dump() << "\n";
    }
    return 0;
  }
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
    nlohmann::json row = time_loader(ds, tokenizer, lo, batches);
    row["what"] = "loader";
    row["workers"] = w;
    std::cout << row.dump() << "\n";
  }
  return 0;
}
