#pragma once
// Multi-process runs through torch's c10d (Gloo here; the process group is hidden behind this
// header so that users never include c10d or Gloo). Supplies the LossContext gather, the
// gradient averaging of data-parallel training, and failure reports that name the lost rank.

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "medvlp/losses/loss.h"

namespace medvlp::core {
class ConfigNode;
}

namespace medvlp::train {

/// How ranks meet: a shared file (one machine, tests) or a TCP store (host:port).
struct DistOptions {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;                    // this rank's index on its machine: its GPU on CUDA
  std::string init;                          // "file:///path" or "tcp://host:port"
  std::string interface_host = "127.0.0.1";  // address Gloo binds to on this machine
  double timeout_seconds = 300;              // a collective or rendezvous that waits longer fails
  /// Who serves the TCP store: rank 0 (false) or torchrun's agent, already listening (true).
  bool store_served_elsewhere = false;
  std::string store_prefix = "medvlp/";      // key namespace (torchrun restarts get their own)
  std::string launcher;  // "torchrun", "slurm", "env" (RANK/WORLD_SIZE set otherwise) or "" (one process)
  /// From the environment: torchrun's (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT,
  /// TORCHELASTIC_USE_AGENT_STORE) first, else Slurm's (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
  /// with MASTER_ADDR/MASTER_PORT); world size 1 when neither is set.
  static DistOptions from_env();
  /// from_env() (or one process when `environment` is false) with the `distributed` config
  /// section's `init` (tcp://host:port or file:///path, used when the environment names no
  /// address), `timeout_s` and `interface_host`. Reads and checks the section's keys.
  static DistOptions resolve(const core::ConfigNode& section, bool environment = true);
};

/// A c10d Gloo process group. All collectives are blocking; a collective that fails (a rank died,
/// threw, or did not answer within the timeout) throws medvlp::Error naming the rank(s) at fault
/// as far as the rendezvous store can tell. Constructing one sets SIGPIPE to ignored when it was
/// at its default (as Python does at start-up), so a write to a dead peer fails instead of killing
/// the process.
class ProcessGroup {
 public:
  explicit ProcessGroup(const DistOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int64_t rank() const;
  int64_t world_size() const;
  /// This rank's index on its machine (LOCAL_RANK, SLURM_LOCALID): which GPU it uses.
  int64_t local_rank() const;
  /// Concatenation of every rank's tensor along dim 0 (same shape on every rank; no gradient).
  at::Tensor all_gather(const at::Tensor& local);
  /// In-place sum over ranks.
  void all_reduce_sum(at::Tensor& tensor);
  /// In-place copy of `root`'s tensor to every rank (same shape and dtype everywhere).
  void broadcast(at::Tensor& tensor, int64_t root = 0);
  /// `root`'s bytes to every rank (any length).
  void broadcast(std::string& bytes, int64_t root = 0);
  void barrier();
  /// A collective in flight (see all_reduce_sum_async).
  struct Pending;
  /// Starts an in-place sum over ranks and returns at once; wait() finishes it.
  std::shared_ptr<Pending> all_reduce_sum_async(at::Tensor& tensor);
  /// Waits for a collective started by all_reduce_sum_async; throws like the blocking calls.
  void wait(const std::shared_ptr<Pending>& pending);
  /// Records in the rendezvous store why this rank stops, so the others can say so.
  void report_failure(const std::string& message) noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Data-parallel gradient averaging: after backward, every trainable tensor's gradient is the mean
/// over ranks (as PyTorch's DistributedDataParallel makes it). Gradients travel flattened in
/// buckets of about `bucket_bytes`; gradient hooks launch a bucket's all-reduce as soon as its last
/// gradient is computed, so communication overlaps the rest of backward. A tensor that got no
/// gradient on any rank keeps none (AdamW then skips it, as on one rank); one that got a gradient
/// on some ranks only gets the mean with zeros for the others.
/// Usage per step: prepare(); loss.backward(); finish(). With gradient accumulation, call
/// prepare(true) before the last micro-batch's backward only: the hooks then send each gradient
/// plus what earlier micro-batches accumulated in `.grad`, and finish() sends the accumulated
/// gradient of tensors the last micro-batch did not reach.
class GradientAverager {
 public:
  GradientAverager(std::shared_ptr<ProcessGroup> group, std::vector<at::Tensor> params,
                   int64_t bucket_bytes = 25 << 20);
  ~GradientAverager();
  GradientAverager(const GradientAverager&) = delete;
  GradientAverager& operator=(const GradientAverager&) = delete;
  /// Arms the hooks for the next backward; `accumulated`: `.grad` holds earlier micro-batches' sum.
  void prepare(bool accumulated = false);
  /// Sends what backward did not, waits for every bucket and writes the means into `.grad`.
  void finish();
  /// Bytes one step sends into the all-reduce (gradients and flags).
  int64_t bytes_per_step() const;
  int64_t buckets() const;

 private:
  struct Bucket;
  void on_gradient(size_t index, const at::Tensor& grad);
  void launch_ready();
  std::shared_ptr<ProcessGroup> group_;
  std::vector<at::Tensor> params_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, size_t>> bucket_of_;  // param -> (bucket, slot)
  std::vector<unsigned> hooks_;
  std::vector<std::shared_ptr<ProcessGroup::Pending>> works_;
  size_t next_ = 0;  // the first bucket not yet launched
  bool armed_ = false, accumulated_ = false;
  std::unique_ptr<std::mutex> mutex_;
};

/// all_gather that keeps the gradient: backward all-reduces (sums) the gathered gradient and
/// returns this rank's slice. Gloo in LibTorch 1.13 lacks _allgather_base, so it gathers a list.
at::Tensor gather_with_grad(const std::shared_ptr<ProcessGroup>& group, const at::Tensor& local);

/// A LossContext whose gather goes through `group` (identity context when group is null).
losses::LossContext make_loss_context(const std::shared_ptr<ProcessGroup>& group, int64_t step = 0,
                                      bool training = true);

}  // namespace medvlp::train
