#include "medvlp/core/config.h"

#include <functional>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "medvlp/core/error.h"
#include "medvlp/core/utf8.h"

namespace medvlp::core {

using nlohmann::json;

struct Config::State {
  json tree = json::object();
  std::string source;
  std::map<std::string, int> lines;               // dotted path -> 1-based line in source
  std::map<std::string, std::string> overridden;  // dotted path -> the --set assignment
  std::set<std::string> read;                     // dotted paths some component read
};

namespace {

std::string join_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

std::string escape_pointer(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

json yaml_scalar(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  // Quoted scalars ("non-specific" tag "!") stay strings: "1" is a string, 1 a number.
  if (node.Tag() == "!") return text;
  if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL") return nullptr;
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  try {
    size_t used = 0;
    long long as_int = std::stoll(text, &used, 10);
    if (used == text.size()) return as_int;
  } catch (const std::exception&) {
  }
  try {
    size_t used = 0;
    double as_double = std::stod(text, &used);
    if (used == text.size()) return as_double;
  } catch (const std::exception&) {
  }
  if (text == ".inf" || text == ".Inf") return std::numeric_limits<double>::infinity();
  if (text == "-.inf" || text == "-.Inf") return -std::numeric_limits<double>::infinity();
  return text;
}

json yaml_to_json(const YAML::Node& node, const std::string& path, std::map<std::string, int>* lines,
                  const std::string& source) {
  if (lines && !path.empty()) (*lines)[path] = node.Mark().line + 1;
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar:
      return yaml_scalar(node);
    case YAML::NodeType::Sequence: {
      json out = json::array();
      size_t i = 0;
      for (const auto& item : node) {
        out.push_back(yaml_to_json(item, path + "[" + std::to_string(i) + "]", lines, source));
        ++i;
      }
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& kv : node) {
        // Found by fuzz/config_fuzz: a list or map as a key ({[a]: 1}) made as<string>() throw
        // yaml-cpp's own exception, which surfaced as an internal error.
        MEDVLP_CHECK(kv.first.IsScalar(), source, ":", kv.first.Mark().line + 1, ":", kv.first.Mark().column + 1, ": ",
                     path.empty() ? std::string("top level") : path, ": a key must be a plain string, not a list or map");
        const std::string key = kv.first.as<std::string>();
        MEDVLP_CHECK(!out.contains(key), source, ":", kv.first.Mark().line + 1, ": ",
                     join_path(path, key), ": duplicate key");
        out[key] = yaml_to_json(kv.second, join_path(path, key), lines, source);
      }
      return out;
    }
  }
  return nullptr;
}

std::string describe(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return std::string("boolean ") + (value.get<bool>() ? "true" : "false");
    case json::value_t::string: return "string \"" + value.get<std::string>() + "\"";
    case json::value_t::array: return "a list";
    case json::value_t::object: return "a map";
    default: return value.dump();
  }
}

void emit_yaml(YAML::Emitter& out, const json& value) {
  switch (value.type()) {
    case json::value_t::object:
      out << YAML::BeginMap;
      for (auto it = value.begin(); it != value.end(); ++it) {
        out << YAML::Key << it.key() << YAML::Value;
        emit_yaml(out, it.value());
      }
      out << YAML::EndMap;
      break;
    case json::value_t::array:
      out << YAML::BeginSeq;
      for (const auto& item : value) emit_yaml(out, item);
      out << YAML::EndSeq;
      break;
    case json::value_t::string: {
      // Quote strings that would otherwise read back as another type.
      const std::string text = value.get<std::string>();
      json reread;
      try {
        reread = yaml_scalar(YAML::Load(text));
      } catch (const std::exception&) {
        reread = nullptr;
      }
      if (reread.is_string() && reread.get<std::string>() == text) out << text;
      else out << YAML::DoubleQuoted << text;
      break;
    }
    case json::value_t::null: out << YAML::Null; break;
    case json::value_t::boolean: out << value.get<bool>(); break;
    case json::value_t::number_float: out << value.get<double>(); break;
    case json::value_t::number_unsigned: out << value.get<uint64_t>(); break;
    default: out << value.get<int64_t>(); break;
  }
}

void collect_unread(const json& value, const std::string& path, const Config::State& state,
                    std::vector<std::string>* out) {
  // A null value unsets its key (has() is false for it), so it is never unknown.
  if (!path.empty() && !state.read.count(path) && !value.is_null()) {
    out->push_back(path);
    return;  // children of an unknown key are not listed separately
  }
  if (value.is_object()) {
    for (auto it = value.begin(); it != value.end(); ++it)
      collect_unread(it.value(), join_path(path, it.key()), state, out);
  } else if (value.is_array()) {
    for (size_t i = 0; i < value.size(); ++i)
      collect_unread(value[i], path + "[" + std::to_string(i) + "]", state, out);
  }
}

// yaml-cpp passes invalid UTF-8 through, and JSON cannot hold it: the resolved config could not
// be saved or printed.
void check_utf8(const std::string& text, const std::string& where) {
  const size_t bad = invalid_utf8_offset(text);
  if (bad == std::string::npos) return;
  const size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(bad), '\n'));
  const size_t line_start = text.rfind('\n', bad == 0 ? 0 : bad - 1);
  const size_t column = bad - (line_start == std::string::npos || bad == 0 ? 0 : line_start + 1) + 1;
  char byte[8];
  std::snprintf(byte, sizeof byte, "0x%02x", static_cast<unsigned>(static_cast<unsigned char>(text[bad])));
  throw Error(detail::concat(where, ":", line, ":", column, ": invalid UTF-8 (byte ", byte,
                             "); save the file as UTF-8"));
}

}  // namespace

Config Config::parse(const std::string& text, const std::string& source) {
  check_utf8(text, source);
  auto state = std::make_shared<State>();
  state->source = source;
  YAML::Node doc;
  try {
    doc = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(detail::concat(source, ":", e.mark.line + 1, ": invalid YAML/JSON: ", e.msg));
  }
  if (doc.IsNull()) return Config(state);
  MEDVLP_CHECK(doc.IsMap(), source, ": expected a map at the top level");
  state->tree = yaml_to_json(doc, "", &state->lines, source);
  return Config(state);
}

Config Config::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MEDVLP_CHECK(in, path, ": cannot open config file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return parse(buffer.str(), path);
}

Config Config::from_json(const json& tree, const std::string& source) {
  MEDVLP_CHECK(tree.is_object(), source, ": expected a map at the top level");
  auto state = std::make_shared<State>();
  state->tree = tree;
  state->source = source;
  return Config(state);
}

void Config::set(const std::string& assignment) {
  const auto eq = assignment.find('=');
  MEDVLP_CHECK(eq != std::string::npos && eq > 0, "--set ", assignment,
               ": expected key.path=value");
  check_utf8(assignment, "--set " + assignment.substr(0, eq));
  const std::string key = assignment.substr(0, eq);
  json value;
  try {
    value = yaml_to_json(YAML::Load(assignment.substr(eq + 1)), "", nullptr, "--set");
  } catch (const YAML::Exception& e) {
    throw Error(detail::concat("--set ", assignment, ": invalid value: ", e.msg));
  }
  json* node = &state_->tree;
  std::string path;
  std::stringstream parts(key);
  std::string part;
  std::vector<std::string> names;
  while (std::getline(parts, part, '.')) names.push_back(part);
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    MEDVLP_CHECK(!name.empty(), "--set ", assignment, ": empty key in path");
    path = join_path(path, name);
    // A numeric part indexes an existing list: --set losses.0.weight=2
    if (node->is_array()) {
      size_t index = 0;
      try {
        index = std::stoul(name);
      } catch (const std::exception&) {
        throw Error(detail::concat("--set ", assignment, ": ", path, " indexes a list; expected a number"));
      }
      MEDVLP_CHECK(index < node->size(), "--set ", assignment, ": index ", index,
                   " past the end of a list of ", node->size());
      node = &(*node)[index];
      continue;
    }
    if (!node->is_object()) {
      MEDVLP_CHECK(node->is_null(), "--set ", assignment, ": ", path,
                   " is inside a value that is not a map");
      *node = json::object();
    }
    node = &(*node)[name];
  }
  *node = value;
  state_->overridden[key] = assignment;
}

ConfigNode Config::root() const { return ConfigNode(state_, "", ""); }

void Config::check_all_used() const {
  std::vector<std::string> unread;
  collect_unread(state_->tree, "", *state_, &unread);
  if (unread.empty()) return;
  std::string message;
  for (const auto& path : unread) {
    auto over = state_->overridden.find(path);
    auto line = state_->lines.find(path);
    std::string where = state_->source;
    if (over != state_->overridden.end()) where = "--set " + over->second;
    else if (line != state_->lines.end()) where += ":" + std::to_string(line->second);
    message += (message.empty() ? "" : "\n") + where + ": " + path + ": unknown key";
  }
  throw Error(message);
}

const json& Config::tree() const { return state_->tree; }
const std::string& Config::source() const { return state_->source; }

void Config::save(const std::string& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  MEDVLP_CHECK(out, path, ": cannot write config");
  if (path.size() >= 5 && path.substr(path.size() - 5) == ".json") {
    out << state_->tree.dump(2) << "\n";
  } else {
    YAML::Emitter emitter;
    emit_yaml(emitter, state_->tree);
    out << emitter.c_str() << "\n";
  }
  MEDVLP_CHECK(out.good(), path, ": write failed");
}

// ---------------------------------------------------------------------------------------------

ConfigNode::ConfigNode(std::shared_ptr<Config::State> state, std::string pointer, std::string path)
    : state_(std::move(state)), pointer_(std::move(pointer)), path_(std::move(path)) {}

const json& ConfigNode::self() const {
  static const json kEmpty = json::object();
  const json::json_pointer ptr(pointer_);
  if (!state_->tree.contains(ptr)) return kEmpty;
  return state_->tree.at(ptr);
}

bool ConfigNode::is_map() const { return self().is_object(); }
bool ConfigNode::is_list() const { return self().is_array(); }

bool ConfigNode::has(const std::string& key) const {
  const json& me = self();
  return me.is_object() && me.contains(key) && !me.at(key).is_null();
}

std::string ConfigNode::key_path(const std::string& key) const { return join_path(path_, key); }

std::string ConfigNode::where(const std::string& key) const {
  const std::string full = key.empty() ? path_ : key_path(key);
  // The nearest enclosing override or line number tells the user where to look.
  for (std::string probe = full; !probe.empty();) {
    auto over = state_->overridden.find(probe);
    if (over != state_->overridden.end()) return "--set " + over->second;
    auto line = state_->lines.find(probe);
    if (line != state_->lines.end()) return state_->source + ":" + std::to_string(line->second);
    const auto cut = probe.find_last_of(".[");
    probe = cut == std::string::npos ? std::string() : probe.substr(0, cut);
  }
  return state_->source;
}

void ConfigNode::fail(const std::string& key, const std::string& message) const {
  const std::string full = key.empty() ? path_ : key_path(key);
  throw Error(where(key) + ": " + (full.empty() ? "(top level)" : full) + ": " + message);
}

void ConfigNode::type_error(const std::string& key, const std::string& expected, const json& got) const {
  fail(key, "expected " + expected + ", got " + describe(got));
}

const json* ConfigNode::value(const std::string& key) const {
  const json& me = self();
  if (!me.is_object()) fail("", "expected a map, got " + describe(me));
  auto it = me.find(key);
  if (it == me.end()) return nullptr;
  state_->read.insert(key_path(key));
  if (it->is_null()) return nullptr;
  return &*it;
}

const json* ConfigNode::raw(const std::string& key) const {
  const json* v = value(key);
  if (v == nullptr) return nullptr;
  // The caller interprets the whole value: its list items and map keys are read with it.
  std::function<void(const json&, const std::string&)> mark = [&](const json& j, const std::string& path) {
    state_->read.insert(path);
    if (j.is_object())
      for (auto it = j.begin(); it != j.end(); ++it) mark(it.value(), join_path(path, it.key()));
    else if (j.is_array())
      for (size_t i = 0; i < j.size(); ++i) mark(j[i], path + "[" + std::to_string(i) + "]");
  };
  mark(*v, key_path(key));
  return v;
}

ConfigNode ConfigNode::at(const std::string& key) const {
  const json* v = value(key);
  if (!v) fail(key, "required key is missing");
  if (!v->is_object() && !v->is_array()) type_error(key, "a map or a list", *v);
  return ConfigNode(state_, pointer_ + "/" + escape_pointer(key), key_path(key));
}

ConfigNode ConfigNode::child(const std::string& key) const {
  const json* v = value(key);
  if (v && !v->is_object()) type_error(key, "a map", *v);
  return ConfigNode(state_, pointer_ + "/" + escape_pointer(key), key_path(key));
}

std::vector<ConfigNode> ConfigNode::items() const {
  const json& me = self();
  if (!me.is_array()) fail("", "expected a list, got " + describe(me));
  std::vector<ConfigNode> out;
  for (size_t i = 0; i < me.size(); ++i) {
    const std::string item_path = path_ + "[" + std::to_string(i) + "]";
    state_->read.insert(item_path);
    out.emplace_back(state_, pointer_ + "/" + std::to_string(i), item_path);
  }
  return out;
}

std::vector<std::string> ConfigNode::keys() const {
  std::vector<std::string> out;
  const json& me = self();
  if (me.is_object())
    for (auto it = me.begin(); it != me.end(); ++it) out.push_back(it.key());
  return out;
}

std::vector<std::string> ConfigNode::unread_keys() const {
  std::vector<std::string> out;
  const json& me = self();
  for (const auto& key : keys())
    if (!state_->read.count(key_path(key)) && !me.at(key).is_null()) out.push_back(key);
  return out;
}

std::string ConfigNode::get_string(const std::string& key) const {
  const json* v = value(key);
  if (!v) fail(key, "required key is missing");
  if (!v->is_string()) type_error(key, "a string", *v);
  return v->get<std::string>();
}

std::string ConfigNode::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : (value(key), fallback);
}

std::string ConfigNode::get_choice(const std::string& key, const std::string& fallback,
                                   const std::vector<std::string>& choices) const {
  const std::string chosen = get_string(key, fallback);
  for (const auto& c : choices)
    if (c == chosen) return chosen;
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  fail(key, "expected one of {" + list + "}, got \"" + chosen + "\"");
}

bool ConfigNode::get_bool(const std::string& key, bool fallback) const {
  const json* v = value(key);
  if (!v) return fallback;
  if (!v->is_boolean()) type_error(key, "true or false", *v);
  return v->get<bool>();
}

int64_t ConfigNode::get_int(const std::string& key) const {
  if (!has(key)) fail(key, "required key is missing");
  return get_int(key, 0);
}

int64_t ConfigNode::get_int(const std::string& key, int64_t fallback, int64_t min, int64_t max) const {
  const json* v = value(key);
  if (!v) return fallback;
  int64_t out = 0;
  if (v->is_number_integer()) out = v->get<int64_t>();
  else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
           std::abs(v->get<double>()) < 9e15)
    out = static_cast<int64_t>(v->get<double>());
  else type_error(key, "an integer", *v);
  if (out < min || out > max) {
    std::ostringstream range;
    range << "an integer in [" << min << ", " << max << "]";
    type_error(key, range.str(), *v);
  }
  return out;
}

double ConfigNode::get_double(const std::string& key, double fallback, double min, double max) const {
  const json* v = value(key);
  if (!v) return fallback;
  if (!v->is_number()) type_error(key, "a number", *v);
  const double out = v->get<double>();
  if (!(out >= min && out <= max)) {
    std::ostringstream range;
    range << "a number in [" << min << ", " << max << "]";
    type_error(key, range.str(), *v);
  }
  return out;
}

std::vector<std::string> ConfigNode::get_strings(const std::string& key,
                                                 const std::vector<std::string>& fallback) const {
  const json* v = value(key);
  if (!v) return fallback;
  if (!v->is_array()) type_error(key, "a list of strings", *v);
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) type_error(key + "[" + std::to_string(i) + "]", "a string", (*v)[i]);
    state_->read.insert(key_path(key) + "[" + std::to_string(i) + "]");
    out.push_back((*v)[i].get<std::string>());
  }
  return out;
}

std::vector<double> ConfigNode::get_doubles(const std::string& key, const std::vector<double>& fallback) const {
  const json* v = value(key);
  if (!v) return fallback;
  if (!v->is_array()) type_error(key, "a list of numbers", *v);
  std::vector<double> out;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_number()) type_error(key + "[" + std::to_string(i) + "]", "a number", (*v)[i]);
    state_->read.insert(key_path(key) + "[" + std::to_string(i) + "]");
    out.push_back((*v)[i].get<double>());
  }
  return out;
}

std::vector<int64_t> ConfigNode::get_ints(const std::string& key, const std::vector<int64_t>& fallback) const {
  const json* v = value(key);
  if (!v) return fallback;
  if (!v->is_array()) type_error(key, "a list of integers", *v);
  std::vector<int64_t> out;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_number_integer()) type_error(key + "[" + std::to_string(i) + "]", "an integer", (*v)[i]);
    state_->read.insert(key_path(key) + "[" + std::to_string(i) + "]");
    out.push_back((*v)[i].get<int64_t>());
  }
  return out;
}

}  // namespace medvlp::core
