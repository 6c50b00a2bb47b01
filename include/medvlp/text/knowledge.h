#pragma once
// The knowledge table (configs/knowledge/): what each finding looks like on the image, for
// knowledge-injected prompts and attribute-level soft targets (MedFILIP).

#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace medvlp::text {

/// One finding's visual knowledge.
struct KnowledgeEntry {
  std::string finding;
  std::string category;                 // e.g. "airspace disease", "pleural"
  std::vector<std::string> attributes;  // visual attributes ("increased opacity", "air bronchograms")
  std::vector<std::string> locations;   // where it is usually seen
};

/// Findings -> visual knowledge, read from YAML.
class KnowledgeTable {
 public:
  /// medvlp::Error naming the file and key for malformed YAML, unknown keys, duplicates or entries
  /// without attributes.
  static KnowledgeTable load(const std::string& path);
  const std::vector<KnowledgeEntry>& entries() const { return entries_; }
  /// The entry of `finding`, or null.
  const KnowledgeEntry* find(const std::string& finding) const;
  /// A knowledge-injected prompt: "consolidation, airspace disease, with increased opacity, air
  /// bronchograms"; the bare finding name when the table does not know it.
  std::string prompt(const std::string& finding) const;
  /// The description MedFILIP appends to an entity text: "airspace disease: increased opacity, air
  /// bronchograms"; empty when the table does not know the finding.
  std::string description(const std::string& finding) const;
  /// Jaccard similarity of two findings' attribute sets (1 for the same finding, 0 when unknown).
  double attribute_similarity(const std::string& a, const std::string& b) const;

 private:
  std::vector<KnowledgeEntry> entries_;
};

/// One extracted disease detail of a report (MedFILIP's <location, detail, disease> triplet).
struct EntityDetail {
  std::string location;
  std::string detail;
  std::string disease;
};

/// MedFILIP's entity text "location detail disease. knowledge": each of the three elements is
/// replaced by "mask" when `mask()` returns true (asked once per element, in that order); empty
/// elements are left out; the knowledge description is appended only when the disease itself was
/// kept and `knowledge` is non-empty.
std::string entity_text(const EntityDetail& entity, const std::string& knowledge, const std::function<bool()>& mask);

/// The same with each element masked with probability `mask_probability` (MedFILIP's random_mask, 0.5).
std::string entity_text(const EntityDetail& entity, const std::string& knowledge, double mask_probability,
                        std::mt19937_64& rng);

}  // namespace medvlp::text
