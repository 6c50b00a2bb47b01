#pragma once
// Synthetic chest/abdomen CT phantoms in Hounsfield units, with organ masks, findings in known
// organs and reports written anatomy by anatomy (fVLM-style). The 3D counterpart of synthetic_cxr.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "medvlp/data/dataset.h"
#include "medvlp/data/synthetic_cxr.h"

namespace medvlp::data {

/// The eight findings of the CT phantoms, in label order (names of configs/lexicons/chest_ct.yaml).
const std::vector<std::string>& ct_findings();
/// The nine organ masks of the CT phantoms, in mask order (label value = position + 1 in label maps).
const std::vector<std::string>& ct_anatomies();

/// CT phantom settings. Everything is a pure function of (seed, split, index).
struct SyntheticCtOptions {
  // Volumes are RAS+: D runs inferior->superior, H posterior->anterior, W left->right.
  std::array<int64_t, 3> size = {32, 64, 64};             // voxels along (D,H,W)
  std::array<double, 3> field_of_view = {320, 400, 400};  // mm along (D,H,W)
  uint64_t seed = 0;
  int64_t train_size = 2000;
  int64_t val_size = 100;
  int64_t test_size = 200;
  /// Per-finding prevalence, in ct_findings() order.
  std::array<double, 8> prevalence = {0.25, 0.15, 0.15, 0.15, 0.10, 0.20, 0.20, 0.10};
  double noise_hu = 12.0;  // Gaussian image noise (standard deviation, HU)
  bool with_masks = true;  // false skips the [9,D,H,W] masks (large volumes for benchmarks)
};

/// One rendered case: HU volume, organ masks, what it shows and a report anatomy by anatomy.
struct CtCase {
  at::Tensor hu;              // [D,H,W] float, Hounsfield units
  at::Tensor anatomy_masks;   // [9,D,H,W] float {0,1}; undefined without with_masks
  // [8,D,H,W] float {0,1}, in ct_findings() order: the voxels each present finding was painted into
  // (the organ itself for cardiomegaly, aortic aneurysm and splenomegaly), zero for absent ones;
  // undefined without with_masks. The targets of 3D localization.
  at::Tensor lesion_masks;
  at::Tensor truth;           // [8] float {0,1}
  std::array<double, 3> spacing{};  // mm along (D,H,W)
  std::vector<std::pair<std::string, std::string>> anatomy_sentences;  // (anatomy, sentence) in report order
  std::string report() const;  // "FINDINGS: ... IMPRESSION: ..."
};

/// Renders case `index` of `split`; deterministic and thread-safe.
CtCase render_ct_case(const SyntheticCtOptions& options, Split split, int64_t index);

/// The CT phantoms of one split: [1,D,H,W] HU images with spacing, masks and reports.
class SyntheticCtDataset : public Dataset {
 public:
  SyntheticCtDataset(SyntheticCtOptions options, Split split);
  int64_t size() const override;
  Sample get(int64_t index, int64_t epoch) const override;
  std::vector<std::string> findings() const override { return ct_findings(); }
  std::vector<std::string> anatomies() const override { return ct_anatomies(); }
  std::string patient_id(int64_t index) const override;  // one case per patient: the case id

 private:
  SyntheticCtOptions options_;
  Split split_;
};

/// Writes a phantom split as NIfTI volumes (`images/ID.nii.gz`, int16 HU) and organ label maps
/// (`masks/ID.nii.gz`, value = ct_anatomies() position + 1) under `dir`, and appends manifest lines
/// to `dir/manifest.jsonl`. Returns the number of cases written.
int64_t write_synthetic_ct(const SyntheticCtOptions& options, Split split, const std::string& dir);

}  // namespace medvlp::data
