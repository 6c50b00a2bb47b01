// medvlp train -c CONFIG [--set k=v ...] [-o RUN_DIR] [--resume | --overwrite]
// Several ranks: torchrun --nproc_per_node N --no_python medvlp train ..., srun medvlp train ...,
// or medvlp train --nproc N ... (this machine only).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>

#include "commands.h"
#include "medvlp/core/config.h"
#include "medvlp/core/error.h"
#include "medvlp/core/logging.h"
#include "medvlp/io/files.h"
#include "medvlp/train/distributed.h"
#include "medvlp/train/trainer.h"

namespace medvlp::app {

namespace {

struct Args {
  std::string device, config, run_dir = "runs/latest";
  std::vector<std::string> sets;
  bool resume = false, overwrite = false;
  int64_t nproc = 1;
};

// This process's command line without `--nproc N` / `--nproc=N`.
std::vector<std::string> command_line_without_nproc() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  for (std::string a; std::getline(in, a, '\0');) args.push_back(a);
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;
      continue;
    }
    if (args[i].rfind("--nproc=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  MEDVLP_CHECK(fd >= 0, "--nproc: cannot open a socket (", std::strerror(errno), ")");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  MEDVLP_CHECK(ok, "--nproc: cannot find a free port on 127.0.0.1 (", std::strerror(errno), ")");
  return ntohs(addr.sin_port);
}

// `medvlp train --nproc N ...`: N copies of this command on this machine with torchrun's
// environment; the exit status is the first failing rank's (each rank reports its own error).
int spawn_local_ranks(int64_t n) {
  MEDVLP_CHECK(std::getenv("WORLD_SIZE") == nullptr, "--nproc ", n,
               " starts ranks itself, but WORLD_SIZE is already set (a launcher started this process); drop --nproc");
  const std::vector<std::string> args = command_line_without_nproc();
  const std::string port = std::to_string(free_local_port());
  std::vector<pid_t> pids;
  for (int64_t r = 0; r < n; ++r) {
    const std::vector<std::pair<std::string, std::string>> ours{
        {"RANK", std::to_string(r)}, {"LOCAL_RANK", std::to_string(r)}, {"WORLD_SIZE", std::to_string(n)},
        {"LOCAL_WORLD_SIZE", std::to_string(n)}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port},
        {"MEDVLP_RANK_LABEL", "rank " + std::to_string(r)}};
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
      const std::string entry = *e;
      const std::string name = entry.substr(0, entry.find('='));
      if (std::none_of(ours.begin(), ours.end(), [&](const auto& kv) { return kv.first == name; })) env.push_back(entry);
    }
    for (const auto& [k, v] : ours) env.push_back(k + "=" + v);
    std::vector<char*> argv, envp;
    std::vector<std::string> argv_store = args;
    for (auto& a : argv_store) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data());
    MEDVLP_CHECK(rc == 0, "--nproc: cannot start rank ", r, " (", std::strerror(rc), ")");
    pids.push_back(pid);
  }
  int status = 0;
  for (size_t left = pids.size(); left > 0; --left) {
    int st = 0;
    const pid_t done = ::waitpid(-1, &st, 0);
    if (done < 0) break;
    const int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if (code != 0 && status == 0) status = code;
  }
  return status;
}

int train_run(const Args& args, core::Config config, const std::shared_ptr<train::ProcessGroup>& group) {
  const bool writer = !group || group->rank() == 0;
  // Rank 0 alone looks after the run folder; the others hear its verdict (and which checkpoint to
  // resume), so a refused folder stops every rank with rank 0's reason.
  std::optional<train::RunFolder> folder;
  nlohmann::json plan = nlohmann::json::object();
  if (writer) {
    try {
      folder.emplace(args.run_dir, args.resume      ? train::ExistingRun::resume
                                   : args.overwrite ? train::ExistingRun::overwrite
                                                    : train::ExistingRun::refuse);
      core::add_log_file(args.run_dir + "/train.log");
      if (args.resume) {
        plan["resume_from"] = train::latest_checkpoint(args.run_dir);
        // The tokenizer trained by the first run is part of the experiment: training another would
        // overwrite it and change every token id.
        const nlohmann::json& tree = config.tree();
        const bool has_text = tree.contains("text") && tree["text"].is_object();
        const bool configured = has_text && tree["text"].contains("model");
        const bool wordpiece = has_text && tree["text"].value("tokenizer", std::string()) == "wordpiece";
        const std::string tok = args.run_dir + (wordpiece ? "/vocab.txt" : "/tokenizer.model");
        if (!configured && io::path_exists(tok)) plan["text_model"] = tok;
      }
    } catch (const Error& err) {
      if (!group) throw;
      plan = {{"error", err.what()}};
    }
  }
  if (group) {
    std::string bytes = plan.dump();
    group->broadcast(bytes, 0);
    plan = nlohmann::json::parse(bytes);
  }
  if (plan.contains("error")) {
    if (writer) throw Error(plan["error"].get<std::string>());
    throw Error("rank 0 stopped: " + plan["error"].get<std::string>());
  }
  const std::string resume_from = plan.value("resume_from", std::string());
  if (plan.contains("text_model")) config.set("text.model=" + plan["text_model"].get<std::string>());
  train::Experiment experiment = train::Experiment::build(std::move(config), args.run_dir, group);
  if (folder) folder->commit();  // the config built: only now is a replaced run gone for good
  if (writer) experiment.config.save(args.run_dir + "/config.yaml");
  train::Trainer trainer(experiment);
  if (!resume_from.empty()) trainer.resume(resume_from);
  trainer.run();
  if (writer)
    std::cout << "trained " << trainer.completed_steps() << " steps"
              << (group ? " on " + std::to_string(group->world_size()) + " ranks" : std::string())
              << "; checkpoint in " << train::latest_checkpoint(args.run_dir) << "\n";
  return 0;
}

}  // namespace

Action add_train(CLI::App& app) {
  auto args = std::make_shared<Args>();
  app.add_option("-c,--config", args->config, "experiment config (YAML or JSON)")->required();
  app.add_option("--set", args->sets, "override a config key: a.b.c=value (repeatable)");
  app.add_option("--device", args->device, "auto, cpu, cuda or cuda:N (overrides the config's `device`)");
  app.add_option("-o,--out,--run-dir", args->run_dir, "run folder (config, metrics, checkpoints)");
  auto* resume = app.add_flag("--resume", args->resume, "continue from the newest checkpoint in the run folder");
  auto* overwrite = app.add_flag("--overwrite", args->overwrite,
                                 "replace the run the folder holds (its checkpoints, metrics, config, tokenizer)");
  resume->excludes(overwrite);
  app.add_option("--nproc", args->nproc,
                 "start this many ranks on this machine (torchrun's environment; use torchrun or srun across machines)")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  return [args] {
    if (args->nproc > 1) return spawn_local_ranks(args->nproc);
    core::Config config = load_config(args->config, args->sets, args->device);
    // Under torchrun or srun (or their environment contract), join the other ranks first.
    const train::DistOptions dist = train::DistOptions::resolve(config.root().child("distributed"));
    std::shared_ptr<train::ProcessGroup> group;
    if (dist.world_size > 1) group = std::make_shared<train::ProcessGroup>(dist);
    try {
      return train_run(*args, std::move(config), group);
    } catch (const std::exception& err) {
      if (group) group->report_failure(err.what());
      throw;
    }
  };
}

}  // namespace medvlp::app
