#include "medvlp/data/loader.h"

#include <numeric>

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/data/rng.h"

namespace medvlp::data {

Loader::Loader(DatasetPtr dataset, std::shared_ptr<const text::Tokenizer> tokenizer, LoaderOptions options)
    : dataset_(std::move(dataset)), tokenizer_(std::move(tokenizer)), options_(options) {
  MEDVLP_CHECK(dataset_ && dataset_->size() > 0, "loader: the dataset is empty");
  MEDVLP_CHECK(options_.batch_size > 0, "loader: batch_size must be positive, got ", options_.batch_size);
  MEDVLP_CHECK(options_.workers >= 0, "loader: workers must be >= 0, got ", options_.workers);
  MEDVLP_CHECK(options_.world_size >= 1 && options_.rank >= 0 && options_.rank < options_.world_size,
               "loader: rank ", options_.rank, " outside world of size ", options_.world_size);
  MEDVLP_CHECK(options_.batch_size % options_.world_size == 0, "loader: global batch_size ", options_.batch_size,
               " is not divisible by world size ", options_.world_size);
  MEDVLP_CHECK(batches_per_epoch() > 0, "loader: dataset of ", dataset_->size(), " samples gives no full batch of ",
               options_.batch_size, " (lower batch_size or set drop_last false)");
}

Loader::~Loader() { stop(); }

int64_t Loader::batches_per_epoch() const {
  const int64_t n = dataset_->size();
  return options_.drop_last ? n / options_.batch_size : (n + options_.batch_size - 1) / options_.batch_size;
}

namespace {
// Dataset order of one epoch: a pure function of (seed, epoch).
std::vector<int64_t> epoch_order(const LoaderOptions& options, int64_t size, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(size));
  std::iota(order.begin(), order.end(), 0);
  if (options.shuffle) {
    Rng rng(mix_seed(options.seed, 0x5348554646ull, static_cast<uint64_t>(epoch)));
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[static_cast<size_t>(rng.below(static_cast<int64_t>(i)))]);
  }
  return order;
}

// This rank's interleaved share of global batch `b` of `order`.
std::vector<int64_t> rank_slice(const LoaderOptions& options, const std::vector<int64_t>& order, int64_t b) {
  const int64_t begin = b * options.batch_size;
  const int64_t end = std::min<int64_t>(begin + options.batch_size, static_cast<int64_t>(order.size()));
  std::vector<int64_t> out;
  for (int64_t i = begin + options.rank; i < end; i += options.world_size) out.push_back(order[static_cast<size_t>(i)]);
  return out;
}
}  // namespace

std::vector<int64_t> Loader::batch_indices(int64_t epoch, int64_t b) const {
  return rank_slice(options_, epoch_order(options_, dataset_->size(), epoch), b);
}

Batch Loader::build(int64_t epoch, int64_t b) const {
  // order_ belongs to epoch_, set in start() before any worker runs.
  std::vector<Sample> samples;
  for (int64_t index : rank_slice(options_, order_, b)) samples.push_back(dataset_->get(index, epoch));
  Batch batch = collate(samples);
  if (tokenizer_) {
    auto tokens = tokenizer_->encode(batch.reports, options_.max_text_len);
    batch.token_ids = tokens.ids;
    batch.attention_mask = tokens.mask;
  }
  if (options_.reports && tokenizer_)
    options_.reports->fill(&batch, samples, *tokenizer_, options_.training, options_.seed, epoch);
  if (options_.pin_memory)
    for (at::Tensor* t : batch.tensors())
      if (t->defined()) *t = t->pin_memory();
  return batch;
}

void Loader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
  ready_.clear();
  error_ = nullptr;
  stopping_ = false;
}

void Loader::start(int64_t epoch, int64_t first_batch) {
  stop();
  MEDVLP_CHECK(first_batch >= 0 && first_batch <= batches_per_epoch(), "loader: start batch ", first_batch,
               " outside epoch of ", batches_per_epoch(), " batches");
  epoch_ = epoch;
  order_ = epoch_order(options_, dataset_->size(), epoch);
  next_to_build_ = next_to_hand_ = first_batch;
  end_ = batches_per_epoch();
  for (int64_t i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { work(); });
}

void Loader::work() {
  // Each worker renders samples with single-threaded torch ops: parallelism comes from the workers.
  torch::NoGradGuard no_grad;
  while (true) {
    int64_t b;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] {
        return stopping_ || next_to_build_ >= end_ || next_to_build_ < next_to_hand_ + options_.prefetch;
      });
      if (stopping_ || next_to_build_ >= end_) return;
      b = next_to_build_++;
    }
    try {
      Batch batch = build(epoch_, b);
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(b, std::move(batch));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    cv_.notify_all();
  }
}

bool Loader::next(Batch* batch) {
  if (next_to_hand_ >= end_) return false;
  if (options_.workers == 0) {
    *batch = build(epoch_, next_to_hand_++);
    return true;
  }
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return error_ || ready_.count(next_to_hand_); });
  if (error_) std::rethrow_exception(error_);
  *batch = std::move(ready_.at(next_to_hand_));
  ready_.erase(next_to_hand_++);
  lock.unlock();
  cv_.notify_all();
  return true;
}

}  // namespace medvlp::data
