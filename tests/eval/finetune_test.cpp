// Fine-tuning: learning a visible finding (and not a label unrelated to the image), the encoder's
// own learning rate (0 freezes it, > 0 moves it), patients sampled without loading images, the
// single-label objective and its refusal of multi-label cases.
#include "medvlp/eval/finetune.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../testing_util.h"
#include "medvlp/data/rng.h"

using namespace medvlp;

namespace {

// Images 16x16 of noise; "blob": a bright square in the centre when positive; "coin": a label the
// image does not show. single: exactly one of {blob, plain} is positive. Two images per patient.
class BlobDataset : public data::Dataset {
 public:
  BlobDataset(int64_t n, uint64_t seed, bool single) : n_(n), seed_(seed), single_(single) {}
  int64_t size() const override { return n_; }
  std::vector<std::string> findings() const override {
    return single_ ? std::vector<std::string>{"blob", "plain"} : std::vector<std::string>{"blob", "coin"};
  }
  std::string patient_id(int64_t index) const override {
    ++patient_calls;
    return "p" + std::to_string(index / 2);
  }
  data::Sample get(int64_t index, int64_t epoch) const override {
    ++get_calls;
    data::Rng rng(data::mix_seed(seed_, static_cast<uint64_t>(index)));
    const bool blob = rng.uniform() < 0.4, coin = rng.uniform() < 0.5;
    torch::Generator g = at::detail::createCPUGenerator(data::mix_seed(seed_ + 7, static_cast<uint64_t>(index * 1000 + epoch + 1)));
    at::Tensor image = torch::randn({1, 16, 16}, g, torch::kFloat) * 0.5;
    if (blob) image.slice(1, 6, 10).slice(2, 6, 10) += 1.0;
    data::Sample s;
    s.id = "c" + std::to_string(index);
    s.patient_id = "p" + std::to_string(index / 2);
    s.image = image;
    s.labels = single_ ? torch::tensor({blob ? 1.f : 0.f, blob ? 0.f : 1.f}) : torch::tensor({blob ? 1.f : 0.f, coin ? 1.f : 0.f});
    return s;
  }
  mutable std::atomic<int64_t> get_calls{0}, patient_calls{0};

 private:
  int64_t n_;
  uint64_t seed_;
  bool single_;
};

models::ImageEncoderPtr small_encoder(uint64_t seed) {
  torch::manual_seed(seed);
  models::SmallCnnOptions o;
  o.channels = {8, 16};
  return std::make_shared<models::SmallCnnImpl>(o);
}

eval::FineTuneOptions quick() {
  eval::FineTuneOptions o;
  o.max_steps = 60;
  o.batch_size = 32;
  o.eval_every = 10;
  o.patience = 3;
  o.lr = 1e-2;
  o.encoder_lr = 3e-3;
  o.summary.resamples = 0;
  return o;
}

std::vector<at::Tensor> weights(const models::ImageEncoderPtr& e) {
  std::vector<at::Tensor> out;
  for (const auto& p : e->parameters()) out.push_back(p.detach().clone());
  for (const auto& b : e->buffers()) out.push_back(b.detach().to(torch::kFloat).clone());
  return out;
}

double max_change(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, (a[i] - b[i]).abs().max().item<double>());
  return m;
}

}  // namespace

TEST(FineTune, LearnsAVisibleFindingAndNotAnInvisibleOne) {
  auto train = std::make_shared<BlobDataset>(400, 1, false);
  const auto val = std::make_shared<BlobDataset>(120, 2, false), test = std::make_shared<BlobDataset>(200, 3, false);
  const auto encoder = small_encoder(1);
  const auto before = weights(encoder);
  eval::FineTuneOptions o = quick();
  o.fraction = 0.5;
  eval::Predictions p;
  torch::nn::Linear head{nullptr};
  const nlohmann::json r = eval::fine_tune(encoder, train, val, test, torch::kCPU, o, &p, &head);
  EXPECT_GT(r["findings"]["blob"]["auroc"].get<double>(), 0.9) << r.dump();
  EXPECT_LT(std::abs(r["findings"]["coin"]["auroc"].get<double>() - 0.5), 0.15) << r.dump();
  EXPECT_EQ(r["train_patients"], 100);  // half of 200 patients, both images each
  EXPECT_EQ(r["train_cases"], 200);
  EXPECT_EQ(train->patient_calls.load(), 400);  // every patient asked, once...
  EXPECT_LE(train->get_calls.load(), 60 * 32);  // ...but only the drawn cases' images loaded
  EXPECT_EQ(r["best_step"].get<int64_t>() % o.eval_every, 0);
  EXPECT_LE(r["best_step"].get<int64_t>(), r["steps"].get<int64_t>());
  EXPECT_TRUE(r["mean"].contains("f1_macro"));  // thresholds from validation
  EXPECT_EQ(p.size(), 200u);
  ASSERT_TRUE(head);
  EXPECT_EQ(head->weight.sizes(), (std::vector<int64_t>{2, 16}));
  EXPECT_GT(max_change(before, weights(encoder)), 1e-3);  // the encoder moved
}

TEST(FineTune, ZeroEncoderLearningRateFreezesTheEncoder) {
  const auto train = std::make_shared<BlobDataset>(200, 4, false), val = std::make_shared<BlobDataset>(80, 5, false);
  const auto encoder = small_encoder(2);
  const auto before = weights(encoder);
  eval::FineTuneOptions o = quick();
  o.encoder_lr = 0;
  o.max_steps = 20;
  eval::fine_tune(encoder, train, val, val, torch::kCPU, o);
  EXPECT_EQ(max_change(before, weights(encoder)), 0.0);  // parameters and BatchNorm statistics
  for (const auto& p : encoder->parameters()) EXPECT_TRUE(p.requires_grad());  // the caller's setting is back
}

TEST(FineTune, SingleLabelObjectiveReportsTopOneAccuracyAndRefusesMultiLabelCases) {
  const auto train = std::make_shared<BlobDataset>(300, 6, true), val = std::make_shared<BlobDataset>(100, 7, true);
  const auto test = std::make_shared<BlobDataset>(200, 8, true);
  eval::FineTuneOptions o = quick();
  o.objective = "ce";
  const nlohmann::json r = eval::fine_tune(small_encoder(3), train, val, test, torch::kCPU, o);
  EXPECT_GT(r["accuracy_top1"].get<double>(), 0.85) << r.dump();
  EXPECT_EQ(r["objective"], "ce");
  // blob and coin may both be positive, or neither
  const auto multi = std::make_shared<BlobDataset>(100, 9, false), multi_val = std::make_shared<BlobDataset>(40, 10, false);
  EXPECT_ERROR_CONTAINS(eval::fine_tune(small_encoder(3), multi, multi_val, multi_val, torch::kCPU, o),
                        "objective ce (single-label) needs exactly one positive finding per case; case c");
  o.objective = "hinge";
  EXPECT_ERROR_CONTAINS(eval::fine_tune(small_encoder(3), train, val, test, torch::kCPU, o), "objective must be bce or ce");
}
