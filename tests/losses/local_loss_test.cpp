#include "medvlp/losses/local_loss.h"

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

losses::LossPtr build(const std::string& name, const std::string& yaml) {
  return losses::loss_registry().create(name, core::Config::parse(yaml, "local.yaml").root());
}

// Reports of 2..L real words, 6 patches, channels C.
kit::NamedTensors inputs(int64_t B, int64_t L, int64_t C, uint64_t seed) {
  torch::manual_seed(seed);
  kit::NamedTensors in;
  in["image_tokens"] = torch::randn({B, 6, C}, torch::kDouble);
  in["grid"] = torch::tensor({2, 3}, torch::kLong);
  in["text_tokens"] = torch::randn({B, L, C}, torch::kDouble);
  at::Tensor mask = torch::zeros({B, L}, torch::kDouble);
  for (int64_t i = 0; i < B; ++i) mask[i].narrow(0, 0, 2 + i % (L - 1)).fill_(1);
  in["word_mask"] = mask;
  in["sentence_embed"] = torch::randn({B, 3, C}, torch::kDouble);
  at::Tensor smask = torch::ones({B, 3}, torch::kDouble);
  smask[0][2] = 0;
  in["sentence_mask"] = smask;
  in["image_embed"] = test_inputs::unit_rows(torch::randn({B, C}, torch::kDouble));
  in["text_embed"] = test_inputs::unit_rows(torch::randn({B, C}, torch::kDouble));
  return in;
}

double ce_rows(const std::vector<std::vector<double>>& s) {  // mean over rows of -log softmax at the diagonal
  double loss = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    double z = 0;
    for (double v : s[i]) z += std::exp(v);
    loss += std::log(z) - s[i][i];
  }
  return loss / static_cast<double>(s.size());
}

// AFLoc's local_loss with its attention_fn, one report and one image at a time.
double naive_gloria(const at::Tensor& words, const at::Tensor& mask, const at::Tensor& patches, double t1, double t2,
                    double t3) {
  const int64_t B = words.size(0), N = patches.size(1);
  std::vector<std::vector<double>> img_rows(B, std::vector<double>(B));  // [image][report]
  for (int64_t r = 0; r < B; ++r) {
    const int64_t n = mask[r].sum().item<int64_t>();
    const at::Tensor w = words[r].narrow(0, 0, n);  // [n,C]
    for (int64_t i = 0; i < B; ++i) {
      const at::Tensor sims = patches[i].matmul(w.t());  // [N,n]
      const at::Tensor over_words = torch::softmax(sims, 1) * t1;
      const at::Tensor attn = torch::softmax(over_words, 0);  // over patches
      double agg = 0;
      for (int64_t k = 0; k < n; ++k) {
        at::Tensor ctx = torch::zeros_like(w[k]);
        for (int64_t p = 0; p < N; ++p) ctx += attn[p][k] * patches[i][p];
        const double cos = (w[k] * ctx).sum().item<double>() / (w[k].norm() * ctx.norm()).item<double>();
        agg += std::exp(t2 * cos);
      }
      img_rows[i][r] = t3 * std::log(agg);
    }
  }
  std::vector<std::vector<double>> txt_rows(B, std::vector<double>(B));
  for (int64_t i = 0; i < B; ++i)
    for (int64_t r = 0; r < B; ++r) txt_rows[r][i] = img_rows[i][r];
  return ce_rows(img_rows) + ce_rows(txt_rows);
}

// FILIP's token-wise maxima by loops; logits scaled, CE averaged over the two directions.
double naive_filip(const at::Tensor& words_raw, const at::Tensor& mask, const at::Tensor& patches_raw, double scale) {
  const at::Tensor words = words_raw / words_raw.norm(2, 2, true), patches = patches_raw / patches_raw.norm(2, 2, true);
  const int64_t B = words.size(0), N = patches.size(1);
  std::vector<std::vector<double>> t2i(B, std::vector<double>(B)), i2t(B, std::vector<double>(B));
  for (int64_t r = 0; r < B; ++r) {
    const int64_t n = mask[r].sum().item<int64_t>();
    for (int64_t i = 0; i < B; ++i) {
      double word_side = 0, patch_side = 0;
      for (int64_t k = 0; k < n; ++k) {
        double best = -1e9;
        for (int64_t p = 0; p < N; ++p) best = std::max(best, (words[r][k] * patches[i][p]).sum().item<double>());
        word_side += best / n;
      }
      for (int64_t p = 0; p < N; ++p) {
        double best = -1e9;
        for (int64_t k = 0; k < n; ++k) best = std::max(best, (words[r][k] * patches[i][p]).sum().item<double>());
        patch_side += best / N;
      }
      t2i[r][i] = scale * word_side;
      i2t[i][r] = scale * patch_side;
    }
  }
  return (ce_rows(i2t) + ce_rows(t2i)) / 2;
}

}  // namespace

TEST(LocalLoss, GloriaMatchesAflocWrittenOut) {
  // 3 channels < 6 patches forms each attended context; 9 > 6 takes the patches' Gram matrix.
  for (const int64_t C : {3, 9}) {
    const auto in = inputs(5, 4, C, 41);
    const auto e = kit::evaluate(*build("local", "{}"), in);
    EXPECT_NEAR(e.total, naive_gloria(in.at("text_tokens"), in.at("word_mask"), in.at("image_tokens"), 4, 5, 10), 1e-8)
        << C;
    const auto s = kit::evaluate(*build("local", "{units: sentences, t1: 2, t2: 3, t3: 7}"), in);
    EXPECT_NEAR(s.total, naive_gloria(in.at("sentence_embed"), in.at("sentence_mask"), in.at("image_tokens"), 2, 3, 7),
                1e-8)
        << C;
  }
}

TEST(LocalLoss, ChunkedBackwardEqualsPlainAutograd) {
  // Large enough that the checkpointed scores split the reports into several chunks (T·I·L·max(N,D)
  // > 2^24); D = 64 < 196 patches forms each attended context, D = 640 > 64 patches takes the Gram
  // path. Reports of 9..L real words.
  struct Shape {
    int64_t T, L, N, D;
  };
  for (const Shape sh : {Shape{40, 64, 196, 64}, Shape{32, 32, 64, 640}}) {
    const int64_t T = sh.T, L = sh.L, D = sh.D;
    torch::manual_seed(42);
    const at::Tensor words = torch::randn({T, L, D}, torch::kDouble).requires_grad_(true);
    const at::Tensor patches = torch::randn({T, sh.N, D}, torch::kDouble).requires_grad_(true);
    const at::Tensor lengths = torch::randint(9, L + 1, {T}, torch::kLong);
    const at::Tensor mask = (torch::arange(L).unsqueeze(0) < lengths.unsqueeze(1)).to(torch::kDouble);
    const at::Tensor weights = torch::randn({T, T}, torch::kDouble);
    losses::fn::set_checkpoint_threshold(1);  // force the checkpointed path
    (losses::fn::gloria_scores(words, mask, patches, 4, 5, false) * weights).sum().backward();
    losses::fn::set_checkpoint_threshold(int64_t{1} << 28);
    const at::Tensor gw = words.grad().clone(), gp = patches.grad().clone();
    words.mutable_grad().zero_();
    patches.mutable_grad().zero_();
    // Plain autograd through the written-out formula, report by report.
    std::vector<at::Tensor> rows;
    for (int64_t r = 0; r < T; ++r) {
      const at::Tensor w = words[r].narrow(0, 0, lengths[r].item<int64_t>());
      const at::Tensor s = torch::matmul(patches, w.t());                        // [I,N,n]
      const at::Tensor attn = torch::softmax(torch::softmax(s, 2) * 4, 1);       // [I,N,n]
      const at::Tensor ctx = torch::matmul(attn.transpose(1, 2), patches);       // [I,n,D]
      const at::Tensor cos = (ctx * w).sum(2) / (ctx.norm(2, 2) * w.norm(2, 1)).clamp_min(1e-8);
      rows.push_back((cos * 5).exp().sum(1).log());
    }
    (torch::stack(rows) * weights).sum().backward();
    EXPECT_TRUE(torch::allclose(gw, words.grad(), 1e-9, 1e-10)) << D;
    EXPECT_TRUE(torch::allclose(gp, patches.grad(), 1e-9, 1e-10)) << D;
    // And the plain (not checkpointed) path gives the same gradients.
    const at::Tensor gw2 = words.grad().clone(), gp2 = patches.grad().clone();
    words.mutable_grad().zero_();
    patches.mutable_grad().zero_();
    (losses::fn::gloria_scores(words, mask, patches, 4, 5, false) * weights).sum().backward();
    EXPECT_TRUE(torch::allclose(gw2, words.grad(), 1e-9, 1e-10)) << D;
    EXPECT_TRUE(torch::allclose(gp2, patches.grad(), 1e-9, 1e-10)) << D;
  }
}

TEST(LocalLoss, FilipMatchesTokenWiseMaximaWrittenOut) {
  const auto in = inputs(4, 5, 3, 43);
  const auto e = kit::evaluate(*build("local", "{form: filip, temperature: 0.5}"), in);
  EXPECT_NEAR(e.total, naive_filip(in.at("text_tokens"), in.at("word_mask"), in.at("image_tokens"), 2.0), 1e-9);
}

TEST(LocalLoss, MultiLevelIsTheWeightedSumOfItsLevels) {
  const auto in = inputs(4, 4, 3, 44);
  const auto m = kit::evaluate(
      *build("multi_level", "{global_weight: 0.5, sentence_weight: 2, word_weight: 1, begin_token: false}"), in);
  const double word = kit::evaluate(*build("local", "{}"), in).total;
  const double sentence = kit::evaluate(*build("local", "{units: sentences}"), in).total;
  // Global: cosine × 10, cross-entropy both ways, summed (AFLoc's global_loss).
  const at::Tensor cos = in.at("image_embed").matmul(in.at("text_embed").t()) * 10;
  std::vector<std::vector<double>> a(4, std::vector<double>(4)), b(4, std::vector<double>(4));
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      a[i][j] = cos[i][j].item<double>();
      b[j][i] = a[i][j];
    }
  const double global = ce_rows(a) + ce_rows(b);
  EXPECT_NEAR(m.total, 0.5 * global + 2 * sentence + word, 1e-8);
  EXPECT_NEAR(m.terms.at("global"), global, 1e-8);
}

TEST(LocalLoss, MultiLevelUnitsBeginWithTheReportsBeginTokenAsAflocSlicesThem) {
  // AFLoc's local_loss takes words_emb[:, :cap_len], cap_len = real words + 1: the begin token and
  // the words, not the end token; its sentence units are the begin token, then the sentences.
  const int64_t B = 4, L = 6;
  auto in = inputs(B, L, 3, 49);
  at::Tensor model_mask = torch::zeros({B, L}, torch::kDouble), afloc_mask = torch::zeros({B, L}, torch::kDouble);
  for (int64_t i = 0; i < B; ++i) {
    const int64_t real = 3 + i % 3;  // begin, words, end
    model_mask[i].narrow(0, 1, real - 2).fill_(1);  // Encoded.word_mask: both specials left out
    afloc_mask[i].narrow(0, 0, real - 1).fill_(1);
  }
  in["word_mask"] = model_mask;
  const at::Tensor& text = in.at("text_tokens");
  const double words = kit::evaluate(*build("multi_level", "{global_weight: 0, sentence_weight: 0}"), in).total;
  EXPECT_NEAR(words, naive_gloria(text, afloc_mask, in.at("image_tokens"), 4, 5, 10), 1e-8);
  const at::Tensor units = torch::cat({text.narrow(1, 0, 1), in.at("sentence_embed")}, 1);
  const at::Tensor unit_mask = torch::cat({torch::ones({B, 1}, torch::kDouble), in.at("sentence_mask")}, 1);
  const double sentences = kit::evaluate(*build("multi_level", "{global_weight: 0, word_weight: 0}"), in).total;
  EXPECT_NEAR(sentences, naive_gloria(units, unit_mask, in.at("image_tokens"), 4, 5, 10), 1e-8);
  // Without the begin token, the model's words and the sentences alone.
  EXPECT_NEAR(kit::evaluate(*build("multi_level", "{global_weight: 0, sentence_weight: 0, begin_token: false}"), in).total,
              naive_gloria(text.narrow(1, 1, L - 1), model_mask.narrow(1, 1, L - 1), in.at("image_tokens"), 4, 5, 10),
              1e-8);

  // A word stage of its own (Encoded.word_image_tokens): the words align with it, the sentences do not.
  in["word_image_tokens"] = torch::randn({B, 10, 3}, torch::kDouble);
  EXPECT_NEAR(kit::evaluate(*build("multi_level", "{global_weight: 0, sentence_weight: 0}"), in).total,
              naive_gloria(text, afloc_mask, in.at("word_image_tokens"), 4, 5, 10), 1e-8);
  EXPECT_NEAR(kit::evaluate(*build("multi_level", "{global_weight: 0, word_weight: 0}"), in).total, sentences, 1e-12);
  EXPECT_NEAR(kit::evaluate(*build("local", "{}"), in).total,
              naive_gloria(text.narrow(1, 1, L - 1), model_mask.narrow(1, 1, L - 1), in.at("word_image_tokens"), 4, 5, 10),
              1e-8);
  in["word_image_tokens"] = torch::randn({B, 10, 5}, torch::kDouble);
  EXPECT_ERROR_CONTAINS(kit::evaluate(*build("local", "{}"), in),
                        "loss local: Encoded.text_tokens [4, 6, 3] and Encoded.word_image_tokens [4, 10, 5] must be");
}

TEST(LocalLoss, PassesTheKitsChecks) {
  for (const auto& [name, yaml] : std::vector<std::pair<std::string, std::string>>{
           {"local", "{}"}, {"local", "{aggregate: mean, rows: full}"}, {"local", "{form: filip}"}, {"multi_level", "{}"}}) {
    auto loss = build(name, yaml);
    const auto in = inputs(4, 4, 3, 45);
    kit::GradCheckOptions o;
    o.atol = 1e-5;  // FILIP's maxima are only piecewise smooth
    const auto g = kit::gradient_check(*loss, in, o);
    EXPECT_TRUE(g) << name << yaml << g.message;
    const auto p = kit::permutation_invariance(*loss, in, 9);
    EXPECT_TRUE(p) << name << yaml << p.message;
  }
}

TEST(LocalLoss, ReturnsAttentionMapsForLocalization) {
  const auto in = inputs(3, 4, 3, 46);
  auto loss = build("local", "{}");
  const auto [encoded, batch] = kit::bind_inputs(in);
  const auto out = loss->forward(encoded, batch, {});
  const at::Tensor attn = out.extras.at("attention");
  ASSERT_EQ(attn.sizes(), (std::vector<int64_t>{3, 4, 6}));
  EXPECT_TRUE(torch::allclose(attn.sum(2), torch::ones({3, 4}, torch::kDouble)));
}

TEST(LocalLoss, ExplainsMismatchedTokens) {
  auto in = inputs(3, 4, 3, 47);
  in["text_tokens"] = torch::randn({3, 4, 5}, torch::kDouble);
  EXPECT_ERROR_CONTAINS(kit::evaluate(*build("local", "{}"), in),
                        "loss local: Encoded.text_tokens [3, 4, 5] and Encoded.image_tokens [3, 6, 3] must be");
  in.erase("word_mask");
  EXPECT_ERROR_CONTAINS(kit::evaluate(*build("local", "{}"), in), "loss local: needs Encoded.word_mask");
}

TEST(LocalLoss, TwoRanksEqualOneRank) {
  kit::RankOptions o;
  o.child_args = kit::gtest_rerun_args();
  const auto r = kit::rank_equivalence([] { return build("multi_level", "{}"); }, inputs(4, 4, 3, 48), o);
  EXPECT_TRUE(r) << r.message;
}
