#include <cstdio>
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

void ModelArgs::add_to(CLI::App& app, const std::string& checkpoint_help, const std::string& init_help) {
  app.add_option("-c,--config", config, "experiment config (default: the config.yaml of the run --checkpoint belongs to)");
  app.add_option("--set", sets, "override a config key: a.b.c=value (repeatable)");
  app.add_option("--device", device, "auto, cpu, cuda or cuda:N (overrides the config's `device`)");
  CLI::Option* ckpt = app.add_option("--checkpoint", checkpoint, checkpoint_help);
  if (!init_help.empty()) {
    init_offered = true;
    ckpt->excludes(app.add_flag("--init", init, init_help));
  }
}

train::Experiment ModelArgs::build(const std::string& command) {
  MEDVLP_CHECK(!init_offered || !checkpoint.empty() || init, command, ": give --checkpoint DIR or --init");
  if (!checkpoint.empty()) checkpoint = resolve_checkpoint_arg(checkpoint);
  train::Experiment e = train::Experiment::build(load_config(config_path_for(config, checkpoint), sets, device), "");
  if (!checkpoint.empty()) {
    const train::Checkpoint c = train::load_checkpoint(checkpoint);
    e.load_state_tensors(c.model);
    step = c.state.value("step", int64_t{-1});
  }
  return e;
}

std::string ModelArgs::default_result(const std::string& stem, double fraction) const {
  char name[96];
  std::snprintf(name, sizeof name, "%s%s_%g.json", stem.c_str(), init ? "_init" : "", fraction);
  const std::string run = checkpoint.empty() ? "" : train::run_dir_of(checkpoint);
  return run.empty() ? name : run + "/" + name;
}

std::string json_stem(const std::string& path) {
  return path.size() > 5 && path.compare(path.size() - 5, 5, ".json") == 0 ? path.substr(0, path.size() - 5) : path;
}

}  // namespace medvlp::app
