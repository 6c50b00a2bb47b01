#include "medvlp/eval/evaluator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <iomanip>
#include <sstream>

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/data/loader.h"
#include "medvlp/eval/metrics.h"
#include "medvlp/text/unicode.h"

namespace medvlp::eval {

EvalOptions parse_eval_options(const core::ConfigNode& node, const std::vector<std::string>& findings) {
  EvalOptions o;
  o.split = node.get_choice("split", o.split, {"train", "val", "test"});
  o.batch_size = node.get_int("batch_size", o.batch_size, 1, 1 << 20);
  o.recall_k = node.get_ints("recall_k", o.recall_k);
  o.bootstrap = node.get_int("bootstrap", o.bootstrap, 0, 1000000);
  o.ci_level = node.get_double("ci_level", o.ci_level, 0.5, 0.999);
  o.bootstrap_seed = static_cast<uint64_t>(node.get_int("bootstrap_seed", 0, 0));
  o.thresholds_from = node.get_choice("thresholds_from", o.thresholds_from, {"none", "train", "val", "test"});
  if (o.thresholds_from == "none") o.thresholds_from.clear();
  if (node.has("localization")) {
    const core::ConfigNode loc = node.child("localization");
    o.localization.enabled = true;
    o.localization.maps = loc.get_choice("maps", o.localization.maps, {"auto", "tokens", "sentences", "embedding"});
    o.localization.thresholds = loc.get_doubles("thresholds", o.localization.thresholds);
    for (double t : o.localization.thresholds)
      if (!(t > 0 && t < 1)) loc.fail("thresholds", "expected thresholds in (0, 1) on the normalized map, got " + std::to_string(t));
    if (o.localization.thresholds.empty()) loc.fail("thresholds", "needs at least one threshold");
    o.localization.overlays = loc.get_int("overlays", o.localization.overlays, 0, 100000);
  }
  if (!o.thresholds_from.empty() && o.thresholds_from == o.split)
    node.fail("thresholds_from", "chooses thresholds on the split they are evaluated on (" + o.split +
                                     "), which overstates accuracy and F1; use another split or none");
  const core::ConfigNode prompts = node.child("prompts");
  for (const auto& key : prompts.keys()) {
    if (std::find(findings.begin(), findings.end(), key) == findings.end())
      prompts.fail(key, "not a finding of this dataset; known: " + core::join(findings));
  }
  for (const auto& finding : findings) {
    FindingPrompts p{finding, {finding + "."}, {"no " + finding + "."}, {}};
    if (prompts.has(finding)) {
      const core::ConfigNode entry = prompts.child(finding);
      p.positive = entry.get_strings("positive", p.positive);
      p.negative = entry.get_strings("negative", p.negative);
      if (entry.has("anatomy")) {
        // One name or a list; validated against the anatomy loss by the experiment.
        const nlohmann::json* a = entry.raw("anatomy");
        if (a->is_string()) p.anatomies = {a->get<std::string>()};
        else if (a->is_array() && std::all_of(a->begin(), a->end(), [](const nlohmann::json& v) { return v.is_string(); }))
          p.anatomies = a->get<std::vector<std::string>>();
        if (p.anatomies.empty() || std::find(p.anatomies.begin(), p.anatomies.end(), "") != p.anatomies.end())
          entry.fail("anatomy", "expected an anatomy name or a non-empty list of them, got " + a->dump());
      }
      // No negative prompts: the score is the similarity to the positive ones (MedFILIP, CLIP).
      if (p.positive.empty()) entry.fail("positive", "needs at least one positive prompt");
    }
    o.prompts.push_back(p);
  }
  return o;
}

std::vector<std::string> with_anatomy(const std::vector<std::string>& texts, const std::string& anatomy) {
  std::vector<std::string> out;
  for (const auto& t : texts) out.push_back(text::replace_all(t, "{anatomy}", anatomy));
  return out;
}

namespace {

at::Tensor mean_prompt(models::VlpModel& model, const text::Tokenizer& tokenizer, const std::vector<std::string>& texts,
                       int64_t max_len, const c10::Device& device) {
  auto tokens = tokenizer.encode(texts, max_len);
  at::Tensor e = model->encode_texts(tokens.ids.to(device), tokens.mask.to(device)).mean(0);
  return torch::nn::functional::normalize(e, torch::nn::functional::NormalizeFuncOptions().dim(0));
}
}  // namespace

namespace {

// One pass over a dataset: per-case zero-shot scores, and the embeddings retrieval ranks.
struct Pass {
  Predictions predictions;
  at::Tensor images, texts;  // [N,D]
};

Pass run_pass(models::VlpModel& model, const data::DatasetPtr& dataset, const text::Tokenizer& tokenizer,
              const EvalOptions& options, const c10::Device& device, float image_mean, float image_std,
              const std::shared_ptr<losses::AnatomyLossImpl>& anatomy) {
  torch::NoGradGuard no_grad;
  // Per-anatomy findings: which anatomy (index into the loss's list) each one reads.
  std::vector<std::vector<int64_t>> finding_anatomies(options.prompts.size());
  bool per_anatomy = false;
  for (size_t k = 0; k < options.prompts.size(); ++k) {
    const auto& p = options.prompts[k];
    if (p.anatomies.empty()) continue;
    MEDVLP_CHECK(anatomy, "eval: finding \"", p.finding, "\" is scored per anatomy (", core::join(p.anatomies),
                 ") but the experiment has no anatomy loss whose features could score it");
    const auto& names = anatomy->options().anatomies;
    for (const auto& a : p.anatomies) {
      const auto it = std::find(names.begin(), names.end(), a);
      MEDVLP_CHECK(it != names.end(), "eval: finding \"", p.finding, "\": \"", a,
                   "\" is not an anatomy of the anatomy loss; known: ", core::join(names));
      finding_anatomies[k].push_back(static_cast<int64_t>(it - names.begin()));
    }
    per_anatomy = true;
  }
  MEDVLP_CHECK(!per_anatomy || dataset->anatomies().size() == anatomy->options().anatomies.size(),
               "eval: per-anatomy scoring needs the evaluation set's anatomy masks (", anatomy->options().anatomies.size(),
               " for the anatomy loss), but it has ", dataset->anatomies().size());
  const std::vector<std::string> findings = dataset->findings();
  std::vector<int64_t> columns;  // each prompt's column in the dataset's labels
  for (const auto& p : options.prompts) {
    const auto it = std::find(findings.begin(), findings.end(), p.finding);
    MEDVLP_CHECK(it != findings.end(), "eval: \"", p.finding, "\" is not a finding of the evaluation set; it has: ",
                 core::join(findings));
    columns.push_back(static_cast<int64_t>(it - findings.begin()));
  }
  const bool was_training = model->is_training();
  const bool anatomy_was_training = anatomy && anatomy->is_training();
  model->eval();
  if (anatomy) anatomy->eval();
  data::LoaderOptions lo;
  lo.batch_size = options.batch_size;
  lo.shuffle = false;
  lo.drop_last = false;
  lo.max_text_len = options.max_text_len;
  lo.workers = options.workers;
  data::Loader loader(dataset, std::shared_ptr<const text::Tokenizer>(&tokenizer, [](const text::Tokenizer*) {}), lo);
  loader.start(0);
  Pass pass;
  std::vector<at::Tensor> image_embeds, text_embeds, labels, anatomy_feats, anatomy_present;
  data::Batch batch;
  while (loader.next(&batch)) {
    batch.images = (batch.images - image_mean) / image_std;
    if (per_anatomy) {
      // The anatomy loss pools the image tokens under the masks, as in training.
      const data::Batch on_device = batch.to(device);
      const models::Encoded enc = model->forward(on_device);
      const auto [feats, present] = anatomy->anatomy_features(enc, on_device);
      anatomy_feats.push_back(feats.to(torch::kFloat).cpu());
      anatomy_present.push_back(present.cpu());
      image_embeds.push_back(enc.image_embed.to(torch::kFloat).cpu());
      text_embeds.push_back(enc.text_embed.to(torch::kFloat).cpu());
    } else {
      image_embeds.push_back(model->encode_images(batch.images.to(device)).to(torch::kFloat).cpu());
      text_embeds.push_back(
          model->encode_texts(batch.token_ids.to(device), batch.attention_mask.to(device)).to(torch::kFloat).cpu());
    }
    labels.push_back(batch.truth.defined() ? batch.truth : batch.labels);
    pass.predictions.ids.insert(pass.predictions.ids.end(), batch.ids.begin(), batch.ids.end());
    pass.predictions.patient_ids.insert(pass.predictions.patient_ids.end(), batch.patient_ids.begin(), batch.patient_ids.end());
  }
  MEDVLP_CHECK(!image_embeds.empty(), "eval: the ", options.split, " split has no cases");
  pass.images = torch::cat(image_embeds);
  pass.texts = torch::cat(text_embeds);
  const at::Tensor truth = torch::cat(labels).to(torch::kDouble).contiguous();  // [N,K]
  at::Tensor region, region_present;                                              // [N,A,D], [N,A]
  if (per_anatomy) {
    region = torch::cat(anatomy_feats);
    region_present = torch::cat(anatomy_present);
  }
  const at::Tensor images = pass.images;
  for (size_t k = 0; k < options.prompts.size(); ++k) {
    const auto& p = options.prompts[k];
    const auto score_of = [&](const at::Tensor& feats, const std::string& anatomy_name) {
      const at::Tensor pos =
          mean_prompt(model, tokenizer, with_anatomy(p.positive, anatomy_name), options.max_text_len, device).to(torch::kFloat).cpu();
      at::Tensor score = feats.matmul(pos);
      if (!p.negative.empty())
        score = score - feats.matmul(mean_prompt(model, tokenizer, with_anatomy(p.negative, anatomy_name),
                                                 options.max_text_len, device)
                                         .to(torch::kFloat)
                                         .cpu());
      return score;
    };
    at::Tensor score;
    if (finding_anatomies[k].empty()) {
      score = score_of(images, "");
    } else {
      std::vector<at::Tensor> per;
      for (size_t j = 0; j < finding_anatomies[k].size(); ++j) {
        const int64_t a = finding_anatomies[k][j];
        per.push_back(score_of(region.select(1, a), p.anatomies[j])
                          .masked_fill(region_present.select(1, a).logical_not(), -std::numeric_limits<float>::infinity()));
      }
      score = std::get<0>(torch::stack(per, 1).max(1));
    }
    score = score.to(torch::kDouble).contiguous();
    const at::Tensor column = truth.select(1, columns[k]).contiguous();
    std::vector<double> s(score.data_ptr<double>(), score.data_ptr<double>() + score.numel());
    std::vector<double> l(column.data_ptr<double>(), column.data_ptr<double>() + column.numel());
    // A case none of whose anatomies is present has no score for this finding: left out.
    for (size_t i = 0; i < s.size(); ++i)
      if (!std::isfinite(s[i])) s[i] = l[i] = std::numeric_limits<double>::quiet_NaN();
    pass.predictions.findings.push_back(p.finding);
    pass.predictions.scores.push_back(std::move(s));
    pass.predictions.labels.push_back(std::move(l));
  }
  if (was_training) model->train();
  if (anatomy_was_training) anatomy->train();
  return pass;
}

}  // namespace

Predictions predict_zero_shot(models::VlpModel& model, const data::DatasetPtr& dataset, const text::Tokenizer& tokenizer,
                              const EvalOptions& options, const c10::Device& device, float image_mean, float image_std,
                              const std::shared_ptr<losses::AnatomyLossImpl>& anatomy) {
  return run_pass(model, dataset, tokenizer, options, device, image_mean, image_std, anatomy).predictions;
}

nlohmann::json evaluate(models::VlpModel& model, const data::DatasetPtr& dataset, const text::Tokenizer& tokenizer,
                        const EvalOptions& options, const c10::Device& device, float image_mean, float image_std,
                        const std::shared_ptr<losses::AnatomyLossImpl>& anatomy, const data::DatasetPtr& threshold_set,
                        Predictions* predictions) {
  Pass pass = run_pass(model, dataset, tokenizer, options, device, image_mean, image_std, anatomy);
  SummaryOptions so;
  so.resamples = options.bootstrap;
  so.level = options.ci_level;
  so.seed = options.bootstrap_seed;
  if (threshold_set) {
    EvalOptions on_threshold_split = options;
    on_threshold_split.split = options.thresholds_from;
    so.thresholds = choose_thresholds(
        predict_zero_shot(model, threshold_set, tokenizer, on_threshold_split, device, image_mean, image_std, anatomy));
  }
  const Predictions& p = pass.predictions;
  nlohmann::json zs = summarize(p, so);
  zs["mean_auc"] = zs["mean"]["auroc"];
  if (threshold_set) zs["thresholds_from"] = options.thresholds_from;
  nlohmann::json scored_by = nlohmann::json::object(), left_out = nlohmann::json::object();
  for (size_t k = 0; k < options.prompts.size(); ++k) {
    if (options.prompts[k].anatomies.empty()) continue;
    scored_by[p.findings[k]] = options.prompts[k].anatomies;
    left_out[p.findings[k]] = std::count_if(p.scores[k].begin(), p.scores[k].end(), [](double v) { return std::isnan(v); });
  }
  if (!scored_by.empty()) {
    zs["per_anatomy"] = scored_by;
    zs["left_out"] = left_out;
  }
  nlohmann::json result;
  result["n"] = p.size();
  result["zero_shot"] = zs;
  const at::Tensor sim = pass.images.matmul(pass.texts.t());  // [N,N]
  nlohmann::json i2t, t2i;
  for (int64_t k : options.recall_k) {
    i2t["R@" + std::to_string(k)] = recall_at_k(sim, k);
    t2i["R@" + std::to_string(k)] = recall_at_k(sim.t(), k);
  }
  result["retrieval"] = {{"image_to_text", i2t}, {"text_to_image", t2i}};
  if (predictions) *predictions = std::move(pass.predictions);
  return result;
}

namespace {
std::string fixed3(const nlohmann::json& v) {
  if (!v.is_number()) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v.get<double>());
  return buf;
}
std::string interval(const nlohmann::json& v) {
  if (!v.is_array()) return "";
  return "[" + fixed3(v[0]) + ", " + fixed3(v[1]) + "]";
}
}  // namespace

std::string format_eval_table(const nlohmann::json& result, const std::string& title) {
  std::ostringstream out;
  const nlohmann::json& zs = result["zero_shot"];
  const nlohmann::json& boot = zs["bootstrap"];
  const bool thresholded = zs.contains("thresholds_from");
  out << title << " (" << result.value("n", 0) << " cases";
  if (boot.value("resamples", int64_t{0}) > 0)
    out << "; " << static_cast<int>(boot.value("level", 0.95) * 100 + 0.5) << "% CI from " << boot["resamples"]
        << " resamples of " << boot["patients"] << " patients";
  if (thresholded) out << "; F1/ACC thresholds from " << zs["thresholds_from"].get<std::string>();
  out << ")\n";
  const auto row = [&](const std::string& name, const nlohmann::json& f, const char* f1_key) {
    out << "  " << std::left << std::setw(22) << name << std::setw(7) << fixed3(f.value("auroc", nlohmann::json()))
        << std::setw(17) << interval(f.value("auroc_ci", nlohmann::json())) << std::setw(7)
        << fixed3(f.value("auprc", nlohmann::json())) << std::setw(17) << interval(f.value("auprc_ci", nlohmann::json()));
    if (thresholded)
      out << std::setw(7) << fixed3(f.value(f1_key, nlohmann::json())) << fixed3(f.value("accuracy", nlohmann::json()));
  };
  out << "  " << std::left << std::setw(22) << "finding" << std::setw(24) << "AUROC  95% CI" << std::setw(24)
      << "AUPRC  95% CI" << (thresholded ? "F1     ACC" : "") << "\n";
  for (auto it = zs["findings"].begin(); it != zs["findings"].end(); ++it) {
    row(it.key(), *it, "f1");
    if (zs.contains("per_anatomy") && zs["per_anatomy"].contains(it.key())) {
      out << " (" << core::join(zs["per_anatomy"][it.key()].get<std::vector<std::string>>());
      const int64_t left = zs["left_out"].value(it.key(), int64_t{0});
      if (left > 0) out << "; " << left << " cases without them left out";
      out << ")";
    }
    out << "\n";
  }
  row("mean", zs["mean"], "f1_macro");
  out << "\n";
  if (thresholded) out << "  micro-averaged F1 " << fixed3(zs["mean"].value("f1_micro", nlohmann::json())) << " "
                       << interval(zs["mean"].value("f1_micro_ci", nlohmann::json())) << "\n";
  if (result.contains("localization") && result["localization"]["mean"].is_object()) {
    const nlohmann::json& loc = result["localization"];
    out << "localization (" << loc["maps"].get<std::string>() << " maps, " << loc["cases"] << " cases with lesion boxes or masks)\n";
    out << "  " << std::left << std::setw(22) << "finding" << std::setw(7) << "cases" << std::setw(9) << "pointing"
        << std::setw(7) << "mIoU" << std::setw(7) << "mDice" << "CNR\n";
    const auto loc_row = [&](const std::string& name, const nlohmann::json& f) {
      out << "  " << std::left << std::setw(22) << name << std::setw(7)
          << (f.contains("cases") ? std::to_string(f["cases"].get<int64_t>()) : std::string()) << std::setw(9)
          << fixed3(f["pointing_game"]) << std::setw(7) << fixed3(f["miou"]) << std::setw(7) << fixed3(f["mdice"])
          << fixed3(f["cnr"]) << "\n";
    };
    for (auto it = loc["findings"].begin(); it != loc["findings"].end(); ++it) loc_row(it.key(), *it);
    loc_row("mean", loc["mean"]);
  }
  if (!result.contains("retrieval")) return out.str();
  out << "retrieval recall\n";
  out << std::fixed << std::setprecision(3);
  for (const char* dir : {"image_to_text", "text_to_image"}) {
    out << "  " << std::left << std::setw(14) << dir;
    // JSON keeps keys sorted as text (R@10 before R@5); list them by k.
    std::vector<std::pair<int64_t, std::string>> keys;
    for (auto it = result["retrieval"][dir].begin(); it != result["retrieval"][dir].end(); ++it)
      keys.emplace_back(std::stoll(it.key().substr(2)), it.key());
    std::sort(keys.begin(), keys.end());
    for (const auto& [k, key] : keys) out << " " << key << "=" << result["retrieval"][dir][key].get<double>();
    out << "\n";
  }
  return out.str();
}

}  // namespace medvlp::eval
