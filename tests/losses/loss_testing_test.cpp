// The testing kit itself: each check must fail on a loss that breaks its property.
#include "medvlp/testing/loss_testing.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../testing_util.h"
#include "loss_inputs.h"
#include "medvlp/losses/clip_loss.h"
#include "medvlp/testing/gtest.h"

using namespace medvlp;
namespace kit = medvlp::testing;  // "testing" alone would clash with GoogleTest's namespace

namespace {

// A loss with a wrong gradient: the text side is detached although the value depends on it.
class DetachedText : public losses::LossImpl {
 public:
  losses::LossOutput forward(const models::Encoded& e, const data::Batch&, const losses::LossContext&) override {
    return {(e.image_embed * e.text_embed.detach()).sum() + e.text_embed.pow(2).sum().detach(), {}, {}};
  }
  std::string name() const override { return "detached_text"; }
};

// Depends on which sample comes first.
class FirstRow : public losses::LossImpl {
 public:
  losses::LossOutput forward(const models::Encoded& e, const data::Batch&, const losses::LossContext&) override {
    return {e.image_embed[0].sum() + (e.image_embed * e.text_embed).sum(), {}, {}};
  }
  std::string name() const override { return "first_row"; }
};

// CLIP that forgets to gather: on two ranks each sees only half of the negatives.
class UngatheredClip : public losses::LossImpl {
 public:
  losses::LossOutput forward(const models::Encoded& e, const data::Batch& b, const losses::LossContext&) override {
    return clip_->forward(e, b, losses::LossContext{});
  }
  std::string name() const override { return "ungathered_clip"; }

 private:
  std::shared_ptr<losses::ClipLossImpl> clip_ = std::make_shared<losses::ClipLossImpl>(losses::ClipLossOptions{});
};

}  // namespace

TEST(LossTestingKit, GradientCheckCatchesAWrongGradient) {
  DetachedText loss;
  const auto r = kit::gradient_check(loss, test_inputs::global(4, 3, 2, 61));
  ASSERT_FALSE(r);
  EXPECT_NE(r.message.find("loss detached_text gradient check"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("d total / d text_embed["), std::string::npos) << r.message;
  EXPECT_EQ(r.message.find("d total / d image_embed["), std::string::npos) << r.message;
}

TEST(LossTestingKit, PermutationCheckCatchesOrderDependence) {
  FirstRow loss;
  const auto r = kit::permutation_invariance(loss, test_inputs::global(5, 3, 2, 62), 1);
  ASSERT_FALSE(r);
  EXPECT_NE(r.message.find("not invariant to permuting the batch"), std::string::npos) << r.message;
  const auto s = kit::swap_invariance(loss, test_inputs::global(5, 3, 2, 62), {{"image_embed", "text_embed"}});
  EXPECT_FALSE(s);
}

TEST(LossTestingKit, RankHarnessCatchesAMissingGather) {
  kit::RankOptions o;
  o.child_args = kit::gtest_rerun_args();
  const auto r = kit::rank_equivalence([] { return std::make_shared<UngatheredClip>(); },
                                           test_inputs::global(8, 4, 2, 63), o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.message.find("2 ranks differ from one rank"), std::string::npos) << r.message;
}

TEST(LossTestingKit, RankHarnessReportsAFailingRank) {
  kit::RankOptions o;
  o.child_args = kit::gtest_rerun_args();
  auto in = test_inputs::global(4, 4, 2, 64);
  const auto r = kit::rank_equivalence(
      [] { return losses::loss_registry().create("false_negative", core::Config::parse("{}", "f.yaml").root()); },
      [&] {
        in.erase("report_hash");
        return in;
      }(),
      o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.message.find("rank 0 failed: loss false_negative: needs Batch.report_hash"), std::string::npos) << r.message;
}

TEST(LossTestingKit, ReferenceFixturesRoundTripAndCatchChanges) {
  testing_util::TempDir dir;
  const std::string path = dir.path() + "/clip_reference.safetensors";
  const auto in = test_inputs::global(6, 4, 2, 65);
  losses::ClipLossOptions o;
  o.temperature = 0.1;
  losses::ClipLossImpl clip(o);
  clip.to(torch::kDouble);
  kit::save_evaluation(path, kit::to_double(in), kit::evaluate(clip, kit::to_double(in)), true);
  const auto same = kit::compare_with_reference(clip, path);
  EXPECT_TRUE(same) << same.message;
  o.temperature = 0.11;
  losses::ClipLossImpl changed(o);
  const auto diff = kit::compare_with_reference(changed, path);
  ASSERT_FALSE(diff);
  EXPECT_NE(diff.message.find("differs from " + path), std::string::npos) << diff.message;
}

TEST(LossTestingKit, UnknownInputNamesAreListed) {
  EXPECT_ERROR_CONTAINS(kit::bind_inputs({{"image_embeds", torch::zeros({2, 2})}}),
                        "input \"image_embeds\" is not a loss input; known: image_embed, text_embed");
  EXPECT_ERROR_CONTAINS(kit::bind_inputs({{"image_embed", torch::zeros({2, 2})}, {"text_embed", torch::zeros({3, 2})}}),
                        "input text_embed has 3 rows but image_embed has 2");
}
