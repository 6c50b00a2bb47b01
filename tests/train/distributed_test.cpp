#include "medvlp/train/distributed.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <thread>

#include "../testing_util.h"
#include "medvlp/core/config.h"

using namespace medvlp;

namespace {

// Sets environment variables for its lifetime and restores what was there (set or unset).
class ScopedEnv {
 public:
  explicit ScopedEnv(const std::map<std::string, std::string>& vars) {
    for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
                             "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT", "SLURM_PROCID", "SLURM_NTASKS",
                             "SLURM_STEP_NUM_TASKS", "SLURM_STEP_ID", "SLURM_LOCALID", "SLURM_JOB_ID", "MEDVLP_GLOO_HOST"}) {
      const char* old = std::getenv(name);
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
      ::unsetenv(name);
    }
    for (const auto& [k, v] : vars) ::setenv(k.c_str(), v.c_str(), 1);
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved_) {
      if (v) ::setenv(k.c_str(), v->c_str(), 1);
      else ::unsetenv(k.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Runs `body(rank)` on `world` threads, each a rank of one Gloo group (ranks as threads: one
// process, so the test needs no launcher). Returns the first failure.
void run_ranks(int64_t world, const std::function<void(train::ProcessGroup&)>& body) {
  testing_util::TempDir dir;
  std::vector<std::string> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        train::DistOptions o;
        o.rank = r;
        o.world_size = world;
        o.init = "file://" + dir.path() + "/store";
        o.timeout_seconds = 60;
        train::ProcessGroup group(o);
        body(group);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int64_t r = 0; r < world; ++r) EXPECT_EQ(errors[static_cast<size_t>(r)], "") << "rank " << r;
}

}  // namespace

TEST(DistOptions, ReadsTorchrunsEnvironment) {
  ScopedEnv env({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "10.1.2.3"},
                 {"MASTER_PORT", "29500"}, {"TORCHELASTIC_RUN_ID", "none"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                 {"TORCHELASTIC_RESTART_COUNT", "2"}});
  const train::DistOptions o = train::DistOptions::from_env();
  EXPECT_EQ(o.rank, 1);
  EXPECT_EQ(o.world_size, 2);
  EXPECT_EQ(o.local_rank, 1);
  EXPECT_EQ(o.init, "tcp://10.1.2.3:29500");
  EXPECT_EQ(o.launcher, "torchrun");
  EXPECT_TRUE(o.store_served_elsewhere);  // torchrun's agent serves the store: rank 0 must not bind the port
  EXPECT_EQ(o.store_prefix, "medvlp/2/");  // a restarted job does not read the keys of the failed attempt
  EXPECT_EQ(o.interface_host, "");        // another machine's master: Gloo binds this machine's own address
}

TEST(DistOptions, ReadsSrunsEnvironmentAndNeedsAnAddress) {
  ScopedEnv env({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "8"}, {"SLURM_STEP_NUM_TASKS", "4"}, {"SLURM_STEP_ID", "0"},
                 {"SLURM_LOCALID", "1"}, {"SLURM_JOB_ID", "77"}});
  const train::DistOptions o = train::DistOptions::from_env();
  EXPECT_EQ(o.rank, 3);
  EXPECT_EQ(o.world_size, 4);  // the step's tasks, not the job's
  EXPECT_EQ(o.local_rank, 1);
  EXPECT_EQ(o.launcher, "slurm");
  core::Config none = core::Config::parse("{}", "test.yaml");
  EXPECT_NE(error_of([&] { train::DistOptions::resolve(none.root().child("distributed")); })
                .find("srun started 4 ranks but no rendezvous address is known: set MASTER_ADDR and MASTER_PORT"),
            std::string::npos);
  core::Config with = core::Config::parse("distributed: {init: 'tcp://node17:29400', timeout_s: 90}", "test.yaml");
  const train::DistOptions r = train::DistOptions::resolve(with.root().child("distributed"));
  EXPECT_EQ(r.init, "tcp://node17:29400");
  EXPECT_EQ(r.timeout_seconds, 90);
  EXPECT_EQ(r.interface_host, "");
}

TEST(DistOptions, OneProcessUnlessALauncherSaysOtherwise) {
  {
    // A Slurm batch script asked for 4 tasks but runs as one process outside srun.
    ScopedEnv env({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_JOB_ID", "77"}});
    EXPECT_EQ(train::DistOptions::from_env().world_size, 1);
  }
  {
    ScopedEnv env(std::map<std::string, std::string>{{"WORLD_SIZE", "2"}});
    EXPECT_EQ(error_of([] { train::DistOptions::from_env(); }), "distributed: WORLD_SIZE is set but RANK is not");
  }
  {
    ScopedEnv env({{"WORLD_SIZE", "2"}, {"RANK", "one"}});
    EXPECT_EQ(error_of([] { train::DistOptions::from_env(); }),
              "distributed: environment variable RANK=\"one\" is not an integer");
  }
  {
    ScopedEnv env({{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_ADDR", "x"}, {"MASTER_PORT", "1"}});
    EXPECT_NE(error_of([] { train::DistOptions::from_env(); }).find("rank 2 is outside world size 2"), std::string::npos);
  }
  ScopedEnv env(std::map<std::string, std::string>{});
  core::Config bad = core::Config::parse("distributed: {init: 'host:29400'}", "test.yaml");
  EXPECT_NE(error_of([&] { train::DistOptions::resolve(bad.root().child("distributed")); })
                .find("distributed.init: expected tcp://host:port or file:///path, got \"host:29400\""),
            std::string::npos);
}

// The mean over ranks of each gradient, computed in closed form; a tensor no rank used keeps no
// gradient; one that only some ranks used gets the mean with zeros for the others; buckets are
// re-armed every step (small buckets force several, launched from the hooks during backward).
TEST(GradientAverager, MeansGradientsOverRanks) {
  constexpr int64_t kWorld = 3;
  run_ranks(kWorld, [](train::ProcessGroup& group) {
    const int64_t r = group.rank();
    // The same values on every rank (not from torch's generator, which the rank threads share).
    at::Tensor w = torch::linspace(-1, 1, 12).reshape({3, 4}).requires_grad_();
    at::Tensor some = torch::linspace(0.5, 2, 5).requires_grad_();  // used on rank 1 only
    at::Tensor unused = torch::ones({2}).requires_grad_();          // used nowhere
    at::Tensor big = torch::linspace(-3, 2, 40).requires_grad_();
    auto shared = std::shared_ptr<train::ProcessGroup>(&group, [](train::ProcessGroup*) {});
    train::GradientAverager averager(shared, {w, some, unused, big}, /*bucket_bytes=*/64);
    ASSERT_GE(averager.buckets(), 3);
    for (int step = 1; step <= 2; ++step) {
      for (auto* t : {&w, &some, &unused, &big}) t->mutable_grad() = at::Tensor();
      // d/dw sum(w * x_r) = x_r with x_r = (r + 1) * step; d/dbig sum(big^2) * (r + 1) = 2 big (r + 1).
      const double scale = static_cast<double>((r + 1) * step);
      at::Tensor loss = (w * scale).sum() + (big * big).sum() * static_cast<double>(r + 1);
      if (r == 1) loss = loss + (some * some).sum() * static_cast<double>(step);
      averager.prepare();
      loss.backward();
      averager.finish();
      const double mean_scale = step * (1.0 + 2.0 + 3.0) / 3.0;
      EXPECT_TRUE(torch::allclose(w.grad(), torch::full({3, 4}, mean_scale))) << "step " << step;
      EXPECT_TRUE(torch::allclose(big.grad(), big.detach() * 2.0 * (6.0 / 3.0))) << "step " << step;
      EXPECT_TRUE(torch::allclose(some.grad(), some.detach() * 2.0 * step / 3.0)) << "step " << step;
      EXPECT_FALSE(unused.grad().defined()) << "step " << step;
    }
  });
}

TEST(ProcessGroup, BroadcastsBytesAndTensors) {
  run_ranks(2, [](train::ProcessGroup& group) {
    std::string bytes = group.rank() == 0 ? std::string("tokenizer\0bytes", 15) : std::string("stale");
    group.broadcast(bytes, 0);
    EXPECT_EQ(bytes, std::string("tokenizer\0bytes", 15));
    at::Tensor t = group.rank() == 1 ? torch::arange(6, torch::kFloat) : torch::zeros({6});
    group.broadcast(t, 1);
    EXPECT_TRUE(torch::equal(t, torch::arange(6, torch::kFloat)));
  });
}

// Gradient accumulation: only the last micro-batch's backward is armed; what reaches a tensor in
// earlier micro-batches only (`early`) is sent by finish() from `.grad`, what reaches it in both
// (`w`) is the hook's gradient plus `.grad`. Expected: the mean over ranks of the sums over micro-batches.
TEST(GradientAverager, SendsAccumulatedGradientsOfMicroBatches) {
  run_ranks(2, [](train::ProcessGroup& group) {
    const double r = static_cast<double>(group.rank());
    at::Tensor w = torch::linspace(-1, 1, 6).requires_grad_();
    at::Tensor early = torch::linspace(1, 2, 3).requires_grad_();  // first micro-batch only
    at::Tensor late = torch::linspace(2, 3, 4).requires_grad_();   // last micro-batch only
    auto shared = std::shared_ptr<train::ProcessGroup>(&group, [](train::ProcessGroup*) {});
    train::GradientAverager averager(shared, {w, early, late}, /*bucket_bytes=*/16);
    // micro-batch 1: d/dw = (r + 1), d/dearly = 2 early (r + 1)
    ((w * (r + 1)).sum() + (early * early).sum() * (r + 1)).backward();
    averager.prepare(/*accumulated=*/true);
    // micro-batch 2: d/dw = 10 (r + 1), d/dlate = 3 (r + 1)
    ((w * 10.0 * (r + 1)).sum() + (late * 3.0 * (r + 1)).sum()).backward();
    averager.finish();
    const double mean = (1.0 + 2.0) / 2.0;  // mean over ranks of (r + 1)
    EXPECT_TRUE(torch::allclose(w.grad(), torch::full({6}, 11.0 * mean)));
    EXPECT_TRUE(torch::allclose(early.grad(), early.detach() * 2.0 * mean));
    EXPECT_TRUE(torch::allclose(late.grad(), torch::full({4}, 3.0 * mean)));
  });
}
