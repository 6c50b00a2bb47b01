#pragma once
// The knowledge table (configs/knowledge/): what each finding looks like on the image, for
// knowledge-injected prompts and attribute-level soft targets (MedFILIP).

#include <memory>
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
  /// Jaccard similarity of two findings' attribute sets (1 for the same finding, 0 when unknown).
  double attribute_similarity(const std::string& a, const std::string& b) const;

 private:
  std::vector<KnowledgeEntry> entries_;
};

}  // namespace medvlp::text
