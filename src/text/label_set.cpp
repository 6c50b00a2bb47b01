#include "medvlp/text/label_set.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "medvlp/core/error.h"
#include "medvlp/io/files.h"
#include "yaml_errors.h"

namespace medvlp::text {

LabelSet LabelSet::load(const std::string& path, const Lexicon& lexicon) {
  return detail::with_named_yaml_errors(path, [&]() -> LabelSet {
    const YAML::Node root = detail::load_yaml_file(path);
    MEDVLP_CHECK(root.IsMap() && root["labels"] && root["labels"].IsMap(), path,
                 ": expected a mapping with `labels:` (label -> [lexicon findings])");
    for (const auto& kv : root) {
      const std::string k = kv.first.as<std::string>();
      MEDVLP_CHECK(k == "name" || k == "labels" || k == "no_finding" || k == "implied", path, ": ", k,
                   ": unknown key (expected name, labels, no_finding, implied)");
    }
    LabelSet set;
    set.name_ = root["name"] ? root["name"].as<std::string>() : path;
    const auto& known = lexicon.findings();
    std::vector<std::string> ignore;
    if (const YAML::Node nf = root["no_finding"]) {
      MEDVLP_CHECK(nf.IsMap() && nf["label"] && nf["label"].IsScalar(), path,
                   ": no_finding: expected {label: NAME, ignore: [labels]}");
      for (const auto& kv : nf) {
        const std::string k = kv.first.as<std::string>();
        MEDVLP_CHECK(k == "label" || k == "ignore", path, ": no_finding.", k, ": unknown key (expected label, ignore)");
      }
      set.no_finding_ = nf["label"].as<std::string>();
      MEDVLP_CHECK(!set.no_finding_.empty(), path, ": no_finding.label: empty");
      if (const YAML::Node ig = nf["ignore"]) {
        MEDVLP_CHECK(ig.IsSequence(), path, ": no_finding.ignore: expected a list of labels");
        for (const auto& x : ig) ignore.push_back(x.as<std::string>());
      }
      set.names_.push_back(set.no_finding_);
      set.findings_.emplace_back();
    }
    for (const auto& kv : root["labels"]) {
      const std::string label = kv.first.as<std::string>();
      const std::string where = path + ": labels." + label;
      MEDVLP_CHECK(!label.empty(), path, ": labels: an empty label name");
      MEDVLP_CHECK(std::find(set.names_.begin(), set.names_.end(), label) == set.names_.end(), where, ": defined twice");
      MEDVLP_CHECK(kv.second.IsSequence() && kv.second.size() > 0, where, ": expected a non-empty list of lexicon findings");
      std::vector<std::string> findings;
      for (const auto& f : kv.second) {
        const std::string finding = f.as<std::string>();
        MEDVLP_CHECK(std::find(known.begin(), known.end(), finding) != known.end(), where, ": \"", finding,
                     "\" is not a finding of lexicon ", lexicon.name());
        findings.push_back(finding);
      }
      set.names_.push_back(label);
      set.findings_.push_back(std::move(findings));
    }
    for (const auto& ig : ignore)
      MEDVLP_CHECK(std::find(set.names_.begin(), set.names_.end(), ig) != set.names_.end() && ig != set.no_finding_,
                   path, ": no_finding.ignore: \"", ig, "\" is not a label of this set");
    for (const auto& n : set.names_)
      set.counts_for_no_finding_.push_back(
          n != set.no_finding_ && std::find(ignore.begin(), ignore.end(), n) == ignore.end() ? 1 : 0);
    // Which labels take the statements the lexicon's normal phrases imply ("lungs are clear" ->
    // no consolidation, ...): all of them unless `implied` lists some.
    set.takes_implied_.assign(set.names_.size(), 1);
    if (const YAML::Node im = root["implied"]) {
      MEDVLP_CHECK(im.IsSequence(), path, ": implied: expected a list of labels (those that count statements implied by "
                                          "the lexicon's normal phrases)");
      set.takes_implied_.assign(set.names_.size(), 0);
      for (const auto& x : im) {
        const std::string label = x.as<std::string>();
        const auto it = std::find(set.names_.begin(), set.names_.end(), label);
        MEDVLP_CHECK(it != set.names_.end() && label != set.no_finding_, path, ": implied: \"", label,
                     "\" is not a label of this set");
        set.takes_implied_[static_cast<size_t>(it - set.names_.begin())] = 1;
      }
    }
    return set;
  });
}

std::vector<float> LabelSet::apply(const ParsedReport& report) const {
  constexpr float kBlank = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> out(names_.size(), kBlank);
  bool finding = false;
  for (size_t k = 0; k < names_.size(); ++k) {
    if (names_[k] == no_finding_) continue;
    int state = 0;  // 0 unmentioned, 1 absent, 2 uncertain, 3 present: CheXpert's priority
    for (const Triplet& t : report.triplets)
      if ((!t.implied || takes_implied_[k]) &&
          std::find(findings_[k].begin(), findings_[k].end(), t.finding) != findings_[k].end())
        state = std::max(state, t.existence == Existence::kPresent ? 3 : t.existence == Existence::kUncertain ? 2 : 1);
    out[k] = state == 3 ? 1.f : state == 2 ? -1.f : state == 1 ? 0.f : kBlank;
    if (state >= 2 && counts_for_no_finding_[k]) finding = true;
  }
  if (!no_finding_.empty() && !finding) out[0] = 1.f;
  return out;
}

}  // namespace medvlp::text
