#include "medvlp/text/report_parser.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "medvlp/core/error.h"
#include "yaml_errors.h"
#include "medvlp/io/files.h"
#include "medvlp/text/unicode.h"

namespace medvlp::text {

namespace {

// Scopes and anatomy searches look at most this many words away, so a pathological sentence
// (a megabyte without a full stop) still parses in linear time.
constexpr int kWindow = 40;

enum class Kind : uint8_t {
  kPreNeg, kPostNeg, kPreUnc, kPostUnc, kBothUnc, kPseudo, kTerminator, kVerb, kCausal,
  kFinding, kLicensed, kAnatomy, kNormal, kSeverity, kChange, kLaterality, kUnit
};

struct Entry {
  Kind kind;
  int32_t index;  // finding / anatomy / normal statement / attribute value / licensed rule
};

struct Token {
  std::string text;  // lower-case ASCII; other bytes as written
  size_t begin, end;
};

bool word_byte(unsigned char c) { return std::isalnum(c) || c >= 0x80 || c == '\''; }

// Words (letters, digits, apostrophes; a digit/letter switch splits "15mm"), decimal numbers
// ("1.5") and single punctuation marks.
std::vector<Token> tokenize(std::string_view s) {
  std::vector<Token> out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (std::isspace(c)) {
      ++i;
      continue;
    }
    size_t j = i;
    if (std::isdigit(c)) {
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) ||
                              (s[j] == '.' && j + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[j + 1])))))
        ++j;
    } else if (word_byte(c) && c != '\'') {
      while (j < s.size() && word_byte(static_cast<unsigned char>(s[j])) && !std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      while (j > i + 1 && s[j - 1] == '\'') --j;  // trailing quote
    } else {
      j = i + 1;
    }
    Token t{std::string(s.substr(i, j - i)), i, j};
    for (char& ch : t.text) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    out.push_back(std::move(t));
    i = j;
  }
  return out;
}

std::vector<std::string> phrase_tokens(const std::string& phrase) {
  std::vector<std::string> out;
  for (auto& t : tokenize(phrase)) out.push_back(std::move(t.text));
  return out;
}

// Longest-match phrase lookup over token sequences.
class PhraseTable {
 public:
  void add(const std::vector<std::string>& tokens, Entry e) {
    if (tokens.empty()) return;
    auto& list = by_first_[tokens[0]];
    for (int id : list)
      if (phrases_[static_cast<size_t>(id)].tokens == tokens) {
        auto& entries = phrases_[static_cast<size_t>(id)].entries;
        for (const Entry& x : entries)
          if (x.kind == e.kind && x.index == e.index) return;
        entries.push_back(e);
        return;
      }
    phrases_.push_back({tokens, {e}});
    list.push_back(static_cast<int>(phrases_.size() - 1));
    std::stable_sort(list.begin(), list.end(), [&](int a, int b) {
      return phrases_[static_cast<size_t>(a)].tokens.size() > phrases_[static_cast<size_t>(b)].tokens.size();
    });
  }
  // The longest phrase starting at token `i`, or null.
  const std::vector<Entry>* match(const std::vector<Token>& tokens, size_t i, size_t* length) const {
    auto it = by_first_.find(tokens[i].text);
    if (it == by_first_.end()) return nullptr;
    for (int id : it->second) {
      const auto& p = phrases_[static_cast<size_t>(id)];
      if (i + p.tokens.size() > tokens.size()) continue;
      bool ok = true;
      for (size_t k = 1; k < p.tokens.size() && ok; ++k) ok = tokens[i + k].text == p.tokens[k];
      if (ok) {
        *length = p.tokens.size();
        return &p.entries;
      }
    }
    return nullptr;
  }

 private:
  struct Phrase {
    std::vector<std::string> tokens;
    std::vector<Entry> entries;
  };
  std::vector<Phrase> phrases_;
  std::unordered_map<std::string, std::vector<int>> by_first_;
};

// ---------------------------------------------------------------------------------- YAML helpers


struct YamlFile {
  std::string path;
  YAML::Node root;
};

YamlFile read_yaml(const std::string& path) {
  YamlFile f{path, detail::load_yaml_file(path)};
  MEDVLP_CHECK(f.root.IsMap(), path, ": expected a mapping at the top level");
  return f;
}

void check_keys(const YamlFile& f, const YAML::Node& node, const std::string& where, const std::set<std::string>& allowed) {
  MEDVLP_CHECK(node.IsMap(), f.path, ": ", where, ": expected a mapping");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    if (!allowed.count(key)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw Error(f.path + ": " + (where.empty() ? "" : where + ".") + key + ": unknown key (expected one of: " + list + ")");
    }
  }
}

std::string scalar(const YamlFile& f, const YAML::Node& node, const std::string& where) {
  MEDVLP_CHECK(node && node.IsScalar(), f.path, ": ", where, ": expected a string");
  std::string s = node.as<std::string>();
  MEDVLP_CHECK(!s.empty(), f.path, ": ", where, ": empty string");
  const size_t bad = invalid_utf8_offset(s);
  MEDVLP_CHECK(bad == std::string::npos, f.path, ": ", where, ": invalid UTF-8");
  return s;
}

std::vector<std::string> string_list(const YamlFile& f, const YAML::Node& node, const std::string& where) {
  std::vector<std::string> out;
  if (!node) return out;
  if (node.IsScalar()) return {scalar(f, node, where)};
  MEDVLP_CHECK(node.IsSequence(), f.path, ": ", where, ": expected a list of strings");
  for (size_t i = 0; i < node.size(); ++i) {
    std::string s = scalar(f, node[i], where + "[" + std::to_string(i) + "]");
    MEDVLP_CHECK(!phrase_tokens(s).empty(), f.path, ": ", where, "[", i, "]: \"", s, "\" has no words");
    out.push_back(std::move(s));
  }
  return out;
}

// The phrase and its simple plural ("effusion" -> "effusions"), since reports use both.
std::vector<std::vector<std::string>> with_plural(const std::string& phrase) {
  std::vector<std::vector<std::string>> out = {phrase_tokens(phrase)};
  std::vector<std::string> plural = out[0];
  std::string& last = plural.back();
  if (last.size() > 2 && std::isalpha(static_cast<unsigned char>(last.back())) && last.back() != 's') {
    if (last.back() == 'y' && last.size() > 3 && !std::strchr("aeiou", last[last.size() - 2])) last = last.substr(0, last.size() - 1) + "ies";
    else if (last.back() == 'x' || last.back() == 'h') last += "es";
    else last += "s";
    out.push_back(plural);
  }
  return out;
}

}  // namespace

// ------------------------------------------------------------------------------------------- cues

struct CueSet::Impl {
  PhraseTable table;            // cues, pseudo-cues, terminators, verbs, attribute words, units
  std::vector<std::string> values;  // attribute values, by Entry::index
  std::vector<double> unit_mm;      // millimetres per unit, by Entry::index
  std::string path;
};

CueSet::CueSet() : impl_(std::make_unique<Impl>()) {}
CueSet::~CueSet() = default;

std::shared_ptr<const CueSet> CueSet::load(const std::string& path) {
  return detail::with_named_yaml_errors(path, [&]() -> std::shared_ptr<const CueSet> {
    const YamlFile f = read_yaml(path);
    check_keys(f, f.root, "", {"pre_negation", "post_negation", "pre_uncertainty", "post_uncertainty", "uncertainty_both",
                               "pseudo", "terminators", "causal_terminators", "clause_verbs", "severity", "change", "laterality",
                               "size_units"});
    std::shared_ptr<CueSet> cues(new CueSet());
    Impl& m = *cues->impl_;
    m.path = path;
    const std::pair<const char*, Kind> lists[] = {
        {"pre_negation", Kind::kPreNeg}, {"post_negation", Kind::kPostNeg}, {"pre_uncertainty", Kind::kPreUnc},
        {"post_uncertainty", Kind::kPostUnc}, {"uncertainty_both", Kind::kBothUnc}, {"pseudo", Kind::kPseudo},
        {"terminators", Kind::kTerminator}, {"clause_verbs", Kind::kVerb}};
    // Causal links end clauses and negations like any terminator; an uncertainty runs on through
    // them, so that "may be due to edema" hedges the edema.
    for (const auto& p : string_list(f, f.root["causal_terminators"], "causal_terminators")) {
      m.table.add(phrase_tokens(p), {Kind::kTerminator, 0});
      m.table.add(phrase_tokens(p), {Kind::kCausal, 0});
    }
    for (const auto& [key, kind] : lists) {
      const auto phrases = string_list(f, f.root[key], key);
      MEDVLP_CHECK(!phrases.empty() || (kind != Kind::kPreNeg && kind != Kind::kTerminator), path, ": ", key,
                   ": expected a non-empty list");
      for (const auto& p : phrases) m.table.add(phrase_tokens(p), {kind, 0});
    }
    const std::pair<const char*, Kind> maps[] = {
        {"severity", Kind::kSeverity}, {"change", Kind::kChange}, {"laterality", Kind::kLaterality}};
    for (const auto& [key, kind] : maps) {
      const YAML::Node node = f.root[key];
      if (!node) continue;
      MEDVLP_CHECK(node.IsMap(), path, ": ", key, ": expected a mapping from words to values");
      for (const auto& kv : node) {
        const std::string word = kv.first.as<std::string>();
        const std::string value = scalar(f, kv.second, std::string(key) + "." + word);
        m.values.push_back(value);
        m.table.add(phrase_tokens(word), {kind, static_cast<int32_t>(m.values.size() - 1)});
      }
    }
    if (const YAML::Node units = f.root["size_units"]) {
      MEDVLP_CHECK(units.IsMap(), path, ": size_units: expected a mapping from units to millimetres");
      for (const auto& kv : units) {
        const std::string unit = kv.first.as<std::string>();
        double mm = 0;
        try {
          mm = kv.second.as<double>();
        } catch (const YAML::Exception&) {
          throw Error(path + ": size_units." + unit + ": expected a number of millimetres");
        }
        MEDVLP_CHECK(mm > 0, path, ": size_units.", unit, ": expected a positive number of millimetres");
        m.unit_mm.push_back(mm);
        m.table.add(phrase_tokens(unit), {Kind::kUnit, static_cast<int32_t>(m.unit_mm.size() - 1)});
      }
    }
    return cues;
  });
}

// --------------------------------------------------------------------------------------- lexicon

struct Lexicon::Impl {
  std::string name, path;
  std::shared_ptr<const CueSet> cues;
  PhraseTable table;  // anatomy, findings, licensed words, normal statements
  std::vector<std::string> findings, labels, anatomies;
  std::unordered_map<std::string, int> finding_id, anatomy_id;
  std::vector<int> parent;                   // per anatomy, -1 for roots
  std::vector<std::map<std::string, int>> lateral;  // per anatomy: left/right -> anatomy
  std::vector<int> default_anatomy;          // per finding
  std::vector<std::vector<int>> sites;       // per finding: anatomy roots it may be attached to
  struct Licensed {
    int finding;
    int anatomy_root;
  };
  std::vector<std::vector<Licensed>> licensed;  // per licensed word
  struct Normal {
    int anatomy;
    std::vector<int> absent;
  };
  std::vector<Normal> normals;

  bool descends(int a, int root) const {
    for (int k = 0; a >= 0 && k < 64; a = parent[static_cast<size_t>(a)], ++k)
      if (a == root) return true;
    return false;
  }
};

Lexicon::Lexicon() : impl_(std::make_unique<Impl>()) {}
Lexicon::~Lexicon() = default;
const std::string& Lexicon::name() const { return impl_->name; }
const std::vector<std::string>& Lexicon::findings() const { return impl_->findings; }
const std::vector<std::string>& Lexicon::label_findings() const { return impl_->labels; }
const std::vector<std::string>& Lexicon::anatomies() const { return impl_->anatomies; }

std::vector<std::string> Lexicon::anatomy_path(const std::string& anatomy) const {
  auto it = impl_->anatomy_id.find(anatomy);
  MEDVLP_CHECK(it != impl_->anatomy_id.end(), "lexicon ", impl_->name, ": unknown anatomy \"", anatomy, "\"");
  std::vector<std::string> path;
  for (int a = it->second; a >= 0; a = impl_->parent[static_cast<size_t>(a)]) path.push_back(impl_->anatomies[static_cast<size_t>(a)]);
  return path;
}

std::shared_ptr<const Lexicon> Lexicon::load(const std::string& path) {
  return detail::with_named_yaml_errors(path, [&]() -> std::shared_ptr<const Lexicon> {
    const YamlFile f = read_yaml(path);
    check_keys(f, f.root, "", {"name", "cues", "anatomy", "findings", "normal", "labels"});
    std::shared_ptr<Lexicon> lex(new Lexicon());
    Impl& m = *lex->impl_;
    m.path = path;
    m.name = f.root["name"] ? scalar(f, f.root["name"], "name") : path;
    std::string cue_path = f.root["cues"] ? scalar(f, f.root["cues"], "cues") : "cues.yaml";
    if (cue_path[0] != '/') {
      const size_t slash = path.find_last_of('/');
      if (slash != std::string::npos) cue_path = path.substr(0, slash + 1) + cue_path;
    }
    try {
      m.cues = CueSet::load(cue_path);
    } catch (const Error& e) {
      throw e.with_context(path + ": cues");
    }

    // Anatomy: names first (parents may come later in the file), then parents and synonyms.
    const YAML::Node anatomy = f.root["anatomy"];
    MEDVLP_CHECK(anatomy && anatomy.IsSequence() && anatomy.size() > 0, path, ": anatomy: expected a non-empty list");
    for (size_t i = 0; i < anatomy.size(); ++i) {
      const std::string where = "anatomy[" + std::to_string(i) + "]";
      check_keys(f, anatomy[i], where, {"name", "parent", "synonyms", "left", "right"});
      const std::string name = scalar(f, anatomy[i]["name"], where + ".name");
      MEDVLP_CHECK(m.anatomy_id.emplace(name, static_cast<int>(m.anatomies.size())).second, path, ": ", where,
                   ".name: anatomy \"", name, "\" is defined twice");
      m.anatomies.push_back(name);
    }
    m.parent.assign(m.anatomies.size(), -1);
    m.lateral.resize(m.anatomies.size());
    auto anatomy_ref = [&](const YAML::Node& node, const std::string& where) {
      const std::string name = scalar(f, node, where);
      auto it = m.anatomy_id.find(name);
      MEDVLP_CHECK(it != m.anatomy_id.end(), path, ": ", where, ": unknown anatomy \"", name, "\"");
      return it->second;
    };
    for (size_t i = 0; i < anatomy.size(); ++i) {
      const std::string where = "anatomy[" + std::to_string(i) + "]";
      if (anatomy[i]["parent"]) m.parent[i] = anatomy_ref(anatomy[i]["parent"], where + ".parent");
      for (const char* side : {"left", "right"})
        if (anatomy[i][side]) m.lateral[i][side] = anatomy_ref(anatomy[i][side], where + "." + side);
      std::vector<std::string> names = string_list(f, anatomy[i]["synonyms"], where + ".synonyms");
      names.push_back(m.anatomies[i]);
      for (const auto& s : names)
        for (const auto& toks : with_plural(s)) m.table.add(toks, {Kind::kAnatomy, static_cast<int32_t>(i)});
    }
    for (size_t i = 0; i < m.anatomies.size(); ++i) {
      int a = static_cast<int>(i);
      for (size_t k = 0; a >= 0; ++k, a = m.parent[static_cast<size_t>(a)])
        MEDVLP_CHECK(k <= m.anatomies.size(), path, ": anatomy \"", m.anatomies[i], "\": its parents form a cycle");
    }

    const YAML::Node findings = f.root["findings"];
    MEDVLP_CHECK(findings && findings.IsSequence() && findings.size() > 0, path, ": findings: expected a non-empty list");
    for (size_t i = 0; i < findings.size(); ++i) {
      const std::string where = "findings[" + std::to_string(i) + "]";
      check_keys(f, findings[i], where, {"name", "synonyms", "anatomy", "sites", "with_anatomy"});
      const std::string name = scalar(f, findings[i]["name"], where + ".name");
      const int id = static_cast<int>(m.findings.size());
      MEDVLP_CHECK(m.finding_id.emplace(name, id).second, path, ": ", where, ".name: finding \"", name, "\" is defined twice");
      m.findings.push_back(name);
      MEDVLP_CHECK(findings[i]["anatomy"], path, ": ", where, ".anatomy: missing (the finding's default anatomy)");
      m.default_anatomy.push_back(anatomy_ref(findings[i]["anatomy"], where + ".anatomy"));
      std::vector<int> sites;
      for (const auto& s : string_list(f, findings[i]["sites"], where + ".sites")) {
        auto it = m.anatomy_id.find(s);
        MEDVLP_CHECK(it != m.anatomy_id.end(), path, ": ", where, ".sites: unknown anatomy \"", s, "\"");
        sites.push_back(it->second);
      }
      if (sites.empty()) sites.push_back(m.default_anatomy.back());
      m.sites.push_back(sites);
      std::vector<std::string> names = string_list(f, findings[i]["synonyms"], where + ".synonyms");
      names.push_back(name);
      for (const auto& s : names)
        for (const auto& toks : with_plural(s)) m.table.add(toks, {Kind::kFinding, id});
      if (const YAML::Node w = findings[i]["with_anatomy"]) {
        MEDVLP_CHECK(w.IsMap(), path, ": ", where, ".with_anatomy: expected a mapping from anatomy to words");
        for (const auto& kv : w) {
          const int root = anatomy_ref(kv.first, where + ".with_anatomy");
          for (const auto& word : string_list(f, kv.second, where + ".with_anatomy." + kv.first.as<std::string>())) {
            m.licensed.push_back({{id, root}});
            m.table.add(phrase_tokens(word), {Kind::kLicensed, static_cast<int32_t>(m.licensed.size() - 1)});
          }
        }
      }
    }
    if (const YAML::Node normal = f.root["normal"]) {
      MEDVLP_CHECK(normal.IsSequence(), path, ": normal: expected a list");
      for (size_t i = 0; i < normal.size(); ++i) {
        const std::string where = "normal[" + std::to_string(i) + "]";
        check_keys(f, normal[i], where, {"phrases", "anatomy", "absent"});
        Impl::Normal n{anatomy_ref(normal[i]["anatomy"], where + ".anatomy"), {}};
        for (const auto& fname : string_list(f, normal[i]["absent"], where + ".absent")) {
          auto it = m.finding_id.find(fname);
          MEDVLP_CHECK(it != m.finding_id.end(), path, ": ", where, ".absent: unknown finding \"", fname, "\"");
          n.absent.push_back(it->second);
        }
        m.normals.push_back(n);
        const auto phrases = string_list(f, normal[i]["phrases"], where + ".phrases");
        MEDVLP_CHECK(!phrases.empty(), path, ": ", where, ".phrases: expected a non-empty list");
        for (const auto& p : phrases) m.table.add(phrase_tokens(p), {Kind::kNormal, static_cast<int32_t>(m.normals.size() - 1)});
      }
    }
    if (f.root["labels"]) {
      for (const auto& l : string_list(f, f.root["labels"], "labels")) {
        MEDVLP_CHECK(m.finding_id.count(l), path, ": labels: unknown finding \"", l, "\"");
        m.labels.push_back(l);
      }
    } else {
      m.labels = m.findings;
    }
    return lex;
  });
}

// ------------------------------------------------------------------------------------ the engine

namespace {

struct Match {
  size_t begin, end;  // token indices
  const std::vector<Entry>* entries;
};

struct Mention {
  int finding;
  size_t begin, end;   // token indices
  int anatomy = -1;    // attached anatomy mention (index into anatomy mentions), -1 none
  int forced_anatomy = -1;  // anatomy id (licensed words, normal statements)
  bool implied = false;
};

struct AnatomyMention {
  int anatomy;
  size_t begin, end;
};

struct Analysis {
  std::vector<Token> tokens;
  std::vector<Match> cue_matches, lex_matches;
  std::vector<char> terminator;  // per token
  std::vector<char> causal;      // a terminator that uncertainty scopes run through
  std::vector<char> verb;
  std::vector<char> pre_cue;  // a negation/uncertainty pre-cue starts at this token
};

bool has(const std::vector<Entry>& entries, Kind k) {
  for (const Entry& e : entries)
    if (e.kind == k) return true;
  return false;
}

// Longest-match segmentation of the tokens against one table; returns the matches in order.
std::vector<Match> segment(const PhraseTable& table, const std::vector<Token>& tokens) {
  std::vector<Match> out;
  for (size_t i = 0; i < tokens.size();) {
    size_t len = 0;
    if (const auto* e = table.match(tokens, i, &len)) {
      out.push_back({i, i + len, e});
      i += len;
    } else {
      ++i;
    }
  }
  return out;
}

struct Decision {
  Existence existence = Existence::kPresent;
  std::string cue;
};

std::string span_text(std::string_view s, const std::vector<Token>& tokens, size_t b, size_t e) {
  return std::string(s.substr(tokens[b].begin, tokens[e - 1].end - tokens[b].begin));
}

// NegEx-style scopes: a pre-cue covers the words after it up to a terminator, a clause verb that
// follows a finding, or the window; a post-cue covers the words before it back to a terminator.
// Odd negation counts negate (so pseudo-free double negations cancel), any uncertainty wins.
std::vector<Decision> decide(std::string_view sentence, const Analysis& a, const std::vector<std::pair<size_t, size_t>>& targets) {
  std::vector<Decision> out(targets.size());
  std::vector<int> negations(targets.size(), 0);
  std::vector<int> uncertain(targets.size(), 0);
  for (const Match& c : a.cue_matches) {
    const auto& e = *c.entries;
    const bool neg_pre = has(e, Kind::kPreNeg), neg_post = has(e, Kind::kPostNeg);
    const bool unc_pre = has(e, Kind::kPreUnc) || has(e, Kind::kBothUnc);
    const bool unc_post = has(e, Kind::kPostUnc) || has(e, Kind::kBothUnc);
    if (!(neg_pre || neg_post || unc_pre || unc_post)) continue;
    const std::string cue = span_text(sentence, a.tokens, c.begin, c.end);
    size_t pre_end = c.end;
    if (neg_pre || unc_pre) {
      auto next_target = std::lower_bound(targets.begin(), targets.end(), std::make_pair(c.end, size_t{0}));
      bool covered_one = false;  // a finding lies between the cue and pre_end
      for (; pre_end < a.tokens.size() && pre_end < c.end + kWindow; ++pre_end) {
        for (; next_target != targets.end() && next_target->first < pre_end; ++next_target) covered_one = true;
        // A hedge runs on through a causal link ("may be due to edema"); a negation stops there.
        if (a.terminator[pre_end] && !(unc_pre && !neg_pre && a.causal[pre_end])) break;
        // A clause verb after the cue's first words closes it: "no effusion | and the heart is enlarged".
        if (pre_end > c.end && a.verb[pre_end]) break;
        // A new cue starts its own scope: "no effusion no pneumothorax", ", possible ...".
        if (pre_end > c.end && a.pre_cue[pre_end]) break;
        if (a.tokens[pre_end].text == "," && pre_end + 1 < a.tokens.size() && a.pre_cue[pre_end + 1]) break;
        // A negation ends at a "with" after a finding, which brings in another one: "no cardiomegaly |
        // with small effusions" (not "consistent with", which names the same one).
        if (neg_pre && covered_one && a.tokens[pre_end].text == "with" && a.tokens[pre_end - 1].text != "consistent" &&
            a.tokens[pre_end - 1].text != "compatible")
          break;
      }
    }
    size_t post_begin = c.begin;
    if (neg_post || unc_post)
      // Back to a terminator or a comma: "small effusion, | pneumothorax has resolved".
      while (post_begin > 0 && post_begin + kWindow > c.begin && !a.terminator[post_begin - 1] &&
             a.tokens[post_begin - 1].text != ",")
        --post_begin;
    // Targets are sorted by start; only those inside [post_begin, pre_end) can be covered.
    const auto first = std::lower_bound(targets.begin(), targets.end(), std::make_pair(post_begin, size_t{0}));
    for (auto t = static_cast<size_t>(first - targets.begin()); t < targets.size() && targets[t].first < pre_end; ++t) {
      const auto [tb, te] = targets[t];
      const bool after = tb >= c.end && tb < pre_end;
      const bool before = tb >= post_begin && te <= c.begin;
      if ((after && neg_pre) || (before && neg_post)) {
        ++negations[t];
        if (out[t].cue.empty()) out[t].cue = cue;
      }
      if ((after && unc_pre) || (before && unc_post)) {
        ++uncertain[t];
        out[t].cue = cue;
      }
    }
  }
  for (size_t t = 0; t < targets.size(); ++t) {
    if (uncertain[t]) out[t].existence = Existence::kUncertain;
    else if (negations[t] % 2 == 1) out[t].existence = Existence::kAbsent;
    else out[t].cue.clear();
  }
  return out;
}

Analysis analyse(const CueSet::Impl& cues, std::string_view sentence) {
  Analysis a;
  a.tokens = tokenize(sentence);
  a.cue_matches = segment(cues.table, a.tokens);
  a.terminator.assign(a.tokens.size(), 0);
  a.causal.assign(a.tokens.size(), 0);
  a.verb.assign(a.tokens.size(), 0);
  a.pre_cue.assign(a.tokens.size(), 0);
  for (const Match& m : a.cue_matches) {
    if (has(*m.entries, Kind::kPreNeg) || has(*m.entries, Kind::kPreUnc) || has(*m.entries, Kind::kBothUnc)) a.pre_cue[m.begin] = 1;
    if (has(*m.entries, Kind::kTerminator))
      for (size_t k = m.begin; k < m.end; ++k) a.terminator[k] = 1;
    if (has(*m.entries, Kind::kCausal))
      for (size_t k = m.begin; k < m.end; ++k) a.causal[k] = 1;
    if (has(*m.entries, Kind::kVerb))
      for (size_t k = m.begin; k < m.end; ++k) a.verb[k] = 1;
  }
  return a;
}

}  // namespace

Existence CueSet::existence(std::string_view sentence, std::string_view term) const {
  const size_t bad = invalid_utf8_offset(sentence);
  MEDVLP_CHECK(bad == std::string_view::npos, "existence: invalid UTF-8 in the sentence at byte ", bad);
  const auto term_tokens = phrase_tokens(std::string(term));
  MEDVLP_CHECK(!term_tokens.empty(), "existence: the term \"", term, "\" has no words");
  const Analysis a = analyse(*impl_, sentence);
  for (size_t i = 0; i + term_tokens.size() <= a.tokens.size(); ++i) {
    bool ok = true;
    for (size_t k = 0; k < term_tokens.size() && ok; ++k) ok = a.tokens[i + k].text == term_tokens[k];
    if (ok) return decide(sentence, a, {{i, i + term_tokens.size()}})[0].existence;
  }
  throw Error("existence: the term \"" + std::string(term) + "\" does not occur in \"" + std::string(sentence) + "\"");
}

// ------------------------------------------------------------------------------------ the parser

const char* existence_name(Existence e) {
  switch (e) {
    case Existence::kPresent: return "present";
    case Existence::kAbsent: return "absent";
    default: return "uncertain";
  }
}

Existence parse_existence(std::string_view name, std::string_view where) {
  if (name == "present") return Existence::kPresent;
  if (name == "absent") return Existence::kAbsent;
  if (name == "uncertain") return Existence::kUncertain;
  throw Error(std::string(where) + ": expected present, absent or uncertain, got \"" + std::string(name) + "\"");
}

std::vector<float> ParsedReport::labels(const std::vector<std::string>& findings) const {
  std::vector<float> out(findings.size(), -1.f);
  std::vector<int> state(findings.size(), 0);  // 0 unmentioned, 1 absent, 2 uncertain, 3 present
  for (const Triplet& t : triplets) {
    auto it = std::find(findings.begin(), findings.end(), t.finding);
    if (it == findings.end()) continue;
    const auto k = static_cast<size_t>(it - findings.begin());
    const int s = t.existence == Existence::kPresent ? 3 : t.existence == Existence::kUncertain ? 2 : 1;
    state[k] = std::max(state[k], s);
  }
  for (size_t k = 0; k < findings.size(); ++k) out[k] = state[k] == 3 ? 1.f : state[k] == 1 ? 0.f : -1.f;
  return out;
}

ReportParser::ReportParser(std::shared_ptr<const Lexicon> lexicon) : lexicon_(std::move(lexicon)) {
  MEDVLP_CHECK(lexicon_ != nullptr, "ReportParser: no lexicon");
}

namespace {

void parse_sentence(const Lexicon::Impl& lex, std::string_view report, const Sentence& s, int index,
                    std::vector<Triplet>* out) {
  const std::string_view text = report.substr(s.begin, s.end - s.begin);
  const CueSet::Impl& cues = lex.cues->impl();
  const Analysis a = analyse(cues, text);
  const std::vector<Match> lex_matches = segment(lex.table, a.tokens);
  const size_t n = a.tokens.size();

  // Clause ids: terminators start a new clause.
  std::vector<int> clause(n, 0);
  for (size_t i = 0, c = 0; i < n; ++i) {
    if (a.terminator[i]) ++c;
    clause[i] = static_cast<int>(c);
  }
  std::vector<AnatomyMention> anatomy;
  std::vector<Mention> mentions;
  std::vector<Match> licensed;
  for (const Match& m : lex_matches) {
    for (const Entry& e : *m.entries) {
      if (e.kind == Kind::kAnatomy) anatomy.push_back({e.index, m.begin, m.end});
      else if (e.kind == Kind::kFinding) mentions.push_back({e.index, m.begin, m.end});
      else if (e.kind == Kind::kLicensed && (licensed.empty() || licensed.back().begin != m.begin)) licensed.push_back(m);
      else if (e.kind == Kind::kNormal) {
        const auto& normal = lex.normals[static_cast<size_t>(e.index)];
        for (int f : normal.absent) {
          Mention x{f, m.begin, m.end};
          x.forced_anatomy = normal.anatomy;
          x.implied = true;
          mentions.push_back(x);
        }
      }
    }
  }
  // A licensed word ("enlarged") names a finding only next to its anatomy ("the heart").
  // One word may license several findings ("cyst": kidney or liver); the nearest anatomy decides.
  for (const Match& m : licensed) {
    int best = -1;
    size_t best_distance = kWindow + 1;
    int finding = -1;
    for (const Entry& e : *m.entries) {
      if (e.kind != Kind::kLicensed) continue;
      for (const auto& l : lex.licensed[static_cast<size_t>(e.index)]) {
        for (size_t k = 0; k < anatomy.size(); ++k) {
          const auto& am = anatomy[k];
          if (clause[am.begin] != clause[m.begin] || !lex.descends(am.anatomy, l.anatomy_root)) continue;
          const size_t d = am.end <= m.begin ? m.begin - am.end : am.begin >= m.end ? am.begin - m.end : 0;
          if (d < best_distance) {
            best_distance = d;
            best = static_cast<int>(k);
            finding = l.finding;
          }
        }
      }
    }
    if (best < 0) continue;
    Mention x{finding, m.begin, m.end};
    x.anatomy = best;
    mentions.push_back(x);
  }
  std::sort(mentions.begin(), mentions.end(), [](const Mention& x, const Mention& y) {
    return x.begin != y.begin ? x.begin < y.begin : x.finding < y.finding;
  });
  // Adjacent words naming the same finding are one mention ("calcified atherosclerotic plaques").
  std::vector<Mention> merged;
  for (const Mention& m : mentions) {
    if (!merged.empty() && !m.implied && !merged.back().implied && merged.back().finding == m.finding && merged.back().end == m.begin) {
      merged.back().end = m.end;
      if (merged.back().anatomy < 0) merged.back().anatomy = m.anatomy;
      continue;
    }
    merged.push_back(m);
  }
  mentions.swap(merged);
  if (mentions.empty()) return;

  // Attach each explicit finding to the nearest compatible anatomy in its clause with no other
  // finding in between.
  std::vector<char> finding_token(n, 0);
  for (const auto& m : mentions)
    if (!m.implied)
      for (size_t k = m.begin; k < m.end; ++k) finding_token[k] = 1;
  for (auto& m : mentions) {
    if (m.implied || m.anatomy >= 0) continue;
    size_t best_distance = kWindow + 1;
    for (size_t k = 0; k < anatomy.size(); ++k) {
      const auto& am = anatomy[k];
      if (clause[am.begin] != clause[m.begin]) continue;
      bool compatible = false;
      for (int root : lex.sites[static_cast<size_t>(m.finding)]) compatible = compatible || lex.descends(am.anatomy, root);
      if (!compatible) continue;
      const size_t lo = am.end <= m.begin ? am.end : m.end, hi = am.end <= m.begin ? m.begin : am.begin;
      if (am.begin < m.end && am.end > m.begin) continue;  // overlapping: not a separate mention
      bool blocked = false;
      for (size_t t = lo; t < hi && !blocked; ++t) blocked = finding_token[t];
      const size_t d = hi - lo;
      if (!blocked && (d < best_distance || (d == best_distance && am.begin > m.begin))) {
        best_distance = d;
        m.anatomy = static_cast<int>(k);
      }
    }
  }

  std::vector<std::pair<size_t, size_t>> targets;
  for (const auto& m : mentions) targets.push_back({m.begin, m.end});
  const std::vector<Decision> decisions = decide(text, a, targets);

  // Attribute regions: the gap between two findings is split at its first separator.
  std::vector<size_t> region_begin(mentions.size()), region_end(mentions.size());
  for (size_t i = 0; i < mentions.size(); ++i) {
    region_begin[i] = i == 0 ? 0 : region_end[i - 1];
    if (i + 1 < mentions.size()) {
      size_t cut = mentions[i + 1].begin;
      for (size_t t = mentions[i].end; t < mentions[i + 1].begin; ++t) {
        const std::string& w = a.tokens[t].text;
        if (w == "," || w == "and" || w == "or" || w == "with" || w == ";" || a.terminator[t]) {
          cut = t;
          break;
        }
      }
      region_end[i] = std::max(cut, mentions[i].end);
    } else {
      region_end[i] = n;
    }
  }
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < mentions.size(); ++i) {
    const Mention& m = mentions[i];
    Triplet t;
    t.finding = lex.findings[static_cast<size_t>(m.finding)];
    t.existence = m.implied ? Existence::kAbsent : decisions[i].existence;
    t.cue = m.implied ? "" : decisions[i].cue;
    t.implied = m.implied;
    t.sentence = index;
    t.begin = s.begin + a.tokens[m.begin].begin;
    t.end = s.begin + a.tokens[m.end - 1].end;
    Attributes& at = t.attributes;
    if (!m.implied) {
      const size_t lo = std::max(region_begin[i], m.begin >= kWindow ? m.begin - kWindow : 0);
      const size_t hi = std::min(region_end[i], m.end + kWindow);
      auto from = std::lower_bound(a.cue_matches.begin(), a.cue_matches.end(), lo,
                                   [](const Match& x, size_t v) { return x.begin < v; });
      for (auto c = from; c != a.cue_matches.end() && c->begin < hi; ++c) {
        if (c->end > hi || clause[c->begin] != clause[m.begin]) continue;
        for (const Entry& e : *c->entries) {
          const bool valued = e.kind == Kind::kSeverity || e.kind == Kind::kChange || e.kind == Kind::kLaterality;
          const std::string v = valued ? cues.values[static_cast<size_t>(e.index)] : std::string();
          if (e.kind == Kind::kSeverity && at.severity.empty()) at.severity = v;
          if (e.kind == Kind::kChange && at.change.empty()) at.change = v;
          if (e.kind == Kind::kLaterality && at.laterality.empty()) at.laterality = v;
          if (e.kind == Kind::kUnit && at.size_mm < 0 && c->begin > 0 &&
              std::isdigit(static_cast<unsigned char>(a.tokens[c->begin - 1].text[0]))) {
            // "1.5 cm", "1.5 x 2.0 cm", "15 x 12 x 10 mm": the largest dimension.
            size_t first = c->begin - 1;
            double largest = std::atof(a.tokens[first].text.c_str());
            while (first >= 2 && (a.tokens[first - 1].text == "x" || a.tokens[first - 1].text == "by") &&
                   std::isdigit(static_cast<unsigned char>(a.tokens[first - 2].text[0]))) {
              first -= 2;
              largest = std::max(largest, std::atof(a.tokens[first].text.c_str()));
            }
            at.size_mm = largest * cues.unit_mm[static_cast<size_t>(e.index)];
            at.size_text = span_text(text, a.tokens, first, c->end);
          }
        }
      }
    }
    int anatomy_id = m.forced_anatomy >= 0 ? m.forced_anatomy
                     : m.anatomy >= 0      ? anatomy[static_cast<size_t>(m.anatomy)].anatomy
                                           : lex.default_anatomy[static_cast<size_t>(m.finding)];
    if (at.laterality.empty()) {
      const std::string& name = lex.anatomies[static_cast<size_t>(anatomy_id)];
      if (name.rfind("left ", 0) == 0) at.laterality = "left";
      else if (name.rfind("right ", 0) == 0) at.laterality = "right";
    } else {
      // "left pleural effusion": the pleura's left side, where the lexicon has one.
      auto it = lex.lateral[static_cast<size_t>(anatomy_id)].find(at.laterality);
      if (it != lex.lateral[static_cast<size_t>(anatomy_id)].end()) anatomy_id = it->second;
    }
    t.anatomy = lex.anatomies[static_cast<size_t>(anatomy_id)];
    for (int p = anatomy_id; p >= 0; p = lex.parent[static_cast<size_t>(p)]) t.anatomy_path.push_back(lex.anatomies[static_cast<size_t>(p)]);
    // A sentence that states the same thing twice ("a hypodense lesion in the liver ... a cyst")
    // yields one triplet.
    const std::string key = t.finding + '|' + t.anatomy + '|' + existence_name(t.existence) + (t.implied ? "|i" : "");
    if (seen.insert(key).second) out->push_back(std::move(t));
  }
}

}  // namespace

ParsedReport ReportParser::parse(std::string_view report, const std::string& id) const {
  const size_t bad = invalid_utf8_offset(report);
  MEDVLP_CHECK(bad == std::string_view::npos, "report", id.empty() ? "" : " " + id, ": invalid UTF-8 at byte ", bad);
  ParsedReport out;
  out.id = id;
  out.sections = split_sections(report);
  for (const Section& sec : out.sections) {
    for (const SentenceSpan& span : split_sentences(report.substr(sec.begin, sec.end - sec.begin), sec.begin)) {
      Sentence s{std::string(report.substr(span.begin, span.end - span.begin)), sec.name, span.begin, span.end};
      out.sentences.push_back(std::move(s));
      parse_sentence(lexicon_->impl(), report, out.sentences.back(), static_cast<int>(out.sentences.size() - 1), &out.triplets);
    }
  }
  return out;
}

}  // namespace medvlp::text
