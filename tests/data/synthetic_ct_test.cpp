// CT phantoms: anatomy where RAS+ says it is, findings drawn where reports say, NIfTI round trips.
#include "medvlp/data/synthetic_ct.h"

#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "../testing_util.h"
#include "medvlp/core/config.h"
#include "medvlp/data/build.h"
#include "medvlp/data/manifest.h"
#include "medvlp/io/files.h"
#include "medvlp/io/nifti.h"
#include "medvlp/text/report_parser.h"

#ifndef MEDVLP_SOURCE_DIR
#error "tests need MEDVLP_SOURCE_DIR"
#endif

namespace medvlp::data {
namespace {

int64_t organ(const std::string& name) {
  const auto& a = ct_anatomies();
  return std::find(a.begin(), a.end(), name) - a.begin();
}

// Mean voxel index of a mask along axis `axis` (0 = D, 1 = H, 2 = W).
double mean_index(const at::Tensor& mask, int64_t axis) {
  const at::Tensor idx = mask.nonzero().to(torch::kFloat64);
  return idx.select(1, axis).mean().item<double>();
}

TEST(SyntheticCt, OrgansSitWhereRasPutsThemWithTheirDensities) {
  SyntheticCtOptions o;
  o.train_size = 3;
  const CtCase c = render_ct_case(o, Split::kTrain, 1);
  ASSERT_EQ(c.hu.sizes(), (std::vector<int64_t>{32, 64, 64}));
  ASSERT_EQ(c.anatomy_masks.sizes(), (std::vector<int64_t>{9, 32, 64, 64}));
  EXPECT_LE(c.anatomy_masks.sum(0).max().item<float>(), 1.f) << "organ masks overlap";
  const at::Tensor m = c.anatomy_masks > 0.5;
  // W runs left -> right, H posterior -> anterior, D inferior -> superior.
  EXPECT_GT(mean_index(m[organ("right lung")], 2), mean_index(m[organ("left lung")], 2));
  EXPECT_GT(mean_index(m[organ("liver")], 2), mean_index(m[organ("spleen")], 2));
  EXPECT_GT(mean_index(m[organ("heart")], 1), mean_index(m[organ("aorta")], 1));
  EXPECT_GT(mean_index(m[organ("right lung")], 0), mean_index(m[organ("liver")], 0));
  EXPECT_GT(mean_index(m[organ("liver")], 0), mean_index(m[organ("right kidney")], 0));
  auto median_hu = [&](const std::string& name) { return c.hu.masked_select(m[organ(name)]).median().item<float>(); };
  EXPECT_NEAR(median_hu("left lung"), -850, 40);
  EXPECT_NEAR(median_hu("liver"), 60, 15);
  EXPECT_NEAR(median_hu("heart"), 45, 15);
  EXPECT_GT(median_hu("bones"), 400);
  EXPECT_TRUE(render_ct_case(o, Split::kTrain, 1).hu.equal(c.hu)) << "not deterministic";
  EXPECT_FALSE(render_ct_case(o, Split::kTest, 1).hu.equal(c.hu)) << "splits share cases";
}

TEST(SyntheticCt, FindingsAreDrawnInTheReportedOrgans) {
  SyntheticCtOptions o;
  o.noise_hu = 0;  // exact densities
  double heart_with = 0, heart_without = 0;
  int n_with = 0, n_without = 0, checked_cysts = 0, checked_lesions = 0;
  for (int64_t i = 0; i < 40; ++i) {
    const CtCase c = render_ct_case(o, Split::kTrain, i);
    const at::Tensor m = c.anatomy_masks > 0.5;
    const std::string report = c.report();
    const double heart = m[organ("heart")].sum().item<double>();
    if (c.truth[3].item<float>() > 0) heart_with += heart, ++n_with;
    else heart_without += heart, ++n_without;
    // A kidney cyst (2 HU) lies in the kidney the report names; a normal kidney is 35 HU throughout.
    for (const std::string side : {"right", "left"}) {
      const bool named = report.find("cyst in the " + side + " kidney") != std::string::npos;
      const int64_t cyst = (c.hu.masked_select(m[organ(side + " kidney")]) < 20).sum().item<int64_t>();
      EXPECT_EQ(named, cyst > 0) << "case " << i << " " << side << ": " << report;
      checked_cysts += named;
    }
    const bool lesion = c.truth[5].item<float>() > 0;
    EXPECT_EQ(lesion, (c.hu.masked_select(m[organ("liver")]) < 30).sum().item<int64_t>() > 0) << report;
    checked_lesions += lesion;
    // A nodule or consolidation makes soft tissue inside the named lung; a clear lung has none
    // above the effusion level.
    for (const std::string side : {"right", "left"}) {
      const bool clear = report.find("The " + side + " lung is clear.") != std::string::npos;
      const bool effusion = report.find(side + " pleural effusion") != std::string::npos ||
                            report.find("bilateral pleural effusions") != std::string::npos;
      if (effusion) continue;
      const int64_t dense = (c.hu.masked_select(m[organ(side + " lung")]) > -500).sum().item<int64_t>();
      EXPECT_EQ(clear, dense == 0) << "case " << i << " " << side << ": " << report;
    }
  }
  ASSERT_GT(n_with, 0);
  ASSERT_GT(checked_cysts, 0);
  ASSERT_GT(checked_lesions, 0);
  EXPECT_GT(heart_with / n_with, 1.8 * heart_without / n_without) << "cardiomegaly should enlarge the heart ~1.3^3";
}

// The lesion masks mark where each present finding was painted, checked against the densities the
// renderer writes (noise off): a nodule is 25 HU in a lung, a hepatic lesion 8 HU, a cyst 2 HU, an
// enlarged organ is that organ. The training split's samples carry none; the test split's do.
TEST(SyntheticCt, LesionMasksMarkThePaintedFindings) {
  SyntheticCtOptions o;
  o.noise_hu = 0;
  const auto& names = ct_findings();
  std::map<std::string, int> seen;
  for (int64_t i = 0; i < 40; ++i) {
    const CtCase c = render_ct_case(o, Split::kTest, i);
    ASSERT_EQ(c.lesion_masks.sizes(), (std::vector<int64_t>{8, 32, 64, 64}));
    const std::string report = c.report();
    for (size_t k = 0; k < names.size(); ++k) {
      const at::Tensor m = c.lesion_masks[static_cast<int64_t>(k)] > 0.5;
      const bool present = c.truth[static_cast<int64_t>(k)].item<float>() > 0.5f;
      EXPECT_EQ(present, m.any().item<bool>()) << names[k] << " in case " << i << ": " << report;
      if (!present) continue;
      ++seen[names[k]];
      const at::Tensor hu = c.hu.masked_select(m);
      const auto within = [&](double value) { return (hu - value).abs().lt(0.5).to(torch::kFloat).mean().item<double>(); };
      if (names[k] == "hepatic lesion") {
        EXPECT_GT(within(8), 0.95) << report;
      }
      if (names[k] == "kidney cyst") {
        EXPECT_GT(within(2), 0.95) << report;
      }
      // Effusion (12 HU) may cover part of a nodule or consolidation in the same lung.
      if (names[k] == "lung nodule") {
        EXPECT_GT(within(25) + within(12), 0.95) << report;
      }
      if (names[k] == "consolidation") {
        EXPECT_GT(within(-30) + within(12) + within(25), 0.95) << report;
      }
      if (names[k] == "pleural effusion") {
        EXPECT_GT(within(12), 0.5) << report;
      }
      if (names[k] == "cardiomegaly") {
        EXPECT_TRUE(m.equal(c.anatomy_masks[organ("heart")] > 0.5));
      }
      if (names[k] == "splenomegaly") {
        EXPECT_TRUE(m.equal(c.anatomy_masks[organ("spleen")] > 0.5));
      }
      if (names[k] == "aortic aneurysm") {
        EXPECT_TRUE(m.equal(c.anatomy_masks[organ("aorta")] > 0.5));
      }
    }
  }
  EXPECT_EQ(seen.size(), names.size()) << "40 cases should show every finding";
  o.train_size = o.test_size = 2;
  EXPECT_FALSE(SyntheticCtDataset(o, Split::kTrain).get(0, 0).lesion_masks.defined());
  EXPECT_TRUE(SyntheticCtDataset(o, Split::kTest).get(0, 0).lesion_masks.defined());
}

TEST(SyntheticCt, ReportParserRecoversTheLabels) {
  const text::ReportParser parser(text::Lexicon::load(std::string(MEDVLP_SOURCE_DIR) + "/configs/lexicons/chest_ct.yaml"));
  SyntheticCtOptions o;
  int64_t decided = 0, total = 0;
  for (int64_t i = 0; i < 60; ++i) {
    const CtCase c = render_ct_case(o, Split::kVal, i);
    const auto labels = parser.parse(c.report()).labels(ct_findings());
    for (size_t k = 0; k < labels.size(); ++k) {
      const float truth = c.truth[static_cast<int64_t>(k)].item<float>();
      ++total;
      if (truth > 0) {
        EXPECT_EQ(labels[k], 1.f) << ct_findings()[k] << " in: " << c.report();
      }
      if (labels[k] >= 0) {
        ++decided;
        EXPECT_EQ(labels[k], truth) << ct_findings()[k] << " in: " << c.report();
      }
    }
  }
  EXPECT_GT(decided, total / 2) << "reports should state most absences too";
}

TEST(SyntheticCt, WritesNiftiAndManifestThatReadBackExactly) {
  testing_util::TempDir dir;
  SyntheticCtOptions o;
  o.size = {12, 24, 20};
  o.train_size = 3, o.val_size = 1, o.test_size = 1;
  EXPECT_EQ(write_synthetic_ct(o, Split::kTrain, dir.path()), 3);
  const io::Volume v = io::read_nifti(dir.path() + "/images/ct_train_2.nii.gz");
  EXPECT_EQ(io::axis_codes(v.affine), "RAS");
  const CtCase c = render_ct_case(o, Split::kTrain, 2);
  EXPECT_TRUE(v.data.equal(c.hu.round()));
  EXPECT_NEAR(v.spacing[0], 320.0 / 12, 1e-4);
  EXPECT_NEAR(v.spacing[2], 400.0 / 20, 1e-4);

  const core::Config config = core::Config::parse(
      "data: {name: manifest, manifest: " + dir.path() +
          "/manifest.jsonl, findings: [lung nodule, pleural effusion, consolidation, cardiomegaly, aortic aneurysm, "
          "hepatic lesion, kidney cyst, splenomegaly], anatomies: [right lung, left lung, heart, aorta, liver, spleen, "
          "right kidney, left kidney, bones], transforms: [{name: resample, spacing: 20}, {name: window, windows: [lung, "
          "abdomen]}, {name: crop_pad, size: [16, 16, 16]}]}",
      "test.yaml");
  const DatasetPtr ds = build_dataset(config.root().at("data"), "train");
  ASSERT_EQ(ds->size(), 3);
  const Sample direct = ManifestDataset(dir.path() + "/manifest.jsonl", "train",
                                        {ct_findings(), ct_anatomies(), MissingPolicy::kFail, true})
                            .get(2, 0);
  EXPECT_TRUE(direct.image[0].equal(c.hu.round()));
  EXPECT_TRUE(direct.anatomy_masks.equal(c.anatomy_masks));
  EXPECT_TRUE(direct.labels.equal(c.truth));
  EXPECT_EQ(direct.report, c.report());
  const Sample s = ds->get(2, 0);
  EXPECT_EQ(s.image.sizes(), (std::vector<int64_t>{2, 16, 16, 16}));
  EXPECT_EQ(s.anatomy_masks.sizes(), (std::vector<int64_t>{9, 16, 16, 16}));
  EXPECT_EQ(s.spacing, (std::vector<double>{20, 20, 20}));
}

// Lesion masks travel through the manifest ("lesions": {finding: NIfTI}) and follow the transforms
// as the anatomy masks do.
TEST(SyntheticCt, ManifestLesionMasksReadBackAndFollowTransforms) {
  testing_util::TempDir dir;
  SyntheticCtOptions o;
  o.size = {12, 24, 20};
  o.test_size = 6;
  EXPECT_EQ(write_synthetic_ct(o, Split::kTest, dir.path()), 6);
  const ManifestDataset direct(dir.path() + "/manifest.jsonl", "test", {ct_findings(), ct_anatomies(), MissingPolicy::kFail, true});
  const core::Config config = core::Config::parse(
      "data: {name: manifest, manifest: " + dir.path() +
          "/manifest.jsonl, findings: [lung nodule, pleural effusion, consolidation, cardiomegaly, aortic aneurysm, "
          "hepatic lesion, kidney cyst, splenomegaly], transforms: [{name: resample, spacing: 20}, "
          "{name: crop_pad, size: [16, 16, 16]}]}",
      "test.yaml");
  const DatasetPtr transformed = build_dataset(config.root().at("data"), "test");
  int64_t with_lesions = 0;
  for (int64_t i = 0; i < 6; ++i) {
    const CtCase c = render_ct_case(o, Split::kTest, i);
    const Sample s = direct.get(i, 0);
    ASSERT_TRUE(s.lesion_masks.defined());
    EXPECT_TRUE(s.lesion_masks.equal(c.lesion_masks)) << "case " << i;
    with_lesions += c.truth.sum().item<float>() > 0;
    const Sample t = transformed->get(i, 0);
    ASSERT_EQ(t.lesion_masks.sizes(), (std::vector<int64_t>{8, 16, 16, 16}));
    // Nearest-neighbour resampling keeps masks binary, and a finding's mask is empty after the
    // transforms only if it was before.
    EXPECT_TRUE(t.lesion_masks.eq(0).logical_or(t.lesion_masks.eq(1)).all().item<bool>());
    for (int64_t k = 0; k < 8; ++k)
      if (!c.lesion_masks[k].any().item<bool>()) {
        EXPECT_FALSE(t.lesion_masks[k].any().item<bool>()) << k;
      }
  }
  EXPECT_GT(with_lesions, 0);
  // A lesion mask of the wrong shape is refused, naming the file.
  std::ifstream in(dir.path() + "/manifest.jsonl");
  std::string line;
  std::getline(in, line);
  nlohmann::json j = nlohmann::json::parse(line);
  io::Volume small;
  small.data = torch::zeros({4, 4, 4});
  small.spacing = {1, 1, 1};
  small.affine = io::diagonal_affine(small.spacing);
  io::write_nifti(dir.path() + "/small.nii.gz", small, "int16");
  j["lesions"] = {{"lung nodule", "small.nii.gz"}};
  std::ofstream(dir.path() + "/bad.jsonl") << j.dump() << "\n";
  const ManifestDataset bad(dir.path() + "/bad.jsonl", "test", {ct_findings(), {}, MissingPolicy::kFail, true});
  EXPECT_ERROR_CONTAINS(bad.get(0, 0), "small.nii.gz: lesion mask of \"lung nodule\" has shape [4, 4, 4]");
}

TEST(SyntheticCt, ManifestSkipsOrFailsOnMissingAndCorruptVolumes) {
  testing_util::TempDir dir;
  SyntheticCtOptions o;
  o.size = {8, 16, 16};
  o.train_size = 4, o.val_size = 1, o.test_size = 1;
  write_synthetic_ct(o, Split::kTrain, dir.path());
  ASSERT_EQ(std::remove((dir.path() + "/masks/ct_train_0.nii.gz").c_str()), 0);
  {
    std::ofstream bad(dir.path() + "/images/ct_train_2.nii.gz", std::ios::binary | std::ios::trunc);
    bad << "not a volume";
  }
  ManifestDataset::Options skip{ct_findings(), ct_anatomies(), MissingPolicy::kSkip, true};
  const ManifestDataset ds(dir.path() + "/manifest.jsonl", "train", skip);
  EXPECT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.skipped(), 1);
  EXPECT_EQ(ds.get(1, 0).id, "ct_train_3") << "the corrupt entry is replaced by the next one";
  EXPECT_EQ(ds.skipped(), 2);
  ManifestDataset::Options fail = skip;
  fail.missing = MissingPolicy::kFail;
  EXPECT_ERROR_CONTAINS(ManifestDataset(dir.path() + "/manifest.jsonl", "train", fail), "ct_train_0.nii.gz does not exist");
}

TEST(ManifestVolumes, A4dNiftiBecomesChannelsOnRequest) {
  testing_util::TempDir dir;
  const std::string d = dir.path();
  // Two 3D volumes with an L-pointing first axis (reorientation flips it), joined by hand into one
  // 4D file: the 3D file's header with dim[0] = 4 and dim[4] = 2, then both voxel blocks.
  io::Volume a;
  a.data = torch::arange(24, torch::kFloat).reshape({2, 3, 4});
  a.spacing = {2, 1, 1};
  a.affine = io::diagonal_affine(a.spacing);
  a.affine[0][0] = -1;
  io::Volume b = a;
  b.data = a.data * 10 + 1;
  io::write_nifti(d + "/a.nii", a);
  io::write_nifti(d + "/b.nii", b);
  const std::string bytes_a = io::read_file(d + "/a.nii"), bytes_b = io::read_file(d + "/b.nii");
  float offset = 0;
  std::memcpy(&offset, bytes_a.data() + 108, 4);  // vox_offset
  const auto start = static_cast<size_t>(offset);
  std::string four = bytes_a.substr(0, start);
  const int16_t dims[2] = {4, 2};
  std::memcpy(&four[40], &dims[0], 2);  // dim[0]
  std::memcpy(&four[48], &dims[1], 2);  // dim[4]
  four += bytes_a.substr(start) + bytes_b.substr(start);
  io::write_file_atomic(d + "/four.nii", four);
  std::ofstream(d + "/m.jsonl") << R"({"id": "v", "image": "four.nii", "report": "r", "split": "train"})" << "\n";

  ManifestDataset::Options o{ct_findings(), {}, MissingPolicy::kFail, true};
  EXPECT_ERROR_CONTAINS(ManifestDataset(d + "/m.jsonl", "train", o).get(0, 0), "four.nii: expected a 3D volume");
  o.nifti_channels = true;
  const Sample s = ManifestDataset(d + "/m.jsonl", "train", o).get(0, 0);
  ASSERT_EQ(s.image.sizes(), (std::vector<int64_t>{2, 2, 3, 4}));
  EXPECT_TRUE(torch::equal(s.image[0], io::reorient_to_ras(a).data));
  EXPECT_TRUE(torch::equal(s.image[1], io::reorient_to_ras(b).data));
  EXPECT_FALSE(torch::equal(s.image[0], a.data)) << "the test's affine should make reorientation flip an axis";
}

TEST(ManifestVolumes, NonFiniteVoxelsAreRefusedOrZeroedByConfig) {
  testing_util::TempDir dir;
  const std::string d = dir.path();
  io::Volume v;
  v.data = torch::ones({2, 3, 4});
  v.data[0][1][2] = std::nanf("");
  v.data[1][2][3] = std::numeric_limits<float>::infinity();
  v.spacing = {1, 1, 1};
  v.affine = io::diagonal_affine(v.spacing);
  io::write_nifti(d + "/nan.nii.gz", v);
  std::ofstream(d + "/m.jsonl") << R"({"id": "v", "image": "nan.nii.gz", "report": "r", "split": "train"})" << "\n";
  ManifestDataset::Options o{ct_findings(), {}, MissingPolicy::kFail, true};
  EXPECT_ERROR_CONTAINS(ManifestDataset(d + "/m.jsonl", "train", o).get(0, 0),
                        "nan.nii.gz: 2 of 24 voxels are not finite (NaN or infinity); set data.non_finite: zero");
  o.non_finite = NonFinitePolicy::kZero;
  const at::Tensor image = ManifestDataset(d + "/m.jsonl", "train", o).get(0, 0).image;
  EXPECT_EQ(image.sum().item<float>(), 22.0f);
  EXPECT_EQ(image[0][0][1][2].item<float>(), 0.0f);
  EXPECT_EQ(image[0][1][2][3].item<float>(), 0.0f);
}

}  // namespace
}  // namespace medvlp::data
