#include "medvlp/eval/probe.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/data/rng.h"

namespace medvlp::eval {

Features extract_features(models::VlpModel& model, const data::DatasetPtr& dataset, const c10::Device& device,
                          float image_mean, float image_std, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  Features f;
  f.findings = dataset->findings();
  std::vector<at::Tensor> xs, ys;
  for (int64_t start = 0; start < dataset->size(); start += batch_size) {
    std::vector<data::Sample> samples;
    for (int64_t i = start; i < std::min(dataset->size(), start + batch_size); ++i) samples.push_back(dataset->get(i, 0));
    const data::Batch b = data::collate(samples);
    const at::Tensor images = ((b.images - image_mean) / image_std).to(device);
    xs.push_back(model->image_encoder()->forward(images).pooled.to(torch::kFloat).cpu());
    ys.push_back((b.truth.defined() ? b.truth : b.labels).to(torch::kFloat));
    f.ids.insert(f.ids.end(), b.ids.begin(), b.ids.end());
    f.patients.insert(f.patients.end(), b.patient_ids.begin(), b.patient_ids.end());
  }
  if (was_training) model->train();
  MEDVLP_CHECK(!xs.empty(), "probe: the split has no cases");
  f.x = torch::cat(xs);
  f.y = torch::cat(ys);
  return f;
}

std::vector<int64_t> sample_patients(const std::vector<std::string>& patients, double fraction, uint64_t seed) {
  MEDVLP_CHECK(fraction > 0 && fraction <= 1, "probe: the label fraction must lie in (0, 1], got ", fraction);
  std::vector<std::string> order;
  std::unordered_map<std::string, std::vector<int64_t>> members;
  for (size_t i = 0; i < patients.size(); ++i) {
    const std::string key = patients[i].empty() ? "#" + std::to_string(i) : patients[i];
    auto& m = members[key];
    if (m.empty()) order.push_back(key);
    m.push_back(static_cast<int64_t>(i));
  }
  // Fisher-Yates with the platform-independent generator.
  data::Rng rng(data::mix_seed(seed, 0x70726f6265ull));
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[static_cast<size_t>(rng.below(static_cast<int64_t>(i)))]);
  const auto take = std::max<size_t>(1, static_cast<size_t>(std::ceil(fraction * static_cast<double>(order.size()) - 1e-9)));
  std::vector<int64_t> out;
  for (size_t p = 0; p < take; ++p) out.insert(out.end(), members[order[p]].begin(), members[order[p]].end());
  std::sort(out.begin(), out.end());
  return out;
}

Predictions make_predictions(const Features& f, const at::Tensor& scores) {
  Predictions p;
  p.findings = f.findings;
  p.ids = f.ids;
  p.patient_ids = f.patients;
  const at::Tensor s = scores.to(torch::kDouble).contiguous(), y = f.y.to(torch::kDouble).contiguous();
  for (int64_t k = 0; k < s.size(1); ++k) {
    const at::Tensor sc = s.select(1, k).contiguous(), yc = y.select(1, k).contiguous();
    p.scores.emplace_back(sc.data_ptr<double>(), sc.data_ptr<double>() + sc.numel());
    p.labels.emplace_back(yc.data_ptr<double>(), yc.data_ptr<double>() + yc.numel());
  }
  return p;
}

double mean_auroc(const Features& f, const at::Tensor& scores) {
  SummaryOptions point;
  point.resamples = 0;
  const nlohmann::json mean = summarize(make_predictions(f, scores), point)["mean"]["auroc"];
  return mean.is_number() ? mean.get<double>() : std::nan("");
}


nlohmann::json linear_probe(const Features& train, const Features& val, const Features& test, const ProbeOptions& o,
                            Predictions* test_predictions) {
  MEDVLP_CHECK(train.findings == val.findings && train.findings == test.findings, "probe: the splits' findings differ");
  MEDVLP_CHECK(o.eval_every >= 1 && o.max_epochs >= 1 && o.patience >= 1, "probe: eval_every, max_epochs and patience must be >= 1");
  const std::vector<int64_t> picked = sample_patients(train.patients, o.fraction, o.seed);
  const at::Tensor index = torch::tensor(picked, torch::kLong);
  const at::Tensor x_raw = train.x.index_select(0, index), y = train.y.index_select(0, index);
  // Standardized with the sampled training features' own statistics.
  const at::Tensor mean = x_raw.mean(0, true), spread = x_raw.std(0, /*unbiased=*/false, true).clamp_min(1e-6);
  const auto standardize = [&](const at::Tensor& x) { return (x - mean) / spread; };
  const at::Tensor x = standardize(x_raw), xv = standardize(val.x), xt = standardize(test.x);
  const at::Tensor used = (y == 1) | (y == 0);  // -1: unmentioned or uncertain, not a target
  const int64_t C = x.size(1), K = y.size(1);
  torch::manual_seed(o.seed);
  torch::nn::Linear head(torch::nn::LinearOptions(C, K));
  torch::optim::AdamW optimizer(head->parameters(), torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  const at::Tensor target = torch::where(used, y, torch::zeros_like(y)), weight = used.to(torch::kFloat);
  double best = -1;
  int64_t best_epoch = 0, since = 0;
  std::vector<at::Tensor> best_state;
  for (int64_t epoch = 1; epoch <= o.max_epochs; ++epoch) {
    optimizer.zero_grad();
    const at::Tensor loss = torch::binary_cross_entropy_with_logits(head->forward(x), target, weight, {}, at::Reduction::Sum) /
                            weight.sum().clamp_min(1);
    loss.backward();
    optimizer.step();
    if (epoch % o.eval_every != 0 && epoch != o.max_epochs) continue;
    torch::NoGradGuard no_grad;
    const double auroc = mean_auroc(val, head->forward(xv));
    if (auroc > best) {
      best = auroc;
      best_epoch = epoch;
      since = 0;
      best_state.clear();
      for (const auto& p : head->parameters()) best_state.push_back(p.detach().clone());
    } else if (++since >= o.patience) {
      break;
    }
  }
  MEDVLP_CHECK(!best_state.empty(), "probe: the validation AUROC is undefined (no finding with both classes in the val split)");
  {
    torch::NoGradGuard no_grad;
    const auto params = head->parameters();
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(best_state[i]);
  }
  torch::NoGradGuard no_grad;
  SummaryOptions so = o.summary;
  so.thresholds = choose_thresholds(make_predictions(val, torch::sigmoid(head->forward(xv))));
  Predictions tp = make_predictions(test, torch::sigmoid(head->forward(xt)));
  nlohmann::json r = summarize(tp, so);
  std::vector<std::string> patients;
  for (int64_t i : picked) patients.push_back(train.patients[static_cast<size_t>(i)]);
  std::sort(patients.begin(), patients.end());
  r["fraction"] = o.fraction;
  r["train_cases"] = static_cast<int64_t>(picked.size());
  r["train_patients"] = static_cast<int64_t>(std::unique(patients.begin(), patients.end()) - patients.begin());
  r["best_epoch"] = best_epoch;
  r["val_auroc"] = best;
  if (test_predictions) *test_predictions = std::move(tp);
  return r;
}

}  // namespace medvlp::eval
