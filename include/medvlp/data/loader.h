#pragma once
// A threaded, prefetching batch loader whose output does not depend on the number of workers.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "medvlp/data/dataset.h"
#include "medvlp/data/report_structure.h"
#include "medvlp/text/tokenizer.h"

namespace medvlp::data {

/// Loader settings; the batch order is a pure function of (seed, epoch).
struct LoaderOptions {
  int64_t batch_size = 64;
  int64_t workers = 2;
  int64_t prefetch = 4;       // batches prepared ahead of the consumer
  bool shuffle = true;
  bool drop_last = true;
  uint64_t seed = 0;
  int64_t max_text_len = 96;
  bool pin_memory = false;    // page-locked host memory for fast non-blocking copies to CUDA
  int64_t rank = 0;           // this process's share of each global batch
  int64_t world_size = 1;
  /// Structured-report units to add to each batch (data.report); null: none.
  std::shared_ptr<const ReportStructurer> reports;
  bool training = true;       // entity-text masking is a training-time augmentation
};

/// Iterates one epoch of batches, starting at any batch index (exact resume).
/// Worker threads build batches ahead; next() hands them out strictly in order.
class Loader {
 public:
  Loader(DatasetPtr dataset, std::shared_ptr<const text::Tokenizer> tokenizer, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  /// Batches in one epoch.
  int64_t batches_per_epoch() const;
  /// Starts `epoch` at batch `first_batch` (stopping any epoch in flight).
  void start(int64_t epoch, int64_t first_batch = 0);
  /// The next batch, or false at the end of the epoch. Rethrows a worker's exception.
  bool next(Batch* batch);
  /// Dataset indices of batch `b` of `epoch` for this rank.
  std::vector<int64_t> batch_indices(int64_t epoch, int64_t b) const;

 private:
  void stop();
  void work();
  Batch build(int64_t epoch, int64_t b) const;

  DatasetPtr dataset_;
  std::shared_ptr<const text::Tokenizer> tokenizer_;
  LoaderOptions options_;
  std::vector<int64_t> order_;  // permutation for the current epoch

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
  std::map<int64_t, Batch> ready_;
  std::exception_ptr error_;
  int64_t epoch_ = 0;
  int64_t next_to_build_ = 0;
  int64_t next_to_hand_ = 0;
  int64_t end_ = 0;
  bool stopping_ = false;
};

}  // namespace medvlp::data
