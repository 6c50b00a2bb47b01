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

}  // namespace medvlp::testing_util

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
