#include "medvlp/train/checkpoint.h"

#include <dirent.h>
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
    // A checkpoint of the same step (a re-run after resume) is replaced: move the old one aside first.
    struct stat st {};
    if (::stat(final_dir.c_str(), &st) == 0) {
      const std::string old_dir = root + "/.old_step_" + std::to_string(step);
      remove_tree(old_dir);
      MEDVLP_CHECK(std::rename(final_dir.c_str(), old_dir.c_str()) == 0, final_dir, ": cannot move aside (",
                   std::strerror(errno), ")");
      remove_tree(old_dir);
    }
    MEDVLP_CHECK(std::rename(tmp_dir.c_str(), final_dir.c_str()) == 0, final_dir, ": rename failed (",
                 std::strerror(errno), ")");
    io::sync_directory(root);
  } catch (...) {
    remove_tree(tmp_dir);
    throw;
  }
  if (keep_last > 0) {
    auto all = list_checkpoints(root);
    for (size_t i = 0; i + static_cast<size_t>(keep_last) < all.size(); ++i) remove_tree(all[i].second);
  }
  return final_dir;
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

}  // namespace medvlp::train
