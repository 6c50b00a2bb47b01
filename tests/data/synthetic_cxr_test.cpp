#include "medvlp/data/synthetic_cxr.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <set>

#include "../testing_util.h"
#include "medvlp/data/manifest.h"
#include "medvlp/io/dicom.h"
#include "medvlp/io/image.h"

using namespace medvlp::data;

namespace {
SyntheticCxrOptions small(int64_t size = 48) {
  SyntheticCxrOptions o;
  o.image_size = size;
  return o;
}
}  // namespace

TEST(SyntheticCxr, IsDeterministicInSeedSplitAndIndex) {
  const CxrCase a = render_cxr_case(small(), Split::kTrain, 5);
  const CxrCase b = render_cxr_case(small(), Split::kTrain, 5);
  EXPECT_TRUE(torch::equal(a.image, b.image));
  EXPECT_EQ(a.report(), b.report());
  SyntheticCxrOptions other = small();
  other.seed = 1;
  EXPECT_FALSE(torch::equal(a.image, render_cxr_case(other, Split::kTrain, 5).image));
  EXPECT_FALSE(torch::equal(a.image, render_cxr_case(small(), Split::kTest, 5).image));
}

TEST(SyntheticCxr, PrevalencesAndNegationsLookLikeRealReports) {
  const int n = 1500;
  std::vector<double> positives(8, 0.0);
  int with_negation = 0, negation_only_mentions = 0;
  for (int i = 0; i < n; ++i) {
    const CxrCase c = render_cxr_case(small(32), Split::kTrain, i);
    bool negates = false;
    for (int k = 0; k < 8; ++k) {
      const float truth = c.truth[k].item<float>();
      const float label = c.report_labels[k].item<float>();
      positives[static_cast<size_t>(k)] += truth;
      // The report never contradicts the image: a negated finding is absent, a stated one present.
      if (label == 0.f) {
        EXPECT_EQ(truth, 0.f) << "case " << i << " finding " << k << ": " << c.report();
      }
      if (label == 1.f) {
        EXPECT_EQ(truth, 1.f) << "case " << i << " finding " << k << ": " << c.report();
      }
      negates |= label == 0.f;
    }
    with_negation += negates;
    negation_only_mentions += negates && c.truth.sum().item<float>() == 0.f;
  }
  int under_20 = 0;
  for (double p : positives) {
    EXPECT_GT(p / n, 0.03);
    EXPECT_LT(p / n, 0.25);
    under_20 += p / n < 0.2;
  }
  EXPECT_GE(under_20, 7);
  EXPECT_GE(static_cast<double>(with_negation) / n, 0.3);
  EXPECT_GE(static_cast<double>(negation_only_mentions) / n, 0.2);
}

TEST(SyntheticCxr, EveryPresentFindingHasOneBoxInsideTheImage) {
  for (int i = 0; i < 200; ++i) {
    const CxrCase c = render_cxr_case(small(64), Split::kVal, i);
    for (const Box& b : c.boxes) {
      EXPECT_EQ(c.truth[b.finding].item<float>(), 1.f);
      EXPECT_GE(b.x0, 0.f);
      EXPECT_LE(b.x1, 64.f);
      EXPECT_LT(b.x0, b.x1);
      EXPECT_LT(b.y0, b.y1);
    }
    int present = static_cast<int>(c.truth.sum().item<float>());
    EXPECT_EQ(static_cast<int>(c.boxes.size()), present) << c.report();
  }
}

TEST(SyntheticCxr, AnatomyMasksCoverLungsHeartAndBones) {
  const CxrCase c = render_cxr_case(small(64), Split::kTrain, 3);
  ASSERT_EQ(c.anatomy_masks.size(0), static_cast<int64_t>(cxr_anatomies().size()));
  for (int64_t a = 0; a < c.anatomy_masks.size(0); ++a)
    EXPECT_GT(c.anatomy_masks[a].sum().item<float>(), 5.f) << cxr_anatomies()[static_cast<size_t>(a)];
  // Lungs are darker than the heart: the intensity model follows attenuation.
  const auto mean_in = [&](int a) { return (c.image[0] * c.anatomy_masks[a]).sum().item<float>() / c.anatomy_masks[a].sum().item<float>(); };
  EXPECT_LT(mean_in(0), mean_in(4));
}

TEST(SyntheticCxr, ReportsUseSectionsHedgesAndSynonyms) {
  std::set<std::string> seen;
  bool hedge = false;
  for (int i = 0; i < 400; ++i) {
    const std::string r = render_cxr_case(small(32), Split::kTrain, i).report();
    ASSERT_EQ(r.rfind("FINDINGS:", 0), 0u);
    ASSERT_NE(r.find("IMPRESSION:"), std::string::npos);
    hedge |= r.find("Possible") != std::string::npos || r.find("cannot be excluded") != std::string::npos ||
             r.find("may represent") != std::string::npos;
    seen.insert(r);
  }
  EXPECT_TRUE(hedge);
  EXPECT_GT(seen.size(), 300u);
}

TEST(SyntheticCxr, WritesPngAndManifestThatReadBack) {
  if (!medvlp::io::image_codecs_available()) MEDVLP_REFERENCE_MISSING("built without OpenCV");
  medvlp::testing_util::TempDir dir;
  SyntheticCxrOptions o = small(40);
  o.train_size = 5;
  o.test_size = 3;
  EXPECT_EQ(write_synthetic_cxr(o, Split::kTrain, dir.path()), 5);
  EXPECT_EQ(write_synthetic_cxr(o, Split::kTest, dir.path()), 3);
  ManifestDataset train(dir.path() + "/manifest.jsonl", "train", cxr_findings());
  ManifestDataset test(dir.path() + "/manifest.jsonl", "test", cxr_findings());
  ASSERT_EQ(train.size(), 5);
  ASSERT_EQ(test.size(), 3);
  const CxrCase c = render_cxr_case(o, Split::kTrain, 2);
  const Sample s = train.get(2, 0);
  EXPECT_EQ(train.patient_id(2), s.patient_id);  // read from the manifest line, without the image
  EXPECT_EQ(SyntheticCxrDataset(o, Split::kTrain).patient_id(2), s.patient_id);
  EXPECT_EQ(s.report, c.report());
  EXPECT_LE((s.image - c.image).abs().max().item<float>(), 0.5f / 255.f + 1e-6f);
  EXPECT_TRUE(torch::equal(s.labels, c.report_labels));
  EXPECT_TRUE(torch::equal(s.truth, c.truth));
}

TEST(Manifest, MissingImagesAreSkippedAndCountedOrFatal) {
  if (!medvlp::io::image_codecs_available()) MEDVLP_REFERENCE_MISSING("built without OpenCV");
  medvlp::testing_util::TempDir dir;
  SyntheticCxrOptions o = small(32);
  o.train_size = 3;
  write_synthetic_cxr(o, Split::kTrain, dir.path());
  std::remove((dir.path() + "/images/train_1.png").c_str());
  ManifestDataset skipping(dir.path() + "/manifest.jsonl", "train", cxr_findings(), MissingPolicy::kSkip);
  EXPECT_EQ(skipping.size(), 2);
  EXPECT_EQ(skipping.skipped(), 1);
  EXPECT_ERROR_CONTAINS(ManifestDataset(dir.path() + "/manifest.jsonl", "train", cxr_findings(), MissingPolicy::kFail),
                        "manifest.jsonl:2: file " + dir.path() + "/images/train_1.png does not exist");
}

TEST(Manifest, ReadsDicomImagesThroughTheirVoiWindow) {
  medvlp::testing_util::TempDir dir;
  medvlp::io::DicomWriteSpec spec;
  spec.values = torch::linspace(0, 4095, 40 * 30, torch::kFloat64).view({40, 30});
  spec.modality = "DX";
  spec.window_center = 2000;
  spec.window_width = 1000;
  medvlp::io::write_dicom(dir.path() + "/cxr.dcm", spec);
  {
    std::ofstream(dir.path() + "/broken.dcm") << std::string(128, '\0') << "DICM" << "truncated";
    std::ofstream m(dir.path() + "/manifest.jsonl");
    m << R"({"id": "a", "image": "cxr.dcm", "report": "No effusion."})" << "\n";
    m << R"({"id": "b", "image": "broken.dcm", "report": "No effusion."})" << "\n";
  }
  ManifestDataset d(dir.path() + "/manifest.jsonl", "train", cxr_findings());
  const auto s = d.get(0, 0);
  ASSERT_EQ(s.image.sizes(), (std::vector<int64_t>{1, 40, 30}));
  const at::Tensor want = medvlp::io::to_display(medvlp::io::read_dicom(dir.path() + "/cxr.dcm"));
  EXPECT_TRUE(torch::equal(s.image, want));
  EXPECT_EQ(s.image.min().item<float>(), 0.0f);  // outside the window
  EXPECT_EQ(s.image.max().item<float>(), 1.0f);
  // Skipping: the unreadable entry is counted and replaced by the next readable one.
  EXPECT_EQ(d.get(1, 0).id, "a");
  EXPECT_EQ(d.skipped(), 1);
  ManifestDataset strict(dir.path() + "/manifest.jsonl", "train", cxr_findings(), MissingPolicy::kFail);
  EXPECT_ERROR_CONTAINS(strict.get(1, 0), "broken.dcm: ");
}

TEST(Manifest, CorruptImageAndBadLinesGiveClearErrors) {
  if (!medvlp::io::image_codecs_available()) MEDVLP_REFERENCE_MISSING("built without OpenCV");
  medvlp::testing_util::TempDir dir;
  {
    std::ofstream(dir.path() + "/bad.png") << "not a png";
    std::ofstream m(dir.path() + "/manifest.jsonl");
    m << R"({"image": "bad.png", "report": "No effusion."})" << "\n";
  }
  ManifestDataset d(dir.path() + "/manifest.jsonl", "train", cxr_findings(), MissingPolicy::kFail);
  EXPECT_ERROR_CONTAINS(d.get(0, 0), "bad.png: cannot read image");
  ManifestDataset skipping(dir.path() + "/manifest.jsonl", "train", cxr_findings());
  EXPECT_ERROR_CONTAINS(skipping.get(0, 0), "no entry of this split could be read (last error: ");
  {
    std::ofstream m(dir.path() + "/broken.jsonl");
    m << "{\"image\": \"bad.png\"\n";
  }
  EXPECT_ERROR_CONTAINS(ManifestDataset(dir.path() + "/broken.jsonl", "train", cxr_findings()), "broken.jsonl:1: invalid JSON");
}

// A mistyped field in a manifest line is named with its line (it used to escape as a JSON library
// exception, an "internal error" in the CLI).
TEST(ManifestLine, MistypedFieldsAreNamed) {
  using medvlp::data::parse_manifest_line;
  const std::vector<std::string> f = {"pneumothorax", "effusion"};
  const auto parse = [&](const std::string& line) { return parse_manifest_line(line, "m.jsonl:7", "/d", "train", f, true); };
  auto e = parse(R"({"id": 17, "image": "a.png", "report": "r", "labels": {"effusion": 1}, "mask": "m.nii.gz",
                    "boxes": [{"finding": "pneumothorax", "box": [1, 2, 3, 4]}, {"finding": "other", "box": [0, 0, 1, 1]}]})");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->id, "17");
  EXPECT_EQ(e->patient_id, "17");
  EXPECT_EQ(e->image_path, "/d/a.png");
  EXPECT_EQ(e->mask_path, "/d/m.nii.gz");
  EXPECT_EQ(e->labels, (std::vector<float>{-1.f, 1.f}));
  ASSERT_EQ(e->boxes.size(), 1u);
  EXPECT_EQ(e->boxes[0].x1, 3.f);
  EXPECT_FALSE(parse(R"({"image": "a.png", "report": "r", "split": "test"})").has_value());
  EXPECT_FALSE(parse("  \r").has_value());
  EXPECT_ERROR_CONTAINS(parse(R"({"image": "a.png", "report": "r", "labels": {"effusion": "yes"}})"),
                        "m.jsonl:7: labels.effusion must be a number, got string");
  EXPECT_ERROR_CONTAINS(parse(R"({"image": "a.png", "report": "r", "split": 1})"), "m.jsonl:7: \"split\" must be a string, got number");
  EXPECT_ERROR_CONTAINS(parse(R"({"image": "a.png", "report": "r", "boxes": [{"finding": 3, "box": [1, 2, 3, 4]}]})"),
                        "m.jsonl:7: each box is");
  EXPECT_ERROR_CONTAINS(parse(R"({"image": "a.png", "report": "r", "boxes": [{"finding": "effusion", "box": [1, 2, "3", 4]}]})"),
                        "m.jsonl:7: box[2] must be a number, got string");
  EXPECT_ERROR_CONTAINS(parse(R"({"image": "a.png", "report": "r", "id": [1]})"), "m.jsonl:7: \"id\" must be a string, got array");
  EXPECT_ERROR_CONTAINS(parse(R"({"image": "a.png", "report": 5})"), "m.jsonl:7: expected an object with string fields");
}
