#pragma once
// Library-internal logging (spdlog is not part of the public interface).
#include <spdlog/spdlog.h>

namespace medvlp::core {
/// The library's logger ("medvlp"), created on first use.
spdlog::logger& log();
}  // namespace medvlp::core
