// c10d's Gloo headers are compiled only here; USE_C10D_GLOO selects them in LibTorch's headers.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include "medvlp/train/distributed.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>
#include <utility>

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include "medvlp/core/config.h"
#include "medvlp/core/error.h"

namespace medvlp::train {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

int64_t env_int(const char* name, const std::string& value) {
  try {
    size_t used = 0;
    const int64_t v = std::stoll(value, &used);
    if (used == value.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(std::string("distributed: environment variable ") + name + "=\"" + value + "\" is not an integer");
}

bool loopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1"; }

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "?";
  return buf;
}

// Gone, or a zombie its parent has not reaped yet (dead all the same).
bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  const auto paren = line.rfind(')');  // the command name may hold spaces and parentheses
  return paren != std::string::npos && paren + 2 < line.size() && (line[paren + 2] == 'Z' || line[paren + 2] == 'X');
}

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }
std::string string_of(const std::vector<uint8_t>& b) { return {b.begin(), b.end()}; }

std::string first_line(const std::string& s) {
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace

DistOptions DistOptions::from_env() {
  DistOptions o;
  const std::string rank = env("RANK"), world = env("WORLD_SIZE");
  if (!world.empty()) {
    MEDVLP_CHECK(!rank.empty(), "distributed: WORLD_SIZE is set but RANK is not");
    o.rank = env_int("RANK", rank);
    o.world_size = env_int("WORLD_SIZE", world);
    o.local_rank = env("LOCAL_RANK").empty() ? 0 : env_int("LOCAL_RANK", env("LOCAL_RANK"));
    o.launcher = env("TORCHELASTIC_RUN_ID").empty() ? "env" : "torchrun";
    // torchrun's agent already serves a TCPStore at MASTER_ADDR:MASTER_PORT; rank 0 must not bind it again.
    o.store_served_elsewhere = env("TORCHELASTIC_USE_AGENT_STORE") == "True";
    if (!env("TORCHELASTIC_RESTART_COUNT").empty()) o.store_prefix = "medvlp/" + env("TORCHELASTIC_RESTART_COUNT") + "/";
  } else if (!env("SLURM_PROCID").empty() && !env("SLURM_STEP_NUM_TASKS").empty()) {
    // Inside an srun step, which sets SLURM_STEP_NUM_TASKS (a batch script itself is one process
    // even when the job asked for many tasks: SLURM_NTASKS counts the job's).
    const std::string tasks = env("SLURM_STEP_NUM_TASKS");
    o.rank = env_int("SLURM_PROCID", env("SLURM_PROCID"));
    o.world_size = env_int("SLURM_STEP_NUM_TASKS", tasks);
    o.local_rank = env("SLURM_LOCALID").empty() ? 0 : env_int("SLURM_LOCALID", env("SLURM_LOCALID"));
    o.launcher = "slurm";
    if (!env("SLURM_JOB_ID").empty()) o.store_prefix = "medvlp/" + env("SLURM_JOB_ID") + "." + env("SLURM_STEP_ID") + "/";
  } else {
    return o;
  }
  MEDVLP_CHECK(o.world_size >= 1 && o.rank >= 0 && o.rank < o.world_size, "distributed: rank ", o.rank,
               " is outside world size ", o.world_size, " (", o.launcher == "slurm" ? "SLURM_PROCID/SLURM_NTASKS" : "RANK/WORLD_SIZE", ")");
  const std::string addr = env("MASTER_ADDR"), port = env("MASTER_PORT");
  if (!addr.empty() && !port.empty()) o.init = "tcp://" + addr + ":" + port;
  if (!env("MEDVLP_GLOO_HOST").empty()) o.interface_host = env("MEDVLP_GLOO_HOST");
  else if (!addr.empty() && !loopback(addr)) o.interface_host.clear();  // this machine's own address
  return o;
}

DistOptions DistOptions::resolve(const core::ConfigNode& section, bool environment) {
  DistOptions o = environment ? from_env() : DistOptions();
  const std::string init = section.get_string("init", "");
  o.timeout_seconds = section.get_double("timeout_s", o.timeout_seconds, 1.0, 7 * 24 * 3600.0);
  const std::string host = section.get_string("interface_host", "");
  if (!init.empty() && init.rfind("tcp://", 0) != 0 && init.rfind("file://", 0) != 0)
    section.fail("init", "expected tcp://host:port or file:///path, got \"" + init + "\"");
  if (o.world_size == 1) return o;
  if (o.init.empty()) {
    if (init.empty()) {
      throw Error(std::string("distributed: ") + (o.launcher == "slurm" ? "srun" : "the launcher") + " started " +
                  std::to_string(o.world_size) +
                  " ranks but no rendezvous address is known: set MASTER_ADDR and MASTER_PORT (on Slurm, e.g. "
                  "MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n1)) or distributed.init "
                  "(tcp://host:port)");
    }
    o.init = init;
    const std::string h = init.rfind("tcp://", 0) == 0 ? init.substr(6, init.rfind(':') - 6) : "127.0.0.1";
    if (env("MEDVLP_GLOO_HOST").empty()) o.interface_host = loopback(h) ? "127.0.0.1" : "";
  }
  if (!host.empty()) o.interface_host = host;
  return o;
}

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;  // prefixed: medvlp's keys only
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  int64_t rank = 0, world = 1, local_rank = 0;
  double timeout_s = 300;
  std::string host;

  // Why a collective failed, as far as the store and this machine can tell.
  std::string diagnose(const std::string& what, const std::string& error) {
    std::vector<std::string> causes;
    try {
      for (int64_t k = 0; k < world; ++k) {
        if (k == rank) continue;
        const std::string key = "failed/" + std::to_string(k);
        if (store->check({key})) causes.push_back("rank " + std::to_string(k) + " stopped: " + string_of(store->get(key)));
      }
      if (causes.empty()) {
        // Ranks on this machine: a dead one is found by its pid. Its sockets close while the
        // process is still being torn down, so look again for a moment before concluding.
        std::vector<std::pair<int64_t, pid_t>> local;
        for (int64_t k = 0; k < world; ++k) {
          const std::string key = "pid/" + std::to_string(k);
          if (k == rank || !store->check({key})) continue;
          const std::string who = string_of(store->get(key));  // "HOST PID"
          const auto space = who.rfind(' ');
          if (space == std::string::npos || who.substr(0, space) != host) continue;
          const pid_t pid = static_cast<pid_t>(std::atoll(who.c_str() + space + 1));
          if (pid > 0) local.emplace_back(k, pid);
        }
        for (int attempt = 0; attempt < 40 && causes.empty() && !local.empty(); ++attempt) {
          if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
          for (const auto& [k, pid] : local)
            if (process_gone(pid))
              causes.push_back("rank " + std::to_string(k) + " (pid " + std::to_string(pid) + ") is gone: killed or crashed");
        }
      }
    } catch (const std::exception&) {
      causes.push_back(rank == 0 ? std::string("the rendezvous store is unreachable")
                                 : "rank 0 is unreachable (it serves the rendezvous store): killed or crashed, see its log");
    }
    if (causes.empty())
      causes.push_back("no rank reported a failure; a rank that does not answer within distributed.timeout_s (" +
                       std::to_string(static_cast<int64_t>(timeout_s)) + " s) fails every collective");
    std::string message = "distributed: rank " + std::to_string(rank) + ": " + what + " failed: ";
    for (size_t i = 0; i < causes.size(); ++i) message += (i ? "; " : "") + causes[i];
    return message + " [c10d: " + first_line(error) + "]";
  }

  template <typename Work>
  void wait(const Work& work, const char* what) {
    try {
      work->wait();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(diagnose(what, e.what()));
    }
  }

  template <typename Launch>
  auto launch(Launch&& f, const char* what) {
    try {
      return f();
    } catch (const std::exception& e) {
      throw Error(diagnose(what, e.what()));
    }
  }
};

ProcessGroup::ProcessGroup(const DistOptions& o) : impl_(std::make_unique<Impl>()) {
  MEDVLP_CHECK(o.world_size >= 1 && o.rank >= 0 && o.rank < o.world_size, "distributed: rank ", o.rank,
               " is outside world size ", o.world_size);
  impl_->rank = o.rank;
  impl_->world = o.world_size;
  impl_->local_rank = o.local_rank;
  impl_->timeout_s = o.timeout_seconds;
  impl_->host = hostname();
  // A peer that dies closes its sockets; a write to them must fail with EPIPE, not kill this rank
  // (Python, which PyTorch's launchers run, ignores SIGPIPE from the start).
  struct sigaction current {};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) ::signal(SIGPIPE, SIG_IGN);
  c10::intrusive_ptr<c10d::Store> store;
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_seconds * 1000));
  const std::string where = "distributed: rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size);
  try {
    if (o.init.rfind("file://", 0) == 0) {
      store = c10::make_intrusive<c10d::FileStore>(o.init.substr(7), static_cast<int>(o.world_size));
    } else if (o.init.rfind("tcp://", 0) == 0) {
      const std::string hostport = o.init.substr(6);
      const auto colon = hostport.rfind(':');
      MEDVLP_CHECK(colon != std::string::npos && colon + 1 < hostport.size(), "distributed: init \"", o.init,
                   "\" must be tcp://host:port");
      c10d::TCPStoreOptions so;
      so.port = static_cast<uint16_t>(std::stoi(hostport.substr(colon + 1)));
      so.isServer = o.rank == 0 && !o.store_served_elsewhere;
      if (!o.store_served_elsewhere) so.numWorkers = static_cast<int>(o.world_size);
      so.timeout = timeout;
      store = c10::make_intrusive<c10d::TCPStore>(hostport.substr(0, colon), so);
    } else {
      throw Error("distributed: init \"" + o.init + "\" must start with file:// or tcp://");
    }
    store->setTimeout(timeout);
    impl_->store = c10::make_intrusive<c10d::PrefixStore>(o.store_prefix, store);
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->timeout = timeout;
    if (!env("GLOO_SOCKET_IFNAME").empty())
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(env("GLOO_SOCKET_IFNAME")));
    else if (!o.interface_host.empty())
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(o.interface_host));
    else
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("gloo/", impl_->store),
                                                             static_cast<int>(o.rank), static_cast<int>(o.world_size), options);
    impl_->store->set("pid/" + std::to_string(o.rank), bytes_of(impl_->host + " " + std::to_string(::getpid())));
  } catch (const Error& e) {
    throw Error(where + " could not join " + o.init + ": " + e.what());
  } catch (const std::exception& e) {
    throw Error(where + " could not join " + o.init + " within distributed.timeout_s (" +
                std::to_string(static_cast<int64_t>(o.timeout_seconds)) + " s): " + first_line(e.what()));
  }
}

ProcessGroup::~ProcessGroup() = default;
int64_t ProcessGroup::rank() const { return impl_->rank; }
int64_t ProcessGroup::world_size() const { return impl_->world; }
int64_t ProcessGroup::local_rank() const { return impl_->local_rank; }

at::Tensor ProcessGroup::all_gather(const at::Tensor& local) {
  std::vector<at::Tensor> input{local.detach().contiguous()};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int64_t r = 0; r < impl_->world; ++r) output[0].push_back(torch::empty_like(input[0]));
  auto work = impl_->launch([&] { return impl_->pg->allgather(output, input); }, "all-gather");
  impl_->wait(work, "all-gather");
  return torch::cat(output[0], 0);
}

void ProcessGroup::all_reduce_sum(at::Tensor& tensor) {
  MEDVLP_CHECK(tensor.is_contiguous(), "distributed: all_reduce_sum needs a contiguous tensor");
  std::vector<at::Tensor> list{tensor};
  auto work = impl_->launch([&] { return impl_->pg->allreduce(list); }, "all-reduce");
  impl_->wait(work, "all-reduce");
}

void ProcessGroup::broadcast(at::Tensor& tensor, int64_t root) {
  MEDVLP_CHECK(tensor.is_contiguous(), "distributed: broadcast needs a contiguous tensor");
  std::vector<at::Tensor> list{tensor};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  auto work = impl_->launch([&] { return impl_->pg->broadcast(list, options); }, "broadcast");
  impl_->wait(work, "broadcast");
}

void ProcessGroup::broadcast(std::string& bytes, int64_t root) {
  at::Tensor size = torch::full({1}, static_cast<int64_t>(bytes.size()), torch::kLong);
  broadcast(size, root);
  at::Tensor data = torch::empty({size.item<int64_t>()}, torch::kUInt8);
  if (impl_->rank == root && !bytes.empty()) std::memcpy(data.data_ptr(), bytes.data(), bytes.size());
  if (data.numel() > 0) broadcast(data, root);
  bytes.assign(static_cast<const char*>(data.data_ptr()), static_cast<size_t>(data.numel()));
}

struct ProcessGroup::Pending {
  decltype(std::declval<c10d::ProcessGroupGloo&>().allreduce(std::declval<std::vector<at::Tensor>&>())) work;
  std::vector<at::Tensor> tensors;  // alive until the work is done
};

std::shared_ptr<ProcessGroup::Pending> ProcessGroup::all_reduce_sum_async(at::Tensor& tensor) {
  MEDVLP_CHECK(tensor.is_contiguous(), "distributed: all_reduce_sum needs a contiguous tensor");
  auto pending = std::make_shared<Pending>();
  pending->tensors = {tensor};
  pending->work = impl_->launch([&] { return impl_->pg->allreduce(pending->tensors); }, "all-reduce of gradients");
  return pending;
}

void ProcessGroup::wait(const std::shared_ptr<Pending>& pending) { impl_->wait(pending->work, "all-reduce of gradients"); }

void ProcessGroup::barrier() {
  auto work = impl_->launch([&] { return impl_->pg->barrier(); }, "barrier");
  impl_->wait(work, "barrier");
}

void ProcessGroup::report_failure(const std::string& message) noexcept {
  try {
    impl_->store->set("failed/" + std::to_string(impl_->rank), bytes_of(first_line(message)));
  } catch (...) {
    // The store went first (rank 0 died): the others find that out themselves.
  }
}

// ---- data-parallel gradient averaging ----

struct GradientAverager::Bucket {
  std::vector<size_t> params;   // indices into params_
  std::vector<int64_t> offset;  // each param's first element in `flat`
  int64_t grads = 0;            // gradient elements: `flat` holds them, then one flag per param
  at::Tensor flat;              // (flag 1: this rank has a gradient for that param)
  int64_t pending = 0;          // params whose gradient has not arrived in this backward
  std::vector<char> reported;   // per param: its gradient is in `flat`
  bool launched = false;
};

GradientAverager::GradientAverager(std::shared_ptr<ProcessGroup> group, std::vector<at::Tensor> params,
                                   int64_t bucket_bytes)
    : group_(std::move(group)), params_(std::move(params)), mutex_(std::make_unique<std::mutex>()) {
  MEDVLP_CHECK(group_, "GradientAverager: no process group");
  // Reverse order: backward produces the last layers' gradients first, so the first bucket fills first.
  std::vector<int64_t> grads;  // per bucket: gradient elements so far
  for (size_t n = params_.size(); n-- > 0;) {
    const at::Tensor& p = params_[n];
    const size_t first = buckets_.empty() ? 0 : buckets_.back().params.front();
    const bool fits = !buckets_.empty() && params_[first].scalar_type() == p.scalar_type() &&
                      params_[first].device() == p.device() && (grads.back() + p.numel()) * p.element_size() <= bucket_bytes;
    if (!fits) {
      buckets_.emplace_back();
      grads.push_back(0);
    }
    buckets_.back().offset.push_back(grads.back());
    buckets_.back().params.push_back(n);
    grads.back() += p.numel();
  }
  bucket_of_.assign(params_.size(), {0, 0});
  for (size_t k = 0; k < buckets_.size(); ++k) {
    Bucket& b = buckets_[k];
    b.grads = grads[k];
    b.flat = torch::zeros({b.grads + static_cast<int64_t>(b.params.size())},
                          params_[b.params.front()].options().requires_grad(false));
    for (size_t j = 0; j < b.params.size(); ++j) bucket_of_[b.params[j]] = {k, j};
  }
  // Each parameter's hook runs once per backward with its complete gradient (autograd sums the
  // gradients of a tensor used twice before accumulating), so a bucket is full when every one of
  // its tensors has reported, and its all-reduce then runs while backward goes on.
  for (size_t i = 0; i < params_.size(); ++i) {
    hooks_.push_back(params_[i].register_hook([this, i](const at::Tensor& grad) { on_gradient(i, grad); }));
  }
}

GradientAverager::~GradientAverager() {
  for (size_t i = 0; i < params_.size(); ++i) {
    try {
      params_[i].remove_hook(hooks_[i]);
    } catch (...) {
    }
  }
}

int64_t GradientAverager::buckets() const { return static_cast<int64_t>(buckets_.size()); }

int64_t GradientAverager::bytes_per_step() const {
  int64_t n = 0;
  for (const auto& b : buckets_) n += b.flat.numel() * b.flat.element_size();
  return n;
}

void GradientAverager::prepare(bool accumulated) {
  std::lock_guard<std::mutex> lock(*mutex_);
  for (auto& b : buckets_) {
    b.flat.zero_();
    b.pending = static_cast<int64_t>(b.params.size());
    b.reported.assign(b.params.size(), 0);
    b.launched = false;
  }
  works_.clear();
  next_ = 0;
  armed_ = true;
  accumulated_ = accumulated;
}

void GradientAverager::on_gradient(size_t i, const at::Tensor& grad) {
  std::lock_guard<std::mutex> lock(*mutex_);
  if (!armed_ || !grad.defined()) return;
  const auto [k, j] = bucket_of_[i];
  Bucket& b = buckets_[k];
  at::Tensor slot = b.flat.narrow(0, b.offset[j], grad.numel());
  slot.copy_(grad.reshape(-1));
  // The hook runs before autograd adds this gradient to `.grad`, which holds the earlier micro-batches'.
  const at::Tensor& earlier = params_[i].grad();
  if (accumulated_ && earlier.defined()) slot.add_(earlier.reshape(-1));
  b.flat.narrow(0, b.grads + static_cast<int64_t>(j), 1).fill_(1);
  b.reported[j] = 1;
  if (--b.pending == 0) launch_ready();
}

// Buckets go out in index order on every rank, whatever order their gradients arrived in, so the
// ranks' collectives match.
void GradientAverager::launch_ready() {
  while (next_ < buckets_.size() && buckets_[next_].pending == 0) {
    works_.push_back(group_->all_reduce_sum_async(buckets_[next_].flat));
    buckets_[next_++].launched = true;
  }
}

void GradientAverager::finish() {
  {
    std::lock_guard<std::mutex> lock(*mutex_);
    armed_ = false;
    for (auto& b : buckets_) {
      if (b.launched) continue;
      for (size_t j = 0; j < b.params.size(); ++j) {
        // Not reached by the last backward: what earlier micro-batches accumulated, or zeros.
        const at::Tensor& g = params_[b.params[j]].grad();
        if (b.reported[j] || !accumulated_ || !g.defined()) continue;
        b.flat.narrow(0, b.offset[j], g.numel()).copy_(g.reshape(-1));
        b.flat.narrow(0, b.grads + static_cast<int64_t>(j), 1).fill_(1);
      }
      b.pending = 0;
    }
    launch_ready();
  }
  for (auto& w : works_) group_->wait(w);
  works_.clear();
  torch::NoGradGuard no_grad;
  const double world = static_cast<double>(group_->world_size());
  for (auto& b : buckets_) {
    // One division and one host copy of the flags per bucket (not per tensor: on CUDA each would sync).
    at::Tensor sums = b.flat.narrow(0, 0, b.grads);
    sums.div_(world);
    const at::Tensor flags = b.flat.narrow(0, b.grads, static_cast<int64_t>(b.params.size())).to(torch::kCPU, torch::kFloat);
    const float* any = flags.data_ptr<float>();
    for (size_t j = 0; j < b.params.size(); ++j) {
      if (any[j] <= 0) continue;  // no rank had a gradient
      at::Tensor& p = params_[b.params[j]];
      const at::Tensor mean = sums.narrow(0, b.offset[j], p.numel()).view(p.sizes());
      if (p.grad().defined()) p.mutable_grad().copy_(mean);
      else p.mutable_grad() = mean.clone();  // `flat` is reused next step
    }
  }
}

namespace {
struct GatherWithGrad : public torch::autograd::Function<GatherWithGrad> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& local, int64_t group_id) {
    auto* group = reinterpret_cast<ProcessGroup*>(group_id);
    ctx->saved_data["group"] = group_id;
    ctx->saved_data["rows"] = local.size(0);
    return group->all_gather(local);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* group = reinterpret_cast<ProcessGroup*>(ctx->saved_data["group"].toInt());
    const int64_t rows = ctx->saved_data["rows"].toInt();
    at::Tensor sum = grads[0].contiguous().clone();
    group->all_reduce_sum(sum);
    return {sum.narrow(0, group->rank() * rows, rows), at::Tensor()};
  }
};
}  // namespace

at::Tensor gather_with_grad(const std::shared_ptr<ProcessGroup>& group, const at::Tensor& local) {
  if (!group || group->world_size() == 1) return local;
  // The group outlives the graph: LossContext copies hold the shared_ptr for the step.
  return GatherWithGrad::apply(local, reinterpret_cast<int64_t>(group.get()));
}

losses::LossContext make_loss_context(const std::shared_ptr<ProcessGroup>& group, int64_t step, bool training) {
  losses::LossContext c;
  c.step = step;
  c.training = training;
  if (!group) return c;
  c.rank = group->rank();
  c.world_size = group->world_size();
  c.gather = [group](const at::Tensor& t) { return gather_with_grad(group, t); };
  return c;
}

}  // namespace medvlp::train
