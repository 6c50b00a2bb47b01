#include "medvlp/core/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include "log.h"
#include <spdlog/spdlog.h>
#include "medvlp/core/error.h"

namespace medvlp::core {

namespace {
spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    auto made = std::make_shared<spdlog::logger>("medvlp", sink);
    made->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
    return made;
  }();
  return *logger;
}
}  // namespace

void log_message(LogLevel level, const std::string& message) {
  switch (level) {
    case LogLevel::kDebug: log().debug(message); break;
    case LogLevel::kInfo: log().info(message); break;
    case LogLevel::kWarn: log().warn(message); break;
    default: log().error(message); break;
  }
}

void set_log_level(const std::string& level) {
  const auto parsed = spdlog::level::from_str(level);
  MEDVLP_CHECK(parsed != spdlog::level::off || level == "off", "log level: expected one of ",
               "trace, debug, info, warn, error, off; got \"", level, "\"");
  log().set_level(parsed);
}

void set_log_prefix(const std::string& prefix) {
  // spdlog patterns treat '%' specially; a prefix is plain text.
  std::string escaped;
  for (char c : prefix) escaped += c == '%' ? std::string("%%") : std::string(1, c);
  log().sinks().front()->set_pattern(escaped + "[%H:%M:%S.%e] [%^%l%$] %v");
}

void add_log_file(const std::string& path) {
  try {
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, false);
    sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
    log().sinks().push_back(sink);
  } catch (const spdlog::spdlog_ex& e) {
    throw Error(path + ": cannot open log file: " + e.what());
  }
}

}  // namespace medvlp::core
