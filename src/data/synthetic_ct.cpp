#include "medvlp/data/synthetic_ct.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/data/rng.h"
#include "medvlp/io/files.h"
#include "medvlp/io/nifti.h"

namespace medvlp::data {

namespace {

enum Finding { kNodule, kEffusion, kConsolidation, kCardiomegaly, kAneurysm, kHepaticLesion, kKidneyCyst, kSplenomegaly };
enum Organ { kRightLung, kLeftLung, kHeart, kAorta, kLiver, kSpleen, kRightKidney, kLeftKidney, kBones };

uint64_t split_salt(Split split) {
  switch (split) {
    case Split::kTrain: return 0x63747472;
    case Split::kVal: return 0x637476616c;
    default: return 0x6374746573;
  }
}

// World coordinates of voxel centres in mm: x to the patient's right (W), y anterior (H),
// z superior (D), origin at the volume centre. This is the RAS+ frame the NIfTI affine states.
struct Grid {
  at::Tensor x, y, z;  // [D,H,W] each
  std::array<double, 3> spacing;
};

Grid make_grid(const SyntheticCtOptions& o) {
  Grid g;
  for (int a = 0; a < 3; ++a) g.spacing[a] = o.field_of_view[a] / static_cast<double>(o.size[a]);
  auto axis = [&](int a) {
    const double first = -o.field_of_view[a] / 2 + g.spacing[a] / 2;
    return torch::arange(o.size[a], torch::kFloat32) * g.spacing[a] + first;
  };
  const at::Tensor z = axis(0).view({-1, 1, 1}), y = axis(1).view({1, -1, 1}), x = axis(2).view({1, 1, -1});
  const std::vector<int64_t> shape = {o.size[0], o.size[1], o.size[2]};
  g.z = z.expand(shape), g.y = y.expand(shape), g.x = x.expand(shape);
  return g;
}

at::Tensor ellipsoid(const Grid& g, double cx, double cy, double cz, double rx, double ry, double rz) {
  return ((g.x - cx) / rx).square() + ((g.y - cy) / ry).square() + ((g.z - cz) / rz).square() <= 1.0;
}

at::Tensor cylinder(const Grid& g, double cx, double cy, double rx, double ry, double z0, double z1) {
  return (((g.x - cx) / rx).square() + ((g.y - cy) / ry).square() <= 1.0) & (g.z >= z0) & (g.z <= z1);
}

// A voxel centre chosen uniformly inside `mask` (findings sit on voxel centres so that even the
// smallest one covers at least one voxel).
std::array<double, 3> point_in(const Grid& g, const at::Tensor& mask, Rng& rng) {
  const at::Tensor idx = mask.flatten().nonzero().flatten();
  MEDVLP_CHECK(idx.numel() > 0, "CT phantom: empty organ region (field of view too small?)");
  const int64_t pick = idx[rng.below(idx.numel())].item<int64_t>();
  return {g.x.flatten()[pick].item<double>(), g.y.flatten()[pick].item<double>(), g.z.flatten()[pick].item<double>()};
}

std::string side_name(bool right) { return right ? "right" : "left"; }

}  // namespace

const std::vector<std::string>& ct_findings() {
  static const std::vector<std::string> names = {"lung nodule",    "pleural effusion", "consolidation", "cardiomegaly",
                                                 "aortic aneurysm", "hepatic lesion",   "kidney cyst",   "splenomegaly"};
  return names;
}

const std::vector<std::string>& ct_anatomies() {
  static const std::vector<std::string> names = {"right lung", "left lung",    "heart",       "aorta", "liver",
                                                 "spleen",     "right kidney", "left kidney", "bones"};
  return names;
}

std::string CtCase::report() const {
  std::string findings, impression;
  for (const auto& [anatomy, sentence] : anatomy_sentences) findings += (findings.empty() ? "" : " ") + sentence;
  const auto& names = ct_findings();
  for (size_t k = 0; k < names.size(); ++k)
    if (truth[static_cast<int64_t>(k)].item<float>() > 0.5f) impression += (impression.empty() ? "" : ", ") + names[k];
  if (impression.empty()) impression = "No acute abnormality.";
  else {
    impression[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(impression[0])));
    impression += ".";
  }
  return "FINDINGS: " + findings + " IMPRESSION: " + impression;
}

CtCase render_ct_case(const SyntheticCtOptions& o, Split split, int64_t index) {
  Rng rng(mix_seed(o.seed, split_salt(split), static_cast<uint64_t>(index)));
  const Grid g = make_grid(o);
  std::array<bool, 8> has{};
  for (size_t k = 0; k < has.size(); ++k) has[k] = rng.bernoulli(o.prevalence[k]);

  // Anatomical variation: body habitus and a craniocaudal shift.
  const double s = rng.uniform(0.92, 1.08), dz = rng.uniform(-10, 10);
  const std::vector<int64_t> shape = {o.size[0], o.size[1], o.size[2]};
  at::Tensor hu = torch::full(shape, -1000.f);
  at::Tensor label = torch::zeros(shape, torch::kUInt8);  // 0 background, organ + 1
  auto paint = [&](const at::Tensor& m, double value, int organ = -1) {
    hu.masked_fill_(m, value);
    if (organ >= 0) label.masked_fill_(m, organ + 1);
  };

  const at::Tensor body = cylinder(g, 0, 0, 165 * s, 115 * s, -1e9, 1e9);
  paint(body, -100);                                               // subcutaneous fat
  paint(cylinder(g, 0, 0, 150 * s, 102 * s, -1e9, 1e9), 35);       // muscle and soft tissue
  const double lz = 70 + dz;
  const at::Tensor lung_r = ellipsoid(g, 72 * s, 0, lz, 62 * s, 85 * s, 85);
  const at::Tensor lung_l = ellipsoid(g, -72 * s, 0, lz, 56 * s, 85 * s, 85);
  paint(lung_r, -850, kRightLung);
  paint(lung_l, -850, kLeftLung);
  paint(ellipsoid(g, 60 * s, 10 * s, -55 + dz, 90 * s, 78 * s, 60), 60, kLiver);
  const double spleen_scale = has[kSplenomegaly] ? 1.45 : 1.0;
  paint(ellipsoid(g, -88 * s, -40 * s, -50 + dz, 30 * s * spleen_scale, 38 * s * spleen_scale, 42 * spleen_scale), 50,
        kSpleen);
  paint(ellipsoid(g, 62 * s, -62 * s, -105 + dz, 26 * s, 26 * s, 45), 35, kRightKidney);
  paint(ellipsoid(g, -62 * s, -62 * s, -95 + dz, 26 * s, 26 * s, 45), 35, kLeftKidney);
  const double heart_scale = has[kCardiomegaly] ? 1.32 : 1.0;
  paint(ellipsoid(g, -18 * s, 28 * s, 20 + dz, 52 * s * heart_scale, 42 * s * heart_scale, 45 * heart_scale), 45,
        kHeart);
  const double aorta_r = has[kAneurysm] ? 22 : 12;
  paint(cylinder(g, -22 * s, -42 * s, aorta_r, aorta_r, -120 + dz, 125 + dz), 50, kAorta);
  // Spine and ribs.
  paint(cylinder(g, 0, -88 * s, 19, 19, -1e9, 1e9), 650, kBones);
  const at::Tensor shell = cylinder(g, 0, 0, 150 * s, 102 * s, -1e9, 1e9) & ~cylinder(g, 0, 0, 141 * s, 94 * s, -1e9, 1e9);
  const at::Tensor rib_rows = torch::remainder(g.z - dz, 26.0) < 10.0;
  paint(shell & rib_rows & (g.z > -60 + dz) & (g.y < 70 * s), 500, kBones);

  CtCase c;
  // Where each finding was painted: the targets of 3D localization.
  std::array<at::Tensor, 8> lesion;
  const auto mark = [&](int finding, const at::Tensor& region) {
    lesion[finding] = lesion[finding].defined() ? lesion[finding] | region : region;
  };
  // Lungs: nodule and consolidation in a chosen side, effusion in one or both pleural spaces.
  std::array<std::string, 2> lung_sentence = {"The right lung is clear.", "The left lung is clear."};
  std::array<std::vector<std::string>, 2> lung_findings;
  const at::Tensor lung_label[2] = {label == kRightLung + 1, label == kLeftLung + 1};
  if (has[kNodule]) {
    const int side = static_cast<int>(rng.below(2));
    const double r = rng.uniform(5, 11);
    const auto p = point_in(g, lung_label[side] & ellipsoid(g, (side == 0 ? 72 : -72) * s, 0, lz, 40 * s, 60 * s, 60), rng);
    const at::Tensor region = ellipsoid(g, p[0], p[1], p[2], r, r, r) & lung_label[side];
    paint(region, 25);
    mark(kNodule, region);
    lung_findings[side].push_back("a " + std::to_string(static_cast<int>(std::lround(2 * r))) + " mm nodule");
  }
  if (has[kConsolidation]) {
    const int side = static_cast<int>(rng.below(2));
    const auto p = point_in(g, lung_label[side] & (g.z < lz + 30), rng);
    const double r = rng.uniform(16, 26);
    const at::Tensor region = ellipsoid(g, p[0], p[1], p[2], r, r * 1.2, r) & lung_label[side];
    paint(region, -30);
    mark(kConsolidation, region);
    lung_findings[side].push_back("consolidation");
  }
  for (int side = 0; side < 2; ++side)
    if (!lung_findings[side].empty()) {
      std::string text = lung_findings[side][0];
      for (size_t i = 1; i < lung_findings[side].size(); ++i) text += " and " + lung_findings[side][i];
      text[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(text[0])));
      lung_sentence[side] = text + " in the " + side_name(side == 0) + " lung.";
    }
  c.anatomy_sentences.push_back({"right lung", lung_sentence[0]});
  c.anatomy_sentences.push_back({"left lung", lung_sentence[1]});

  std::string pleura = "No pleural effusion.";
  if (has[kEffusion]) {
    const int64_t sides = rng.below(3);  // 0 right, 1 left, 2 both
    const double depth = rng.uniform(18, 40);
    for (int side = 0; side < 2; ++side) {
      if (sides != 2 && sides != side) continue;
      // Fluid settles posteriorly (supine patient) in the lower part of the pleural space.
      const at::Tensor region = lung_label[side] & (g.y < -85 * s + depth) & (g.z < lz + 10);
      paint(region, 12);
      mark(kEffusion, region);
    }
    const std::string size = depth < 28 ? "Small" : "Moderate";
    pleura = sides == 2 ? size + " bilateral pleural effusions." : size + " " + side_name(sides == 0) + " pleural effusion.";
  }
  c.anatomy_sentences.push_back({"pleura", pleura});
  c.anatomy_sentences.push_back({"heart", has[kCardiomegaly] ? "The heart is enlarged." : "The heart is normal in size."});
  c.anatomy_sentences.push_back(
      {"aorta", has[kAneurysm] ? "The thoracic aorta is aneurysmal, measuring 44 mm." : "The aorta is normal in caliber."});

  std::string liver = "The liver is unremarkable.";
  if (has[kHepaticLesion]) {
    const double r = rng.uniform(7, 14);
    const auto p = point_in(g, (label == kLiver + 1) & ellipsoid(g, 60 * s, 10 * s, -55 + dz, 60 * s, 50 * s, 35), rng);
    const at::Tensor region = ellipsoid(g, p[0], p[1], p[2], r, r, r) & (label == kLiver + 1);
    paint(region, 8);
    mark(kHepaticLesion, region);
    liver = "A " + std::to_string(static_cast<int>(std::lround(2 * r))) + " mm hypodense lesion in the liver.";
  }
  c.anatomy_sentences.push_back({"liver", liver});
  c.anatomy_sentences.push_back(
      {"spleen", has[kSplenomegaly] ? "The spleen is enlarged." : "The spleen is normal in size."});

  std::string kidneys = "The kidneys are unremarkable.";
  if (has[kKidneyCyst]) {
    const int side = static_cast<int>(rng.below(2));
    const int organ = side == 0 ? kRightKidney : kLeftKidney;
    const double r = rng.uniform(8, 14);
    const auto p = point_in(g, label == organ + 1, rng);
    const at::Tensor region = ellipsoid(g, p[0], p[1], p[2], r, r, r) & body;
    paint(region, 2, organ);
    mark(kKidneyCyst, region);
    kidneys = "A simple cyst in the " + side_name(side == 0) + " kidney.";
  }
  c.anatomy_sentences.push_back({"kidneys", kidneys});
  c.anatomy_sentences.push_back({"bones", "No acute osseous abnormality."});

  // Scanner noise, independent of everything above.
  Rng noise(mix_seed(o.seed, split_salt(split) ^ 0x6e6f, static_cast<uint64_t>(index)));
  at::Tensor eps = torch::empty(shape);
  float* e = eps.data_ptr<float>();
  for (int64_t i = 0; i < eps.numel(); ++i) e[i] = static_cast<float>(noise.normal() * o.noise_hu);
  c.hu = hu + body.to(torch::kFloat32) * eps;
  if (o.with_masks) {
    std::vector<at::Tensor> masks;
    for (int64_t a = 0; a < static_cast<int64_t>(ct_anatomies().size()); ++a)
      masks.push_back((label == a + 1).to(torch::kFloat32));
    c.anatomy_masks = torch::stack(masks);
    // An enlarged organ is its own lesion: the organ as finally painted.
    if (has[kCardiomegaly]) mark(kCardiomegaly, label == kHeart + 1);
    if (has[kAneurysm]) mark(kAneurysm, label == kAorta + 1);
    if (has[kSplenomegaly]) mark(kSplenomegaly, label == kSpleen + 1);
    std::vector<at::Tensor> lesions;
    for (const at::Tensor& l : lesion) lesions.push_back(l.defined() ? l.to(torch::kFloat32) : torch::zeros(shape));
    c.lesion_masks = torch::stack(lesions);
  }
  c.truth = torch::zeros({8});
  for (size_t k = 0; k < has.size(); ++k) c.truth[static_cast<int64_t>(k)] = has[k] ? 1.f : 0.f;
  c.spacing = g.spacing;
  return c;
}

SyntheticCtDataset::SyntheticCtDataset(SyntheticCtOptions options, Split split)
    : options_(std::move(options)), split_(split) {
  for (int a = 0; a < 3; ++a)
    MEDVLP_CHECK(options_.size[a] >= 8 && options_.field_of_view[a] > 0, "synthetic CT: size must be >= 8 voxels and "
                 "the field of view positive along every axis");
}

int64_t SyntheticCtDataset::size() const {
  switch (split_) {
    case Split::kTrain: return options_.train_size;
    case Split::kVal: return options_.val_size;
    default: return options_.test_size;
  }
}

std::string SyntheticCtDataset::patient_id(int64_t index) const {
  MEDVLP_CHECK(index >= 0 && index < size(), "synthetic CT: index ", index, " out of range [0, ", size(), ")");
  return split_name(split_) + "_" + std::to_string(index);
}

Sample SyntheticCtDataset::get(int64_t index, int64_t /*epoch*/) const {
  MEDVLP_CHECK(index >= 0 && index < size(), "synthetic CT: index ", index, " out of range [0, ", size(), ")");
  CtCase c = render_ct_case(options_, split_, index);
  Sample s;
  s.id = patient_id(index);
  s.patient_id = s.id;
  s.image = c.hu.unsqueeze(0);
  s.spacing = {c.spacing[0], c.spacing[1], c.spacing[2]};
  s.report = c.report();
  s.labels = c.truth.clone();  // every anatomy is described, so the report decides every label
  s.truth = c.truth;
  s.anatomy_masks = c.anatomy_masks;
  // Localization targets for the splits that are evaluated; training never reads them, and its
  // transforms need not carry eight more volumes.
  if (split_ != Split::kTrain) s.lesion_masks = c.lesion_masks;
  return s;
}

int64_t write_synthetic_ct(const SyntheticCtOptions& options, Split split, const std::string& dir) {
  io::make_directories(dir + "/images");
  io::make_directories(dir + "/masks");
  if (split != Split::kTrain) io::make_directories(dir + "/lesions");
  std::ofstream manifest(dir + "/manifest.jsonl", std::ios::app);
  MEDVLP_CHECK(manifest, dir, "/manifest.jsonl: cannot open for writing");
  SyntheticCtDataset dataset(options, split);
  const auto& names = ct_findings();
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const CtCase c = render_ct_case(options, split, i);
    const std::string id = "ct_" + split_name(split) + "_" + std::to_string(i);
    io::Volume v;
    v.spacing = c.spacing;
    v.affine = io::diagonal_affine(c.spacing);
    // Voxel (0,0,0) sits at the phantom's corner: x, y, z of the first voxel centre.
    v.affine[0][3] = -options.field_of_view[2] / 2 + c.spacing[2] / 2;
    v.affine[1][3] = -options.field_of_view[1] / 2 + c.spacing[1] / 2;
    v.affine[2][3] = -options.field_of_view[0] / 2 + c.spacing[0] / 2;
    v.data = c.hu.round();
    io::write_nifti(dir + "/images/" + id + ".nii.gz", v, "int16");
    MEDVLP_CHECK(c.anatomy_masks.defined(), "write_synthetic_ct: needs with_masks");
    v.data = (c.anatomy_masks * torch::arange(1, c.anatomy_masks.size(0) + 1, torch::kFloat32).view({-1, 1, 1, 1}))
                 .amax(0);
    io::write_nifti(dir + "/masks/" + id + ".nii.gz", v, "int16");
    nlohmann::json j = {{"id", id},
                        {"split", split_name(split)},
                        {"image", "images/" + id + ".nii.gz"},
                        {"mask", "masks/" + id + ".nii.gz"},
                        {"report", c.report()}};
    // Lesion masks, as the dataset gives them: for the evaluated splits only ({} for a case without
    // findings, so that it still carries all-zero masks).
    if (split != Split::kTrain) j["lesions"] = nlohmann::json::object();
    for (size_t k = 0; k < names.size() && split != Split::kTrain; ++k) {
      if (c.truth[static_cast<int64_t>(k)].item<float>() < 0.5f) continue;
      std::string file = names[k];
      std::replace(file.begin(), file.end(), ' ', '_');
      file = "lesions/" + id + "_" + file + ".nii.gz";
      v.data = c.lesion_masks[static_cast<int64_t>(k)];
      io::write_nifti(dir + "/" + file, v, "int16");
      j["lesions"][names[k]] = file;
    }
    for (size_t k = 0; k < names.size(); ++k) {
      j["labels"][names[k]] = c.truth[static_cast<int64_t>(k)].item<float>();
      j["truth"][names[k]] = c.truth[static_cast<int64_t>(k)].item<float>();
    }
    manifest << j.dump() << "\n";
  }
  MEDVLP_CHECK(manifest.good(), dir, "/manifest.jsonl: write failed");
  return dataset.size();
}

}  // namespace medvlp::data
