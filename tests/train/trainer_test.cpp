#include "medvlp/train/trainer.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "../testing_util.h"
#include "medvlp/core/config.h"
#include "medvlp/io/event_file.h"
#include "medvlp/train/checkpoint.h"
#include "medvlp/train/optimizer.h"

using namespace medvlp;

namespace {

const char* kTinyConfig = R"(
seed: 3
device: cpu
data: {name: synthetic_cxr, image_size: 32, train_size: 48, val_size: 8, test_size: 16, augment: true,
       shuffle_sentences: true, workers: 2}
text: {vocab_size: 120, train_reports: 48, max_len: 24}
model:
  embed_dim: 16
  image: {name: small_cnn, channels: [8, 16]}
  text: {name: small_transformer, dim: 16, layers: 1, heads: 2, ff_dim: 32, max_len: 24}
losses: [{name: clip}]
optim: {lr: 0.003}
schedule: {warmup_steps: 2}
train: {steps: 8, batch_size: 8, log_every: 2, checkpoint_every: 0, keep_checkpoints: 0, progress: false}
)";

class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared_ = new testing_util::TempDir();
    // Train the tokenizer once; every experiment below loads it.
    train::Experiment::build(core::Config::parse(kTinyConfig, "tiny.yaml"), shared_->path() + "/tok");
    tokenizer_ = shared_->path() + "/tok/tokenizer.model";
  }
  static void TearDownTestSuite() { delete shared_; }

  train::Experiment make(const std::string& run_dir, const std::vector<std::string>& sets = {}) {
    core::Config c = core::Config::parse(kTinyConfig, "tiny.yaml");
    c.set("text.model=" + tokenizer_);
    for (const auto& s : sets) c.set(s);
    return train::Experiment::build(c, run_dir);
  }

  static testing_util::TempDir* shared_;
  static std::string tokenizer_;
  testing_util::TempDir dir_;
};
testing_util::TempDir* TrainerTest::shared_ = nullptr;
std::string TrainerTest::tokenizer_;

double max_diff(const io::TensorMap& a, const io::TensorMap& b) {
  double worst = 0.0;
  for (const auto& [name, t] : a) {
    EXPECT_TRUE(b.count(name)) << name;
    if (!b.count(name)) continue;
    worst = std::max(worst, (t.to(torch::kDouble) - b.at(name).to(torch::kDouble)).abs().max().item<double>());
  }
  return worst;
}

/// One metric per logged step from a run's metrics.jsonl.
std::vector<double> read_metric(const std::string& run_dir, const std::string& key) {
  std::ifstream metrics(run_dir + "/metrics.jsonl");
  std::vector<double> out;
  for (std::string line; std::getline(metrics, line);) out.push_back(nlohmann::json::parse(line)[key].get<double>());
  return out;
}

}  // namespace

TEST_F(TrainerTest, ResumingFromACheckpointContinuesExactly) {
  // 8 steps in one go ...
  auto straight = make(dir_.path() + "/straight");
  train::Trainer a(straight);
  a.run(8);
  // ... versus 4 steps, checkpoint, a fresh process-like rebuild, resume, 4 more (crossing an epoch).
  {
    auto first = make(dir_.path() + "/split");
    train::Trainer b(first);
    b.run(4);
  }
  auto second = make(dir_.path() + "/split");
  train::Trainer c(second);
  c.resume(train::latest_checkpoint(dir_.path() + "/split"));
  EXPECT_EQ(c.completed_steps(), 4);
  c.run(8);
  EXPECT_LE(max_diff(straight.state_tensors(), second.state_tensors()), 1e-6);
  EXPECT_LE(max_diff(a.optimizer().state(), c.optimizer().state()), 1e-6);
  // The metrics log of the resumed run has each step once.
  EXPECT_EQ(read_metric(dir_.path() + "/split", "step"), (std::vector<double>{2, 4, 6, 8}));
}

TEST_F(TrainerTest, TensorBoardEventsMirrorTheMetricsLogAcrossAResume) {
  const std::string run = dir_.path() + "/tb";
  {
    // Checkpoints at 4 and (the end) 6; the run is then resumed from 4, as after a crash at step 6.
    auto first = make(run, {"train.checkpoint_every=4"});
    train::Trainer t(first);
    t.run(6);
  }
  auto second = make(run);
  train::Trainer t(second);
  t.resume(run + "/checkpoints/step_4");
  t.run(8);
  // Every event file of the run, in TensorBoard's order: each logged step once, with the values of
  // metrics.jsonl (as float32).
  std::vector<double> steps, losses, lrs;
  for (const std::string& path : io::list_event_files(run + "/tensorboard")) {
    const io::EventFile f = io::read_event_file(path);
    EXPECT_FALSE(f.torn) << path;
    ASSERT_FALSE(f.events.empty()) << path;
    EXPECT_EQ(f.events[0].file_version, "brain.Event:2") << path;
    for (const auto& e : f.events)
      for (const auto& v : e.values) {
        if (v.tag == "train/total_loss") steps.push_back(static_cast<double>(e.step)), losses.push_back(v.scalar);
        if (v.tag == "train/lr") lrs.push_back(v.scalar);
      }
  }
  EXPECT_EQ(io::list_event_files(run + "/tensorboard").size(), 2u);
  EXPECT_EQ(steps, read_metric(run, "step"));
  EXPECT_EQ(steps, (std::vector<double>{2, 4, 6, 8}));
  const std::vector<double> logged = read_metric(run, "total_loss"), logged_lr = read_metric(run, "lr");
  ASSERT_EQ(losses.size(), logged.size());
  ASSERT_EQ(lrs.size(), logged_lr.size());
  for (size_t i = 0; i < logged.size(); ++i) {
    EXPECT_EQ(losses[i], static_cast<double>(static_cast<float>(logged[i]))) << i;
    EXPECT_EQ(lrs[i], static_cast<double>(static_cast<float>(logged_lr[i]))) << i;
  }
}

TEST_F(TrainerTest, TrainingLowersTheLoss) {
  auto e = make(dir_.path() + "/learn", {"train.steps=30", "optim.lr=0.005"});
  train::Trainer t(e);
  t.run();
  const std::vector<double> losses = read_metric(dir_.path() + "/learn", "total_loss");
  ASSERT_GE(losses.size(), 10u);
  const double early = (losses[0] + losses[1]) / 2, late = (losses[losses.size() - 1] + losses[losses.size() - 2]) / 2;
  EXPECT_LT(late, early - 0.1) << "loss did not go down: " << early << " -> " << late;
}

TEST_F(TrainerTest, InterruptedCheckpointWriteLeavesThePreviousOneLoadable) {
  auto e = make(dir_.path() + "/ckpt");
  train::Trainer t(e);
  t.run(2);
  const std::string good = train::latest_checkpoint(dir_.path() + "/ckpt");
  ASSERT_NE(good.find("step_2"), std::string::npos);
  t.run(3);  // writes step_3; now simulate a crash while writing step_3 again with new weights
  const auto before = train::load_checkpoint(train::latest_checkpoint(dir_.path() + "/ckpt")).model;
  EXPECT_ERROR_CONTAINS(t.save([](const std::string& path) {
    if (path.find("optimizer.safetensors") != std::string::npos) throw Error("simulated disk full after " + path);
  }),
                        "simulated disk full");
  const std::string latest = train::latest_checkpoint(dir_.path() + "/ckpt");
  EXPECT_NE(latest.find("step_3"), std::string::npos);
  const auto after = train::load_checkpoint(latest).model;
  EXPECT_EQ(max_diff(before, after), 0.0);
  // No temporary folder is left behind to confuse a later resume.
  const int found_tmp = std::system(("ls -a '" + dir_.path() + "/ckpt/checkpoints' | grep -q tmp").c_str());
  EXPECT_NE(found_tmp, 0);
}

TEST_F(TrainerTest, KeepsOnlyTheNewestCheckpoints) {
  auto e = make(dir_.path() + "/keep", {"train.checkpoint_every=1", "train.keep_checkpoints=2"});
  train::Trainer t(e);
  t.run(4);
  struct stat st {};
  EXPECT_NE(::stat((dir_.path() + "/keep/checkpoints/step_2").c_str(), &st), 0);
  EXPECT_EQ(::stat((dir_.path() + "/keep/checkpoints/step_3").c_str(), &st), 0);
  EXPECT_EQ(::stat((dir_.path() + "/keep/checkpoints/step_4").c_str(), &st), 0);
}

TEST_F(TrainerTest, KeepLastNNeverDeletesAnotherRunsCheckpoints) {
  const std::string run = dir_.path() + "/two_runs";
  {
    auto first = make(run, {"train.checkpoint_every=1"});
    train::Trainer t(first);
    t.run(6);  // step_1 .. step_6 of the first run
  }
  // A second run in the same folder (as an old medvlp, or a copy by hand, would have made it):
  // the library refuses to start it over the first run's files ...
  auto second = make(run, {"train.checkpoint_every=1", "train.keep_checkpoints=2"});
  train::Trainer t(second);
  EXPECT_ERROR_CONTAINS(t.run(3), "two_runs: already holds a run (6 checkpoints step_1..step_6, metrics.jsonl)");
  // ... and when its checkpoints are written anyway, keep-last-N prunes only its own.
  for (int i = 0; i < 3; ++i) {
    t.step([&] {
      data::LoaderOptions lo = second.loader;
      lo.workers = 0;
      data::Loader loader(second.train_set, second.tokenizer, lo);
      loader.start(0);
      data::Batch b;
      loader.next(&b);
      return b;
    }());
    t.save();
  }
  struct stat st {};
  for (int s = 4; s <= 6; ++s) {
    EXPECT_EQ(::stat((run + "/checkpoints/step_" + std::to_string(s)).c_str(), &st), 0) << "first run's step_" << s;
  }
  // Steps 1-3 were overwritten by the second run: its step_1 is pruned, step_2 and step_3 are kept.
  EXPECT_NE(::stat((run + "/checkpoints/step_1").c_str(), &st), 0);
  EXPECT_EQ(train::load_checkpoint(run + "/checkpoints/step_3").state.at("run_id"), t.run_id());
  EXPECT_EQ(train::load_checkpoint(run + "/checkpoints/step_6").state.at("run_id").get<std::string>().size(), 16u);
  EXPECT_NE(train::load_checkpoint(run + "/checkpoints/step_6").state.at("run_id"), t.run_id());
}

TEST_F(TrainerTest, AResumedRunKeepsItsRunId) {
  std::string id;
  {
    auto e = make(dir_.path() + "/rid");
    train::Trainer t(e);
    t.run(2);
    id = t.run_id();
  }
  auto e = make(dir_.path() + "/rid");
  train::Trainer t(e);
  EXPECT_NE(t.run_id(), id);
  t.resume(train::latest_checkpoint(dir_.path() + "/rid"));
  EXPECT_EQ(t.run_id(), id);
  t.run(3);
  EXPECT_EQ(train::load_checkpoint(dir_.path() + "/rid/checkpoints/step_3").state.at("run_id"), id);
}

TEST_F(TrainerTest, NonFiniteLossStopsBeforeTheUpdateWithAClearError) {
  auto e = make(dir_.path() + "/nan");
  train::Trainer t(e);
  t.run(1);
  const auto before = e.state_tensors();
  io::TensorMap snapshot;
  for (const auto& [k, v] : before) snapshot[k] = v.clone();
  data::LoaderOptions lo = e.loader;
  lo.workers = 0;
  data::Loader loader(e.train_set, e.tokenizer, lo);
  loader.start(0);
  data::Batch batch;
  ASSERT_TRUE(loader.next(&batch));
  batch.images[0][0][0][0] = std::nanf("");
  EXPECT_ERROR_CONTAINS(t.step(batch), "step 2: loss is nan");
  // Parameters are untouched (BatchNorm statistics aside: they saw the batch).
  for (const auto& p : e.model->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), snapshot.at(p.key()))) << p.key();
}

TEST_F(TrainerTest, ConfigTyposFailBeforeTraining) {
  EXPECT_ERROR_CONTAINS(make(dir_.path() + "/typo", {"train.stepz=3"}), "--set train.stepz=3: train.stepz: unknown key");
  EXPECT_ERROR_CONTAINS(make(dir_.path() + "/typo", {"model.image.name=resnet9000"}),
                        "model.image.name: unknown image encoder \"resnet9000\"");
  EXPECT_ERROR_CONTAINS(make(dir_.path() + "/typo", {"optim.lr=-1"}), "optim.lr: expected a number in [0, 10], got -1");
}

TEST_F(TrainerTest, ResumeRejectsAMismatchedModel) {
  {
    auto e = make(dir_.path() + "/mismatch");
    train::Trainer t(e);
    t.run(1);
  }
  auto other = make(dir_.path() + "/mismatch", {"model.embed_dim=8"});
  train::Trainer t(other);
  EXPECT_ERROR_CONTAINS(t.resume(train::latest_checkpoint(dir_.path() + "/mismatch")), "shape mismatch [image_proj.0.weight");
}

TEST(AdamW, MatchesTorchAdamW) {
  torch::manual_seed(0);
  at::Tensor w1 = torch::randn({4, 3}, torch::kDouble).requires_grad_(true);
  at::Tensor w2 = w1.detach().clone().requires_grad_(true);
  train::AdamWOptions o;
  o.lr = 0.01;
  o.weight_decay = 0.1;
  train::AdamW mine({{"w", w1}}, o);
  torch::optim::AdamW theirs({w2}, torch::optim::AdamWOptions(0.01).weight_decay(0.1));
  for (int step = 0; step < 5; ++step) {
    const at::Tensor target = torch::randn({4, 3}, torch::kDouble);
    mine.zero_grad();
    theirs.zero_grad();
    (w1 - target).pow(2).sum().backward();
    (w2 - target).pow(2).sum().backward();
    mine.step(0.01);
    theirs.step();
  }
  EXPECT_LE((w1 - w2).abs().max().item<double>(), 1e-12);
}

TEST(CosineSchedule, WarmsUpThenDecaysToTheFloor) {
  train::CosineSchedule s{1.0, 10, 110, 0.1};
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.55, 1e-12);
  EXPECT_NEAR(s.at(110), 0.1, 1e-12);
}

TEST(Checkpoint, CorruptFilesAreNamed) {
  testing_util::TempDir dir;
  train::Checkpoint c;
  c.model = {{"w", torch::ones({2})}};
  c.state = {{"step", 1}};
  // A temporary folder left by a run killed mid-write is swept by the next save.
  ASSERT_EQ(::mkdir((dir.path() + "/checkpoints").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir.path() + "/checkpoints/.tmp_step_7_12345").c_str(), 0755), 0);
  const std::string path = train::save_checkpoint(dir.path(), 1, c);
  struct stat st {};
  EXPECT_NE(::stat((dir.path() + "/checkpoints/.tmp_step_7_12345").c_str(), &st), 0);
  std::ofstream(path + "/model.safetensors", std::ios::trunc) << "garbage";
  EXPECT_ERROR_CONTAINS(train::load_checkpoint(path), "model.safetensors: not a safetensors file");
  EXPECT_EQ(train::latest_checkpoint(dir.path() + "/nothing"), "");
}

// Found by scripts/soak (40 kills): keep-last-N deleted step_N's files in place, so a kill during a
// prune left a half-deleted step_N. Pruned folders now leave the step_N names in one rename.
TEST(Checkpoint, PruningAndReplacingNeverLeaveAHalfCheckpointUnderAStepName) {
  testing_util::TempDir dir;
  train::Checkpoint c;
  c.model = {{"w", torch::ones({2})}};
  c.state = {{"step", 1}, {"run_id", "r"}};
  for (int step = 1; step <= 3; ++step) train::save_checkpoint(dir.path(), step, c, /*keep_last=*/2);
  // What a prune or replacement killed half-way leaves: hidden, never listed, swept by the next save.
  ASSERT_EQ(::mkdir((dir.path() + "/checkpoints/.old_step_1_4242").c_str(), 0755), 0);
  std::ofstream(dir.path() + "/checkpoints/.old_step_1_4242/model.safetensors") << "half";
  EXPECT_EQ(train::latest_checkpoint(dir.path()), dir.path() + "/checkpoints/step_3");
  // Replacing step_3 (a rerun after resume) swaps the folders: step_3 holds the new weights.
  c.model = {{"w", torch::full({2}, 2.0)}};
  train::save_checkpoint(dir.path(), 3, c, 2);
  EXPECT_TRUE(torch::equal(train::load_checkpoint(dir.path() + "/checkpoints/step_3").model.at("w"), torch::full({2}, 2.0)));
  train::save_checkpoint(dir.path(), 4, c, 2);
  std::string names;
  for (const auto& e : std::filesystem::directory_iterator(dir.path() + "/checkpoints"))
    names += e.path().filename().string() + " ";
  EXPECT_TRUE(names == "step_3 step_4 " || names == "step_4 step_3 ") << names;
}

TEST_F(TrainerTest, TrainsOnCudaWithBf16Autocast) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto e = make(dir_.path() + "/cuda", {"device=cuda", "train.steps=40", "optim.lr=0.005", "train.precision=bf16"});
  train::Trainer t(e);
  t.run();
  const std::vector<double> losses = read_metric(dir_.path() + "/cuda", "total_loss");
  ASSERT_GE(losses.size(), 10u);
  EXPECT_LT(losses.back(), losses.front() - 0.1);
  // Master weights stay fp32 under autocast; checkpoints hold fp32.
  for (const auto& [name, t] : train::load_checkpoint(train::latest_checkpoint(dir_.path() + "/cuda")).model)
    if (t.is_floating_point()) {
      EXPECT_EQ(t.scalar_type(), torch::kFloat) << name;
    }
}
