#pragma once
// Multi-process runs through torch's c10d (Gloo here; the process group is hidden behind this
// header so that users never include c10d or Gloo). Supplies the LossContext gather.

#include <memory>
#include <string>

#include <ATen/Tensor.h>

#include "medvlp/losses/loss.h"

namespace medvlp::train {

/// How ranks meet: a shared file (one machine, tests) or a TCP store (host:port, rank 0 serves).
struct DistOptions {
  int64_t rank = 0;
  int64_t world_size = 1;
  std::string init;                    // "file:///path" or "tcp://host:port"
  std::string interface_host = "127.0.0.1";  // address Gloo binds to on this machine
  double timeout_seconds = 300;
  /// From the environment torchrun sets: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
  static DistOptions from_env();
};

/// A c10d Gloo process group. All collectives are blocking.
class ProcessGroup {
 public:
  explicit ProcessGroup(const DistOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int64_t rank() const;
  int64_t world_size() const;
  /// Concatenation of every rank's tensor along dim 0 (same shape on every rank; no gradient).
  at::Tensor all_gather(const at::Tensor& local);
  /// In-place sum over ranks.
  void all_reduce_sum(at::Tensor& tensor);
  void barrier();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// all_gather that keeps the gradient: backward all-reduces (sums) the gathered gradient and
/// returns this rank's slice. Gloo in LibTorch 1.13 lacks _allgather_base, so it gathers a list.
at::Tensor gather_with_grad(const std::shared_ptr<ProcessGroup>& group, const at::Tensor& local);

/// A LossContext whose gather goes through `group` (identity context when group is null).
losses::LossContext make_loss_context(const std::shared_ptr<ProcessGroup>& group, int64_t step = 0,
                                      bool training = true);

}  // namespace medvlp::train
