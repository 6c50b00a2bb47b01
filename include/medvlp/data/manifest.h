#pragma once
// JSONL manifests: medvlp's generic dataset format, one case per line.

#include <string>
#include <vector>

#include "medvlp/data/dataset.h"
#include "medvlp/data/synthetic_cxr.h"

namespace medvlp::data {

/// What to do with a manifest line whose image file is missing or unreadable.
enum class MissingPolicy { kSkip, kFail };

/// Reads `{"id", "image", "report", "labels": {finding: 1|0|-1}, "split"}` lines.
/// Image paths are relative to the manifest's folder; lines of other splits are ignored.
/// A missing image is fatal or skipped with a warning (counted in skipped()).
class ManifestDataset : public Dataset {
 public:
  ManifestDataset(const std::string& manifest_path, const std::string& split, std::vector<std::string> findings,
                  MissingPolicy missing = MissingPolicy::kSkip);
  int64_t size() const override { return static_cast<int64_t>(entries_.size()); }
  Sample get(int64_t index, int64_t epoch) const override;
  std::vector<std::string> findings() const override { return findings_; }
  int64_t skipped() const { return skipped_; }

 private:
  struct Entry {
    std::string id, patient_id, image_path, report;
    std::vector<float> labels, truth;
  };
  std::vector<Entry> entries_;
  std::vector<std::string> findings_;
  int64_t skipped_ = 0;
};

/// Writes a phantom split as PNG files under `dir/images/` and appends its lines to `dir/manifest.jsonl`.
/// Returns the number of cases written.
int64_t write_synthetic_cxr(const SyntheticCxrOptions& options, Split split, const std::string& dir);

}  // namespace medvlp::data
