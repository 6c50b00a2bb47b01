// ROC curves (their area is the AUROC) and PNG charts that decode to what was drawn.
#include "medvlp/eval/plot.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../testing_util.h"
#include "medvlp/eval/metrics.h"
#include "medvlp/eval/predictions.h"
#include "medvlp/io/image.h"

using namespace medvlp;

TEST(RocCurve, TrapezoidAreaIsTheAuroc) {
  torch::manual_seed(4);
  const at::Tensor s = torch::randint(0, 15, {200}, torch::kDouble);  // many ties
  const at::Tensor l = (torch::rand({200}, torch::kDouble) < 0.3).to(torch::kDouble);
  std::vector<double> sv(s.data_ptr<double>(), s.data_ptr<double>() + 200), lv(l.data_ptr<double>(), l.data_ptr<double>() + 200);
  const eval::BinaryScores b(sv, lv);
  const auto [fpr, tpr] = b.roc_curve();
  ASSERT_GE(fpr.size(), 3u);
  EXPECT_EQ(fpr.front(), 0.0);
  EXPECT_EQ(tpr.front(), 0.0);
  EXPECT_EQ(fpr.back(), 1.0);
  EXPECT_EQ(tpr.back(), 1.0);
  double area = 0;
  for (size_t i = 1; i < fpr.size(); ++i) {
    EXPECT_GE(fpr[i], fpr[i - 1]);
    EXPECT_GE(tpr[i], tpr[i - 1]);
    area += (fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1]) / 2;
  }
  EXPECT_NEAR(area, b.auroc(), 1e-12);
  EXPECT_TRUE(eval::BinaryScores({1, 2}, {1, 1}).roc_curve().first.empty());
}

TEST(Chart, WritesAPngThatDecodesWithTheCurvesDrawn) {
  testing_util::TempDir dir;
  eval::Predictions p;
  p.findings = {"a", "b"};
  p.ids = {"1", "2", "3", "4"};
  p.patient_ids = p.ids;
  p.scores = {{0.1, 0.2, 0.3, 0.4}, {0.4, 0.3, 0.2, 0.1}};
  p.labels = {{0, 0, 1, 1}, {0, 1, 0, 1}};
  if (!eval::charts_available()) {
    EXPECT_ERROR_CONTAINS(eval::write_roc_chart(dir.path() + "/roc.png", p, "test"), "built without OpenCV");
    return;
  }
  eval::write_roc_chart(dir.path() + "/roc.png", p, "test");
  eval::Predictions none = p;
  none.labels = {{1, 1, 1, 1}, {0, 0, 0, 0}};  // no finding with both classes: axes only
  eval::write_roc_chart(dir.path() + "/empty.png", none, "test");
  const at::Tensor img = io::read_image(dir.path() + "/roc.png");  // grey [1,H,W] in [0,1]
  const at::Tensor axes = io::read_image(dir.path() + "/empty.png");
  ASSERT_EQ(img.dim(), 3);
  EXPECT_EQ(img.size(1), 700);
  EXPECT_EQ(img.size(2), 900);
  // Mostly white; the two curves (and their legend) add ink to the bare axes.
  EXPECT_GT(img.mean().item<double>(), 0.85);
  const int64_t ink = (img < 0.8).sum().item<int64_t>(), bare = (axes < 0.8).sum().item<int64_t>();
  EXPECT_GT(ink, bare + 1000) << ink << " vs " << bare;
  eval::ChartOptions tiny;
  tiny.width = 10;
  EXPECT_ERROR_CONTAINS(eval::write_line_chart(dir.path() + "/x.png", {}, tiny), "x.png: a chart needs at least 200x150 pixels");
}
