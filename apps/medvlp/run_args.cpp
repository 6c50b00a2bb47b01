#include <iostream>

#include "commands.h"
#include "medvlp/core/error.h"
#include "medvlp/io/files.h"
#include "medvlp/train/checkpoint.h"

namespace medvlp::app {

void BatchErrors::add(const std::string& message) {
  ++failed_;
  std::cerr << "error: " << message << "\n";
}

int BatchErrors::finish(size_t total, const char* unit) const {
  if (failed_ == 0) return 0;
  std::cerr << command_ << ": " << failed_ << " of " << total << " " << unit << " failed\n";
  return 1;
}

core::Config load_config(const std::string& path, const std::vector<std::string>& sets, const std::string& device) {
  core::Config config = core::Config::load(path);
  for (const auto& s : sets) config.set(s);
  if (!device.empty()) config.set("device=" + device);
  return config;
}

std::string resolve_checkpoint_arg(const std::string& path) {
  const std::string resolved = train::resolve_checkpoint(path);
  if (resolved != path) std::cerr << "using " << resolved << " (the newest checkpoint of " << path << ")\n";
  return resolved;
}

std::string config_path_for(const std::string& config, const std::string& checkpoint) {
  if (!config.empty()) return config;
  MEDVLP_CHECK(!checkpoint.empty(), "give -c CONFIG (or --checkpoint with a run folder, whose config.yaml is used)");
  const std::string run = train::run_dir_of(checkpoint);
  MEDVLP_CHECK(!run.empty() && io::path_exists(run + "/config.yaml"), checkpoint,
               ": belongs to no run folder with a config.yaml; give -c CONFIG");
  return run + "/config.yaml";
}

}  // namespace medvlp::app
