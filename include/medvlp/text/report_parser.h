#pragma once
// The rule-based report parser: sentences -> <anatomy, finding, existence> triplets with attributes,
// driven by YAML lexicons (configs/lexicons/) and a NegEx-style cue engine.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "medvlp/text/report.h"

namespace medvlp::text {

/// Whether a report asserts a finding.
enum class Existence { kPresent, kAbsent, kUncertain };
const char* existence_name(Existence e);
/// "present" | "absent" | "uncertain"; medvlp::Error naming `where` otherwise.
Existence parse_existence(std::string_view name, std::string_view where);

/// What a report states about a finding beyond its existence; empty where it says nothing.
struct Attributes {
  std::string severity;    // as configured in the cue file (mild, moderate, severe, small, large, ...)
  std::string laterality;  // left | right | bilateral
  std::string change;      // new | worsened | improved | stable
  std::string size_text;   // as written ("1.5 x 2.0 cm")
  double size_mm = -1;     // largest dimension in millimetres, -1 when no size is stated
  bool empty() const { return severity.empty() && laterality.empty() && change.empty() && size_mm < 0; }
};

/// One <anatomy, finding, existence> statement. Spans are byte offsets into the report.
struct Triplet {
  std::string anatomy;                    // most specific anatomy the sentence names, else the finding's default
  std::vector<std::string> anatomy_path;  // anatomy, its parent, ..., the root
  std::string finding;
  Existence existence = Existence::kPresent;
  int sentence = -1;                      // index into ParsedReport::sentences, -1 when unknown
  size_t begin = 0, end = 0;              // the words naming the finding
  std::string cue;                        // the negation/uncertainty cue that decided, if any
  bool implied = false;                   // from a normal statement ("The lungs are clear.")
  Attributes attributes;
};

/// A sentence with its section name and byte span in the report.
struct Sentence {
  std::string text;
  std::string section;
  size_t begin = 0, end = 0;
};

/// A parsed (or imported) report.
struct ParsedReport {
  std::string id;
  std::vector<Section> sections;
  std::vector<Sentence> sentences;
  std::vector<Triplet> triplets;

  /// One value per finding: 1 present, -1 uncertain, 0 absent, -1 unmentioned (the Sample
  /// convention). A finding stated present anywhere is present; uncertain wins over absent.
  std::vector<float> labels(const std::vector<std::string>& findings) const;
};

class CueSet;
class Lexicon;

/// The cue lexicon (configs/lexicons/cues.yaml): negation and uncertainty cues before and after
/// their target, pseudo-cues, scope terminators, clause verbs and attribute words.
class CueSet {
 public:
  /// medvlp::Error naming the file and the key for a missing file, malformed YAML, unknown keys
  /// or empty phrases.
  static std::shared_ptr<const CueSet> load(const std::string& path);
  /// Existence of `term` (matched case-insensitively on word boundaries, first occurrence) in
  /// `sentence`, for any vocabulary. medvlp::Error when `term` does not occur in the sentence.
  Existence existence(std::string_view sentence, std::string_view term) const;
  ~CueSet();
  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  CueSet();
  std::unique_ptr<Impl> impl_;
};

/// An anatomy + finding lexicon (configs/lexicons/chest_xray.yaml, chest_ct.yaml) with its cues.
class Lexicon {
 public:
  /// Reads the lexicon and the cue file it names (`cues:`, relative to the lexicon). Errors name
  /// the file and key: unknown keys, unknown parent/default anatomy, cycles, duplicate names.
  static std::shared_ptr<const Lexicon> load(const std::string& path);
  const std::string& name() const;
  /// The lexicon's finding names in file order, and the subset its `labels:` lists (or all).
  const std::vector<std::string>& findings() const;
  const std::vector<std::string>& label_findings() const;
  const std::vector<std::string>& anatomies() const;
  /// anatomy, its parent, ..., root; medvlp::Error for an unknown anatomy.
  std::vector<std::string> anatomy_path(const std::string& anatomy) const;
  ~Lexicon();
  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  Lexicon();
  std::unique_ptr<Impl> impl_;
};

/// Parses reports with a lexicon. Thread-safe (const); linear in the report length.
class ReportParser {
 public:
  explicit ReportParser(std::shared_ptr<const Lexicon> lexicon);
  /// medvlp::Error for invalid UTF-8 (naming `id` and the byte offset); an empty report parses to
  /// no sentences and no triplets.
  ParsedReport parse(std::string_view report, const std::string& id = "") const;
  const Lexicon& lexicon() const { return *lexicon_; }

 private:
  std::shared_ptr<const Lexicon> lexicon_;
};

/// The JSON form `medvlp parse-reports` writes, one object per report.
nlohmann::json to_json(const ParsedReport& report, const std::vector<std::string>& label_findings = {});
/// Reads that form back, from our parser or an external extractor (only `triplets` with `finding`
/// and `existence` are required). Errors name `where` and the key path ("triplets[2].existence").
ParsedReport report_from_json(const nlohmann::json& j, const std::string& where);
/// Reads a JSONL file of such objects (external annotations, e.g. from a large language model).
std::vector<ParsedReport> read_annotations(const std::string& path);

}  // namespace medvlp::text
