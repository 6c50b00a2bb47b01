// Every built-in loss trains through the trainer from a config: reports become anatomy, sentence,
// entity and tag inputs, the model encodes them, and the loss goes down.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <map>

#include "../testing_util.h"
#include "medvlp/core/config.h"
#include "medvlp/losses/tag_loss.h"
#include "medvlp/train/trainer.h"

using namespace medvlp;

namespace {

const char* kBase = R"(
seed: 5
device: cpu
data:
  name: synthetic_cxr
  image_size: 32
  train_size: 64
  val_size: 8
  test_size: 16
  workers: 2
  report: {lexicon: chest_xray, knowledge: chest_xray, max_sentences: 6, max_entities: 4, anatomy_max_len: 32,
           sentence_max_len: 24, entity_max_len: 32}
text: {vocab_size: 150, train_reports: 64, max_len: 32}
model:
  embed_dim: 16
  local_dim: 16
  image: {name: small_cnn, channels: [8, 16]}
  text: {name: small_transformer, dim: 16, layers: 1, heads: 2, ff_dim: 32, max_len: 48}
losses: [{name: clip}]
optim: {lr: 0.005, weight_decay: 0.0}
schedule: {warmup_steps: 2}
train: {steps: 24, batch_size: 16, log_every: 1, checkpoint_every: 0, keep_checkpoints: 1, progress: false}
)";

class LossesFromConfig : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared_ = new testing_util::TempDir();
    train::Experiment::build(core::Config::parse(kBase, "base.yaml"), shared_->path() + "/tok");
    tokenizer_ = shared_->path() + "/tok/tokenizer.model";
  }
  static void TearDownTestSuite() { delete shared_; }

  train::Experiment make(const std::vector<std::string>& sets, const std::string& run = "run") {
    core::Config c = core::Config::parse(kBase, "base.yaml");
    c.set("text.model=" + tokenizer_);
    for (const auto& s : sets) c.set(s);
    return train::Experiment::build(c, dir_.path() + "/" + run);
  }

  // Trains and checks: the total loss goes down, every logged term is finite everywhere and
  // non-zero somewhere. Returns the logged lines.
  std::vector<nlohmann::json> train_and_check(const std::vector<std::string>& sets) {
    auto e = make(sets);
    train::Trainer t(e);
    t.run();
    std::ifstream in(dir_.path() + "/run/metrics.jsonl");
    std::vector<nlohmann::json> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    EXPECT_EQ(lines.size(), 24u);
    if (lines.size() < 8) return lines;
    const auto mean = [&](size_t from, size_t n) {
      double s = 0;
      for (size_t i = from; i < from + n; ++i) s += lines[i]["total_loss"].get<double>();
      return s / static_cast<double>(n);
    };
    const double early = mean(0, 4), late = mean(lines.size() - 4, 4);
    EXPECT_LT(late, early) << "loss did not go down: " << early << " -> " << late;
    std::map<std::string, bool> nonzero;
    for (const auto& l : lines)
      for (const auto& [key, value] : l.items()) {
        if (!value.is_number()) continue;
        const double v = value.get<double>();
        EXPECT_TRUE(std::isfinite(v)) << key;
        nonzero[key] = nonzero[key] || v != 0.0;
      }
    for (const auto& [key, any] : nonzero) {
      if (key != "epoch") {
        EXPECT_TRUE(any) << key << " is zero at every step";
      }
    }
    return lines;
  }

  static testing_util::TempDir* shared_;
  static std::string tokenizer_;
  testing_util::TempDir dir_;
};
testing_util::TempDir* LossesFromConfig::shared_ = nullptr;
std::string LossesFromConfig::tokenizer_;

bool has_key(const std::vector<nlohmann::json>& lines, const std::string& key) {
  for (const auto& l : lines)
    if (l.contains(key)) return true;
  return false;
}

}  // namespace

TEST_F(LossesFromConfig, SoftTargetLabels) { train_and_check({"losses=[{name: soft_target}]"}); }

TEST_F(LossesFromConfig, SoftTargetEntitiesSameDisease) {
  const auto lines = train_and_check({"losses=[{name: soft_target, options: {form: entities, source: labels}}]"});
  EXPECT_TRUE(has_key(lines, "mse") && has_key(lines, "bce"));
}

TEST_F(LossesFromConfig, SoftTargetEntitiesWithTheModelsOwnReference) {
  train_and_check({"model.entity_reference=true", "data.report.entity_mask=0.5",
                   "losses=[{name: soft_target, options: {form: entities}}]"});
}

TEST_F(LossesFromConfig, FalseNegative) {
  train_and_check({"losses=[{name: false_negative, options: {pairing: labels}}]"});
}

TEST_F(LossesFromConfig, AnatomyWithFalseNegativeCalibration) {
  const auto lines = train_and_check(
      {"losses=[{name: anatomy, options: {min_voxels: 4, false_negative: {pairing: text}}}]"});
  EXPECT_TRUE(has_key(lines, "anatomies_used"));
  EXPECT_TRUE(has_key(lines, "anatomy/pleura") || has_key(lines, "anatomy/heart"));
}

TEST_F(LossesFromConfig, RegionSentence) {
  const auto lines = train_and_check({"losses=[{name: region_sentence}]"});
  EXPECT_TRUE(has_key(lines, "region_to_sentence") && has_key(lines, "sentence_to_region"));
  // Every phantom report states something about its anatomies: regions take part in every step.
  for (const auto& l : lines) EXPECT_GT(l.value("regions", 0.0), 16.0);
}

TEST_F(LossesFromConfig, LocalWords) { train_and_check({"losses=[{name: local}]"}); }

TEST_F(LossesFromConfig, LocalSentences) { train_and_check({"losses=[{name: local, options: {units: sentences}}]"}); }

TEST_F(LossesFromConfig, MultiLevel) {
  const auto lines = train_and_check({"losses=[{name: multi_level}]"});
  EXPECT_TRUE(has_key(lines, "global") && has_key(lines, "sentence") && has_key(lines, "word"));
}

TEST_F(LossesFromConfig, TagFromParsedReports) {
  train_and_check({"losses=[{name: tag, options: {targets: tags}}]"});
}

TEST_F(LossesFromConfig, TagWithAsgsDecoderAndTagNameQueries) {
  const std::vector<std::string> sets = {
      "losses=[{name: tag, options: {targets: tags, decoder: pre, queries: tag_names, layers: 2, dropout: 0.1}}]"};
  auto e = make(sets, "names");
  auto tag = std::dynamic_pointer_cast<losses::TagLossImpl>(e.losses[0].loss);
  ASSERT_TRUE(tag);
  // The queries are the text encoder's features of the tag names at build time, frozen: stored
  // with the checkpoint, never trained.
  const auto names = e.reports->options().tags;
  ASSERT_EQ(static_cast<int64_t>(names.size()), tag->options().tags);
  at::Tensor want;
  {
    torch::NoGradGuard no_grad;
    e.model->eval();
    const auto tokens = e.tokenizer->encode(names, e.loader.max_text_len);
    want = e.model->text_encoder()->forward(tokens.ids, tokens.mask).pooled;
    e.model->train();
  }
  const auto state = e.state_tensors();
  ASSERT_TRUE(state.count("losses.0.query_features"));
  EXPECT_TRUE(torch::allclose(state.at("losses.0.query_features"), want, 1e-6, 1e-6));
  EXPECT_EQ(tag->options().text_dim, e.model->text_encoder()->out_dim());
  for (const auto& [name, tensor] : e.trainable()) EXPECT_NE(name, "losses.0.query_features");
  train_and_check(sets);
}

TEST_F(LossesFromConfig, WeightedSumOfEveryLoss) {
  const auto lines = train_and_check(
      {"model.entity_reference=true",
       "losses=[{name: clip}, {name: soft_target, weight: 0.5}, {name: false_negative, weight: 0.5},"
       " {name: soft_target, weight: 0.5, options: {form: entities}}, {name: anatomy, weight: 0.5, options: {min_voxels: 4}},"
       " {name: region_sentence, weight: 0.5}, {name: multi_level, weight: 0.2}, {name: tag, weight: 0.5, options: {targets: tags}}]"});
  EXPECT_TRUE(has_key(lines, "tag.tag") && has_key(lines, "multi_level.word") && has_key(lines, "anatomy.loss"));
}

TEST_F(LossesFromConfig, OnlyTheUnitsSomeLossReadsAreLoaded) {
  auto clip = make({});
  EXPECT_EQ(clip.loader.reports, nullptr);
  auto anatomy = make({"losses=[{name: anatomy}]"}, "a");
  ASSERT_NE(anatomy.loader.reports, nullptr);
  const data::ReportUnits u = anatomy.loader.reports->options().units;
  EXPECT_TRUE(u.anatomy);
  EXPECT_FALSE(u.sentences || u.entities || u.tags);
  // Filled from the model and the data: the resolved config records them.
  const auto& options = anatomy.config.tree()["losses"][0]["options"];
  EXPECT_EQ(options["token_dim"], 16);
  EXPECT_EQ(options["embed_dim"], 16);
  EXPECT_EQ(options["anatomies"].size(), 8u);
}

TEST_F(LossesFromConfig, AConfigWhoseDataCannotFeedALossFailsBeforeTraining) {
  EXPECT_ERROR_CONTAINS(make({"data.report=null", "losses=[{name: anatomy}]"}),
                        "data.report: loss anatomy (losses[0]) needs Encoded.anatomy_text, which comes from the "
                        "structured reports");
  EXPECT_ERROR_CONTAINS(make({"data.report=null", "losses=[{name: clip}, {name: tag, options: {targets: tags}}]"}),
                        "loss tag (losses[1]) needs Batch.tags");
  EXPECT_ERROR_CONTAINS(make({"losses=[{name: soft_target, options: {form: entities}}]"}),
                        "model.entity_reference: loss soft_target (losses[0]) needs Encoded.entity_reference");
  EXPECT_ERROR_CONTAINS(make({"model.local_dim=0", "model.text.dim=8", "losses=[{name: local}]"}),
                        "model.local_dim: loss local (losses[0]) compares image tokens (16 channels) with text units "
                        "(8 channels): set model.local_dim");
  EXPECT_ERROR_CONTAINS(make({"model.local_dim=0", "model.text.dim=8", "losses=[{name: multi_level}]"}),
                        "(8 channels): set model.local_dim");
  EXPECT_ERROR_CONTAINS(make({"data.report.anatomies=[heart, pleura]", "losses=[{name: anatomy}]"}),
                        "data.report.anatomies: lists 2 anatomies but the dataset has 8 anatomy masks");
  EXPECT_ERROR_CONTAINS(make({"data.report.lexicon=no_such_lexicon"}), "data.report: no built-in lexicons file \"no_such_lexicon\"");
  EXPECT_ERROR_CONTAINS(make({"data.report.tags=[pleural effusion, dragons]", "losses=[{name: tag, options: {targets: tags}}]"}),
                        "\"dragons\" is not a finding of lexicon chest_xray");
  EXPECT_ERROR_CONTAINS(make({"data.report.max_sentence=3"}), "data.report.max_sentence");
}
