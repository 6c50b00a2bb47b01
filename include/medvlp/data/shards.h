#pragma once
// Pre-decoded shards: a dataset decoded and preprocessed once into memory-mapped safetensors files,
// so that training reads arrays instead of decoding DICOM, PNG or NIfTI.
//
// Layout of a shard folder: `shard_NNNNN.safetensors` (tensors `images` [n,...] float16 or float32,
// `labels` [n,K], optional `truth` [n,K], `anatomy_masks` [n,A,...] uint8, `spacing` [n,k] float64)
// and `index.json` (format, findings, anatomies, image shape, shard files and counts, and per sample
// id, patient id, report and boxes). index.json is written last, atomically: a folder without it is
// an unfinished build and is refused.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "medvlp/data/dataset.h"

namespace medvlp::data {

/// How build-shards stores a dataset.
struct ShardWriteOptions {
  int64_t samples_per_shard = 1024;
  bool float16 = true;   // images as float16 (half the bytes) or float32
  int64_t workers = 2;   // threads decoding samples
  int64_t epoch = 0;     // the epoch passed to Dataset::get
};

/// Decodes every sample of `dataset` (which must yield one image shape) into shards under `dir`.
/// Returns the number of samples written.
int64_t write_shards(const Dataset& dataset, const std::string& dir, const ShardWriteOptions& options = {});

/// A shard folder as a Dataset: get() copies one sample out of the mapped files (float32 images and
/// masks), so it is cheap and thread-safe.
class ShardDataset : public Dataset {
 public:
  explicit ShardDataset(const std::string& dir);
  ~ShardDataset() override;
  int64_t size() const override;
  Sample get(int64_t index, int64_t epoch) const override;
  std::vector<std::string> findings() const override;
  std::vector<std::string> anatomies() const override;
  std::string patient_id(int64_t index) const override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace medvlp::data
