#include "medvlp/eval/finetune.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "../core/log.h"
#include "medvlp/data/rng.h"
#include "medvlp/eval/probe.h"

namespace medvlp::eval {

namespace {

at::Tensor labels_of(const data::Batch& b) { return (b.truth.defined() ? b.truth : b.labels).to(torch::kFloat); }

// A split's unaugmented images, loaded once (validation runs many times), with its labels and ids.
struct Loaded {
  std::vector<at::Tensor> images;  // batches
  Features f;                      // x unused
};

Loaded load(const data::DatasetPtr& d, int64_t batch_size) {
  Loaded l;
  l.f.findings = d->findings();
  std::vector<at::Tensor> ys;
  for (int64_t start = 0; start < d->size(); start += batch_size) {
    std::vector<data::Sample> samples;
    for (int64_t i = start; i < std::min(d->size(), start + batch_size); ++i) samples.push_back(d->get(i, 0));
    const data::Batch b = data::collate(samples);
    l.images.push_back(b.images);
    ys.push_back(labels_of(b));
    l.f.ids.insert(l.f.ids.end(), b.ids.begin(), b.ids.end());
    l.f.patients.insert(l.f.patients.end(), b.patient_ids.begin(), b.patient_ids.end());
  }
  MEDVLP_CHECK(!ys.empty(), "finetune: a split has no cases");
  l.f.y = torch::cat(ys);
  return l;
}

struct Model {
  models::ImageEncoderPtr encoder;
  torch::nn::Linear head{nullptr};
  at::Tensor logits(const at::Tensor& images, const FineTuneOptions& o, const c10::Device& device) {
    const at::Tensor x = ((images - o.image_mean) / o.image_std).to(device);
    return head->forward(encoder->forward(x).pooled.to(torch::kFloat));
  }
  at::Tensor scores(const Loaded& split, const FineTuneOptions& o, const c10::Device& device) {
    torch::NoGradGuard no_grad;
    encoder->eval();
    std::vector<at::Tensor> out;
    for (const at::Tensor& images : split.images) {
      const at::Tensor z = logits(images, o, device);
      out.push_back((o.objective == "ce" ? torch::softmax(z, 1) : torch::sigmoid(z)).cpu());
    }
    return torch::cat(out);
  }
};

// Parameters and buffers (BatchNorm statistics move too), to restore the best validated step.
std::vector<at::Tensor> snapshot(Model& m) {
  std::vector<at::Tensor> out;
  for (const auto& t : m.encoder->parameters()) out.push_back(t.detach().clone());
  for (const auto& t : m.encoder->buffers()) out.push_back(t.detach().clone());
  for (const auto& t : m.head->parameters()) out.push_back(t.detach().clone());
  return out;
}

void restore(Model& m, const std::vector<at::Tensor>& saved) {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (auto& t : m.encoder->parameters()) t.copy_(saved[i++]);
  for (auto& t : m.encoder->buffers()) t.copy_(saved[i++]);
  for (auto& t : m.head->parameters()) t.copy_(saved[i++]);
}

}  // namespace

nlohmann::json fine_tune(const models::ImageEncoderPtr& encoder, const data::DatasetPtr& train, const data::DatasetPtr& val,
                         const data::DatasetPtr& test, const c10::Device& device, const FineTuneOptions& o,
                         Predictions* test_predictions, torch::nn::Linear* head) {
  MEDVLP_CHECK(encoder, "finetune: no image encoder");
  MEDVLP_CHECK(o.objective == "bce" || o.objective == "ce", "finetune: objective must be bce or ce, got \"", o.objective, "\"");
  MEDVLP_CHECK(o.max_steps >= 1 && o.eval_every >= 1 && o.patience >= 1 && o.batch_size >= 1,
               "finetune: max_steps, eval_every, patience and batch_size must be >= 1");
  MEDVLP_CHECK(o.lr > 0 && o.encoder_lr >= 0, "finetune: lr must be > 0 and encoder_lr >= 0");
  MEDVLP_CHECK(train->findings() == val->findings() && train->findings() == test->findings(),
               "finetune: the splits' findings differ");
  const int64_t K = static_cast<int64_t>(train->findings().size());
  MEDVLP_CHECK(K >= 1, "finetune: the dataset has no findings to learn");

  std::vector<std::string> patients;
  patients.reserve(static_cast<size_t>(train->size()));
  for (int64_t i = 0; i < train->size(); ++i) patients.push_back(train->patient_id(i));
  const std::vector<int64_t> picked = sample_patients(patients, o.fraction, o.seed);

  torch::manual_seed(o.seed);
  Model m;
  m.encoder = encoder;
  m.encoder->to(device);
  m.head = torch::nn::Linear(torch::nn::LinearOptions(encoder->out_dim(), K));
  m.head->to(device);
  // Two groups: the pretrained encoder moves slower than the new head.
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(m.head->parameters(),
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay)));
  if (o.encoder_lr > 0)
    groups.emplace_back(m.encoder->parameters(), std::make_unique<torch::optim::AdamWOptions>(
                                                     torch::optim::AdamWOptions(o.encoder_lr).weight_decay(o.weight_decay)));
  torch::optim::AdamW optimizer(std::move(groups), torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  std::vector<bool> requires_grad;  // the caller's settings, put back at the end
  for (auto& p : m.encoder->parameters()) requires_grad.push_back(p.requires_grad()), p.set_requires_grad(o.encoder_lr > 0);

  const Loaded val_set = load(val, o.batch_size);
  data::Rng rng(data::mix_seed(o.seed, 0x66696e65ull));
  std::vector<int64_t> order = picked;
  size_t cursor = order.size();  // reshuffled when exhausted
  int64_t epoch = -1;
  double best = -1;
  int64_t best_step = 0, since = 0, step = 0;
  std::vector<at::Tensor> best_state;
  for (step = 1; step <= o.max_steps; ++step) {
    std::vector<data::Sample> samples;
    while (static_cast<int64_t>(samples.size()) < std::min<int64_t>(o.batch_size, static_cast<int64_t>(picked.size()))) {
      if (cursor == order.size()) {
        ++epoch;
        for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[static_cast<size_t>(rng.below(static_cast<int64_t>(i)))]);
        cursor = 0;
      }
      samples.push_back(train->get(order[cursor++], epoch));
    }
    const data::Batch b = data::collate(samples);
    const at::Tensor y = labels_of(b).to(device);
    // A frozen encoder runs as in evaluation: its BatchNorm statistics stay too.
    if (o.encoder_lr > 0) m.encoder->train();
    else m.encoder->eval();
    const at::Tensor z = m.logits(b.images, o, device);
    at::Tensor loss;
    if (o.objective == "ce") {
      const at::Tensor positives = (y == 1).sum(1);
      for (int64_t i = 0; i < b.size(); ++i)
        MEDVLP_CHECK(positives[i].item<int64_t>() == 1, "finetune: objective ce (single-label) needs exactly one positive finding "
                     "per case; case ", b.ids[static_cast<size_t>(i)], " has ", positives[i].item<int64_t>(),
                     " (use --objective bce for multi-label data)");
      loss = torch::nn::functional::cross_entropy(z, (y == 1).to(torch::kLong).argmax(1));
    } else {
      const at::Tensor used = ((y == 1) | (y == 0)).to(torch::kFloat);  // -1: unmentioned or uncertain
      loss = torch::binary_cross_entropy_with_logits(z, torch::where(y == 1, torch::ones_like(y), torch::zeros_like(y)), used, {},
                                                     at::Reduction::Sum) / used.sum().clamp_min(1);
    }
    MEDVLP_CHECK(std::isfinite(loss.item<double>()), "finetune: the loss is not finite at step ", step,
                 " (lower --lr or --encoder-lr)");
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    if (step % o.eval_every != 0 && step != o.max_steps) continue;
    const double auroc = mean_auroc(val_set.f, m.scores(val_set, o, device));
    core::log_info("finetune step ", step, "/", o.max_steps, " loss ", loss.item<double>(), " val mean AUROC ", auroc);
    if (auroc > best) {
      best = auroc;
      best_step = step;
      since = 0;
      best_state = snapshot(m);
    } else if (++since >= o.patience) {
      break;
    }
  }
  MEDVLP_CHECK(!best_state.empty(), "finetune: the validation AUROC is undefined (no finding with both classes in the val split)");
  restore(m, best_state);
  {
    size_t i = 0;
    for (auto& p : m.encoder->parameters()) p.set_requires_grad(requires_grad[i++]);
  }

  SummaryOptions so = o.summary;
  so.thresholds = choose_thresholds(make_predictions(val_set.f, m.scores(val_set, o, device)));
  const Loaded test_set = load(test, o.batch_size);
  const at::Tensor test_scores = m.scores(test_set, o, device);
  Predictions tp = make_predictions(test_set.f, test_scores);
  nlohmann::json r = summarize(tp, so);
  if (o.objective == "ce") {
    // Top-1 accuracy over the test cases with exactly one positive finding.
    const at::Tensor single = (test_set.f.y == 1).sum(1) == 1;
    const at::Tensor hit = test_scores.argmax(1).eq((test_set.f.y == 1).to(torch::kLong).argmax(1)) & single;
    const int64_t n = single.sum().item<int64_t>();
    r["accuracy_top1"] = n > 0 ? nlohmann::json(hit.sum().item<double>() / static_cast<double>(n)) : nlohmann::json();
  }
  std::vector<std::string> drawn;
  for (int64_t i : picked) drawn.push_back(patients[static_cast<size_t>(i)]);
  std::sort(drawn.begin(), drawn.end());
  r["fraction"] = o.fraction;
  r["objective"] = o.objective;
  r["train_cases"] = static_cast<int64_t>(picked.size());
  r["train_patients"] = static_cast<int64_t>(std::unique(drawn.begin(), drawn.end()) - drawn.begin());
  r["best_step"] = best_step;
  r["steps"] = std::min(step, o.max_steps);
  r["val_auroc"] = best;
  if (test_predictions) *test_predictions = std::move(tp);
  if (head) *head = m.head;
  return r;
}

}  // namespace medvlp::eval
