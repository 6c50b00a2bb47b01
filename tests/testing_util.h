#pragma once
// Helpers shared by the tests: scratch folders and error-message assertions.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "medvlp/core/error.h"

namespace medvlp::testing_util {

/// A fresh, empty folder under the system temp dir, removed at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : std::string("/tmp")) +
                          "/medvlp_test_XXXXXX";
    path_ = ::mkdtemp(pattern.data()) ? pattern : std::string();
  }
  ~TempDir() {
    if (!path_.empty() && std::system(("rm -rf '" + path_ + "'").c_str()) != 0) std::perror("rm -rf");
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// True under CI=true: there a test whose reference (a tool, a package, test files) is missing fails.
inline bool in_ci() {
  const char* ci = std::getenv("CI");
  const std::string v = ci ? ci : "";
  return v == "true" || v == "1" || v == "yes";
}

}  // namespace medvlp::testing_util

/// A missing reference: skips the test outside CI, fails it under CI=true, with `message` either way.
#define MEDVLP_REFERENCE_MISSING(message)                                                                  \
  do {                                                                                                     \
    if (::medvlp::testing_util::in_ci()) {                                                                 \
      FAIL() << message << " (CI=true: a missing reference fails instead of skipping)";                    \
    } else {                                                                                               \
      GTEST_SKIP() << message;                                                                             \
    }                                                                                                      \
  } while (0)

/// Asserts that `statement` throws medvlp::Error whose message contains `substring`.
#define EXPECT_ERROR_CONTAINS(statement, substring)                                             \
  do {                                                                                          \
    try {                                                                                       \
      statement;                                                                                \
      ADD_FAILURE() << "expected medvlp::Error containing \"" << (substring) << "\"";           \
    } catch (const ::medvlp::Error& e) {                                                        \
      EXPECT_NE(std::string(e.what()).find(substring), std::string::npos)                        \
          << "message was: " << e.what();                                                      \
    }                                                                                           \
  } while (0)
