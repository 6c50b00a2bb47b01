// c10d's Gloo headers are compiled only here; USE_C10D_GLOO selects them in LibTorch's headers.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include "medvlp/train/distributed.h"

#include <chrono>
#include <cstdlib>

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include "medvlp/core/error.h"

namespace medvlp::train {

DistOptions DistOptions::from_env() {
  DistOptions o;
  const auto get = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? v : "";
  };
  const std::string rank = get("RANK"), world = get("WORLD_SIZE");
  if (world.empty()) return o;
  MEDVLP_CHECK(!rank.empty(), "distributed: WORLD_SIZE is set but RANK is not");
  o.rank = std::stoll(rank);
  o.world_size = std::stoll(world);
  const std::string addr = get("MASTER_ADDR"), port = get("MASTER_PORT");
  MEDVLP_CHECK(!addr.empty() && !port.empty(), "distributed: WORLD_SIZE=", world,
               " needs MASTER_ADDR and MASTER_PORT (torchrun sets them)");
  o.init = "tcp://" + addr + ":" + port;
  o.interface_host = addr == "localhost" || addr == "127.0.0.1" ? "127.0.0.1" : get("MEDVLP_GLOO_HOST");
  if (o.interface_host.empty()) o.interface_host = addr;
  return o;
}

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  int64_t rank = 0, world = 1;
};

ProcessGroup::ProcessGroup(const DistOptions& o) : impl_(std::make_unique<Impl>()) {
  MEDVLP_CHECK(o.world_size >= 1 && o.rank >= 0 && o.rank < o.world_size, "distributed: rank ", o.rank,
               " is outside world size ", o.world_size);
  impl_->rank = o.rank;
  impl_->world = o.world_size;
  c10::intrusive_ptr<c10d::Store> store;
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_seconds * 1000));
  if (o.init.rfind("file://", 0) == 0) {
    store = c10::make_intrusive<c10d::FileStore>(o.init.substr(7), static_cast<int>(o.world_size));
  } else if (o.init.rfind("tcp://", 0) == 0) {
    const std::string hostport = o.init.substr(6);
    const auto colon = hostport.rfind(':');
    MEDVLP_CHECK(colon != std::string::npos, "distributed: init \"", o.init, "\" must be tcp://host:port");
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(std::stoi(hostport.substr(colon + 1)));
    so.isServer = o.rank == 0;
    so.numWorkers = static_cast<int>(o.world_size);
    so.timeout = timeout;
    store = c10::make_intrusive<c10d::TCPStore>(hostport.substr(0, colon), so);
  } else {
    throw Error("distributed: init \"" + o.init + "\" must start with file:// or tcp://");
  }
  store->setTimeout(timeout);
  auto options = c10d::ProcessGroupGloo::Options::create();
  options->timeout = timeout;
  options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(o.interface_host));
  try {
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, static_cast<int>(o.rank),
                                                             static_cast<int>(o.world_size), options);
  } catch (const std::exception& e) {
    throw Error(std::string("distributed: rank ") + std::to_string(o.rank) + " could not join " + o.init + ": " +
                e.what());
  }
}

ProcessGroup::~ProcessGroup() = default;
int64_t ProcessGroup::rank() const { return impl_->rank; }
int64_t ProcessGroup::world_size() const { return impl_->world; }

at::Tensor ProcessGroup::all_gather(const at::Tensor& local) {
  std::vector<at::Tensor> input{local.detach().contiguous()};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int64_t r = 0; r < impl_->world; ++r) output[0].push_back(torch::empty_like(input[0]));
  impl_->pg->allgather(output, input)->wait();
  return torch::cat(output[0], 0);
}

void ProcessGroup::all_reduce_sum(at::Tensor& tensor) {
  MEDVLP_CHECK(tensor.is_contiguous(), "distributed: all_reduce_sum needs a contiguous tensor");
  std::vector<at::Tensor> list{tensor};
  impl_->pg->allreduce(list)->wait();
}

void ProcessGroup::barrier() { impl_->pg->barrier()->wait(); }

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
