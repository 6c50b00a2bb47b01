// libFuzzer target: the experiment config reader on what users type. The input is a YAML (first
// byte even) or JSON (odd) document, then NUL-separated `--set` assignments. Each step must
// succeed or throw medvlp::Error; the typed getters then read whatever keys the tree has.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "medvlp/core/config.h"
#include "medvlp/core/error.h"

namespace {
// Reads every scalar it finds through the typed getters, as experiment code would.
void walk(const medvlp::core::ConfigNode& node, int depth) {
  if (depth > 8) return;
  const auto guard = [](auto&& read) {
    try {
      read();
    } catch (const medvlp::Error&) {
    }
  };
  if (node.is_list()) {
    guard([&] {
      for (const auto& item : node.items()) walk(item, depth + 1);
    });
    return;
  }
  if (!node.is_map()) return;
  for (const std::string& key : node.keys()) {
    guard([&] { walk(node.at(key), depth + 1); });
    guard([&] { (void)node.get_string(key, ""); });
    guard([&] { (void)node.get_double(key, 0.0); });
    guard([&] { (void)node.get_int(key, 0); });
    guard([&] { (void)node.get_bool(key, false); });
    guard([&] { (void)node.get_strings(key, {}); });
    guard([&] { (void)node.get_ints(key, {}); });
  }
  guard([&] { (void)node.unread_keys(); });
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool json = data[0] & 1;
  std::vector<std::string> parts(1);
  for (size_t i = 1; i < size; ++i) {
    if (data[i] == 0) parts.emplace_back();
    else parts.back() += static_cast<char>(data[i]);
  }
  try {
    medvlp::core::Config config = medvlp::core::Config::parse(parts[0], json ? "fuzz.json" : "fuzz.yaml");
    for (size_t i = 1; i < parts.size(); ++i) {
      try {
        config.set(parts[i]);
      } catch (const medvlp::Error&) {
      }
    }
    walk(config.root(), 0);
    (void)config.tree().dump();
  } catch (const medvlp::Error&) {
  }
  return 0;
}
