// Validation during training (train.eval_every): the log, RUN/best, early stopping, resume, and
// that evaluating on the way leaves training unchanged.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "../testing_util.h"
#include "medvlp/core/config.h"
#include "medvlp/train/checkpoint.h"
#include "medvlp/train/trainer.h"

using namespace medvlp;

namespace {

// A ViT without batch norm: with lr 0 its weights, and so its validation figures, never change.
const char* kConfig = R"(
seed: 5
device: cpu
data: {name: synthetic_cxr, image_size: 32, train_size: 48, val_size: 24, test_size: 8, workers: 1}
text: {vocab_size: 120, train_reports: 48, max_len: 24}
model:
  embed_dim: 16
  image: {name: vit_s16, image_size: [32, 32], patch_size: [8, 8], dim: 32, depth: 1, heads: 2}
  text: {name: small_transformer, dim: 16, layers: 1, heads: 2, ff_dim: 32, max_len: 24}
losses: [{name: clip}]
optim: {lr: 0.003}
schedule: {warmup_steps: 2}
train: {steps: 8, batch_size: 8, log_every: 2, checkpoint_every: 0, keep_checkpoints: 1, progress: false}
eval: {recall_k: [1, 5]}
)";

class ValidationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared_ = new testing_util::TempDir();
    train::Experiment::build(core::Config::parse(kConfig, "v.yaml"), shared_->path() + "/tok");
    tokenizer_ = shared_->path() + "/tok/tokenizer.model";
  }
  static void TearDownTestSuite() { delete shared_; }
  train::Experiment make(const std::string& run_dir, const std::vector<std::string>& sets = {}) {
    core::Config c = core::Config::parse(kConfig, "v.yaml");
    c.set("text.model=" + tokenizer_);
    for (const auto& s : sets) c.set(s);
    return train::Experiment::build(c, run_dir);
  }
  static testing_util::TempDir* shared_;
  static std::string tokenizer_;
  testing_util::TempDir dir_;
};
testing_util::TempDir* ValidationTest::shared_ = nullptr;
std::string ValidationTest::tokenizer_;

std::vector<nlohmann::json> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace

TEST_F(ValidationTest, LogsEachValidationAndLinksTheBestCheckpoint) {
  const std::string run = dir_.path() + "/run";
  auto e = make(run, {"train.eval_every=2", "train.eval_metric=image_to_text.R@5"});
  train::Trainer t(e);
  t.run();
  const auto lines = read_lines(run + "/validation.jsonl");
  ASSERT_EQ(lines.size(), 4u);
  double best = -1;
  int64_t best_step = -1;
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["step"], 2 * (i + 1));
    EXPECT_EQ(lines[i]["metric"], "image_to_text.R@5");
    EXPECT_EQ(lines[i]["value"], lines[i]["image_to_text"]["R@5"]);
    if (lines[i]["value"].get<double>() > best) {
      best = lines[i]["value"].get<double>();
      best_step = lines[i]["step"].get<int64_t>();
    }
    EXPECT_EQ(lines[i]["best_step"], best_step);
  }
  // RUN/best is the checkpoint of the best validation, kept although keep_checkpoints is 1.
  const std::string best_dir = train::best_checkpoint(run);
  EXPECT_EQ(best_dir, run + "/checkpoints/step_" + std::to_string(best_step));
  EXPECT_EQ(train::latest_checkpoint(run), run + "/checkpoints/step_8");
  EXPECT_TRUE(std::filesystem::is_symlink(run + "/best"));
  EXPECT_EQ(train::run_dir_of(run + "/best"), run);
  // Its weights give the logged figure again, computed afresh.
  auto again = make(dir_.path() + "/again", {"train.eval_every=2", "train.eval_metric=image_to_text.R@5"});
  again.load_state_tensors(train::load_checkpoint(run + "/best").model);
  double value = 0;
  again.validate(&value);
  EXPECT_DOUBLE_EQ(value, best);
}

TEST_F(ValidationTest, EvaluatingOnTheWayLeavesTrainingUnchanged) {
  auto plain = make(dir_.path() + "/plain");
  train::Trainer a(plain);
  a.run();
  auto validated = make(dir_.path() + "/validated", {"train.eval_every=3"});
  train::Trainer b(validated);
  b.run();
  for (const auto& [name, t] : plain.state_tensors())
    EXPECT_TRUE(torch::equal(t, validated.state_tensors().at(name))) << name;
}

TEST_F(ValidationTest, EarlyStopAfterPatienceAndItSurvivesResume) {
  // lr 0: the first validation is the best and no later one improves on it.
  const std::vector<std::string> sets{"optim.lr=0", "train.eval_every=1", "train.early_stop=3", "train.steps=20"};
  {
    auto e = make(dir_.path() + "/straight", sets);
    train::Trainer t(e);
    t.run();
    EXPECT_EQ(t.completed_steps(), 4);  // best at 1, then 2, 3, 4 without improvement
    EXPECT_EQ(train::best_checkpoint(dir_.path() + "/straight"), dir_.path() + "/straight/checkpoints/step_1");
    EXPECT_EQ(read_lines(dir_.path() + "/straight/validation.jsonl").size(), 4u);
  }
  // Stopped at step 2 and resumed: the patience already used carries over.
  {
    auto e = make(dir_.path() + "/split", sets);
    train::Trainer t(e);
    t.run(2);
  }
  auto e = make(dir_.path() + "/split", sets);
  train::Trainer t(e);
  t.resume(train::latest_checkpoint(dir_.path() + "/split"));
  t.run();
  EXPECT_EQ(t.completed_steps(), 4);
  const auto lines = read_lines(dir_.path() + "/split/validation.jsonl");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines.back()["best_step"], 1);
}

TEST_F(ValidationTest, ConfigErrorsNameTheKey) {
  EXPECT_ERROR_CONTAINS(make(dir_.path() + "/a", {"train.eval_every=2", "train.eval_metric=R@1"}),
                        "train.eval_metric: expected mean_auc, mean_auprc, image_to_text.R@K or text_to_image.R@K");
  EXPECT_ERROR_CONTAINS(make(dir_.path() + "/b", {"train.eval_metric=image_to_text.R@10"}), "with K in eval.recall_k");
  EXPECT_ERROR_CONTAINS(make(dir_.path() + "/c", {"train.early_stop=2"}),
                        "train.early_stop: stops after evaluations without improvement, but train.eval_every is 0");
}
