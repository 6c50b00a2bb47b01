#include "medvlp/testing/loss_testing.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sstream>
#include <thread>

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/io/files.h"
#include "medvlp/io/safetensors.h"
#include "medvlp/train/distributed.h"

extern char** environ;

namespace medvlp::testing {

namespace {

bool differentiable(const std::string& name, const at::Tensor& t) {
  if (!t.is_floating_point()) return false;
  for (const auto& s : input_specs())
    if (s.name == name) return s.differentiable;
  return false;
}

std::string fmt(double v) {
  std::ostringstream s;
  s.precision(10);
  s << v;
  return s.str();
}

// Compares two tensors; records the worst deviation in `result`.
void compare(const std::string& what, const at::Tensor& got, const at::Tensor& want, double atol, double rtol,
             CheckResult* result) {
  if (got.sizes() != want.sizes()) {
    result->ok = false;
    result->message += what + ": shape " + c10::str(got.sizes()) + " but expected " + c10::str(want.sizes()) + "\n";
    return;
  }
  if (got.numel() == 0) return;
  const at::Tensor g = got.to(torch::kDouble).cpu(), w = want.to(torch::kDouble).cpu();
  const at::Tensor err = (g - w).abs();
  const at::Tensor allowed = atol + rtol * w.abs();
  const double worst = err.max().item<double>();
  result->max_error = std::max(result->max_error, worst);
  const at::Tensor bad = (err > allowed).logical_or(g.isnan() != w.isnan());
  if (bad.any().item<bool>()) {
    const int64_t i = bad.flatten().nonzero()[0].item<int64_t>();
    result->ok = false;
    result->message += what + "[flat " + std::to_string(i) + "]: got " + fmt(g.flatten()[i].item<double>()) +
                       ", expected " + fmt(w.flatten()[i].item<double>()) + " (max |error| " + fmt(worst) + ")\n";
  }
}

}  // namespace

NamedTensors to_double(const NamedTensors& inputs) {
  NamedTensors out;
  for (const auto& [name, t] : inputs) out[name] = t.is_floating_point() ? t.to(torch::kDouble) : t;
  return out;
}

LossEvaluation evaluate(losses::LossImpl& loss, const NamedTensors& inputs, const losses::LossContext& context) {
  NamedTensors leaves;
  for (const auto& [name, t] : inputs)
    leaves[name] = differentiable(name, t) ? t.detach().clone().requires_grad_(true) : t.detach().clone();
  for (auto& p : loss.parameters())
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
  const auto [encoded, batch] = bind_inputs(leaves);
  const losses::LossOutput out = loss.forward(encoded, batch, context);
  MEDVLP_CHECK(out.total.defined() && out.total.numel() == 1, "loss ", loss.name(), ": total must be a scalar");
  out.total.backward();
  LossEvaluation e;
  e.total = out.total.item<double>();
  for (const auto& [name, t] : out.terms) e.terms[name] = t.item<double>();
  for (const auto& [name, t] : leaves)
    if (t.requires_grad()) e.grads["grad/" + name] = t.grad().defined() ? t.grad().detach() : torch::zeros_like(t);
  for (const auto& item : loss.named_parameters())
    e.grads["param/" + item.key()] =
        item.value().grad().defined() ? item.value().grad().detach().clone() : torch::zeros_like(item.value());
  return e;
}

CheckResult gradient_check(losses::LossImpl& loss, const NamedTensors& inputs, const GradCheckOptions& o) {
  loss.to(torch::kDouble);
  const NamedTensors x = to_double(inputs);
  const LossEvaluation base = evaluate(loss, x);
  CheckResult result;
  std::mt19937_64 rng(o.seed);
  const auto total_at = [&](const NamedTensors& in) {
    torch::NoGradGuard no_grad;
    const auto [encoded, batch] = bind_inputs(in);
    return loss.forward(encoded, batch, losses::LossContext{}).total.item<double>();
  };
  const auto sample = [&](int64_t numel) {
    std::vector<int64_t> idx;
    if (numel <= o.entries_per_input) {
      for (int64_t i = 0; i < numel; ++i) idx.push_back(i);
    } else {
      std::uniform_int_distribution<int64_t> pick(0, numel - 1);
      for (int64_t k = 0; k < o.entries_per_input; ++k) idx.push_back(pick(rng));
    }
    return idx;
  };
  for (const auto& [name, t] : x) {
    if (!differentiable(name, t)) continue;
    const at::Tensor analytic = base.grads.at("grad/" + name).flatten();
    for (int64_t i : sample(t.numel())) {
      NamedTensors plus = x, minus = x;
      plus[name] = t.clone();
      minus[name] = t.clone();
      plus[name].view(-1)[i] += o.eps;
      minus[name].view(-1)[i] -= o.eps;
      const double fd = (total_at(plus) - total_at(minus)) / (2 * o.eps);
      compare("d total / d " + name + "[" + std::to_string(i) + "]", analytic[i], torch::tensor(fd, torch::kDouble),
              o.atol, o.rtol, &result);
    }
  }
  if (o.parameters) {
    for (auto& item : loss.named_parameters()) {
      at::Tensor p = item.value();
      const at::Tensor analytic = base.grads.at("param/" + item.key()).flatten();
      for (int64_t i : sample(p.numel())) {
        double up, down;
        {
          torch::NoGradGuard no_grad;
          const double keep = p.view(-1)[i].item<double>();
          p.view(-1)[i] = keep + o.eps;
          up = total_at(x);
          p.view(-1)[i] = keep - o.eps;
          down = total_at(x);
          p.view(-1)[i] = keep;
        }
        compare("d total / d parameter " + item.key() + "[" + std::to_string(i) + "]", analytic[i],
                torch::tensor((up - down) / (2 * o.eps), torch::kDouble), o.atol, o.rtol, &result);
      }
    }
  }
  if (!result.ok) result.message = "loss " + loss.name() + " gradient check:\n" + result.message;
  return result;
}

CheckResult permutation_invariance(losses::LossImpl& loss, const NamedTensors& inputs, uint64_t seed,
                                   double tolerance) {
  const int64_t B = batch_size(inputs);
  std::vector<int64_t> order(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) order[static_cast<size_t>(i)] = i;
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  const at::Tensor perm = torch::tensor(order, torch::kLong);
  NamedTensors permuted;
  for (const auto& [name, t] : inputs) {
    bool per_sample = false;
    for (const auto& s : input_specs())
      if (s.name == name) per_sample = s.per_sample;
    permuted[name] = per_sample ? t.index_select(0, perm.to(t.device())) : t;
  }
  const LossEvaluation a = evaluate(loss, inputs), b = evaluate(loss, permuted);
  CheckResult result;
  compare("total", torch::tensor(b.total, torch::kDouble), torch::tensor(a.total, torch::kDouble), tolerance,
          tolerance, &result);
  for (const auto& [name, g] : a.grads) {
    if (name.rfind("grad/", 0) != 0) continue;
    compare(name + " (permuted back)", b.grads.at(name).index_select(0, torch::argsort(perm).to(g.device())), g,
            tolerance, tolerance, &result);
  }
  if (!result.ok) result.message = "loss " + loss.name() + " is not invariant to permuting the batch:\n" + result.message;
  return result;
}

CheckResult swap_invariance(losses::LossImpl& loss, const NamedTensors& inputs,
                            const std::vector<std::pair<std::string, std::string>>& swaps, double tolerance) {
  NamedTensors swapped = inputs;
  for (const auto& [a, b] : swaps) {
    MEDVLP_CHECK(inputs.count(a) && inputs.count(b), "swap_invariance: inputs ", a, " and ", b, " must both exist");
    std::swap(swapped[a], swapped[b]);
  }
  CheckResult result;
  compare("total", torch::tensor(evaluate(loss, swapped).total, torch::kDouble),
          torch::tensor(evaluate(loss, inputs).total, torch::kDouble), tolerance, tolerance, &result);
  if (!result.ok) result.message = "loss " + loss.name() + " changes when its inputs are swapped:\n" + result.message;
  return result;
}

void save_evaluation(const std::string& path, const NamedTensors& inputs, const LossEvaluation& e,
                     bool include_inputs) {
  io::TensorMap out;
  if (include_inputs)
    for (const auto& [name, t] : inputs) out[name] = t.detach().cpu().contiguous();
  out["loss"] = torch::tensor(e.total, torch::kDouble);
  for (const auto& [name, v] : e.terms) out["term/" + name] = torch::tensor(v, torch::kDouble);
  for (const auto& [name, g] : e.grads) out[name] = g.detach().cpu().contiguous();
  io::save_safetensors(path, out);
}

CheckResult compare_with_reference(losses::LossImpl& loss, const std::string& fixture_path, double atol,
                                   double rtol) {
  const io::SafetensorsFile file = io::load_safetensors(fixture_path);
  NamedTensors inputs;
  for (const auto& [name, t] : file.tensors)
    if (name != "loss" && name.find('/') == std::string::npos) inputs[name] = t;
  const LossEvaluation e = evaluate(loss, inputs);
  CheckResult result;
  compare("loss", torch::tensor(e.total, torch::kDouble), file.tensors.at("loss"), atol, rtol, &result);
  for (const auto& [name, t] : file.tensors) {
    if (name.rfind("term/", 0) == 0) {
      auto it = e.terms.find(name.substr(5));
      if (it == e.terms.end()) {
        result.ok = false;
        result.message += name + ": the loss no longer reports this term\n";
      } else {
        compare(name, torch::tensor(it->second, torch::kDouble), t, atol, rtol, &result);
      }
    } else if (name.rfind("grad/", 0) == 0 || name.rfind("param/", 0) == 0) {
      auto it = e.grads.find(name);
      if (it == e.grads.end()) {
        result.ok = false;
        result.message += name + ": no such gradient now\n";
      } else {
        compare(name, it->second, t, atol, rtol, &result);
      }
    }
  }
  if (!result.ok) result.message = "loss " + loss.name() + " differs from " + fixture_path + ":\n" + result.message;
  return result;
}

// ---------------------------------------------------------------------------------------------
// N-rank harness

namespace {

constexpr const char* kHarnessEnv = "MEDVLP_RANK_HARNESS";  // "<call>|<dir>|<rank>|<world>"

// Calls are counted per child_args (i.e. per test), so that a child running one test numbers its
// calls as the parent did, whatever ran before in the parent.
int next_call(const std::vector<std::string>& child_args) {
  static std::map<std::string, int> calls;
  std::string key;
  for (const auto& a : child_args) key += a + '\n';
  return calls[key]++;
}

[[noreturn]] void run_child(const LossFactory& factory, const NamedTensors& inputs, const RankOptions& o,
                            const std::string& dir, int64_t rank, int64_t world) {
  const std::string err_path = dir + "/rank" + std::to_string(rank) + ".err";
  try {
    train::DistOptions d;
    d.rank = rank;
    d.world_size = world;
    d.init = "file://" + dir + "/store";
    d.timeout_seconds = o.timeout_seconds;
    auto group = std::make_shared<train::ProcessGroup>(d);
    torch::manual_seed(static_cast<uint64_t>(o.seed));
    losses::LossPtr loss = factory();
    loss->to(torch::kDouble);
    const NamedTensors all = to_double(inputs);
    const int64_t b = batch_size(all) / world;
    const LossEvaluation e = evaluate(*loss, slice_batch(all, rank * b, b), train::make_loss_context(group));
    save_evaluation(dir + "/rank" + std::to_string(rank) + ".safetensors", {}, e, false);
    group->barrier();
    std::_Exit(0);
  } catch (const std::exception& ex) {
    io::write_file_synced(err_path, ex.what());
    std::_Exit(3);
  }
}

}  // namespace

CheckResult rank_equivalence(const LossFactory& factory, const NamedTensors& inputs, const RankOptions& o) {
  const int call = next_call(o.child_args);
  if (const char* env = std::getenv(kHarnessEnv)) {
    // In a child: only the call that spawned us does work; earlier calls in the test pass through.
    std::vector<std::string> parts;
    std::stringstream ss(env);
    for (std::string part; std::getline(ss, part, '|');) parts.push_back(part);
    MEDVLP_CHECK(parts.size() == 4, kHarnessEnv, " is malformed: ", env);
    if (std::stoi(parts[0]) != call) return {};
    run_child(factory, inputs, o, parts[1], std::stoll(parts[2]), std::stoll(parts[3]));
  }
  MEDVLP_CHECK(o.world_size >= 2, "rank_equivalence: world_size must be at least 2");
  MEDVLP_CHECK(!o.child_args.empty(),
               "rank_equivalence: set RankOptions::child_args so the children run this test only "
               "(with GoogleTest: medvlp::testing::gtest_rerun_args())");
  const int64_t B = batch_size(inputs);
  MEDVLP_CHECK(B > 0 && B % o.world_size == 0, "rank_equivalence: batch size ", B, " must be a positive multiple of ",
               o.world_size, " ranks");

  char tmpl[] = "/tmp/medvlp-ranks-XXXXXX";
  const char* made = ::mkdtemp(tmpl);
  MEDVLP_CHECK(made, "rank_equivalence: cannot create a temporary folder in /tmp");
  const std::string dir = made;
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir};

  std::vector<pid_t> pids;
  for (int64_t r = 0; r < o.world_size; ++r) {
    std::vector<std::string> args{"/proc/self/exe"};
    args.insert(args.end(), o.child_args.begin(), o.child_args.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_store;
    for (char** e = environ; *e; ++e)
      if (std::string(*e).rfind(std::string(kHarnessEnv) + "=", 0) != 0) env_store.emplace_back(*e);
    env_store.push_back(std::string(kHarnessEnv) + "=" + std::to_string(call) + "|" + dir + "|" + std::to_string(r) +
                        "|" + std::to_string(o.world_size));
    env_store.push_back("OMP_NUM_THREADS=1");
    std::vector<char*> envp;
    for (auto& e : env_store) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    const std::string log = dir + "/rank" + std::to_string(r) + ".log";
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    MEDVLP_CHECK(rc == 0, "rank_equivalence: cannot start rank ", r, ": ", std::strerror(rc));
    pids.push_back(pid);
  }

  // Reference on one rank, in float64, while the children run.
  LossEvaluation ref;
  std::string loss_name = "?", reference_error;
  try {
    torch::manual_seed(static_cast<uint64_t>(o.seed));
    losses::LossPtr loss = factory();
    loss_name = loss->name();
    loss->to(torch::kDouble);
    ref = evaluate(*loss, to_double(inputs));
  } catch (const std::exception& e) {
    reference_error = e.what();  // reported after the children are reaped
  }

  CheckResult result;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(o.timeout_seconds);
  std::vector<int> status(pids.size(), -1);
  size_t done = 0;
  while (done < pids.size()) {
    for (size_t r = 0; r < pids.size(); ++r) {
      if (status[r] != -1) continue;
      int st = 0;
      if (waitpid(pids[r], &st, WNOHANG) == pids[r]) {
        status[r] = st;
        ++done;
      }
    }
    if (done == pids.size()) break;
    if (std::chrono::steady_clock::now() > deadline) {
      for (size_t r = 0; r < pids.size(); ++r)
        if (status[r] == -1) {
          kill(pids[r], SIGKILL);
          waitpid(pids[r], &status[r], 0);
          status[r] = -2;
        }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (size_t r = 0; r < pids.size(); ++r) {
    const bool exited_ok = status[r] >= 0 && WIFEXITED(status[r]) && WEXITSTATUS(status[r]) == 0;
    const bool wrote = std::filesystem::exists(dir + "/rank" + std::to_string(r) + ".safetensors");
    if (exited_ok && wrote) continue;
    if (exited_ok) {
      result.ok = false;
      result.message += "rank " + std::to_string(r) +
                        " exited without reaching this check: child_args must make the executable run this test\n";
      continue;
    }
    result.ok = false;
    std::string why = status[r] == -2 ? "timed out after " + fmt(o.timeout_seconds) + " s" : "failed";
    const std::string err = dir + "/rank" + std::to_string(r) + ".err";
    const std::string log = dir + "/rank" + std::to_string(r) + ".log";
    if (std::filesystem::exists(err)) why += ": " + io::read_file(err);
    else if (std::filesystem::exists(log)) {
      std::string text = io::read_file(log);
      why += "; its output ends: " + text.substr(text.size() > 2000 ? text.size() - 2000 : 0);
    }
    result.message += "rank " + std::to_string(r) + " " + why + "\n";
  }
  if (!reference_error.empty()) {
    result.ok = false;
    result.message += "the one-rank reference failed: " + reference_error + "\n";
  }
  if (!result.ok) return result;

  const auto n = static_cast<double>(o.world_size);
  double mean_total = 0;
  std::map<std::string, std::vector<at::Tensor>> grads;
  for (int64_t r = 0; r < o.world_size; ++r) {
    const auto file = io::load_safetensors(dir + "/rank" + std::to_string(r) + ".safetensors");
    mean_total += file.tensors.at("loss").item<double>() / n;
    for (const auto& [name, t] : file.tensors)
      if (name.find('/') != std::string::npos && name.rfind("term/", 0) != 0) grads[name].push_back(t);
  }
  compare("mean of the ranks' totals", torch::tensor(mean_total, torch::kDouble), torch::tensor(ref.total, torch::kDouble),
          o.tolerance, o.tolerance, &result);
  for (const auto& [name, want] : ref.grads) {
    auto it = grads.find(name);
    if (it == grads.end()) {
      result.ok = false;
      result.message += name + ": missing on the ranks\n";
      continue;
    }
    if (name.rfind("grad/", 0) == 0) {
      compare(name + " (ranks concatenated, / N)", torch::cat(it->second, 0) / n, want, o.tolerance, o.tolerance,
              &result);
    } else {
      compare(name + " (mean over ranks)", torch::stack(it->second).mean(0), want, o.tolerance, o.tolerance, &result);
    }
  }
  if (!result.ok)
    result.message = "loss " + loss_name + ": " + std::to_string(o.world_size) + " ranks differ from one rank:\n" +
                     result.message;
  return result;
}

}  // namespace medvlp::testing
