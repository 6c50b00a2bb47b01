#pragma once
// Logging front: spdlog stays private to the library; users only set the level or the sink file.

#include <string>

namespace medvlp::core {

/// Sets the library log level: trace, debug, info, warn, error, off.
void set_log_level(const std::string& level);
/// Also writes log lines to `path` (appending), e.g. RUN_DIR/train.log.
void add_log_file(const std::string& path);
/// Starts every terminal log line with `prefix` (e.g. "[rank 1] " when ranks share a terminal).
void set_log_prefix(const std::string& prefix);

}  // namespace medvlp::core
