#include "medvlp/core/config.h"

#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <fstream>

#include "../testing_util.h"
#include "medvlp/core/device.h"
#include "medvlp/core/registry.h"

using medvlp::core::Config;

TEST(Config, UnknownKeyNamesFileLineAndFullPath) {
  Config c = Config::parse("train:\n  steps: 3\n  stepz: 4\n", "exp.yaml");
  EXPECT_EQ(c.root().child("train").get_int("steps", 0), 3);
  EXPECT_ERROR_CONTAINS(c.check_all_used(), "exp.yaml:3: train.stepz: unknown key");
}

TEST(Config, WrongTypeNamesPathAndWhatWasFound) {
  Config c = Config::parse("optim:\n  lr: fast\n", "exp.yaml");
  EXPECT_ERROR_CONTAINS(c.root().child("optim").get_double("lr", 1.0), "exp.yaml:2: optim.lr: expected a number, got string \"fast\"");
}

TEST(Config, OutOfRangeValueIsRejected) {
  Config c = Config::parse("losses:\n  - name: clip\n    options:\n      temperature: -0.1\n", "exp.yaml");
  auto items = c.root().at("losses").items();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_ERROR_CONTAINS(items[0].child("options").get_double("temperature", 0.07, 1e-4, 10.0),
                        "exp.yaml:4: losses[0].options.temperature: expected a number in [0.0001, 10], got -0.1");
}

TEST(Config, MissingRequiredKeyIsNamed) {
  Config c = Config::parse("model:\n  image: {}\n", "exp.yaml");
  EXPECT_ERROR_CONTAINS(c.root().at("model").at("image").get_string("name"), "model.image.name: required key is missing");
}

TEST(Config, ChoiceListsTheAllowedValues) {
  Config c = Config::parse("train:\n  precision: fp8\n", "exp.yaml");
  EXPECT_ERROR_CONTAINS(c.root().child("train").get_choice("precision", "auto", {"auto", "fp32", "bf16"}),
                        "expected one of {auto, fp32, bf16}, got \"fp8\"");
}

TEST(Config, SetOverridesValuesWithTypes) {
  Config c = Config::parse("train:\n  steps: 3\n", "exp.yaml");
  c.set("train.steps=7");
  c.set("train.name=\"007\"");
  c.set("eval.recall_k=[1, 2]");
  EXPECT_EQ(c.root().child("train").get_int("steps", 0), 7);
  EXPECT_EQ(c.root().child("train").get_string("name"), "007");
  EXPECT_EQ(c.root().child("eval").get_ints("recall_k", {}), (std::vector<int64_t>{1, 2}));
  c.check_all_used();
}

TEST(Config, SetTypoIsReportedAsTheOverride) {
  Config c = Config::parse("train:\n  steps: 3\n", "exp.yaml");
  c.set("train.stepz=7");
  c.root().child("train").get_int("steps", 0);
  EXPECT_ERROR_CONTAINS(c.check_all_used(), "--set train.stepz=7: train.stepz: unknown key");
}

TEST(Config, SetNullUnsetsAKeySoItsDefaultApplies) {
  Config c = Config::parse("train:\n  steps: 3\n  clip: {max_norm: 1}\n", "exp.yaml");
  c.set("train.clip=null");
  const auto train = c.root().child("train");
  EXPECT_EQ(train.get_int("steps", 0), 3);
  EXPECT_FALSE(train.has("clip"));
  EXPECT_EQ(train.get_double("clip", 5.0), 5.0);  // the default, not a type error
  c.check_all_used();                              // never read, yet not an unknown key
  c.set("train.stepz=null");                       // nor a typo set to null: it sets nothing
  c.check_all_used();
}

TEST(Config, SetRejectsMalformedAssignments) {
  Config c = Config::parse("a: 1\n", "exp.yaml");
  EXPECT_ERROR_CONTAINS(c.set("novalue"), "expected key.path=value");
  EXPECT_ERROR_CONTAINS(c.set("a.b=1"), "a.b is inside a value that is not a map");
}

TEST(Config, YamlAndJsonGiveTheSameTree) {
  Config y = Config::parse("a: 1\nb: [x, 2.5]\nc: {d: true, e: null}\nq: \"12\"\n", "x.yaml");
  Config j = Config::parse(R"({"a": 1, "b": ["x", 2.5], "c": {"d": true, "e": null}, "q": "12"})", "x.json");
  EXPECT_EQ(y.tree(), j.tree());
  EXPECT_TRUE(y.tree()["q"].is_string());
}

TEST(Config, SaveAndReloadRoundTrips) {
  medvlp::testing_util::TempDir dir;
  Config c = Config::parse("a: 1\nb: [x, \"2\"]\nc: {d: true, e: 0.5, f: \"yes\"}\n", "x.yaml");
  c.save(dir.path() + "/c.yaml");
  c.save(dir.path() + "/c.json");
  EXPECT_EQ(Config::load(dir.path() + "/c.yaml").tree(), c.tree());
  EXPECT_EQ(Config::load(dir.path() + "/c.json").tree(), c.tree());
}

TEST(Config, InvalidYamlNamesFileAndLine) {
  EXPECT_ERROR_CONTAINS(Config::parse("a: [1, 2\nb: 3\n", "bad.yaml"), "bad.yaml:");
  EXPECT_ERROR_CONTAINS(Config::parse("a: 1\na: 2\n", "dup.yaml"), "dup.yaml:2: a: duplicate key");
  EXPECT_ERROR_CONTAINS(Config::load("/nonexistent/x.yaml"), "/nonexistent/x.yaml: cannot open config file");
}

TEST(Registry, UnknownNameListsKnownNames) {
  medvlp::core::Registry<int, int> registry("widget");
  registry.add("double", [](int x) { return 2 * x; });
  registry.add("square", [](int x) { return x * x; });
  EXPECT_EQ(registry.create("square", 3), 9);
  EXPECT_ERROR_CONTAINS(registry.create("cube", 3), "unknown widget 'cube'; known: double, square");
  EXPECT_ERROR_CONTAINS(registry.add("double", [](int x) { return x; }), "registered twice");
}

TEST(Device, ParsesSpecsAndRejectsBadOnes) {
  EXPECT_TRUE(medvlp::core::select_device("cpu").is_cpu());
  EXPECT_NO_THROW(medvlp::core::select_device("auto"));
  EXPECT_ERROR_CONTAINS(medvlp::core::select_device("tpu"), "expected auto, cpu, cuda or cuda:N");
  if (!torch::cuda::is_available()) {
    EXPECT_ERROR_CONTAINS(medvlp::core::select_device("cuda:0"), "CUDA is not available");
  } else {
    EXPECT_ERROR_CONTAINS(medvlp::core::select_device("cuda:99"), "expected a GPU index");
  }
}

// Found by fuzz/config_fuzz: yaml-cpp passes invalid UTF-8 through, and the resolved config then
// could not be saved (nlohmann::json refuses to serialize it) -- an internal error, not a message.
TEST(Config, InvalidUtf8IsNamedWithLineAndColumn) {
  EXPECT_ERROR_CONTAINS(medvlp::core::Config::parse("seed: 3\ndata: {\xee" "ame: x}\n", "bad.yaml"),
                        "bad.yaml:2:8: invalid UTF-8 (byte 0xee)");
  EXPECT_ERROR_CONTAINS(medvlp::core::Config::parse("a: \xc0\xaf\n", "overlong.yaml"), "overlong.yaml:1:4: invalid UTF-8");
  auto c = medvlp::core::Config::parse("seed: 3\ntext: {x: \"caf\xc3\xa9\"}\n", "ok.yaml");
  EXPECT_NO_THROW(c.set("text.y=na\xc3\xafve"));
  EXPECT_ERROR_CONTAINS(c.set("text.z=\xff"), "--set text.z:1:8: invalid UTF-8 (byte 0xff)");
  EXPECT_NO_THROW((void)c.tree().dump());
}

// Found by fuzz/config_fuzz: a list or map used as a key escaped as yaml-cpp's exception.
TEST(Config, ListOrMapKeysAreRefusedWithTheirPosition) {
  EXPECT_ERROR_CONTAINS(medvlp::core::Config::parse("train: {[a, b]: 1}\n", "k.yaml"),
                        "k.yaml:1:9: train: a key must be a plain string, not a list or map");
  EXPECT_ERROR_CONTAINS(medvlp::core::Config::parse("{seed: 3, {x: 1}: 2}\n", "k2.yaml"),
                        "top level: a key must be a plain string");
}
