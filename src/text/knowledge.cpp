#include "medvlp/text/knowledge.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <set>

#include "medvlp/core/error.h"
#include "yaml_errors.h"
#include "medvlp/io/files.h"

namespace medvlp::text {

namespace {

std::vector<std::string> strings(const YAML::Node& node, const std::string& where) {
  std::vector<std::string> out;
  if (!node) return out;
  MEDVLP_CHECK(node.IsSequence(), where, ": expected a list of strings");
  for (size_t i = 0; i < node.size(); ++i) {
    MEDVLP_CHECK(node[i].IsScalar() && !node[i].as<std::string>().empty(), where, "[", i, "]: expected a non-empty string");
    out.push_back(node[i].as<std::string>());
  }
  return out;
}

}  // namespace

KnowledgeTable KnowledgeTable::load(const std::string& path) {
  return detail::with_named_yaml_errors(path, [&]() -> KnowledgeTable {
    const YAML::Node root = detail::load_yaml_file(path);
    MEDVLP_CHECK(root.IsMap() && root["findings"] && root["findings"].IsMap(), path,
                 ": expected a mapping with `findings:` (finding -> {category, attributes, locations})");
    for (const auto& kv : root)
      MEDVLP_CHECK(kv.first.as<std::string>() == "findings" || kv.first.as<std::string>() == "name", path, ": ",
                   kv.first.as<std::string>(), ": unknown key (expected name, findings)");
    KnowledgeTable table;
    for (const auto& kv : root["findings"]) {
      KnowledgeEntry e;
      e.finding = kv.first.as<std::string>();
      const std::string where = path + ": findings." + e.finding;
      MEDVLP_CHECK(kv.second.IsMap(), where, ": expected a mapping");
      for (const auto& f : kv.second) {
        const std::string k = f.first.as<std::string>();
        MEDVLP_CHECK(k == "category" || k == "attributes" || k == "locations", where, ".", k,
                     ": unknown key (expected category, attributes, locations)");
      }
      MEDVLP_CHECK(!table.find(e.finding), where, ": defined twice");
      if (kv.second["category"]) e.category = kv.second["category"].as<std::string>();
      e.attributes = strings(kv.second["attributes"], where + ".attributes");
      MEDVLP_CHECK(!e.attributes.empty(), where, ".attributes: expected at least one visual attribute");
      e.locations = strings(kv.second["locations"], where + ".locations");
      table.entries_.push_back(std::move(e));
    }
    return table;
  });
}

const KnowledgeEntry* KnowledgeTable::find(const std::string& finding) const {
  for (const auto& e : entries_)
    if (e.finding == finding) return &e;
  return nullptr;
}

std::string KnowledgeTable::prompt(const std::string& finding) const {
  const KnowledgeEntry* e = find(finding);
  if (!e) return finding;
  std::string out = finding;
  if (!e->category.empty()) out += ", " + e->category;
  out += ", with ";
  for (size_t i = 0; i < e->attributes.size(); ++i) out += (i ? ", " : "") + e->attributes[i];
  return out;
}

std::string KnowledgeTable::description(const std::string& finding) const {
  const KnowledgeEntry* e = find(finding);
  if (!e) return "";
  std::string out = e->category.empty() ? std::string() : e->category + ": ";
  for (size_t i = 0; i < e->attributes.size(); ++i) out += (i ? ", " : "") + e->attributes[i];
  return out;
}

std::string entity_text(const EntityDetail& entity, const std::string& knowledge, const std::function<bool()>& mask) {
  const auto keep = [&](const std::string& part) { return mask && mask() ? std::string("mask") : part; };
  const std::string location = keep(entity.location), detail = keep(entity.detail), disease = keep(entity.disease);
  std::string text;
  for (const std::string* part : {&location, &detail, &disease}) {
    if (part->empty()) continue;
    if (!text.empty()) text += ' ';
    text += *part;
  }
  if (disease == entity.disease && !knowledge.empty()) text += ". " + knowledge;
  return text;
}

std::string entity_text(const EntityDetail& entity, const std::string& knowledge, double mask_probability,
                        std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  return entity_text(entity, knowledge, [&] { return u(rng) < mask_probability; });
}

double KnowledgeTable::attribute_similarity(const std::string& a, const std::string& b) const {
  if (a == b) return 1.0;
  const KnowledgeEntry *x = find(a), *y = find(b);
  if (!x || !y) return 0.0;
  const std::set<std::string> sa(x->attributes.begin(), x->attributes.end()), sb(y->attributes.begin(), y->attributes.end());
  size_t common = 0;
  for (const auto& s : sa) common += sb.count(s);
  return static_cast<double>(common) / static_cast<double>(sa.size() + sb.size() - common);
}

}  // namespace medvlp::text
