#include "medvlp/data/report_structure.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>

#include <torch/torch.h>

#include "../core/log.h"
#include "medvlp/core/error.h"
#include "medvlp/core/registry.h"
#include "medvlp/data/rng.h"
#include "medvlp/text/report_io.h"
#include "medvlp/text/unicode.h"

namespace medvlp::data {

namespace {

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// "small 12 mm new": what a triplet says beyond its anatomy and finding, in MedFILIP's detail slot.
std::string detail_of(const text::Attributes& a) {
  std::string out;
  for (const std::string* part : {&a.severity, &a.size_text, &a.change}) {
    if (part->empty()) continue;
    if (!out.empty()) out += ' ';
    out += *part;
  }
  return out;
}

}  // namespace

ReportStructureOptions ReportStructurer::parse_options(const core::ConfigNode& node,
                                                       const std::vector<std::string>& anatomies,
                                                       const std::vector<std::string>& findings) {
  ReportStructureOptions o;
  o.lexicon = node.get_string("lexicon", o.lexicon);
  o.knowledge = node.get_string("knowledge", o.knowledge);
  o.annotations = node.get_string("annotations", o.annotations);
  o.normal_template = node.get_string("normal_template", o.normal_template);
  o.max_sentences = node.get_int("max_sentences", o.max_sentences, 1, 512);
  o.max_entities = node.get_int("max_entities", o.max_entities, 1, 512);
  o.entity_mask = node.get_double("entity_mask", o.entity_mask, 0.0, 1.0);
  o.hold_out = node.get_strings("hold_out", {});
  o.anatomy_max_len = node.get_int("anatomy_max_len", o.anatomy_max_len, 4, 8192);
  o.sentence_max_len = node.get_int("sentence_max_len", o.sentence_max_len, 4, 8192);
  o.entity_max_len = node.get_int("entity_max_len", o.entity_max_len, 4, 8192);
  o.tags = node.get_strings("tags", findings);
  if (node.has("anatomies")) {
    // Items are names, or {name, covers: [lexicon anatomies]}; a list keeps the mask order.
    const core::ConfigNode list = node.at("anatomies");
    if (!list.is_list()) node.fail("anatomies", "expected a list of anatomy names or {name, covers} maps");
    const nlohmann::json& items = *node.raw("anatomies");
    for (size_t i = 0; i < items.size(); ++i) {
      const nlohmann::json& item = items[i];
      const std::string key = "anatomies[" + std::to_string(i) + "]";
      AnatomySpec spec;
      if (item.is_string()) {
        spec.name = item.get<std::string>();
      } else if (item.is_object() && item.contains("name") && item["name"].is_string()) {
        spec.name = item["name"].get<std::string>();
        for (const auto& [k, v] : item.items())
          if (k != "name" && k != "covers") node.fail(key + "." + k, "unknown key (expected name, covers)");
        if (item.contains("covers")) {
          if (!item["covers"].is_array()) node.fail(key + ".covers", "expected a list of lexicon anatomy names");
          for (const auto& c : item["covers"]) {
            if (!c.is_string()) node.fail(key + ".covers", "expected a list of lexicon anatomy names");
            spec.covers.push_back(c.get<std::string>());
          }
        }
      } else {
        node.fail(key, "expected an anatomy name or {name, covers: [...]}");
      }
      if (spec.name.empty()) node.fail(key, "empty anatomy name");
      o.anatomies.push_back(spec);
    }
  } else {
    for (const auto& a : anatomies) o.anatomies.push_back({a, {}});
  }
  return o;
}

ReportStructurer::ReportStructurer(ReportStructureOptions options) : options_(std::move(options)) {
  lexicon_ = text::Lexicon::load(text::config_file("lexicons", options_.lexicon));
  parser_ = std::make_unique<text::ReportParser>(lexicon_);
  if (!options_.knowledge.empty())
    knowledge_ = std::make_shared<text::KnowledgeTable>(
        text::KnowledgeTable::load(text::config_file("knowledge", options_.knowledge)));
  diseases_ = lexicon_->findings();
  for (const auto& f : options_.hold_out)
    MEDVLP_CHECK(std::find(diseases_.begin(), diseases_.end(), f) != diseases_.end(), "data.report.hold_out: \"", f,
                 "\" is not a finding of lexicon ", lexicon_->name(), "; it has: ", core::join(diseases_));
  diseases_.push_back("no finding");
  const auto& lex_anatomies = lexicon_->anatomies();
  if (options_.units.tags) {
    // Dataset label columns may be spelt otherwise ("Pleural Effusion"): match them without case.
    for (auto& tag : options_.tags) {
      const auto lower = [](std::string s) {
        for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return s;
      };
      const auto& known = lexicon_->findings();
      const auto it = std::find_if(known.begin(), known.end(), [&](const std::string& f) { return lower(f) == lower(tag); });
      MEDVLP_CHECK(it != known.end(), "tags: \"", tag, "\" is not a finding of lexicon ", lexicon_->name(),
                   " (list lexicon findings in report.tags; by default the tags are the dataset's label columns)");
      tag = *it;
    }
  }
  std::set<std::string> names;
  for (const auto& spec : options_.anatomies) {
    MEDVLP_CHECK(names.insert(spec.name).second, "anatomies: \"", spec.name, "\" is listed twice");
    std::vector<std::string> covers = spec.covers.empty() ? std::vector<std::string>{spec.name} : spec.covers;
    for (const auto& c : covers)
      MEDVLP_CHECK(contains(lex_anatomies, c), "anatomies: \"", c, "\" is not an anatomy of lexicon ", lexicon_->name(),
                   spec.covers.empty() ? " (map the mask to lexicon anatomies with {name: " + spec.name + ", covers: [...]})"
                                       : std::string());
    covers_.push_back(std::move(covers));
  }
  // A statement about an anatomy above a spec's ("consolidation in the lungs" for a right-lower-lung
  // mask) reaches every spec below it, unless it is a root or above every spec (the chest).
  std::map<std::string, size_t> above;
  for (const auto& covers : covers_) {
    std::set<std::string> ancestors;
    for (const auto& c : covers) {
      const auto path = lexicon_->anatomy_path(c);
      for (size_t i = 1; i + 1 < path.size(); ++i) ancestors.insert(path[i]);  // not c, not the root
    }
    for (const auto& a : ancestors) ++above[a];
    reached_from_.push_back(std::move(ancestors));
  }
  for (auto& ancestors : reached_from_)
    for (auto it = ancestors.begin(); it != ancestors.end();)
      it = above[*it] == covers_.size() ? ancestors.erase(it) : std::next(it);

  if (!options_.annotations.empty()) {
    std::ifstream in(options_.annotations, std::ios::binary);
    MEDVLP_CHECK(in, "annotations: ", options_.annotations, ": cannot open the annotation file");
    std::string line;
    for (size_t number = 1; std::getline(in, line); ++number) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::string where = options_.annotations + ":" + std::to_string(number);
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        throw Error(where + ": not valid JSON (" + e.what() + ")");
      }
      text::ParsedReport r = text::report_from_json(j, where);
      for (auto& t : r.triplets)
        if (t.anatomy_path.empty() && contains(lex_anatomies, t.anatomy)) t.anatomy_path = lexicon_->anatomy_path(t.anatomy);
      MEDVLP_CHECK(!r.id.empty(), where, ": the annotation has no \"id\" (the sample id it belongs to)");
      for (size_t t = 0; t < r.triplets.size(); ++t)
        MEDVLP_CHECK(r.triplets[t].sentence < static_cast<int>(r.sentences.size()), where, ": report ", r.id,
                     ": triplets[", t, "].sentence ", r.triplets[t].sentence, " but the annotation has ",
                     r.sentences.size(), " sentences");
      const std::string id = r.id;
      const auto inserted = annotations_.emplace(id, Annotation{std::move(r), where});
      MEDVLP_CHECK(inserted.second, where, ": report ", id, " is annotated twice (first at ",
                   inserted.first->second.where, ")");
    }
    MEDVLP_CHECK(!annotations_.empty(), "annotations: ", options_.annotations, ": no annotations");
  }
}

std::vector<std::string> ReportStructurer::anatomy_names() const {
  std::vector<std::string> out;
  for (const auto& s : options_.anatomies) out.push_back(s.name);
  return out;
}

int64_t ReportStructurer::structured_reports() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(cache_.size());
}

StructuredReport ReportStructurer::structure_parsed(const text::ParsedReport& parsed) const {
  StructuredReport out;
  out.empty = parsed.sentences.empty() && parsed.triplets.empty();
  for (const auto& s : parsed.sentences) {
    if (static_cast<int64_t>(out.sentences.size()) >= options_.max_sentences) break;
    out.sentences.push_back(s.text);
  }
  // A triplet without a sentence (imported annotations) is described by its own words.
  const auto statement = [&](const text::Triplet& t) {
    if (t.sentence >= 0) return parsed.sentences[static_cast<size_t>(t.sentence)].text;
    const std::string where = t.anatomy.empty() ? "" : " in the " + t.anatomy;
    return (t.existence == text::Existence::kUncertain ? "possible " : "") + t.finding + where + ".";
  };
  const size_t A = covers_.size();
  out.anatomy_text.resize(A);
  out.anatomy_abnormal.assign(A, 0.f);
  out.anatomy_normal.assign(A, 0.f);
  out.anatomy_described.assign(A, 0.f);
  for (size_t a = 0; a < A; ++a) {
    std::vector<std::string> texts;
    std::set<int> seen;
    for (const auto& t : parsed.triplets) {
      if (t.existence == text::Existence::kAbsent) continue;
      bool hit = reached_from_[a].count(t.anatomy) > 0;
      for (const auto& c : covers_[a]) hit = hit || t.anatomy == c || contains(t.anatomy_path, c);
      if (!hit) continue;
      if (t.existence == text::Existence::kPresent) out.anatomy_abnormal[a] = 1.f;
      if (t.sentence >= 0 && !seen.insert(t.sentence).second) continue;
      texts.push_back(statement(t));
    }
    if (texts.empty()) {
      out.anatomy_text[a] = text::replace_all(options_.normal_template, "{anatomy}", options_.anatomies[a].name);
      out.anatomy_normal[a] = out.empty ? 0.f : 1.f;  // an empty report states nothing normal either
    } else {
      out.anatomy_described[a] = 1.f;
      for (const auto& s : texts) out.anatomy_text[a] += (out.anatomy_text[a].empty() ? "" : " ") + s;
    }
  }
  std::set<std::tuple<std::string, std::string, std::string>> entities;
  bool held_out = false;
  for (const auto& t : parsed.triplets) {
    if (t.existence != text::Existence::kPresent) continue;
    if (std::find(options_.hold_out.begin(), options_.hold_out.end(), t.finding) != options_.hold_out.end()) {
      held_out = true;
      continue;
    }
    if (static_cast<int64_t>(out.entities.size()) >= options_.max_entities) break;
    text::EntityDetail e{t.anatomy, detail_of(t.attributes), t.finding};
    if (!entities.insert({e.location, e.detail, e.disease}).second) continue;
    const auto it = std::find(diseases_.begin(), diseases_.end(), t.finding);
    MEDVLP_CHECK(it != diseases_.end(), "report ", parsed.id, ": finding \"", t.finding, "\" is not in lexicon ",
                 lexicon_->name());
    out.entities.push_back(e);
    out.entity_disease.push_back(it - diseases_.begin());
  }
  if (out.entities.empty() && !held_out) {
    out.entities.push_back({"", "", "no finding"});
    out.entity_disease.push_back(static_cast<int64_t>(diseases_.size()) - 1);
  }
  out.tags = parsed.labels(options_.tags);
  return out;
}

std::shared_ptr<const StructuredReport> ReportStructurer::structure(const std::string& report,
                                                                   const std::string& id) const {
  const bool imported = !annotations_.empty();
  // With annotations the id picks the structure, and the text is checked against it: both key the cache.
  const std::string key = imported ? id + '\x1f' + report : report;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
  }
  text::ParsedReport parsed;
  std::string problem;
  if (imported) {
    // Disagreements between the annotations and the dataset are errors, never silent.
    auto a = annotations_.find(id);
    MEDVLP_CHECK(a != annotations_.end(), "annotations ", options_.annotations, ": no annotation for report id \"", id,
                 "\" (every sample of the dataset needs one)");
    parsed = a->second.report;
    for (size_t s = 0; s < parsed.sentences.size(); ++s) {
      const text::Sentence& sentence = parsed.sentences[s];
      if (sentence.end <= sentence.begin) continue;  // no span given
      MEDVLP_CHECK(sentence.end <= report.size() &&
                       report.compare(sentence.begin, sentence.end - sentence.begin, sentence.text) == 0,
                   a->second.where, ": report ", id, ": sentences[", s, "] \"", sentence.text,
                   "\" is not the report's text at bytes [", sentence.begin, ", ", sentence.end,
                   ") (annotations of another report, or of another version of it)");
    }
  }
  try {
    if (!imported) parsed = parser_->parse(report, id);
    else if (parsed.sentences.empty()) parsed.sentences = parser_->parse(report, id).sentences;
  } catch (const Error& e) {
    problem = e.what();  // invalid UTF-8: the report yields an empty structure
    if (!imported) {
      parsed = text::ParsedReport{};
      parsed.id = id;
    }
  }
  auto structured = std::make_shared<StructuredReport>(structure_parsed(parsed));
  if (!problem.empty()) structured->empty = true;
  if (structured->empty) {
    const int64_t n = ++empty_count_;
    if (n <= 5 || (n & (n - 1)) == 0)
      core::log_warn("report ", id.empty() ? std::string("(no id)") : id, " yields no structure (",
                     problem.empty() ? std::string("no sentences") : problem, "); ", n, " such report",
                     n == 1 ? "" : "s", " so far");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  return cache_.emplace(key, std::move(structured)).first->second;
}

text::TokenBatch ReportStructurer::encode_units(const text::Tokenizer& tokenizer, const std::vector<std::string>& texts,
                                               int64_t max_len) const {
  constexpr size_t kMaxCached = size_t{1} << 20;  // ~0.4 GB at 48 ids; masked entity texts never repeat
  const auto n = static_cast<int64_t>(texts.size());
  at::Tensor ids = torch::empty({n, max_len}, torch::kLong), mask = torch::zeros({n, max_len}, torch::kLong);
  auto ids_a = ids.accessor<int64_t, 2>();
  auto mask_a = mask.accessor<int64_t, 2>();
  const auto put = [&](int64_t row, const TokenRow& r) {
    std::copy(r.ids.begin(), r.ids.end(), &ids_a[row][0]);
    for (int64_t i = 0; i < r.length; ++i) mask_a[row][i] = 1;
  };
  const std::string prefix = std::to_string(max_len) + "/";
  std::unordered_map<std::string, std::vector<int64_t>> missing;  // text -> rows that need it
  {
    std::lock_guard<std::mutex> lock(token_mutex_);
    if (token_owner_ != &tokenizer) {  // rows of another tokenizer are not this one's
      token_cache_.clear();
      token_owner_ = &tokenizer;
    }
    for (int64_t i = 0; i < n; ++i) {
      const std::string& text = texts[static_cast<size_t>(i)];
      const auto it = token_cache_.find(prefix + text);
      if (it != token_cache_.end()) put(i, it->second);
      else missing[text].push_back(i);
    }
  }
  if (missing.empty()) return {ids, mask};
  std::vector<std::string> distinct;
  for (const auto& m : missing) distinct.push_back(m.first);
  const text::TokenBatch fresh = tokenizer.encode(distinct, max_len);
  const at::Tensor lengths = fresh.mask.sum(1);
  std::lock_guard<std::mutex> lock(token_mutex_);
  const bool keep = token_owner_ == &tokenizer;
  for (size_t d = 0; d < distinct.size(); ++d) {
    TokenRow r;
    const at::Tensor row = fresh.ids[static_cast<int64_t>(d)].contiguous();
    r.ids.assign(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + max_len);
    r.length = lengths[static_cast<int64_t>(d)].item<int64_t>();
    for (int64_t i : missing[distinct[d]]) put(i, r);
    if (keep && token_cache_.size() < kMaxCached) token_cache_.emplace(prefix + distinct[d], std::move(r));
  }
  return {ids, mask};
}

void ReportStructurer::fill(Batch* batch, const std::vector<Sample>& samples, const text::Tokenizer& tokenizer,
                            bool training, uint64_t seed, int64_t epoch) const {
  const ReportUnits& u = options_.units;
  if (!u.any()) return;
  const auto B = static_cast<int64_t>(samples.size());
  std::vector<std::shared_ptr<const StructuredReport>> reports;
  for (const auto& s : samples) reports.push_back(structure(s.report, s.id));
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  if (u.anatomy) {
    const auto A = static_cast<int64_t>(covers_.size());
    std::vector<std::string> texts;
    at::Tensor abnormal = torch::zeros({B, A}, f32), normal = torch::zeros({B, A}, f32),
               described = torch::zeros({B, A}, f32);
    at::Tensor hash = torch::zeros({B, A}, torch::kLong);
    auto ab = abnormal.accessor<float, 2>(), no = normal.accessor<float, 2>(), de = described.accessor<float, 2>();
    auto h = hash.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t a = 0; a < A; ++a) {
        const StructuredReport& r = *reports[static_cast<size_t>(b)];
        texts.push_back(r.anatomy_text[static_cast<size_t>(a)]);
        ab[b][a] = r.anatomy_abnormal[static_cast<size_t>(a)];
        no[b][a] = r.anatomy_normal[static_cast<size_t>(a)];
        de[b][a] = r.anatomy_described[static_cast<size_t>(a)];
        h[b][a] = text_hash(texts.back());
      }
    const text::TokenBatch tokens = encode_units(tokenizer, texts, options_.anatomy_max_len);
    batch->anatomy_ids = tokens.ids.view({B, A, -1});
    batch->anatomy_attention = tokens.mask.view({B, A, -1});
    batch->anatomy_abnormal = abnormal;
    batch->anatomy_normal = normal;
    batch->anatomy_described = described;
    batch->anatomy_text_hash = hash;
  }
  if (u.sentences) {
    const int64_t S = options_.max_sentences;
    std::vector<std::string> texts;
    at::Tensor mask = torch::zeros({B, S}, f32);
    auto m = mask.accessor<float, 2>();
    for (int64_t b = 0; b < B; ++b) {
      // A report without sentences counts as one: its whole (possibly empty) text.
      std::vector<std::string> units = reports[static_cast<size_t>(b)]->sentences;
      if (units.empty()) units.push_back(samples[static_cast<size_t>(b)].report);
      for (int64_t s = 0; s < S; ++s) {
        const bool real = s < static_cast<int64_t>(units.size());
        texts.push_back(real ? units[static_cast<size_t>(s)] : std::string());
        if (real) m[b][s] = 1.f;
      }
    }
    const text::TokenBatch tokens = encode_units(tokenizer, texts, options_.sentence_max_len);
    batch->sentence_ids = tokens.ids.view({B, S, -1});
    batch->sentence_attention = tokens.mask.view({B, S, -1});
    batch->sentence_mask = mask;
  }
  if (u.entities) {
    const int64_t E = options_.max_entities;
    std::vector<std::string> texts;
    at::Tensor mask = torch::zeros({B, E}, f32), disease = torch::zeros({B, E}, torch::kLong);
    auto m = mask.accessor<float, 2>();
    auto d = disease.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; ++b) {
      const StructuredReport& r = *reports[static_cast<size_t>(b)];
      Rng rng(mix_seed(seed, 0x454e54495459ull, static_cast<uint64_t>(epoch),
                       static_cast<uint64_t>(text_hash(samples[static_cast<size_t>(b)].id))));
      const double p = training ? options_.entity_mask : 0.0;
      const std::function<bool()> masker = [&rng, p] { return p > 0 && rng.bernoulli(p); };
      for (int64_t e = 0; e < E; ++e) {
        if (e >= static_cast<int64_t>(r.entities.size())) {
          texts.emplace_back();
          continue;
        }
        const text::EntityDetail& detail = r.entities[static_cast<size_t>(e)];
        texts.push_back(text::entity_text(detail, knowledge_ ? knowledge_->description(detail.disease) : std::string(),
                                          masker));
        m[b][e] = 1.f;
        d[b][e] = r.entity_disease[static_cast<size_t>(e)];
      }
    }
    const text::TokenBatch tokens = encode_units(tokenizer, texts, options_.entity_max_len);
    batch->entity_ids = tokens.ids.view({B, E, -1});
    batch->entity_attention = tokens.mask.view({B, E, -1});
    batch->entity_mask = mask;
    batch->entity_disease = disease;
  }
  if (u.tags) {
    const auto T = static_cast<int64_t>(options_.tags.size());
    at::Tensor tags = torch::empty({B, T}, f32);
    auto g = tags.accessor<float, 2>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) g[b][t] = reports[static_cast<size_t>(b)]->tags[static_cast<size_t>(t)];
    batch->tags = tags;
  }
}

}  // namespace medvlp::data
