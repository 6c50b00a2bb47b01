// medvlp existence | parse-reports | tokenize: the text module from the command line.
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "commands.h"
#include "medvlp/core/error.h"
#include "medvlp/io/files.h"
#include "medvlp/text/factory.h"
#include "medvlp/text/report_parser.h"

namespace medvlp::app {

namespace fs = std::filesystem;

namespace {

// The lexicon folder: $MEDVLP_CONFIGS/lexicons, the installed configs, or the source tree's.
std::string default_lexicon_dir() {
  if (const char* env = std::getenv("MEDVLP_CONFIGS")) return std::string(env) + "/lexicons";
  for (const char* dir : {MEDVLP_INSTALLED_CONFIGS, MEDVLP_SOURCE_CONFIGS})
    if (fs::exists(fs::path(dir) / "lexicons" / "cues.yaml")) return std::string(dir) + "/lexicons";
  return "configs/lexicons";
}

std::string resolve_lexicon(const std::string& name) {
  if (name.find('/') != std::string::npos || name.find(".yaml") != std::string::npos) return name;
  return default_lexicon_dir() + "/" + name + ".yaml";
}

// Minimal RFC 4180 reader: quoted fields with "" escapes and embedded newlines.
std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  const std::string text = io::read_file(path);
  std::vector<std::vector<std::string>> rows(1);
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') field.push_back('"'), ++i;
      else if (c == '"') quoted = false;
      else field.push_back(c);
      continue;
    }
    if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      rows.back().push_back(field);
      field.clear();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      rows.back().push_back(field);
      field.clear();
      rows.emplace_back();
    } else {
      field.push_back(c);
    }
  }
  MEDVLP_CHECK(!quoted, path, ": unterminated quoted field");
  if (!field.empty() || !rows.back().empty()) rows.back().push_back(field);
  if (rows.back().empty()) rows.pop_back();
  return rows;
}

// A file's bytes, or standard input for "-".
std::string read_input(const std::string& path) {
  if (path != "-") return io::read_file(path);
  std::ostringstream s;
  s << std::cin.rdbuf();
  return s.str();
}

struct Report {
  std::string id, text;
};

std::vector<Report> read_reports(const std::string& input, const std::string& column, const std::string& id_column) {
  std::vector<Report> out;
  MEDVLP_CHECK(fs::exists(input), input, ": no such file or folder");
  if (fs::is_directory(input)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(input))
      if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    MEDVLP_CHECK(!files.empty(), input, ": the folder has no .txt report files");
    for (const auto& f : files) out.push_back({fs::relative(f, input).replace_extension().string(), io::read_file(f.string())});
    return out;
  }
  const std::string ext = fs::path(input).extension().string();
  if (ext == ".csv") {
    const auto rows = read_csv(input);
    MEDVLP_CHECK(!rows.empty(), input, ": empty CSV");
    const auto& header = rows[0];
    auto find = [&](const std::string& name) {
      auto it = std::find(header.begin(), header.end(), name);
      return it == header.end() ? -1 : static_cast<int>(it - header.begin());
    };
    const int col = find(column);
    if (col < 0) {
      std::string names;
      for (const auto& h : header) names += (names.empty() ? "" : ", ") + h;
      throw Error(input + ": no column \"" + column + "\" (--column); the header has: " + names);
    }
    const int idc = id_column.empty() ? -1 : find(id_column);
    MEDVLP_CHECK(id_column.empty() || idc >= 0, input, ": no id column \"", id_column, "\" (--id-column)");
    for (size_t r = 1; r < rows.size(); ++r) {
      MEDVLP_CHECK(rows[r].size() == header.size(), input, ": row ", r + 1, " has ", rows[r].size(), " fields, the header ",
                   header.size());
      out.push_back({idc >= 0 ? rows[r][static_cast<size_t>(idc)] : std::to_string(r), rows[r][static_cast<size_t>(col)]});
    }
    return out;
  }
  if (ext == ".jsonl") {
    std::istringstream in(io::read_file(input));
    std::string line;
    for (size_t n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        throw Error(input + ":" + std::to_string(n) + ": not valid JSON (" + e.what() + ")");
      }
      MEDVLP_CHECK(j.is_object() && j.contains(column) && j[column].is_string(), input, ":", n, ": expected an object with a string \"",
                   column, "\" (--column)");
      std::string id = std::to_string(n);
      if (j.contains("id") && j["id"].is_string()) id = j["id"].get<std::string>();
      out.push_back({id, j[column].get<std::string>()});
    }
    return out;
  }
  return {{fs::path(input).stem().string(), io::read_file(input)}};
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
    std::string line, out;
    for (size_t n = 1; std::getline(in, line); ++n) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const size_t tab = line.rfind('\t');
      MEDVLP_CHECK(tab != std::string::npos, args->input, ":", n, ": expected sentence<TAB>term");
      try {
        out += text::existence_name(cues->existence(line.substr(0, tab), line.substr(tab + 1)));
      } catch (const Error& e) {
        throw e.with_context(args->input + ":" + std::to_string(n));
      }
      out += '\n';
    }
    std::cout << out;
    return 0;
  };
}

Action add_parse_reports(CLI::App& app) {
  struct Args {
    std::string input, out, lexicon = "chest_xray", column = "report", id_column;
  };
  auto args = std::make_shared<Args>();
  app.add_option("input", args->input, "a report .txt, a folder of .txt reports, a .csv or a .jsonl")->required();
  app.add_option("-o,--out", args->out, "output JSONL (default: standard output)");
  app.add_option("--lexicon", args->lexicon, "chest_xray, chest_ct, or a lexicon YAML path");
  app.add_option("--column", args->column, "CSV column / JSONL key holding the report text");
  app.add_option("--id-column", args->id_column, "CSV column holding the report id (default: row number)");
  return [args] {
    const auto lexicon = text::Lexicon::load(resolve_lexicon(args->lexicon));
    const text::ReportParser parser(lexicon);
    std::string out;
    int64_t reports = 0, triplets = 0;
    for (const auto& r : read_reports(args->input, args->column, args->id_column)) {
      const auto parsed = parser.parse(r.text, r.id);
      out += text::to_json(parsed, lexicon->label_findings()).dump() + "\n";
      ++reports;
      triplets += static_cast<int64_t>(parsed.triplets.size());
    }
    if (args->out.empty()) {
      std::cout << out;
    } else {
      io::write_file_atomic(args->out, out);
      std::cerr << "parsed " << reports << " reports, " << triplets << " triplets -> " << args->out << "\n";
    }
    return 0;
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
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      std::vector<int64_t> ids;
      if (args->max_len > 0) {
        const auto batch = tok->encode({line}, args->max_len);
        for (int64_t i = 0; i < args->max_len; ++i) ids.push_back(batch.ids[0][i].item<int64_t>());
      } else {
        ids = tok->encode_plain(line);
      }
      nlohmann::json j;
      j["ids"] = ids;
      if (!args->ids) j["text"] = tok->decode(ids);
      std::cout << (args->ids ? j["ids"].dump() : j.dump()) << "\n";
    }
    return 0;
  };
}

}  // namespace medvlp::app
