#pragma once
// Label sets over a lexicon's findings (configs/labels/*.yaml): CheXpert's 14 observations,
// ChestX-ray14's 14 findings, or a user's own grouping.

#include <string>
#include <vector>

#include "medvlp/text/report_parser.h"

namespace medvlp::text {

/// Each label stands for one or more lexicon findings; a report's value for it aggregates their
/// triplets as the CheXpert labeler aggregates mentions. An optional "no finding" label follows
/// CheXpert's rule.
class LabelSet {
 public:
  /// Reads `path` ({name, no_finding: {label, ignore: [labels]}, labels: {label: [findings]},
  /// implied: [labels]}); `implied`, when given, lists the only labels that count statements implied
  /// by the lexicon's normal phrases (all do without it).
  /// medvlp::Error naming the file and key for unknown keys, a finding `lexicon` does not have,
  /// an empty or duplicate label, or an ignored label that is not in the set.
  static LabelSet load(const std::string& path, const Lexicon& lexicon);
  const std::string& name() const { return name_; }
  /// The labels in output order: the no-finding label first (as CheXpert's CSVs), then file order.
  const std::vector<std::string>& names() const { return names_; }
  /// Per label of names(): 1 positive (a finding stated present), -1 uncertain (none present, one
  /// uncertain), 0 negative (all mentions absent, normal statements included where the label takes
  /// them), NaN unmentioned
  /// (CheXpert's blank). The no-finding label is 1 when no label outside its `ignore` list is
  /// positive or uncertain, else NaN.
  std::vector<float> apply(const ParsedReport& report) const;

 private:
  std::string name_, no_finding_;
  std::vector<std::string> names_;
  std::vector<std::vector<std::string>> findings_;  // per label of names_ (empty for the no-finding label)
  std::vector<char> counts_for_no_finding_;        // per label of names_
  std::vector<char> takes_implied_;                // per label of names_: counts normal-phrase statements
};

}  // namespace medvlp::text
