#pragma once
// The dataset interface every adapter implements.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "medvlp/data/sample.h"

namespace medvlp::data {

/// A finite, indexable set of samples. get() must be thread-safe and deterministic in
/// (index, epoch): random augmentation draws from a generator seeded by both.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Sample get(int64_t index, int64_t epoch) const = 0;
  /// Names of the label columns, in order ([K]).
  virtual std::vector<std::string> findings() const = 0;
  /// Names of the anatomy masks ([A]); empty when the dataset has none.
  virtual std::vector<std::string> anatomies() const { return {}; }
  /// The patient of sample `index`, without loading it where the dataset can (sampling a fraction
  /// of the patients, as the probe and fine-tuning do, must not decode every image).
  virtual std::string patient_id(int64_t index) const { return get(index, 0).patient_id; }
};

using DatasetPtr = std::shared_ptr<const Dataset>;

}  // namespace medvlp::data
