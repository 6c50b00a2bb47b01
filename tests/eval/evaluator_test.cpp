// Zero-shot evaluation agrees with a second, sample-by-sample computation of the same scores and a
// brute-force AUC: global findings on the image embedding, per-anatomy findings (fVLM) on the
// anatomy loss's pooled features with "{anatomy}" prompts, the highest present anatomy, and cases
// without any of them left out.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

#include "../testing_util.h"
#include "medvlp/core/config.h"
#include "medvlp/data/sample.h"
#include "medvlp/data/shards.h"
#include "medvlp/data/synthetic_cxr.h"
#include "medvlp/eval/evaluator.h"
#include "medvlp/train/experiment.h"

using namespace medvlp;

namespace {

const char* kConfig = R"(
seed: 3
device: cpu
data: {name: synthetic_cxr, image_size: 32, train_size: 32, val_size: 8, test_size: 40, workers: 1,
       report: {lexicon: chest_xray, anatomy_max_len: 32}}
text: {vocab_size: 120, train_reports: 32, max_len: 32}
model:
  embed_dim: 16
  image: {name: small_cnn, channels: [8, 16]}
  text: {name: small_transformer, dim: 16, layers: 1, heads: 2, ff_dim: 32, max_len: 32}
losses: [{name: anatomy, options: {pooling: attention, heads: 2, dropout: 0.5, min_voxels: 4}}, {name: clip}]
train: {steps: 1, batch_size: 8}
eval:
  batch_size: 7
  prompts:
    pleural effusion: {anatomy: pleura, positive: ["effusion in the {anatomy}."], negative: ["{anatomy} shows no significant abnormalities."]}
    consolidation:
      anatomy: [right lower lung, left lower lung]
      positive: ["consolidation in the {anatomy}.", "airspace disease."]
      negative: ["the {anatomy} is clear."]
    cardiomegaly: {positive: ["the heart is enlarged."], negative: ["the heart is normal in size."]}
)";

// Mann-Whitney AUC by counting pairs (ties count half).
double brute_auc(const std::vector<double>& score, const std::vector<double>& label) {
  double pairs = 0, wins = 0;
  for (size_t i = 0; i < score.size(); ++i)
    for (size_t j = 0; j < score.size(); ++j)
      if (label[i] > 0.5 && label[j] <= 0.5) {
        pairs += 1;
        wins += score[i] > score[j] ? 1.0 : (score[i] == score[j] ? 0.5 : 0.0);
      }
  return wins / pairs;
}

std::string substitute(std::string s, const std::string& anatomy) {
  const auto at = s.find("{anatomy}");
  return at == std::string::npos ? s : s.replace(at, 9, anatomy);
}

at::Tensor prompt(train::Experiment& e, const std::vector<std::string>& texts, const std::string& anatomy) {
  at::Tensor sum;
  for (const auto& t : texts) {
    const auto tok = e.tokenizer->encode({substitute(t, anatomy)}, e.eval.max_text_len);
    const at::Tensor v = e.model->encode_texts(tok.ids, tok.mask)[0];
    sum = sum.defined() ? sum + v : v;
  }
  return torch::nn::functional::normalize(sum / static_cast<double>(texts.size()),
                                          torch::nn::functional::NormalizeFuncOptions().dim(0));
}

}  // namespace

TEST(Evaluator, ZeroShotAgreesWithASampleBySampleComputation) {
  testing_util::TempDir dir;
  train::Experiment e = train::Experiment::build(core::Config::parse(kConfig, "eval.yaml"), dir.path());
  ASSERT_NE(e.anatomy_loss(), nullptr);
  // Leave some cases out: the right lower lung counts as present only where it is large.
  std::vector<double> sizes;
  for (int64_t i = 0; i < e.eval_set->size(); ++i)
    sizes.push_back(e.eval_set->get(i, 0).anatomy_masks[1].gt(0.5).sum().item<double>());
  std::sort(sizes.begin(), sizes.end());
  const double median = sizes[sizes.size() / 2];
  ASSERT_LT(sizes.front(), median) << "the phantom's lung zones should vary in size";
  core::Config c = core::Config::parse(kConfig, "eval.yaml");
  c.set("losses.0.options.min_voxels=" + std::to_string(median));
  e = train::Experiment::build(c, dir.path() + "/2");
  const nlohmann::json result = e.evaluate();

  torch::NoGradGuard no_grad;
  e.model->eval();
  auto anatomy = e.anatomy_loss();
  anatomy->eval();  // dropout 0.5 in the pooling would change the features
  const auto& names = anatomy->options().anatomies;
  const auto findings = e.eval_set->findings();
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> scored;  // finding -> (scores, truth)
  int64_t consolidation_left_out = 0;
  for (int64_t i = 0; i < e.eval_set->size(); ++i) {
    const data::Sample s = e.eval_set->get(i, 0);
    data::Batch b = data::collate({s});
    b.images = (b.images - e.image_mean) / e.image_std;
    b.token_ids = torch::zeros({1, 4}, torch::kLong);
    b.attention_mask = torch::ones({1, 4}, torch::kLong);
    const models::Encoded enc = e.model->forward(b);
    const auto [feats, present] = anatomy->anatomy_features(enc, b);
    const at::Tensor image = e.model->encode_images(b.images)[0];
    for (const auto& p : e.eval.prompts) {
      const int64_t k = std::find(findings.begin(), findings.end(), p.finding) - findings.begin();
      double score = -std::numeric_limits<double>::infinity();
      if (p.anatomies.empty()) {
        score = image.dot(prompt(e, p.positive, "")).item<double>() - image.dot(prompt(e, p.negative, "")).item<double>();
      } else {
        for (const auto& a : p.anatomies) {
          const int64_t j = std::find(names.begin(), names.end(), a) - names.begin();
          if (!present[0][j].item<bool>()) continue;
          const at::Tensor f = feats[0][j];
          score = std::max(score, f.dot(prompt(e, p.positive, a)).item<double>() - f.dot(prompt(e, p.negative, a)).item<double>());
        }
      }
      if (!std::isfinite(score)) {
        if (p.finding == "consolidation") ++consolidation_left_out;
        continue;
      }
      scored[p.finding].first.push_back(score);
      scored[p.finding].second.push_back(s.truth[k].item<double>());
    }
  }
  const auto& zs = result["zero_shot"];
  EXPECT_GT(consolidation_left_out, 0) << "no case lacked both lower lung zones: the left-out path is untested";
  EXPECT_EQ(zs["left_out"]["consolidation"].get<int64_t>(), consolidation_left_out);
  EXPECT_EQ(zs["per_anatomy"]["consolidation"], nlohmann::json({"right lower lung", "left lower lung"}));
  EXPECT_FALSE(zs["per_anatomy"].contains("cardiomegaly"));
  int counted = 0;
  for (const auto& [finding, st] : scored) {
    const double expected = brute_auc(st.first, st.second);
    if (std::isnan(expected)) continue;
    ++counted;
    EXPECT_NEAR(zs["findings"][finding]["auroc"].get<double>(), expected, 1e-9) << finding;
    const auto ci = zs["findings"][finding]["auroc_ci"];
    EXPECT_LE(ci[0].get<double>(), expected);
    EXPECT_GE(ci[1].get<double>(), expected);
  }
  EXPECT_GE(counted, 3);
  EXPECT_EQ(zs["mean_auc"], zs["mean"]["auroc"]);
  EXPECT_EQ(zs["thresholds_from"], "val");
  EXPECT_TRUE(zs["mean"].contains("f1_macro"));
}

TEST(Evaluator, PerAnatomyPromptsNeedAnAnatomyLossThatKnowsTheAnatomy) {
  testing_util::TempDir dir;
  const auto build = [&](const std::vector<std::string>& sets) {
    core::Config c = core::Config::parse(kConfig, "eval.yaml");
    for (const auto& s : sets) c.set(s);
    return train::Experiment::build(c, dir.path());
  };
  EXPECT_ERROR_CONTAINS(build({"eval.prompts.cardiomegaly.anatomy=[heart, liver]"}),
                        "eval.prompts.cardiomegaly.anatomy: \"liver\" is not an anatomy of the anatomy loss; known: "
                        "right upper lung, ");
  EXPECT_ERROR_CONTAINS(build({"losses=[{name: clip}]"}),
                        "eval.prompts.consolidation.anatomy: scores \"consolidation\" on anatomy features, which "
                        "come from an anatomy loss");
  EXPECT_ERROR_CONTAINS(build({"eval.prompts.cardiomegaly.anatomy=[]"}), "eval.prompts.cardiomegaly.anatomy: expected");
}

TEST(Evaluator, DefaultThresholdSplitMayBeMissingButANamedOneMustExist) {
  // Shards built without a val split (build-shards --splits train,test).
  testing_util::TempDir dir;
  data::SyntheticCxrOptions o;
  o.image_size = 32;
  o.train_size = 24;
  o.test_size = 24;
  data::write_shards(data::SyntheticCxrDataset(o, data::Split::kTrain), dir.path() + "/shards/train");
  data::write_shards(data::SyntheticCxrDataset(o, data::Split::kTest), dir.path() + "/shards/test");
  const std::string config = R"(
seed: 1
device: cpu
data: {name: shards, dir: )" + dir.path() + R"(/shards, workers: 1}
text: {vocab_size: 120, train_reports: 24, max_len: 24}
model:
  embed_dim: 16
  image: {name: small_cnn, channels: [8, 16]}
  text: {name: small_transformer, dim: 16, layers: 1, heads: 2, ff_dim: 32, max_len: 24}
losses: [{name: clip}]
train: {steps: 1, batch_size: 8}
eval: {bootstrap: 0}
)";
  train::Experiment e = train::Experiment::build(core::Config::parse(config, "s.yaml"), dir.path() + "/run");
  EXPECT_EQ(e.threshold_set, nullptr);
  const nlohmann::json r = e.evaluate();
  EXPECT_FALSE(r["zero_shot"].contains("thresholds_from"));
  EXPECT_FALSE(r["zero_shot"]["mean"].contains("f1_macro"));
  core::Config named = core::Config::parse(config, "s.yaml");
  named.set("eval.thresholds_from=val");
  EXPECT_ERROR_CONTAINS(train::Experiment::build(named, dir.path() + "/run2"), "/shards/val/index.json: missing");
}
