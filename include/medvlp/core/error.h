#pragma once
// medvlp::Error: the one exception type thrown for bad user input and failed I/O.

#include <sstream>
#include <stdexcept>
#include <string>

namespace medvlp {

/// The exception medvlp throws for bad input, bad config and failed I/O.
/// what() reads as "where: what was expected, what was found"; with_context() prepends outer context.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}

  /// A copy whose message is "context: <this message>".
  Error with_context(const std::string& context) const { return Error(context + ": " + what()); }
};

namespace detail {
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
}  // namespace detail

}  // namespace medvlp

/// Throws medvlp::Error with the streamed parts as message when `cond` is false.
#define MEDVLP_CHECK(cond, ...)                                      \
  do {                                                               \
    if (!(cond)) throw ::medvlp::Error(::medvlp::detail::concat(__VA_ARGS__)); \
  } while (0)
