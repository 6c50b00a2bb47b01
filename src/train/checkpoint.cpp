#include "medvlp/train/checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "../core/log.h"
#include "medvlp/core/error.h"
#include "medvlp/io/files.h"

namespace medvlp::train {

namespace {

void remove_tree(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (!dir) {
    std::remove(path.c_str());
    return;
  }
  while (dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    const std::string child = path + "/" + name;
    struct stat st {};
    if (::lstat(child.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(child);
    else std::remove(child.c_str());
  }
  ::closedir(dir);
  ::rmdir(path.c_str());
}

// Complete checkpoints by step, ascending. Temporary folders start with '.' and are not listed.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> out;
  DIR* dir = ::opendir(root.c_str());
  if (!dir) return out;
  while (dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.rfind("step_", 0) != 0) continue;
    try {
      size_t used = 0;
      const int64_t step = std::stoll(name.substr(5), &used);
      if (used == name.size() - 5) out.emplace_back(step, root + "/" + name);
    } catch (const std::exception&) {
    }
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

// Temporary folders left by a process killed mid-write; one writer per run folder is assumed.
void remove_stale_temporaries(const std::string& root) {
  DIR* dir = ::opendir(root.c_str());
  if (!dir) return;
  std::vector<std::string> stale;
  while (dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.rfind(".tmp_step_", 0) == 0 || name.rfind(".old_step_", 0) == 0) stale.push_back(root + "/" + name);
  }
  ::closedir(dir);
  for (const auto& path : stale) remove_tree(path);
}

// What a run writes into its folder: all that RunFolder's overwrite moves aside.
const char* const kRunFiles[] = {"checkpoints",     "metrics.jsonl",   "validation.jsonl", "best",
                                 "train.log",       "config.yaml",     "tokenizer.model",  "tokenizer.vocab",
                                 "vocab.txt",       "eval.json",       "eval_init.json",   "eval_predictions.csv",
                                 "eval_init_predictions.csv", "eval_roc.png", "eval_init_roc.png", "curves.png", "validation.png",
                                 "eval_maps",       "eval_init_maps",  "eval_best.json",   "eval_best_predictions.csv",
                                 "eval_best_roc.png", "eval_best_maps", "tensorboard"};

// The step_N name `run_dir/best` links to, or "".
std::string best_name(const std::string& run_dir) {
  char target[4096];
  const ssize_t n = ::readlink((run_dir + "/best").c_str(), target, sizeof(target) - 1);
  if (n <= 0) return "";
  std::string t(target, static_cast<size_t>(n));
  while (!t.empty() && t.back() == '/') t.pop_back();
  return t.substr(t.rfind('/') + 1);
}

std::string run_id_of_state(const nlohmann::json& state) {
  if (!state.is_object()) return "";
  const auto it = state.find("run_id");
  return it != state.end() && it->is_string() ? it->get<std::string>() : "";
}

// The run_id a checkpoint folder was written by ("" for checkpoints from before run ids), or
// "<unreadable>" so that a folder we cannot identify is never treated as ours.
std::string read_run_id(const std::string& dir) {
  try {
    return run_id_of_state(nlohmann::json::parse(io::read_file(dir + "/trainer_state.json")));
  } catch (const std::exception&) {
    return "<unreadable>";
  }
}

bool non_empty_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

// Keeps the newest `keep_last` of this run's checkpoints (0: all).
void prune(const std::string& root, const Checkpoint& checkpoint, int64_t keep_last) {
  if (keep_last > 0) {
    // Only this run's checkpoints: a folder that once held another run (or a checkpoint copied in by
    // hand) must never lose those to this run's keep-last-N.
    const std::string own = run_id_of_state(checkpoint.state);
    // The best checkpoint (validation during training) is kept besides the newest keep_last.
    const std::string best = best_name(root.substr(0, root.rfind('/')));
    std::vector<std::string> mine;
    for (const auto& [s, dir] : list_checkpoints(root))
      if (read_run_id(dir) == own && dir.substr(dir.rfind('/') + 1) != best) mine.push_back(dir);
    for (size_t i = 0; i + static_cast<size_t>(keep_last) < mine.size(); ++i) {
      // Renamed out of the step_N namespace first, so that a kill in the middle of the deletion
      // leaves a hidden leftover (removed by the next save), never a half-deleted step_N.
      const std::string doomed = root + "/.old_" + mine[i].substr(mine[i].rfind('/') + 1) + "_" + std::to_string(::getpid());
      if (std::rename(mine[i].c_str(), doomed.c_str()) == 0) remove_tree(doomed);
      else core::log_warn(mine[i], ": could not be removed (", std::strerror(errno), ")");
    }
  }
}

}  // namespace

std::string save_checkpoint(const std::string& run_dir, int64_t step, const Checkpoint& checkpoint, int64_t keep_last,
                            const CheckpointWriteHook& hook) {
  const std::string root = run_dir + "/checkpoints";
  io::make_directories(root);
  const std::string final_dir = root + "/step_" + std::to_string(step);
  const std::string tmp_dir = root + "/.tmp_step_" + std::to_string(step) + "_" + std::to_string(::getpid());
  remove_stale_temporaries(root);
  io::make_directories(tmp_dir);
  try {
    const auto written = [&](const std::string& path) {
      if (hook) hook(path);
    };
    io::save_safetensors(tmp_dir + "/model.safetensors", checkpoint.model, {{"format", "pt"}});
    written(tmp_dir + "/model.safetensors");
    io::save_safetensors(tmp_dir + "/optimizer.safetensors", checkpoint.optimizer, {{"format", "pt"}});
    written(tmp_dir + "/optimizer.safetensors");
    io::write_file_synced(tmp_dir + "/trainer_state.json", checkpoint.state.dump(2) + "\n");
    written(tmp_dir + "/trainer_state.json");
    io::sync_directory(tmp_dir);
    // A checkpoint of the same step (a re-run after resume) is replaced by swapping the two folders
    // in one step, so that step_N always names a complete checkpoint; the old one, now under the
    // temporary name, is deleted after (or by the next save, if a kill comes first).
    std::string replaced;  // the earlier checkpoint of this step, deleted once the new one is in place
    if (io::path_exists(final_dir)) {
      if (::renameat2(AT_FDCWD, tmp_dir.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) == 0) {
        replaced = tmp_dir;
      } else {
        // File systems without the exchange: move the old one aside, then rename (a kill between
        // the two leaves step_N missing, the earlier checkpoints intact).
        replaced = root + "/.old_step_" + std::to_string(step) + "_" + std::to_string(::getpid());
        MEDVLP_CHECK(std::rename(final_dir.c_str(), replaced.c_str()) == 0, final_dir, ": cannot move aside (",
                     std::strerror(errno), ")");
      }
    }
    if (replaced != tmp_dir)
      MEDVLP_CHECK(std::rename(tmp_dir.c_str(), final_dir.c_str()) == 0, final_dir, ": rename failed (",
                   std::strerror(errno), ")");
    io::sync_directory(root);
    if (!replaced.empty()) remove_tree(replaced);
  } catch (...) {
    remove_tree(tmp_dir);
    throw;
  }
  prune(root, checkpoint, keep_last);
  return final_dir;
}

void mark_best_checkpoint(const std::string& run_dir, const std::string& checkpoint_dir) {
  const std::string name = checkpoint_dir.substr(checkpoint_dir.rfind('/') + 1);
  MEDVLP_CHECK(io::is_directory(run_dir + "/checkpoints/" + name), checkpoint_dir, ": not a checkpoint of ", run_dir);
  // Relative, so that the run folder can be moved or copied whole.
  const std::string tmp = run_dir + "/.best_" + std::to_string(::getpid());
  ::unlink(tmp.c_str());
  MEDVLP_CHECK(::symlink(("checkpoints/" + name).c_str(), tmp.c_str()) == 0, tmp, ": cannot create a link (",
               std::strerror(errno), ")");
  if (std::rename(tmp.c_str(), (run_dir + "/best").c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error(run_dir + "/best: cannot replace (" + std::strerror(err) + ")");
  }
  io::sync_directory(run_dir);
}

std::string best_checkpoint(const std::string& run_dir) {
  const std::string name = best_name(run_dir);
  return name.empty() || !io::is_directory(run_dir + "/checkpoints/" + name) ? "" : run_dir + "/checkpoints/" + name;
}

Checkpoint load_checkpoint(const std::string& dir) {
  Checkpoint out;
  try {
    out.model = io::load_safetensors(dir + "/model.safetensors").tensors;
    out.optimizer = io::load_safetensors(dir + "/optimizer.safetensors").tensors;
    out.state = nlohmann::json::parse(io::read_file(dir + "/trainer_state.json"));
  } catch (const nlohmann::json::exception& e) {
    throw Error(dir + "/trainer_state.json: invalid JSON (" + e.what() + ")");
  } catch (const Error& e) {
    throw e.with_context("checkpoint " + dir);
  }
  MEDVLP_CHECK(out.state.is_object() && out.state.contains("step"), dir, "/trainer_state.json: missing \"step\"");
  return out;
}

std::string latest_checkpoint(const std::string& run_dir) {
  auto all = list_checkpoints(run_dir + "/checkpoints");
  return all.empty() ? std::string() : all.back().second;
}

std::string describe_existing_run(const std::string& run_dir, const std::string& own_run_id) {
  std::vector<int64_t> steps;
  for (const auto& [step, dir] : list_checkpoints(run_dir + "/checkpoints"))
    if (own_run_id.empty() || read_run_id(dir) != own_run_id) steps.push_back(step);
  std::string out;
  if (!steps.empty()) {
    out = steps.size() == 1 ? "checkpoint step_" + std::to_string(steps[0])
                            : std::to_string(steps.size()) + " checkpoints step_" + std::to_string(steps.front()) +
                                  "..step_" + std::to_string(steps.back());
  }
  if (non_empty_file(run_dir + "/metrics.jsonl")) out += std::string(out.empty() ? "" : ", ") + "metrics.jsonl";
  return out;
}

RunFolder::RunFolder(std::string dir, ExistingRun mode) : dir_(std::move(dir)) {
  MEDVLP_CHECK(!dir_.empty(), "no run folder given");
  io::make_directories(dir_);
  const std::string held = describe_existing_run(dir_);
  switch (mode) {
    case ExistingRun::refuse:
      MEDVLP_CHECK(held.empty(), dir_, ": already holds a run (", held,
                   "); give --resume to continue it, --overwrite to replace it, or another run folder (-o)");
      break;
    case ExistingRun::resume:
      MEDVLP_CHECK(!latest_checkpoint(dir_).empty(), dir_,
                   ": --resume given but there is no checkpoint to resume from (checkpoints/step_N)");
      break;
    case ExistingRun::overwrite: {
      const std::string aside = dir_ + "/.replaced";
      remove_tree(aside);  // left by a process killed between the move and commit()
      io::make_directories(aside);
      for (const char* name : kRunFiles) {
        const std::string path = dir_ + "/" + name;
        if (!io::path_exists(path)) continue;
        MEDVLP_CHECK(std::rename(path.c_str(), (aside + "/" + name).c_str()) == 0, path, ": cannot move aside (",
                     std::strerror(errno), ")");
        moved_.push_back(name);
      }
      if (!held.empty()) core::log_info(dir_, ": replacing the earlier run (", held, ")");
      break;
    }
  }
}

void RunFolder::commit() {
  if (committed_) return;
  committed_ = true;
  remove_tree(dir_ + "/.replaced");
}

RunFolder::~RunFolder() {
  if (committed_) return;
  // The new run never started: what it may have written (a tokenizer) gives way to the earlier run.
  const std::string aside = dir_ + "/.replaced";
  for (const auto& name : moved_) {
    const std::string path = dir_ + "/" + name;
    if (io::path_exists(path)) remove_tree(path);
    if (std::rename((aside + "/" + name).c_str(), path.c_str()) != 0)
      core::log_warn(path, ": could not be put back from ", aside, " (", std::strerror(errno), ")");
  }
  ::rmdir(aside.c_str());
}

std::string resolve_checkpoint(const std::string& path) {
  MEDVLP_CHECK(io::is_directory(path), path, ": no such folder (expected a checkpoint folder or a run folder)");
  if (io::path_exists(path + "/trainer_state.json") || io::path_exists(path + "/model.safetensors")) return path;
  const std::string latest = latest_checkpoint(path);
  MEDVLP_CHECK(!latest.empty(), path,
               ": neither a checkpoint folder (model.safetensors, optimizer.safetensors, trainer_state.json) nor a "
               "run folder with checkpoints/step_N");
  return latest;
}

std::string run_dir_of(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  if (io::is_directory(p + "/checkpoints") || io::path_exists(p + "/config.yaml")) return p;
  const auto slash = p.rfind('/');
  // RUN/best links to RUN/checkpoints/step_N.
  if (p.substr(slash == std::string::npos ? 0 : slash + 1) == "best") {
    const std::string run = slash == std::string::npos ? "." : p.substr(0, slash);
    if (!best_name(run).empty()) return run;
  }
  const std::string parent = slash == std::string::npos ? "." : p.substr(0, slash);
  const auto slash2 = parent.rfind('/');
  const std::string parent_name = slash2 == std::string::npos ? parent : parent.substr(slash2 + 1);
  if (parent_name != "checkpoints") return "";
  return slash2 == std::string::npos ? "." : parent.substr(0, slash2);
}

}  // namespace medvlp::train
