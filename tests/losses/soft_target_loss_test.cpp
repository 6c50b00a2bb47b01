#include "medvlp/losses/soft_target_loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "../testing_util.h"
#include "loss_inputs.h"
#include "medvlp/testing/gtest.h"
#include "medvlp/testing/loss_testing.h"

using namespace medvlp;
namespace kit = medvlp::testing;  // "testing" alone would clash with GoogleTest's namespace

namespace {

losses::LossPtr build(const std::string& yaml) {
  auto cfg = core::Config::parse(yaml, "soft.yaml");
  return losses::loss_registry().create("soft_target", cfg.root());
}

// MedCLIP's soft loss written out element by element.
double naive_labels_form(const at::Tensor& img, const at::Tensor& txt, const at::Tensor& labels, double scale) {
  const int64_t B = img.size(0), K = labels.size(1);
  auto pos = [&](int64_t i, int64_t k) -> double {
    if (k == K) {  // the "no finding" column
      for (int64_t j = 0; j < K; ++j)
        if (labels[i][j].item<double>() > 0) return 0.0;
      return 1.0;
    }
    return labels[i][k].item<double>() > 0 ? 1.0 : 0.0;
  };
  std::vector<std::vector<double>> sim(B, std::vector<double>(B, 0.0));
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < B; ++j)
      for (int64_t k = 0; k <= K; ++k) sim[i][j] += pos(i, k) * pos(j, k);
  double i2t = 0, t2i = 0;
  for (int64_t i = 0; i < B; ++i) {
    double zt = 0, zl_i = 0, zl_t = 0;
    for (int64_t j = 0; j < B; ++j) {
      zt += std::exp(sim[i][j]);
      zl_i += std::exp(scale * (img[i] * txt[j]).sum().item<double>());
      zl_t += std::exp(scale * (txt[i] * img[j]).sum().item<double>());
    }
    for (int64_t j = 0; j < B; ++j) {
      const double target = std::exp(sim[i][j]) / zt;  // sim is symmetric: same targets both ways
      i2t -= target * (scale * (img[i] * txt[j]).sum().item<double>() - std::log(zl_i));
      t2i -= target * (scale * (txt[i] * img[j]).sum().item<double>() - std::log(zl_t));
    }
  }
  return (i2t / B + t2i / B) / 2;
}

kit::NamedTensors entity_inputs(int64_t B, int64_t E, int64_t D, uint64_t seed) {
  torch::manual_seed(seed);
  kit::NamedTensors in;
  in["image_embed"] = test_inputs::unit_rows(torch::randn({B, D}, torch::kDouble));
  in["entity_embed"] = test_inputs::unit_rows(torch::randn({B, E, D}, torch::kDouble));
  in["entity_reference"] = torch::randn({B, E, 7}, torch::kDouble);
  in["entity_disease"] = torch::randint(0, 3, {B, E}, torch::kLong);
  at::Tensor mask = torch::ones({B, E}, torch::kDouble);
  mask[0][E - 1] = 0;  // padding entities
  mask[B - 1][E - 1] = 0;
  in["entity_mask"] = mask;
  return in;
}

// MedFILIP's SSM + MSE + BCE, by loops over images and entity texts.
// identity: MedFILIP's similarity matrix ablated, the target is 1 exactly for the image's own texts.
double naive_entities_form(const kit::NamedTensors& in, double scale, bool identity = false) {
  const at::Tensor img = in.at("image_embed"), ent = in.at("entity_embed"), mask = in.at("entity_mask");
  const at::Tensor dis = in.at("entity_disease");
  const at::Tensor ref = in.at("entity_reference") / in.at("entity_reference").norm(2, 2, true);
  const int64_t B = img.size(0), E = ent.size(1);
  std::vector<std::pair<int64_t, int64_t>> texts;  // (sample, entity) of each valid entity text
  for (int64_t i = 0; i < B; ++i)
    for (int64_t e = 0; e < E; ++e)
      if (mask[i][e].item<double>() > 0) texts.emplace_back(i, e);
  double mse = 0, bce = 0;
  for (int64_t i = 0; i < B; ++i)
    for (const auto& [j, t] : texts) {
      double target = 0;  // max over image i's own entities
      bool first = true;
      for (int64_t e = 0; e < E; ++e) {
        if (mask[i][e].item<double>() <= 0) continue;
        const double same = dis[i][e].item<int64_t>() == dis[j][t].item<int64_t>() ? 1.0 : 0.0;
        const double v = same * (ref[i][e] * ref[j][t]).sum().item<double>();
        target = first ? v : std::max(target, v);
        first = false;
      }
      if (identity) target = i == j ? 1.0 : 0.0;
      const double logit = scale * (img[i] * ent[j][t]).sum().item<double>();
      mse += (logit - target) * (logit - target);
      bce += std::max(logit, 0.0) - logit * target + std::log1p(std::exp(-std::abs(logit)));
    }
  const double n = static_cast<double>(B * texts.size());
  return mse / n + bce / n;
}

}  // namespace

TEST(SoftTargetLoss, LabelsFormMatchesMedClipWrittenOut) {
  const auto in = test_inputs::global(6, 5, 4, 11);
  auto loss = build("{temperature: 0.25}");
  const auto e = kit::evaluate(*loss, in);
  EXPECT_NEAR(e.total, naive_labels_form(in.at("image_embed"), in.at("text_embed"), in.at("labels"), 4.0), 1e-9);
}

TEST(SoftTargetLoss, LabelsFormWithDistinctLabelsAndFullIdentityMixIsClip) {
  auto in = test_inputs::global(5, 4, 5, 12);
  in["labels"] = torch::eye(5, torch::kDouble);
  auto soft = build("{temperature: 0.1, identity_mix: 1.0}");
  auto clip = losses::loss_registry().create("clip", core::Config::parse("{temperature: 0.1}", "c.yaml").root());
  EXPECT_NEAR(kit::evaluate(*soft, in).total, kit::evaluate(*clip, in).total, 1e-12);
}

TEST(SoftTargetLoss, TargetRowsAreDistributionsForEverySimilarity) {
  const at::Tensor labels = torch::tensor({1., 0., -1., 1., 1., 0., 0., 0., 0., 0., 0., 1.}, torch::kDouble).view({4, 3});
  for (const char* sim : {"dot", "cosine", "jaccard", "signed"}) {
    losses::SoftTargetOptions o;
    o.similarity = sim;
    o.identity_mix = 0.3;
    const at::Tensor t = losses::label_soft_targets(labels, o);
    EXPECT_TRUE(torch::allclose(t.sum(1), torch::ones({4}, torch::kDouble))) << sim;
    EXPECT_GT(t[0][1].item<double>(), t[0][2].item<double>()) << sim;  // shares "finding 0" with row 1 only
  }
}

TEST(SoftTargetLoss, SignedSimilarityIsMedClipsLabelDotProduct) {
  // Rows: medvlp labels (1 present, 0 absent, -1 uncertain/unmentioned). MedCLIP codes them
  // 1 / -1 / 0 and adds No Finding (1 when nothing is present, else -1); label_sim = codes · codesᵀ
  // and the targets are its row softmax.
  const double codes[3][4] = {{1, -1, 0, -1}, {-1, -1, -1, 1}, {1, 1, -1, -1}};
  const at::Tensor labels = torch::tensor({1., 0., -1., 0., 0., 0., 1., 1., 0.}, torch::kDouble).view({3, 3});
  losses::SoftTargetOptions o;
  o.similarity = "signed";
  const at::Tensor t = losses::label_soft_targets(labels, o);
  for (int i = 0; i < 3; ++i) {
    double sims[3], z = 0;
    for (int j = 0; j < 3; ++j) {
      sims[j] = 0;
      for (int k = 0; k < 4; ++k) sims[j] += codes[i][k] * codes[j][k];
      z += std::exp(sims[j]);
    }
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(t[i][j].item<double>(), std::exp(sims[j]) / z, 1e-12) << i << "," << j;
  }
}

// ASG's loss_soft (ASGMVLP_CODE main.py) written out: Q = L1-rownorm(0.8 I + 0.2 cos(labels, -1 -> 0)
// + 1e-6); per direction the mean of F.kl_div(log_softmax(scores), Q) and F.kl_div(log Q, softmax(scores)).
double naive_asg(const at::Tensor& img, const at::Tensor& txt, const at::Tensor& labels, double scale) {
  const int64_t B = img.size(0), K = labels.size(1);
  std::vector<std::vector<double>> q(B, std::vector<double>(B));
  for (int64_t i = 0; i < B; ++i) {
    double row = 0;
    for (int64_t j = 0; j < B; ++j) {
      double dot = 0, ni = 0, nj = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = std::max(labels[i][k].item<double>(), 0.0), b = std::max(labels[j][k].item<double>(), 0.0);
        dot += a * b, ni += a * a, nj += b * b;
      }
      const double cos = dot / (std::max(std::sqrt(ni), 1e-12) * std::max(std::sqrt(nj), 1e-12));
      q[i][j] = 0.8 * (i == j) + 0.2 * cos + 1e-6;
      row += q[i][j];
    }
    for (int64_t j = 0; j < B; ++j) q[i][j] /= row;
  }
  double total = 0;
  for (const bool image_rows : {true, false}) {
    double fwd = 0, bwd = 0;
    for (int64_t i = 0; i < B; ++i) {
      std::vector<double> z(B);
      double zmax = -1e300, sum = 0;
      for (int64_t j = 0; j < B; ++j) {
        z[j] = scale * (image_rows ? (img[i] * txt[j]) : (txt[i] * img[j])).sum().item<double>();
        zmax = std::max(zmax, z[j]);
      }
      for (int64_t j = 0; j < B; ++j) sum += std::exp(z[j] - zmax);
      for (int64_t j = 0; j < B; ++j) {
        const double logp = z[j] - zmax - std::log(sum);
        fwd += q[i][j] * (std::log(q[i][j]) - logp);
        bwd += std::exp(logp) * (logp - std::log(q[i][j]));
      }
    }
    total += (fwd / B + bwd / B) / 2;
  }
  return total / 2;
}

TEST(SoftTargetLoss, AsgFormMatchesAsgWrittenOut) {
  const auto in = test_inputs::global(6, 5, 4, 21);
  auto loss = build("{similarity: cosine, normal_class: false, target_form: linear, identity_mix: 0.8, objective: kl_sym, "
                    "temperature: 0.125, learnable: false}");  // ASG: 0.07; 0.125 keeps the float scale exact
  EXPECT_NEAR(kit::evaluate(*loss, in).total, naive_asg(in.at("image_embed"), in.at("text_embed"), in.at("labels"), 8.0),
              1e-9);
  const auto g = kit::gradient_check(*loss, in);
  EXPECT_TRUE(g) << g.message;
  EXPECT_ERROR_CONTAINS(build("{objective: kl_sym}"), "kl_sym needs strictly positive targets");
}

TEST(SoftTargetLoss, EntitiesFormMatchesMedFilipWrittenOut) {
  const auto in = entity_inputs(4, 3, 6, 13);
  auto loss = build("{form: entities, temperature: 0.5}");
  EXPECT_NEAR(kit::evaluate(*loss, in).total, naive_entities_form(in, 2.0), 1e-9);
}

TEST(SoftTargetLoss, EntitiesFormWithIdentityTargetsScoresOnlyTheImagesOwnTexts) {
  auto in = entity_inputs(4, 3, 6, 18);
  in["entity_disease"] = torch::zeros({4, 3}, torch::kLong);  // one disease everywhere: only ownership separates
  in.erase("entity_reference");                              // not read in this mode
  auto loss = build("{form: entities, source: identity, temperature: 0.5}");
  EXPECT_NEAR(kit::evaluate(*loss, in).total, naive_entities_form(entity_inputs(4, 3, 6, 18), 2.0, true), 1e-9);
  const auto g = kit::gradient_check(*loss, in);
  EXPECT_TRUE(g) << g.message;
  EXPECT_ERROR_CONTAINS(build("{form: entities, source: ssm}"), "source");
}

TEST(SoftTargetLoss, PassesTheKitsChecks) {
  for (const std::string yaml : {"{similarity: jaccard, identity_mix: 0.2}", "{similarity: cosine, rows: full}"}) {
    auto loss = build(yaml);
    const auto in = test_inputs::global(6, 4, 3, 14);
    const auto g = kit::gradient_check(*loss, in);
    EXPECT_TRUE(g) << yaml << g.message;
    const auto p = kit::permutation_invariance(*loss, in, 5);
    EXPECT_TRUE(p) << yaml << p.message;
  }
  auto ent = build("{form: entities}");
  const auto in = entity_inputs(4, 3, 5, 15);
  const auto g = kit::gradient_check(*ent, in);
  EXPECT_TRUE(g) << g.message;
  const auto p = kit::permutation_invariance(*ent, in, 6);
  EXPECT_TRUE(p) << p.message;
}

TEST(SoftTargetLoss, NamesMissingAndMisshapenInputs) {
  auto loss = build("{}");
  auto in = test_inputs::global(4, 3, 2, 16);
  in.erase("labels");
  EXPECT_ERROR_CONTAINS(kit::evaluate(*loss, in), "loss soft_target: needs Batch.labels, which the data did not provide");
  auto ent = build("{form: entities}");
  auto e = entity_inputs(4, 3, 5, 17);
  e["entity_mask"] = torch::ones({4, 2}, torch::kDouble);
  EXPECT_ERROR_CONTAINS(kit::evaluate(*ent, e), "loss soft_target: Batch.entity_mask has shape [4, 2], expected [B,E]");
  e.erase("entity_reference");
  EXPECT_ERROR_CONTAINS(kit::evaluate(*ent, e), "needs Encoded.entity_reference");
}

TEST(SoftTargetLoss, EntityTextsMaskElementsWithTheGivenProbability) {
  std::mt19937_64 rng(3);
  const losses::EntityDetail d{"left lower lobe", "patchy", "consolidation"};
  EXPECT_EQ(losses::entity_text(d, "increased opacity", 0.0, rng), "left lower lobe patchy consolidation. increased opacity");
  EXPECT_EQ(losses::entity_text(d, "increased opacity", 1.0, rng), "mask mask mask");
  int masked = 0;
  for (int i = 0; i < 2000; ++i) masked += losses::entity_text(d, "", 0.5, rng).find("consolidation") == std::string::npos;
  EXPECT_NEAR(masked / 2000.0, 0.5, 0.05);
}

TEST(SoftTargetLoss, TwoRanksEqualOneRank) {
  kit::RankOptions o;
  o.child_args = kit::gtest_rerun_args();
  const auto labels = kit::rank_equivalence([] { return build("{similarity: jaccard}"); },
                                                test_inputs::global(8, 5, 4, 18), o);
  EXPECT_TRUE(labels) << labels.message;
  const auto entities = kit::rank_equivalence([] { return build("{form: entities, rows: full}"); },
                                                  entity_inputs(4, 3, 5, 19), o);
  EXPECT_TRUE(entities) << entities.message;
}
