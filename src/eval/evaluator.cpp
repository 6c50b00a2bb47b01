#include "medvlp/eval/evaluator.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include <torch/torch.h>

#include "medvlp/data/loader.h"
#include "medvlp/eval/metrics.h"

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
    FindingPrompts p{finding, {finding + "."}, {"no " + finding + "."}};
    if (prompts.has(finding)) {
      const core::ConfigNode entry = prompts.child(finding);
      p.positive = entry.get_strings("positive", p.positive);
      p.negative = entry.get_strings("negative", p.negative);
      // No negative prompts: the score is the similarity to the positive ones (MedFILIP, CLIP).
      if (p.positive.empty()) entry.fail("positive", "needs at least one positive prompt");
    }
    o.prompts.push_back(p);
  }
  return o;
}

namespace {
at::Tensor mean_prompt(models::VlpModel& model, const text::Tokenizer& tokenizer, const std::vector<std::string>& texts,
                       int64_t max_len, const c10::Device& device) {
  auto tokens = tokenizer.encode(texts, max_len);
  at::Tensor e = model->encode_texts(tokens.ids.to(device), tokens.mask.to(device)).mean(0);
  return torch::nn::functional::normalize(e, torch::nn::functional::NormalizeFuncOptions().dim(0));
}
}  // namespace

nlohmann::json evaluate(models::VlpModel& model, const data::DatasetPtr& dataset, const text::Tokenizer& tokenizer,
                        const EvalOptions& options, const c10::Device& device, float image_mean, float image_std) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  data::LoaderOptions lo;
  lo.batch_size = options.batch_size;
  lo.shuffle = false;
  lo.drop_last = false;
  lo.max_text_len = options.max_text_len;
  lo.workers = options.workers;
  data::Loader loader(dataset, std::shared_ptr<const text::Tokenizer>(&tokenizer, [](const text::Tokenizer*) {}), lo);
  loader.start(0);
  std::vector<at::Tensor> image_embeds, text_embeds, labels;
  data::Batch batch;
  while (loader.next(&batch)) {
    at::Tensor images = ((batch.images - image_mean) / image_std).to(device);
    image_embeds.push_back(model->encode_images(images).to(torch::kFloat).cpu());
    text_embeds.push_back(model->encode_texts(batch.token_ids.to(device), batch.attention_mask.to(device)).to(torch::kFloat).cpu());
    labels.push_back(batch.truth.defined() ? batch.truth : batch.labels);
  }
  const at::Tensor images = torch::cat(image_embeds);  // [N,D]
  const at::Tensor texts = torch::cat(text_embeds);    // [N,D]
  const at::Tensor truth = torch::cat(labels).to(torch::kDouble).contiguous();  // [N,K]

  nlohmann::json result;
  result["n"] = images.size(0);
  nlohmann::json aucs = nlohmann::json::object();
  double auc_sum = 0.0;
  int64_t auc_count = 0;
  for (size_t k = 0; k < options.prompts.size(); ++k) {
    const auto& p = options.prompts[k];
    const at::Tensor pos = mean_prompt(model, tokenizer, p.positive, options.max_text_len, device).to(torch::kFloat).cpu();
    at::Tensor score = images.matmul(pos);
    if (!p.negative.empty())
      score = score - images.matmul(
                          mean_prompt(model, tokenizer, p.negative, options.max_text_len, device).to(torch::kFloat).cpu());
    score = score.to(torch::kDouble).contiguous();
    const at::Tensor column = truth.select(1, static_cast<int64_t>(k)).contiguous();
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
  const at::Tensor sim = images.matmul(texts.t());  // [N,N]
  nlohmann::json i2t, t2i;
  for (int64_t k : options.recall_k) {
    i2t["R@" + std::to_string(k)] = recall_at_k(sim, k);
    t2i["R@" + std::to_string(k)] = recall_at_k(sim.t(), k);
  }
  result["retrieval"] = {{"image_to_text", i2t}, {"text_to_image", t2i}};
  if (was_training) model->train();
  return result;
}

std::string format_eval_table(const nlohmann::json& result) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(3);
  out << "zero-shot AUC (" << result.value("n", 0) << " cases)\n";
  for (auto it = result["zero_shot"]["auc"].begin(); it != result["zero_shot"]["auc"].end(); ++it) {
    out << "  " << std::left << std::setw(20) << it.key();
    if (it->is_null()) out << "n/a\n";
    else out << it->get<double>() << "\n";
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
