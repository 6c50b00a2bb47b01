#include "medvlp/text/report_io.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "../core/library_dir.h"
#include "medvlp/core/error.h"
#include "medvlp/io/csv.h"
#include "medvlp/io/files.h"

namespace medvlp::text {

namespace fs = std::filesystem;

namespace {

// The configs installed with this library, found from where libmedvlp.so lies rather than from
// the install prefix the build was configured with: a package unpacked elsewhere (dpkg -x,
// `cmake --install --prefix`, a relocated tree) still reads its own lexicons.
std::string installed_configs() {
  const std::string dir = core::library_dir();
  return dir.empty() ? std::string() : (fs::path(dir) / MEDVLP_CONFIGS_FROM_LIBDIR).lexically_normal().string();
}

std::vector<std::string> config_roots() {
  std::vector<std::string> roots;
  if (const char* env = std::getenv("MEDVLP_CONFIGS"); env != nullptr && *env != '\0') roots.push_back(env);
  if (std::string installed = installed_configs(); !installed.empty()) roots.push_back(std::move(installed));
  roots.push_back(MEDVLP_SOURCE_CONFIGS);
  return roots;
}

}  // namespace

std::string builtin_config_root() {
  for (const auto& root : config_roots())
    if (fs::is_directory(fs::path(root) / "lexicons")) return root;
  return {};
}

std::string config_file(const std::string& folder, const std::string& name) {
  MEDVLP_CHECK(!name.empty(), "no ", folder, " file named");
  if (name.find('/') != std::string::npos || (name.size() > 5 && name.compare(name.size() - 5, 5, ".yaml") == 0))
    return name;
  const std::vector<std::string> roots = config_roots();
  for (const auto& root : roots) {
    const fs::path p = fs::path(root) / folder / (name + ".yaml");
    if (fs::exists(p)) return p.string();
  }
  std::string tried;
  for (const auto& root : roots) tried += (tried.empty() ? "" : ", ") + (fs::path(root) / folder).string();
  throw Error("no built-in " + folder + " file \"" + name + "\" (looked in " + tried +
              "); give a path to a YAML file or set MEDVLP_CONFIGS");
}

std::vector<ReportText> read_reports(const std::string& input, const std::string& column, const std::string& id_column,
                                     std::vector<std::string>* bad_records) {
  std::vector<ReportText> out;
  // A bad record ends the read, or is noted and skipped when the caller collects them.
  const auto bad = [&](const Error& e) {
    if (!bad_records) throw e;
    bad_records->push_back(e.what());
  };
  MEDVLP_CHECK(fs::exists(input), input, ": no such file or folder");
  if (fs::is_directory(input)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(input))
      if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    MEDVLP_CHECK(!files.empty(), input, ": the folder has no .txt report files");
    for (const auto& f : files) {
      try {
        out.push_back({fs::relative(f, input).replace_extension().string(), io::read_file(f.string())});
      } catch (const Error& e) {
        bad(e);
      }
    }
    return out;
  }
  const std::string name = fs::path(input).filename().string();
  const auto ends = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends(".csv") || ends(".csv.gz")) {
    const io::CsvTable table = io::read_csv(input);
    const int64_t col = table.find_column(column);
    if (col < 0) {
      std::string names;
      for (const auto& h : table.header) names += (names.empty() ? "" : ", ") + h;
      throw Error(input + ": no column \"" + column + "\" (--column); the header has: " + names);
    }
    const int64_t idc = id_column.empty() ? -1 : table.find_column(id_column);
    MEDVLP_CHECK(id_column.empty() || idc >= 0, input, ": no id column \"", id_column, "\" (--id-column)");
    for (size_t r = 0; r < table.rows.size(); ++r)
      out.push_back({idc >= 0 ? table.rows[r][static_cast<size_t>(idc)] : std::to_string(r + 1),
                     table.rows[r][static_cast<size_t>(col)]});
    return out;
  }
  if (ends(".jsonl")) {
    std::istringstream in(io::read_file(input));
    std::string line;
    for (size_t n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        bad(Error(input + ":" + std::to_string(n) + ": not valid JSON (" + e.what() + ")"));
        continue;
      }
      if (!(j.is_object() && j.contains(column) && j[column].is_string())) {
        bad(Error(input + ":" + std::to_string(n) + ": expected an object with a string \"" + column + "\" (--column)"));
        continue;
      }
      std::string id = std::to_string(n);
      if (j.contains("id") && j["id"].is_string()) id = j["id"].get<std::string>();
      out.push_back({id, j[column].get<std::string>()});
    }
    return out;
  }
  return {{fs::path(input).stem().string(), io::read_file(input)}};
}

}  // namespace medvlp::text
