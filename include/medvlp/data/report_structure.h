#pragma once
// The report stage of the data pipeline: each report is structured once (rule parser or imported
// annotations -> triplets) into the text units the method-specific losses read: per-anatomy texts
// (fVLM, ASG), sentences (AFLoc), entity texts with knowledge (MedFILIP) and tag targets (ASG).
// The loader tokenizes them into Batch tensors.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "medvlp/core/config.h"
#include "medvlp/data/sample.h"
#include "medvlp/text/knowledge.h"
#include "medvlp/text/report_parser.h"
#include "medvlp/text/tokenizer.h"

namespace medvlp::data {

/// One anatomy of the structured report and the lexicon anatomies whose statements it collects
/// (e.g. a "right lung" mask that also takes what the report says about the right pleura).
struct AnatomySpec {
  std::string name;
  std::vector<std::string> covers;  // lexicon anatomy names; the name itself when empty
};

/// Which text units the loader tokenizes into each batch (only those some loss reads).
struct ReportUnits {
  bool anatomy = false;    // Batch.anatomy_ids / anatomy_attention (+ abnormal, normal, text hash)
  bool sentences = false;  // Batch.sentence_ids / sentence_attention / sentence_mask
  bool entities = false;   // Batch.entity_ids / entity_attention / entity_disease / entity_mask
  bool tags = false;       // Batch.tags
  bool any() const { return anatomy || sentences || entities || tags; }
};

/// The `data.report` section. See docs/data.md#structured-reports.
struct ReportStructureOptions {
  std::string lexicon = "chest_xray";  // built-in name or YAML path
  std::string knowledge;               // built-in name or YAML path; empty: entity texts without knowledge
  std::string annotations;             // JSONL of parsed reports keyed by sample id; empty: the rule parser
  std::vector<AnatomySpec> anatomies;  // default: the dataset's anatomy masks, each its own lexicon anatomy
  std::string normal_template = "{anatomy} shows no significant abnormalities.";  // fVLM's normal organ text
  std::vector<std::string> tags;       // tag findings; default: the dataset's label columns
  int64_t max_sentences = 16;
  int64_t max_entities = 8;
  double entity_mask = 0.0;            // per-element "mask" probability of entity texts in training
  std::vector<std::string> hold_out;   // lexicon findings left out of every entity text: MedFILIP's unseen
                                       // diseases (a report left with none has no entity, not "no finding")
  int64_t anatomy_max_len = 48;        // tokens per anatomy text
  int64_t sentence_max_len = 32;       // tokens per sentence
  int64_t entity_max_len = 48;         // tokens per entity text
  ReportUnits units;                   // set by the experiment from the configured losses
};

/// What one report yields. Entities are the present findings (one "no finding" entity for a
/// report without any); anatomies follow ReportStructureOptions::anatomies.
struct StructuredReport {
  std::vector<std::string> anatomy_text;  // [A] the anatomy's sentences, or the normal template
  std::vector<float> anatomy_abnormal;    // [A] 1 when a finding is stated present there
  std::vector<float> anatomy_normal;      // [A] 1 when anatomy_text is the normal template
  std::vector<float> anatomy_described;   // [A] 1 when anatomy_text is the report's own sentences
  std::vector<std::string> sentences;     // report sentences in order (at most max_sentences)
  std::vector<text::EntityDetail> entities;
  std::vector<int64_t> entity_disease;    // [E] index into disease_names()
  std::vector<float> tags;                // [T] 1 present, 0 absent, -1 uncertain or unmentioned
  bool empty = false;                     // nothing could be structured (counted, warned)
};

/// Structures reports with a lexicon (or imported annotations) and fills the text-unit fields of a
/// Batch. Thread-safe; each distinct report is structured once and cached.
class ReportStructurer {
 public:
  /// medvlp::Error naming the key for an unknown lexicon anatomy, tag finding or file.
  explicit ReportStructurer(ReportStructureOptions options);
  /// Reads `data.report`; `anatomies`/`findings` are the dataset's masks and label columns (defaults).
  static ReportStructureOptions parse_options(const core::ConfigNode& node, const std::vector<std::string>& anatomies,
                                              const std::vector<std::string>& findings);

  /// The structure of one report (cached by text, and by id when annotations are imported).
  std::shared_ptr<const StructuredReport> structure(const std::string& report, const std::string& id) const;
  /// Structures an already parsed report against the report text it came from (no cache).
  StructuredReport structure_parsed(const text::ParsedReport& parsed) const;

  /// Adds the configured units of `samples` (in batch order) to `batch`, tokenized with `tokenizer`.
  /// Entity elements are masked only when `training`; the masks are a function of (seed, epoch, id).
  /// Token ids are cached for the tokenizer last given (by address: keep it alive while in use).
  void fill(Batch* batch, const std::vector<Sample>& samples, const text::Tokenizer& tokenizer, bool training,
            uint64_t seed, int64_t epoch) const;

  const ReportStructureOptions& options() const { return options_; }
  std::vector<std::string> anatomy_names() const;
  /// Entity disease ids index this list: the lexicon's findings, then "no finding".
  const std::vector<std::string>& disease_names() const { return diseases_; }
  /// Reports that yielded an empty structure, and distinct reports structured so far.
  int64_t empty_reports() const { return empty_count_.load(); }
  int64_t structured_reports() const;

 private:
  struct Annotation {
    text::ParsedReport report;
    std::string where;  // file:line
  };
  ReportStructureOptions options_;
  std::shared_ptr<const text::Lexicon> lexicon_;
  std::unique_ptr<text::ReportParser> parser_;
  std::shared_ptr<const text::KnowledgeTable> knowledge_;
  std::vector<std::string> diseases_;
  std::vector<std::vector<std::string>> covers_;   // per anatomy: lexicon anatomies it collects
  std::vector<std::set<std::string>> reached_from_;  // per anatomy: anatomies above it (not the root, not above every anatomy)
  std::unordered_map<std::string, Annotation> annotations_;
  mutable std::mutex mutex_;
  mutable std::unordered_map<std::string, std::shared_ptr<const StructuredReport>> cache_;
  mutable std::atomic<int64_t> empty_count_{0};
  // Token ids of unit texts by (max_len, text) for the tokenizer fill() was last given (another one
  // clears them): templates, normal sentences and each report's units recur every epoch, so each is
  // tokenized once per process (bounded in size).
  struct TokenRow {
    std::vector<int64_t> ids;  // max_len ids, padded
    int64_t length = 0;        // real tokens (the mask's ones)
  };
  text::TokenBatch encode_units(const text::Tokenizer& tokenizer, const std::vector<std::string>& texts,
                                int64_t max_len) const;
  mutable std::mutex token_mutex_;
  mutable const text::Tokenizer* token_owner_ = nullptr;
  mutable std::unordered_map<std::string, TokenRow> token_cache_;
};

}  // namespace medvlp::data
