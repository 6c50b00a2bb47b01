#pragma once
// The config tree: one JSON-shaped tree inside, YAML or JSON files outside, strict reads.

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace medvlp::core {

class ConfigNode;

/// An experiment configuration loaded from a YAML or JSON file (same schema) plus `--set` overrides.
/// Every key a component reads is recorded; check_all_used() rejects any key nobody read (typos).
class Config {
 public:
  /// Loads `path`; the extension (.yaml/.yml/.json) picks the parser.
  static Config load(const std::string& path);
  /// Parses YAML (a superset of JSON) text; `source` names it in messages.
  static Config parse(const std::string& text, const std::string& source);
  static Config from_json(const nlohmann::json& tree, const std::string& source);

  /// Applies "a.b.c=value" (value parsed as a YAML scalar or flow sequence/map).
  /// Intermediate maps are created; typos are caught later by check_all_used().
  void set(const std::string& assignment);

  ConfigNode root() const;
  /// Throws medvlp::Error listing every key (with file:line) that no component read.
  void check_all_used() const;
  const nlohmann::json& tree() const;
  const std::string& source() const;
  /// Writes the resolved tree; YAML unless the path ends in .json.
  void save(const std::string& path) const;

  struct State;

 private:
  explicit Config(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

/// A view of one map or list inside a Config; reads are typed, range-checked and recorded.
/// Messages name the source file, line and full key path, e.g. "cfg.yaml:7: train.lr: ...".
class ConfigNode {
 public:
  ConfigNode(std::shared_ptr<Config::State> state, std::string pointer, std::string path);

  bool has(const std::string& key) const;
  bool is_map() const;
  bool is_list() const;
  /// Required sub-map or sub-list.
  ConfigNode at(const std::string& key) const;
  /// Optional sub-map: an empty map view when absent.
  ConfigNode child(const std::string& key) const;
  /// Items of a list node.
  std::vector<ConfigNode> items() const;
  /// Keys of a map node (not marked as read).
  std::vector<std::string> keys() const;
  /// Keys of a map node that no component has read yet (typos, options a builder does not know).
  std::vector<std::string> unread_keys() const;
  /// Full dotted path, e.g. "losses[1].options".
  const std::string& path() const { return path_; }

  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  /// A string that must be one of `choices`.
  std::string get_choice(const std::string& key, const std::string& fallback,
                         const std::vector<std::string>& choices) const;
  bool get_bool(const std::string& key, bool fallback) const;
  int64_t get_int(const std::string& key, int64_t fallback,
                  int64_t min = std::numeric_limits<int64_t>::min(),
                  int64_t max = std::numeric_limits<int64_t>::max()) const;
  int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key, double fallback,
                    double min = -std::numeric_limits<double>::infinity(),
                    double max = std::numeric_limits<double>::infinity()) const;
  std::vector<std::string> get_strings(const std::string& key,
                                       const std::vector<std::string>& fallback) const;
  std::vector<double> get_doubles(const std::string& key, const std::vector<double>& fallback) const;
  std::vector<int64_t> get_ints(const std::string& key, const std::vector<int64_t>& fallback) const;

  /// The raw value of `key`, nullptr when absent; the key and everything under it count as read.
  /// For keys that accept several shapes, such as a size given as one number or as a list.
  const nlohmann::json* raw(const std::string& key) const;

  /// Throws medvlp::Error "<where>: <key>: <message>".
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

 private:
  const nlohmann::json* value(const std::string& key) const;  // nullptr when absent; marks read
  const nlohmann::json& self() const;
  std::string key_path(const std::string& key) const;
  std::string where(const std::string& key) const;
  [[noreturn]] void type_error(const std::string& key, const std::string& expected,
                               const nlohmann::json& got) const;

  std::shared_ptr<Config::State> state_;
  std::string pointer_;  // JSON pointer into the tree
  std::string path_;     // dotted path for messages
};

}  // namespace medvlp::core
