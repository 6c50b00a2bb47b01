// Text throughput on one core: report sentences parsed per second (triplet parser) and WordPiece
// tokens per second, on radiology text (the gold sentences and synthetic reports). Writes the
// vocabulary and text it used into --work so bench/text_bench.cjs can time Hugging Face's JS
// tokenizer on exactly the same input. Prints JSON lines.
#include <chrono>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "medvlp/data/synthetic_cxr.h"
#include "medvlp/io/files.h"
#include "medvlp/text/report_parser.h"
#include "medvlp/text/wordpiece.h"

using namespace medvlp;
using Clock = std::chrono::steady_clock;

namespace {

std::vector<std::string> gold_sentences(const std::string& source) {
  std::vector<std::string> out;
  for (const char* f : {"report_gold_cxr.tsv", "report_heldout_cxr.tsv"}) {
    std::ifstream in(source + "/tests/data/" + f);
    std::string line;
    while (std::getline(in, line))
      if (!line.empty() && line[0] != '#') out.push_back(line.substr(0, line.find('\t')));
  }
  return out;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"medvlp text benchmark"};
  std::string source = MEDVLP_SOURCE_DIR, work = "text-bench";
  int64_t sentences_target = 100000, reports = 400;
  app.add_option("--source", source, "medvlp source tree (for configs/ and tests/data/)");
  app.add_option("--work", work, "folder for vocab.txt and text.txt");
  app.add_option("--sentences", sentences_target, "sentences to parse");
  CLI11_PARSE(app, argc, argv);
  io::make_directories(work);

  // The corpus: hand-written sentences plus the synthetic phantoms' report sentences.
  std::vector<std::string> corpus = gold_sentences(source);
  data::SyntheticCxrOptions o;
  o.image_size = 32;
  for (int64_t i = 0; i < reports; ++i) {
    const auto c = data::render_cxr_case(o, data::Split::kTrain, i);
    for (const auto& s : c.findings_sentences) corpus.push_back(s);
    corpus.push_back(c.impression);
  }

  const text::ReportParser parser(text::Lexicon::load(source + "/configs/lexicons/chest_xray.yaml"));
  int64_t triplets = 0, parsed = 0;
  for (int64_t i = 0; i < 2000; ++i) parser.parse(corpus[static_cast<size_t>(i) % corpus.size()]);  // warm-up
  auto t0 = Clock::now();
  for (; parsed < sentences_target; ++parsed)
    triplets += static_cast<int64_t>(parser.parse(corpus[static_cast<size_t>(parsed) % corpus.size()]).triplets.size());
  const double parse_s = seconds_since(t0);
  std::cout << nlohmann::json{{"what", "parser"}, {"sentences", parsed}, {"triplets", triplets}, {"seconds", parse_s},
                              {"sentences_per_s", parsed / parse_s}}.dump() << "\n";

  // WordPiece: a vocabulary trained on the corpus; the text is the corpus repeated.
  text::WordPieceTrainOptions wo;
  wo.vocab_size = 2000;
  wo.min_frequency = 1;
  const text::WordPieceTokenizer tok(text::train_wordpiece(corpus, wo));
  tok.save(work + "/vocab.txt");
  std::vector<std::string> lines;
  std::string text;
  for (int rep = 0; rep < 20; ++rep)
    for (const auto& s : corpus) {
      lines.push_back(s);
      text += s + "\n";
    }
  io::write_file_atomic(work + "/text.txt", text);
  int64_t tokens = 0;
  for (size_t i = 0; i < 1000; ++i) tok.encode_plain(lines[i % lines.size()]);  // warm-up
  t0 = Clock::now();
  for (const auto& l : lines) tokens += static_cast<int64_t>(tok.encode_plain(l).size());
  const double wp_s = seconds_since(t0);
  std::cout << nlohmann::json{{"what", "wordpiece"}, {"lines", lines.size()}, {"tokens", tokens}, {"seconds", wp_s},
                              {"tokens_per_s", tokens / wp_s}, {"vocab", tok.vocab_size()}}.dump() << "\n";
  return 0;
}
