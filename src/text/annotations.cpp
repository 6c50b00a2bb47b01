// JSON form of parsed reports, and import of annotations made elsewhere in the same form.
#include <nlohmann/json.hpp>

#include <fstream>

#include "medvlp/core/error.h"
#include "medvlp/text/report_parser.h"
#include "medvlp/text/unicode.h"

namespace medvlp::text {

nlohmann::json to_json(const ParsedReport& report, const std::vector<std::string>& label_findings) {
  nlohmann::json j;
  j["id"] = report.id;
  j["sections"] = nlohmann::json::array();
  for (const auto& s : report.sections)
    j["sections"].push_back({{"name", s.name}, {"heading", s.heading}, {"begin", s.begin}, {"end", s.end}});
  j["sentences"] = nlohmann::json::array();
  for (const auto& s : report.sentences)
    j["sentences"].push_back({{"text", s.text}, {"section", s.section}, {"begin", s.begin}, {"end", s.end}});
  j["triplets"] = nlohmann::json::array();
  for (const auto& t : report.triplets) {
    nlohmann::json x = {{"anatomy", t.anatomy},   {"anatomy_path", t.anatomy_path}, {"finding", t.finding},
                        {"existence", existence_name(t.existence)}, {"sentence", t.sentence},
                        {"span", {t.begin, t.end}}, {"implied", t.implied}};
    if (!t.cue.empty()) x["cue"] = t.cue;
    nlohmann::json attrs = nlohmann::json::object();
    if (!t.attributes.severity.empty()) attrs["severity"] = t.attributes.severity;
    if (!t.attributes.laterality.empty()) attrs["laterality"] = t.attributes.laterality;
    if (!t.attributes.change.empty()) attrs["change"] = t.attributes.change;
    if (t.attributes.size_mm >= 0) {
      attrs["size_mm"] = t.attributes.size_mm;
      attrs["size_text"] = t.attributes.size_text;
    }
    x["attributes"] = attrs;
    j["triplets"].push_back(x);
  }
  if (!label_findings.empty()) {
    const auto labels = report.labels(label_findings);
    nlohmann::json l = nlohmann::json::object();
    for (size_t k = 0; k < labels.size(); ++k) l[label_findings[k]] = labels[k];
    j["labels"] = l;
  }
  return j;
}

namespace {

std::string get_string(const nlohmann::json& j, const char* key, const std::string& where, bool required) {
  if (!j.contains(key)) {
    MEDVLP_CHECK(!required, where, ".", key, ": missing");
    return "";
  }
  MEDVLP_CHECK(j[key].is_string(), where, ".", key, ": expected a string, got ", j[key].type_name());
  return j[key].get<std::string>();
}

int64_t get_index(const nlohmann::json& j, const char* key, const std::string& where, int64_t fallback) {
  if (!j.contains(key)) return fallback;
  MEDVLP_CHECK(j[key].is_number_integer(), where, ".", key, ": expected an integer, got ", j[key].type_name());
  return j[key].get<int64_t>();
}

}  // namespace

ParsedReport report_from_json(const nlohmann::json& j, const std::string& where) {
  MEDVLP_CHECK(j.is_object(), where, ": expected a JSON object");
  ParsedReport r;
  if (j.contains("id")) {
    MEDVLP_CHECK(j["id"].is_string() || j["id"].is_number_integer(), where, ".id: expected a string or an integer");
    r.id = j["id"].is_string() ? j["id"].get<std::string>() : std::to_string(j["id"].get<int64_t>());
  }
  if (j.contains("sentences")) {
    MEDVLP_CHECK(j["sentences"].is_array(), where, ".sentences: expected a list");
    for (size_t i = 0; i < j["sentences"].size(); ++i) {
      const auto& s = j["sentences"][i];
      const std::string w = where + ".sentences[" + std::to_string(i) + "]";
      Sentence out;
      if (s.is_string()) {
        out.text = s.get<std::string>();
      } else {
        MEDVLP_CHECK(s.is_object(), w, ": expected a string or an object");
        out.text = get_string(s, "text", w, true);
        out.section = get_string(s, "section", w, false);
        out.begin = static_cast<size_t>(std::max<int64_t>(0, get_index(s, "begin", w, 0)));
        out.end = static_cast<size_t>(std::max<int64_t>(0, get_index(s, "end", w, 0)));
      }
      r.sentences.push_back(std::move(out));
    }
  }
  MEDVLP_CHECK(j.contains("triplets"), where, ".triplets: missing");
  MEDVLP_CHECK(j["triplets"].is_array(), where, ".triplets: expected a list");
  for (size_t i = 0; i < j["triplets"].size(); ++i) {
    const auto& x = j["triplets"][i];
    const std::string w = where + ".triplets[" + std::to_string(i) + "]";
    MEDVLP_CHECK(x.is_object(), w, ": expected an object");
    Triplet t;
    t.finding = get_string(x, "finding", w, true);
    MEDVLP_CHECK(!t.finding.empty(), w, ".finding: empty");
    t.existence = parse_existence(get_string(x, "existence", w, true), w + ".existence");
    t.anatomy = get_string(x, "anatomy", w, false);
    t.cue = get_string(x, "cue", w, false);
    const int64_t sentence = get_index(x, "sentence", w, -1);
    MEDVLP_CHECK(sentence >= -1 && (r.sentences.empty() || sentence < static_cast<int64_t>(r.sentences.size())), w,
                 ".sentence: ", sentence, " is not a sentence index (the report has ", r.sentences.size(), ")");
    t.sentence = static_cast<int>(sentence);
    if (x.contains("anatomy_path")) {
      MEDVLP_CHECK(x["anatomy_path"].is_array(), w, ".anatomy_path: expected a list of strings");
      for (const auto& p : x["anatomy_path"]) {
        MEDVLP_CHECK(p.is_string(), w, ".anatomy_path: expected a list of strings");
        t.anatomy_path.push_back(p.get<std::string>());
      }
    }
    if (x.contains("implied")) {
      MEDVLP_CHECK(x["implied"].is_boolean(), w, ".implied: expected true or false");
      t.implied = x["implied"].get<bool>();
    }
    if (x.contains("attributes")) {
      const auto& a = x["attributes"];
      const std::string wa = w + ".attributes";
      MEDVLP_CHECK(a.is_object(), wa, ": expected an object");
      for (auto it = a.begin(); it != a.end(); ++it) {
        const std::string& k = it.key();
        MEDVLP_CHECK(k == "severity" || k == "laterality" || k == "change" || k == "size_mm" || k == "size_text", wa, ".", k,
                     ": unknown attribute (expected severity, laterality, change, size_mm, size_text)");
      }
      t.attributes.severity = get_string(a, "severity", wa, false);
      t.attributes.laterality = get_string(a, "laterality", wa, false);
      MEDVLP_CHECK(t.attributes.laterality.empty() || t.attributes.laterality == "left" || t.attributes.laterality == "right" ||
                       t.attributes.laterality == "bilateral",
                   wa, ".laterality: expected left, right or bilateral, got \"", t.attributes.laterality, "\"");
      t.attributes.change = get_string(a, "change", wa, false);
      t.attributes.size_text = get_string(a, "size_text", wa, false);
      if (a.contains("size_mm")) {
        MEDVLP_CHECK(a["size_mm"].is_number() && a["size_mm"].get<double>() >= 0, wa, ".size_mm: expected a non-negative number");
        t.attributes.size_mm = a["size_mm"].get<double>();
      }
    }
    if (x.contains("span")) {
      const auto& s = x["span"];
      MEDVLP_CHECK(s.is_array() && s.size() == 2 && s[0].is_number_unsigned() && s[1].is_number_unsigned() &&
                       s[0].get<uint64_t>() <= s[1].get<uint64_t>(),
                   w, ".span: expected [begin, end] byte offsets with begin <= end");
      t.begin = s[0].get<size_t>();
      t.end = s[1].get<size_t>();
    }
    r.triplets.push_back(std::move(t));
  }
  return r;
}

std::vector<ParsedReport> read_annotations(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MEDVLP_CHECK(in, path, ": cannot open the annotation file");
  std::vector<ParsedReport> out;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(number);
    const size_t bad = invalid_utf8_offset(line);
    MEDVLP_CHECK(bad == std::string::npos, where, ": invalid UTF-8 at byte ", bad);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(where + ": not valid JSON (" + e.what() + ")");
    }
    out.push_back(report_from_json(j, where));
  }
  return out;
}

}  // namespace medvlp::text
