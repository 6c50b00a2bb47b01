// Parsing one JSONL manifest line: kept apart from the dataset (no image I/O, no torch) so that
// fuzz/manifest_fuzz can drive it alone.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "medvlp/core/error.h"
#include "medvlp/data/manifest.h"

namespace medvlp::data {

namespace {

std::string resolve(const std::string& base, const std::string& path) {
  return !path.empty() && path[0] == '/' ? path : base + "/" + path;
}

const char* type_name(const nlohmann::json& v) { return v.type_name(); }

// A string field, or the fallback when absent; an error naming the field when it is something else.
std::string string_field(const nlohmann::json& j, const char* key, const std::string& fallback, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end()) return fallback;
  MEDVLP_CHECK(it->is_string(), where, ": \"", key, "\" must be a string, got ", type_name(*it));
  return it->get<std::string>();
}

// Ids are often numbers in exported tables: an integer id is taken as its decimal text.
std::string id_field(const nlohmann::json& j, const char* key, const std::string& fallback, const std::string& where) {
  const auto it = j.find(key);
  if (it != j.end() && it->is_number_integer()) return it->dump();
  return string_field(j, key, fallback, where);
}

float number(const nlohmann::json& v, const std::string& where, const std::string& field) {
  MEDVLP_CHECK(v.is_number(), where, ": ", field, " must be a number, got ", type_name(v));
  return v.get<float>();
}

}  // namespace

std::optional<ManifestEntry> parse_manifest_line(const std::string& line, const std::string& where,
                                                 const std::string& base_dir, const std::string& split,
                                                 const std::vector<std::string>& findings, bool read_masks) {
  if (line.find_first_not_of(" \t\r") == std::string::npos) return std::nullopt;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": invalid JSON (" + e.what() + ")");
  }
  MEDVLP_CHECK(j.is_object() && j.contains("image") && j["image"].is_string() && j.contains("report") &&
                   j["report"].is_string(),
               where, ": expected an object with string fields \"image\" and \"report\"");
  if (j.contains("split") && string_field(j, "split", "", where) != split) return std::nullopt;
  ManifestEntry e;
  e.where = where;
  e.id = id_field(j, "id", "line" + where.substr(where.rfind(':') + 1), where);
  e.patient_id = id_field(j, "patient_id", e.id, where);
  e.image_path = resolve(base_dir, j["image"].get<std::string>());
  e.report = j["report"].get<std::string>();
  if (j.contains("mask") && read_masks) {
    MEDVLP_CHECK(j["mask"].is_string(), where, ": \"mask\" must be a path to a label-map volume");
    e.mask_path = resolve(base_dir, j["mask"].get<std::string>());
  }
  for (const char* key : {"labels", "truth"}) {
    std::vector<float>& dst = std::string(key) == "labels" ? e.labels : e.truth;
    if (!j.contains(key)) continue;
    MEDVLP_CHECK(j[key].is_object(), where, ": \"", key, "\" must map finding names to 1, 0 or -1");
    dst.assign(findings.size(), -1.f);
    for (size_t k = 0; k < findings.size(); ++k)
      if (j[key].contains(findings[k]))
        dst[k] = number(j[key][findings[k]], where, std::string(key) + "." + findings[k]);
  }
  if (j.contains("boxes")) {
    MEDVLP_CHECK(j["boxes"].is_array(), where, ": \"boxes\" must be a list of {finding, box: [x0,y0,x1,y1]}");
    for (const auto& b : j["boxes"]) {
      MEDVLP_CHECK(b.is_object() && b.contains("finding") && b["finding"].is_string() && b.contains("box") &&
                       b["box"].is_array() && b["box"].size() == 4,
                   where, ": each box is {\"finding\": name, \"box\": [x0, y0, x1, y1]}");
      const auto k = std::find(findings.begin(), findings.end(), b["finding"].get<std::string>());
      if (k == findings.end()) continue;
      const auto& c = b["box"];
      e.boxes.push_back({k - findings.begin(), number(c[0], where, "box[0]"), number(c[1], where, "box[1]"),
                         number(c[2], where, "box[2]"), number(c[3], where, "box[3]")});
    }
  }
  if (j.contains("lesions")) {
    MEDVLP_CHECK(j["lesions"].is_object(), where, ": \"lesions\" must map finding names to mask files");
    e.has_lesions = true;
    for (const auto& [name, path] : j["lesions"].items()) {
      MEDVLP_CHECK(path.is_string(), where, ": lesions.", name, " must be a path to a mask file");
      const auto k = std::find(findings.begin(), findings.end(), name);
      if (k != findings.end()) e.lesion_paths.emplace_back(k - findings.begin(), resolve(base_dir, path.get<std::string>()));
    }
  }
  return e;
}

}  // namespace medvlp::data
