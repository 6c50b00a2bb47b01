#pragma once
// Internal to the text module's YAML readers (lexicons, cues, knowledge tables).

#include <string>

#include <yaml-cpp/yaml.h>

#include "medvlp/core/error.h"
#include "medvlp/io/files.h"

namespace medvlp::text::detail {

/// Runs a YAML reader's body. yaml-cpp throws its own exceptions when a node has the wrong kind (a
/// list where a string key belongs, found by fuzz/text_files_fuzz); they become medvlp::Error
/// naming the file, line and column.
template <typename Body>
auto with_named_yaml_errors(const std::string& path, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) throw Error(path + ": " + e.msg);
    throw Error(path + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) + ": " + e.msg +
                " (expected a plain string here)");
  }
}

/// The YAML document in `path`; medvlp::Error naming the file when it does not parse.
inline YAML::Node load_yaml_file(const std::string& path) {
  try {
    return YAML::Load(io::read_file(path));
  } catch (const YAML::Exception& e) {
    throw Error(path + ": malformed YAML: " + e.what());
  }
}

}  // namespace medvlp::text::detail
