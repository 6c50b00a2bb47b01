#pragma once
// JSONL manifests: medvlp's generic dataset format, one case per line.

#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "medvlp/data/dataset.h"
#include "medvlp/data/synthetic_cxr.h"

namespace medvlp::data {

/// What to do with a manifest line whose image file is missing or unreadable.
enum class MissingPolicy { kSkip, kFail };
/// What to do with NaN or infinite voxels of a volume: refuse the file (an unreadable entry, so
/// `missing` decides between skipping and failing) or read them as 0, counted in a warning.
enum class NonFinitePolicy { kError, kZero };

/// One case of a file-backed dataset: what a manifest line or a public dataset's tables say.
struct ManifestEntry {
  std::string where;  // origin for messages, e.g. "manifest.jsonl:12" or "train.csv:40"
  std::string id, patient_id, image_path, mask_path, report;
  std::string report_path;           // read when loaded and appended to `report` (MIMIC-CXR's text files)
  std::vector<float> labels, truth;  // [K] in Options::findings order, or empty (labels: all -1)
  std::vector<Box> boxes;            // in the image file's pixel coordinates
  // (finding, mask file) from "lesions"; with the key present, even empty, the sample carries lesion
  // masks (all zero for findings without a file).
  std::vector<std::pair<int64_t, std::string>> lesion_paths;
  bool has_lesions = false;
  // Volume corrections from a dataset's metadata table (CT-RATE): voxel size along (d,h,w) replacing
  // the header's, and a rescale applied to the stored values (skipped for a NIfTI whose header
  // rescales them itself).
  std::vector<double> spacing;
  double slope = 1.0, intercept = 0.0;
};

/// One manifest line read into an entry without touching the file system: std::nullopt for a blank
/// line or one of another split. Paths are resolved against `base_dir`; "mask" is read only when
/// `read_masks`. medvlp::Error names `where` and the field for invalid JSON, a missing or mistyped
/// field (e.g. a label that is not a number) or a malformed box.
std::optional<ManifestEntry> parse_manifest_line(const std::string& line, const std::string& where,
                                                 const std::string& base_dir, const std::string& split,
                                                 const std::vector<std::string>& findings, bool read_masks);

/// Reads `{"id", "image", "report", "labels": {finding: 1|0|-1}, "split"}` lines, optionally with
/// "patient_id", "truth" (like labels), "boxes" ([{"finding", "box": [x0,y0,x1,y1]}]), "lesions"
/// ({finding: path}: a binary mask of that finding's lesions with the image's shape, NIfTI for
/// volumes and an image file for 2D; Sample::lesion_masks) and "mask" (a NIfTI label map for volumes: value a + 1 marks
/// anatomy a of `anatomies`). Boxes and lesions of findings not configured are ignored. Paths are relative to the manifest's folder; lines of other splits are
/// ignored. "image" may be a 2D image (PNG, JPEG, DICOM: [1,H,W] in [0,1]), a NIfTI volume or a folder
/// of CT slices ([1,D,H,W] in the file's units, e.g. HU, with spacing; reoriented to RAS+ unless
/// `canonical` is false; with `nifti_channels` a 4D NIfTI gives [T,D,H,W]). A volume with NaN or
/// infinite voxels is refused or zero-filled by `non_finite`.
///
/// An entry whose file is missing (checked when the manifest is read) or unreadable (found when it
/// is loaded) is fatal with kFail; with kSkip it is logged, counted in skipped(), and an unreadable
/// one is replaced by the next readable entry so that indices stay valid.
class ManifestDataset : public Dataset {
 public:
  struct Options {
    std::vector<std::string> findings;
    std::vector<std::string> anatomies;  // names of the label-map values 1..A; empty: masks are ignored
    MissingPolicy missing = MissingPolicy::kSkip;
    bool canonical = true;
    NonFinitePolicy non_finite = NonFinitePolicy::kError;
    /// A 4D (to 7D) NIfTI's volumes as the image's channels ([T,D,H,W], e.g. MR sequences or CT
    /// phases); false refuses such files.
    bool nifti_channels = false;
  };
  ManifestDataset(const std::string& manifest_path, const std::string& split, Options options);
  ManifestDataset(const std::string& manifest_path, const std::string& split, std::vector<std::string> findings,
                  MissingPolicy missing = MissingPolicy::kSkip);
  /// Entries from a dataset adapter; `source` names the dataset in messages.
  ManifestDataset(const std::string& source, std::vector<ManifestEntry> entries, Options options);
  int64_t size() const override { return static_cast<int64_t>(entries_.size()); }
  Sample get(int64_t index, int64_t epoch) const override;
  std::vector<std::string> findings() const override { return options_.findings; }
  std::vector<std::string> anatomies() const override { return options_.anatomies; }
  /// The entry's patient (an unreadable entry's replacement, found only when loading, may differ).
  std::string patient_id(int64_t index) const override;
  /// Entries left out: missing files at construction plus unreadable ones met so far.
  int64_t skipped() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return missing_ + static_cast<int64_t>(unreadable_.size());
  }

 private:
  void keep_existing(std::vector<ManifestEntry> entries);
  Sample load(const ManifestEntry& e) const;
  at::Tensor finite_voxels(at::Tensor data, const std::string& path) const;
  std::vector<ManifestEntry> entries_;
  Options options_;
  std::string manifest_path_;
  int64_t missing_ = 0;
  mutable std::mutex mutex_;
  mutable std::set<size_t> unreadable_;  // entry positions found unreadable
  mutable std::set<std::string> zero_filled_;  // files whose non-finite voxels were reported
};

/// Writes a phantom split as PNG files under `dir/images/` and appends its lines to `dir/manifest.jsonl`.
/// Returns the number of cases written.
int64_t write_synthetic_cxr(const SyntheticCxrOptions& options, Split split, const std::string& dir);

}  // namespace medvlp::data
