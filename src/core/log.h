#pragma once
// Library-internal logging. spdlog (and the fmt it needs) stays inside logging.cpp: PyTorch
// wheels ship their own fmt headers, which would shadow the fmt that Debian's spdlog expects
// in any translation unit that also includes torch.
#include <string>

#include "medvlp/core/error.h"

namespace medvlp::core {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
void log_message(LogLevel level, const std::string& message);

/// log_info("step ", step, " loss ", loss): the parts are streamed together.
template <typename... Parts>
void log_info(const Parts&... parts) {
  log_message(LogLevel::kInfo, detail::concat(parts...));
}
template <typename... Parts>
void log_warn(const Parts&... parts) {
  log_message(LogLevel::kWarn, detail::concat(parts...));
}

}  // namespace medvlp::core
