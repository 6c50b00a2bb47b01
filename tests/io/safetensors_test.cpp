#include "medvlp/io/safetensors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../testing_util.h"
#include "medvlp/io/files.h"

using namespace medvlp::io;

namespace {
std::string with_header(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}
}  // namespace

TEST(Safetensors, RoundTripsDtypesShapesAndMetadata) {
  medvlp::testing_util::TempDir dir;
  TensorMap tensors = {{"f32", torch::randn({3, 4})},
                       {"f16", torch::randn({5}).to(torch::kHalf)},
                       {"bf16", torch::randn({2, 2}).to(torch::kBFloat16)},
                       {"i64", torch::arange(6).view({2, 3})},
                       {"mask", torch::tensor({true, false, true})},
                       {"scalar", torch::full({}, 3.5)},
                       {"empty", torch::zeros({0, 3})}};
  save_safetensors(dir.path() + "/t.safetensors", tensors, {{"format", "pt"}});
  SafetensorsFile back = load_safetensors(dir.path() + "/t.safetensors");
  EXPECT_EQ(back.metadata.at("format"), "pt");
  ASSERT_EQ(back.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    EXPECT_EQ(back.tensors.at(name).scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(back.tensors.at(name), t)) << name;
  }
}

TEST(Safetensors, RejectsTruncatedAndHostileFiles) {
  EXPECT_ERROR_CONTAINS(parse_safetensors("abc", "x.st"), "x.st: not a safetensors file");
  std::string huge(8, '\xff');
  EXPECT_ERROR_CONTAINS(parse_safetensors(huge + "{}", "x.st"), "exceeds the 100 MB limit");
  EXPECT_ERROR_CONTAINS(parse_safetensors(with_header("{\"a\":1}", "").substr(0, 10), "x.st"), "runs past the end");
  EXPECT_ERROR_CONTAINS(parse_safetensors(with_header("{not json", ""), "x.st"), "header is not valid JSON");
  EXPECT_ERROR_CONTAINS(
      parse_safetensors(with_header(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0')), "x.st"),
      "tensor \"w\": data_offsets [0, 16] outside the data section of 8 bytes");
  EXPECT_ERROR_CONTAINS(
      parse_safetensors(with_header(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", std::string(16, '\0')), "x.st"),
      "16 bytes do not hold 3 elements of F32");
  EXPECT_ERROR_CONTAINS(
      parse_safetensors(with_header(R"({"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", std::string(1, '\0')), "x.st"),
      "unsupported dtype \"Q4\"");
  EXPECT_ERROR_CONTAINS(parse_safetensors(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                                      std::string(12, '\0')),
                                          "x.st"),
                        "byte ranges overlap");
  EXPECT_ERROR_CONTAINS(
      parse_safetensors(with_header(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0')), "x.st"),
      "shape entries must be non-negative");
  EXPECT_ERROR_CONTAINS(
      parse_safetensors(with_header(R"({"w":{"dtype":"U8","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})",
                                    std::string(4, '\0')),
                        "x.st"),
      "shape overflows");
  // Many entries that each claim the whole data section: rejected before anything is allocated
  // (otherwise 4,000 entries x 1 MB would allocate 4 GB from a 1 MB file).
  std::string many = "{";
  for (int i = 0; i < 4000; ++i)
    many += (i ? "," : "") + std::string("\"t") + std::to_string(i) + R"(":{"dtype":"U8","shape":[1048576],"data_offsets":[0,1048576]})";
  many += "}";
  EXPECT_ERROR_CONTAINS(parse_safetensors(with_header(many, std::string(1048576, '\0')), "x.st"), "byte ranges overlap");
  EXPECT_ERROR_CONTAINS(load_safetensors("/nonexistent.safetensors"), "/nonexistent.safetensors: cannot open");
}
