// medvlp existence | parse-reports | tokenize: the text module from the command line.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "commands.h"
#include "medvlp/core/error.h"
#include "medvlp/io/files.h"
#include "medvlp/text/factory.h"
#include "medvlp/text/label_set.h"
#include "medvlp/text/report_io.h"
#include "medvlp/text/report_parser.h"

namespace medvlp::app {

namespace {

std::string default_lexicon_dir() {
  return std::filesystem::path(text::config_file("lexicons", "chest_xray")).parent_path().string();
}

std::string resolve_lexicon(const std::string& name) { return text::config_file("lexicons", name); }

// A file's bytes, or standard input for "-".
std::string read_input(const std::string& path) {
  if (path != "-") return io::read_file(path);
  std::ostringstream s;
  s << std::cin.rdbuf();
  return s.str();
}

}  // namespace

Action add_existence(CLI::App& app) {
  struct Args {
    std::string input, cues;
  };
  auto args = std::make_shared<Args>();
  app.add_option("input", args->input, "TSV file: sentence<TAB>term per line ('-': standard input)")->required();
  app.add_option("--cues", args->cues, "cue file (default: the shipped lexicons/cues.yaml)");
  return [args] {
    const auto cues = text::CueSet::load(args->cues.empty() ? default_lexicon_dir() + "/cues.yaml" : args->cues);
    std::istringstream in(read_input(args->input));
    std::string line;
    BatchErrors errors("existence");
    size_t n = 0;
    // One answer line per input line ("error" for a bad one), so the output stays aligned with the input.
    while (std::getline(in, line)) {
      ++n;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const std::string where = args->input + ":" + std::to_string(n);
      const size_t tab = line.rfind('\t');
      std::string answer = "error";
      if (tab == std::string::npos) {
        errors.add(where + ": expected sentence<TAB>term");
      } else {
        try {
          answer = text::existence_name(cues->existence(line.substr(0, tab), line.substr(tab + 1)));
        } catch (const Error& e) {
          errors.add(where + ": " + e.what());
        }
      }
      std::cout << answer << '\n';
    }
    std::cout.flush();
    return errors.finish(n, "lines");
  };
}

Action add_parse_reports(CLI::App& app) {
  struct Args {
    std::string input, out, lexicon = "chest_xray", column = "report", id_column, labels;
  };
  auto args = std::make_shared<Args>();
  app.add_option("input", args->input, "a report .txt, a folder of .txt reports, a .csv or a .jsonl")->required();
  app.add_option("-o,--out", args->out, "output JSONL (default: standard output)");
  app.add_option("--lexicon", args->lexicon, "chest_xray, chest_ct, or a lexicon YAML path");
  app.add_option("--column", args->column, "CSV column / JSONL key holding the report text");
  app.add_option("--id-column", args->id_column, "CSV column holding the report id (default: row number)");
  app.add_option("--labels", args->labels,
                 "chexpert, chestxray14 or a label-set YAML: \"labels\" holds that set's values, 1/0/-1 or null "
                 "for unmentioned, as the CheXpert labeler writes them (default: the lexicon's findings, 1/0/-1)");
  return [args] {
    const auto lexicon = text::Lexicon::load(resolve_lexicon(args->lexicon));
    const text::ReportParser parser(lexicon);
    std::optional<text::LabelSet> label_set;
    if (!args->labels.empty()) label_set = text::LabelSet::load(text::config_file("labels", args->labels), *lexicon);
    std::string out;
    int64_t reports = 0, triplets = 0;
    BatchErrors errors("parse-reports");
    std::vector<std::string> bad;
    const auto inputs = text::read_reports(args->input, args->column, args->id_column, &bad);
    for (const auto& message : bad) errors.add(message);
    for (const auto& r : inputs) {
      try {
        const auto parsed = parser.parse(r.text, r.id);
        nlohmann::json j = text::to_json(parsed, lexicon->label_findings());
        if (label_set) {
          const std::vector<float> values = label_set->apply(parsed);
          nlohmann::json labels = nlohmann::json::object();
          for (size_t k = 0; k < values.size(); ++k)
            labels[label_set->names()[k]] = std::isnan(values[k]) ? nlohmann::json(nullptr) : nlohmann::json(values[k]);
          j["labels"] = labels;
        }
        out += j.dump() + "\n";
        ++reports;
        triplets += static_cast<int64_t>(parsed.triplets.size());
      } catch (const Error& e) {
        errors.add(args->input + ": report " + r.id + ": " + e.what());
      }
    }
    if (args->out.empty()) {
      std::cout << out;
    } else {
      io::write_file_atomic(args->out, out);
      std::cerr << "parsed " << reports << " reports, " << triplets << " triplets -> " << args->out << "\n";
    }
    return errors.finish(inputs.size() + bad.size(), "reports");
  };
}

Action add_tokenize(CLI::App& app) {
  struct Args {
    text::TokenizerSpec spec;
    std::string input;
    int64_t max_len = 0;
    bool ids = false, cased = false;
  };
  auto args = std::make_shared<Args>();
  app.add_option("--kind", args->spec.kind, "sentencepiece | wordpiece | clip_bpe")
      ->check(CLI::IsMember({"sentencepiece", "wordpiece", "clip_bpe"}));
  app.add_option("--model", args->spec.model, ".model, vocab.txt or vocab.json")->required();
  app.add_option("--merges", args->spec.merges, "merges.txt (clip_bpe)");
  app.add_flag("--cased", args->cased, "WordPiece: keep case and accents");
  app.add_option("--max-len", args->max_len, "pad/truncate to this length with begin/end tokens (0: no specials)");
  app.add_flag("--ids", args->ids, "print ids only");
  app.add_option("input", args->input, "text file, one text per line ('-': standard input)")->required();
  return [args] {
    args->spec.lowercase = !args->cased;
    const auto tok = text::load_tokenizer(args->spec);
    std::istringstream in(read_input(args->input));
    std::string line;
    BatchErrors errors("tokenize");
    size_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      nlohmann::json j;
      try {
        std::vector<int64_t> ids;
        if (args->max_len > 0) {
          const auto batch = tok->encode({line}, args->max_len);
          for (int64_t i = 0; i < args->max_len; ++i) ids.push_back(batch.ids[0][i].item<int64_t>());
        } else {
          ids = tok->encode_plain(line);
        }
        j["ids"] = ids;
        if (!args->ids) j["text"] = tok->decode(ids);
      } catch (const Error& e) {
        // null in place of the ids keeps one output line per input line.
        errors.add(args->input + ":" + std::to_string(n) + ": " + e.what());
        j = {{"ids", nullptr}, {"error", e.what()}};
      }
      std::cout << (args->ids ? j["ids"].dump() : j.dump()) << "\n";
    }
    std::cout.flush();
    return errors.finish(n, "lines");
  };
}

}  // namespace medvlp::app
