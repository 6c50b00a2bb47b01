#pragma once
// GoogleTest glue for the testing kit (header-only, so the library does not depend on gtest).

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace medvlp::testing {

/// Arguments that make this test executable run only the current test, for RankOptions::child_args.
inline std::vector<std::string> gtest_rerun_args() {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return {"--gtest_filter=" + std::string(info->test_suite_name()) + "." + info->name()};
}

}  // namespace medvlp::testing
