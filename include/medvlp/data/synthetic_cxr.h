#pragma once
// Synthetic chest X-ray phantoms with known findings, anatomy masks, boxes and reports.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "medvlp/data/dataset.h"

namespace medvlp::data {

/// The dataset splits; each has its own stream of cases.
enum class Split { kTrain, kVal, kTest };
Split parse_split(const std::string& name);
std::string split_name(Split split);

/// The eight findings of the phantoms, in label order.
const std::vector<std::string>& cxr_findings();
/// The eight anatomy masks of the phantoms, in mask order.
const std::vector<std::string>& cxr_anatomies();

/// Phantom generation settings. Everything is a pure function of (seed, split, index).
struct SyntheticCxrOptions {
  int64_t image_size = 96;          // square side in pixels
  uint64_t seed = 0;
  int64_t train_size = 20000;
  int64_t val_size = 500;
  int64_t test_size = 1000;
  /// Per-finding prevalence, in cxr_findings() order (roughly MIMIC-CXR-like, mostly < 20%).
  std::array<double, 8> prevalence = {0.12, 0.16, 0.06, 0.08, 0.16, 0.13, 0.09, 0.06};
  double negation_rate = 0.35;      // chance that an absent finding is mentioned as negated
  double hedge_rate = 0.10;         // chance that a present finding is reported with a hedge
  bool shuffle_sentences = false;   // reorder FINDINGS sentences per (epoch, index)
  bool augment = false;             // small affine + intensity jitter per (epoch, index)
};

/// One rendered case: image in [0,1], report, labels, anatomy masks and lesion boxes.
struct CxrCase {
  at::Tensor image;                   // [1,S,S] float in [0,1]
  std::vector<std::string> findings_sentences;
  std::string impression;
  at::Tensor truth;                   // [8] float {0,1}: what the image shows
  at::Tensor report_labels;           // [8] float {1,0,-1}: what the report says
  at::Tensor anatomy_masks;           // [8,S,S] float {0,1}
  std::vector<Box> boxes;
  std::string report() const;         // "FINDINGS: ... IMPRESSION: ..."
};

/// Renders case `index` of `split`; deterministic and thread-safe.
CxrCase render_cxr_case(const SyntheticCxrOptions& options, Split split, int64_t index);

/// The phantoms of one split as a Dataset.
class SyntheticCxrDataset : public Dataset {
 public:
  SyntheticCxrDataset(SyntheticCxrOptions options, Split split);
  int64_t size() const override;
  Sample get(int64_t index, int64_t epoch) const override;
  std::vector<std::string> findings() const override { return cxr_findings(); }
  std::vector<std::string> anatomies() const override { return cxr_anatomies(); }
  std::string patient_id(int64_t index) const override;  // one case per patient: the case id
  const SyntheticCxrOptions& options() const { return options_; }

 private:
  SyntheticCxrOptions options_;
  Split split_;
};

}  // namespace medvlp::data
