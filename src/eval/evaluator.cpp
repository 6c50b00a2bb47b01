#include "medvlp/eval/evaluator.h"

#include <algorithm>
#include <cmath>
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

namespace {
std::vector<std::string> with_anatomy(const std::vector<std::string>& texts, const std::string& anatomy) {
  std::vector<std::string> out;
  for (const auto& t : texts) out.push_back(text::replace_all(t, "{anatomy}", anatomy));
  return out;
}

at::Tensor mean_prompt(models::VlpModel& model, const text::Tokenizer& tokenizer, const std::vector<std::string>& texts,
                       int64_t max_len, const c10::Device& device) {
  auto tokens = tokenizer.encode(texts, max_len);
  at::Tensor e = model->encode_texts(tokens.ids.to(device), tokens.mask.to(device)).mean(0);
  return torch::nn::functional::normalize(e, torch::nn::functional::NormalizeFuncOptions().dim(0));
}
}  // namespace

nlohmann::json evaluate(models::VlpModel& model, const data::DatasetPtr& dataset, const text::Tokenizer& tokenizer,
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
  }
  const at::Tensor images = torch::cat(image_embeds);  // [N,D]
  const at::Tensor texts = torch::cat(text_embeds);    // [N,D]
  const at::Tensor truth = torch::cat(labels).to(torch::kDouble).contiguous();  // [N,K]
  at::Tensor region, region_present;                   // [N,A,D], [N,A]
  if (per_anatomy) {
    region = torch::cat(anatomy_feats);
    region_present = torch::cat(anatomy_present);
  }

  nlohmann::json result;
  result["n"] = images.size(0);
  nlohmann::json aucs = nlohmann::json::object(), scored_by = nlohmann::json::object(),
                 left_out = nlohmann::json::object();
  double auc_sum = 0.0;
  int64_t auc_count = 0;
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
    at::Tensor score, keep;
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
      keep = torch::isfinite(score);
      scored_by[p.finding] = p.anatomies;
      left_out[p.finding] = static_cast<int64_t>(keep.logical_not().sum().item<int64_t>());
    }
    at::Tensor column = truth.select(1, static_cast<int64_t>(k));
    if (keep.defined()) {
      score = score.index({keep});
      column = column.index({keep});
    }
    score = score.to(torch::kDouble).contiguous();
    column = column.contiguous();
    std::vector<double> s(score.data_ptr<double>(), score.data_ptr<double>() + score.numel());
    std::vector<double> l(column.data_ptr<double>(), column.data_ptr<double>() + column.numel());
    const double auc = roc_auc(s, l);
    if (std::isnan(auc)) {
      aucs[p.finding] = nullptr;  // one class absent in this split: no AUC
    } else {
      aucs[p.finding] = auc;
      auc_sum += auc;
      ++auc_count;
    }
  }
  result["zero_shot"] = {{"mean_auc", auc_count ? auc_sum / static_cast<double>(auc_count) : 0.0}, {"auc", aucs}};
  if (per_anatomy) {
    result["zero_shot"]["per_anatomy"] = scored_by;
    result["zero_shot"]["left_out"] = left_out;
  }
  const at::Tensor sim = images.matmul(texts.t());  // [N,N]
  nlohmann::json i2t, t2i;
  for (int64_t k : options.recall_k) {
    i2t["R@" + std::to_string(k)] = recall_at_k(sim, k);
    t2i["R@" + std::to_string(k)] = recall_at_k(sim.t(), k);
  }
  result["retrieval"] = {{"image_to_text", i2t}, {"text_to_image", t2i}};
  if (was_training) model->train();
  if (anatomy_was_training) anatomy->train();
  return result;
}

std::string format_eval_table(const nlohmann::json& result) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(3);
  out << "zero-shot AUC (" << result.value("n", 0) << " cases)\n";
  for (auto it = result["zero_shot"]["auc"].begin(); it != result["zero_shot"]["auc"].end(); ++it) {
    out << "  " << std::left << std::setw(20) << it.key();
    if (it->is_null()) out << "n/a";
    else out << it->get<double>();
    const nlohmann::json& zs = result["zero_shot"];
    if (zs.contains("per_anatomy") && zs["per_anatomy"].contains(it.key())) {
      out << "  (" << core::join(zs["per_anatomy"][it.key()].get<std::vector<std::string>>());
      const int64_t left = zs["left_out"].value(it.key(), int64_t{0});
      if (left > 0) out << "; " << left << " cases without them left out";
      out << ")";
    }
    out << "\n";
  }
  out << "  " << std::left << std::setw(20) << "mean" << result["zero_shot"]["mean_auc"].get<double>() << "\n";
  out << "retrieval recall\n";
  for (const char* dir : {"image_to_text", "text_to_image"}) {
    out << "  " << std::left << std::setw(14) << dir;
    for (auto it = result["retrieval"][dir].begin(); it != result["retrieval"][dir].end(); ++it)
      out << " " << it.key() << "=" << it->get<double>();
    out << "\n";
  }
  return out.str();
}

}  // namespace medvlp::eval
