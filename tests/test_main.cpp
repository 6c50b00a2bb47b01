#include <gtest/gtest.h>
#include <torch/torch.h>

#include "medvlp/core/logging.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  medvlp::core::set_log_level("warn");
  torch::set_num_threads(1);  // ctest may run tests in parallel; keep each one single-threaded
  return RUN_ALL_TESTS();
}
