// The method recipes under configs/recipes/: each phantom variant trains a few steps as shipped (only
// sizes shrunk), and each full-size recipe is valid as written: every key known, its report section
// valid for its lexicon, its losses fed by its data and model.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>

#include "../testing_util.h"
#include "medvlp/core/config.h"
#include "medvlp/data/report_structure.h"
#include "medvlp/data/synthetic_ct.h"
#include "medvlp/eval/evaluator.h"
#include "medvlp/train/trainer.h"

using namespace medvlp;

namespace {

std::string recipe(const std::string& name) { return std::string(MEDVLP_SOURCE_DIR) + "/configs/recipes/" + name + ".yaml"; }

class PhantomRecipe : public ::testing::TestWithParam<std::string> {};

TEST_P(PhantomRecipe, TrainsAFewStepsAsShipped) {
  testing_util::TempDir dir;
  core::Config c = core::Config::load(recipe(GetParam()));
  for (const char* s : {"device=cpu", "data.train_size=24", "data.val_size=4", "data.test_size=8", "text.train_reports=24",
                        "text.vocab_size=100", "train.steps=3", "train.batch_size=8", "train.log_every=1",
                        "train.checkpoint_every=0", "train.progress=false", "schedule.warmup_steps=1"})
    c.set(s);
  train::Experiment e = train::Experiment::build(c, dir.path() + "/run");
  train::Trainer t(e);
  t.run();
  std::ifstream in(dir.path() + "/run/metrics.jsonl");
  int64_t lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    const nlohmann::json logged = nlohmann::json::parse(line);
    for (const auto& [key, value] : logged.items()) {
      if (value.is_number()) {
        EXPECT_TRUE(std::isfinite(value.get<double>())) << key;
      }
    }
  }
  EXPECT_EQ(lines, 3);
}

INSTANTIATE_TEST_SUITE_P(Recipes, PhantomRecipe,
                         ::testing::Values("afloc_cxr_phantom", "asg_cxr_phantom", "medfilip_cxr_phantom",
                                           "fvlm_ct_phantom"));

class FullRecipe : public ::testing::TestWithParam<std::string> {};

TEST_P(FullRecipe, IsValidAsWritten) {
  nlohmann::json tree = core::Config::load(recipe(GetParam())).tree();
  // The report section as written: its lexicon, knowledge, anatomies and tags resolve.
  {
    const core::Config as_written = core::Config::from_json(tree, recipe(GetParam()));
    const core::ConfigNode report = as_written.root().at("data").at("report");
    data::ReportStructureOptions o = data::ReportStructurer::parse_options(report, {}, {});
    o.units = {true, true, true, report.has("tags")};
    const data::ReportStructurer structurer(o);
    if (report.has("anatomies")) {
      EXPECT_EQ(structurer.anatomy_names().size(), tree["data"]["report"]["anatomies"].size());
    }
    // Prompts as written: findings of the data section, per-anatomy ones naming the report's anatomies.
    if (tree["data"].contains("findings") && tree.contains("eval")) {
      const auto options = eval::parse_eval_options(as_written.root().at("eval"),
                                                    tree["data"]["findings"].get<std::vector<std::string>>());
      const auto names = structurer.anatomy_names();
      for (const auto& p : options.prompts)
        for (const auto& a : p.anatomies)
          EXPECT_NE(std::find(names.begin(), names.end(), a), names.end()) << p.finding << ": " << a;
    }
  }
  // Everything else with the data swapped for phantoms (the recipe's data are not here) and no
  // pretrained files: the experiment must build, so every key is known and every loss is fed.
  const bool ct = tree["data"]["name"] == "manifest";
  nlohmann::json report = tree["data"]["report"];
  if (ct) {
    report["anatomies"] = data::ct_anatomies();
    tree["data"] = {{"name", "synthetic_ct"}, {"size", {16, 32, 32}}, {"train_size", 8}, {"val_size", 2}, {"test_size", 2}};
  } else {
    tree["data"] = {{"name", "synthetic_cxr"}, {"image_size", 32}, {"train_size", 8}, {"val_size", 2}, {"test_size", 2}};
  }
  tree["data"]["report"] = report;
  tree["data"]["workers"] = 0;
  const int64_t max_len = tree["text"]["max_len"].get<int64_t>();
  tree["text"] = {{"tokenizer", "sentencepiece"}, {"vocab_size", 60}, {"train_reports", 8}, {"max_len", max_len}};
  for (const char* part : {"image", "text"}) {
    tree["model"][part].erase("weights");
    tree["model"][part].erase("weights_format");
  }
  tree["eval"] = {{"split", "test"}};
  tree["device"] = "cpu";
  testing_util::TempDir dir;
  train::Experiment e = train::Experiment::build(core::Config::from_json(tree, recipe(GetParam())), dir.path());
  EXPECT_FALSE(e.losses.empty());
}

INSTANTIATE_TEST_SUITE_P(Recipes, FullRecipe, ::testing::Values("afloc_cxr", "asg_cxr", "medfilip_cxr", "fvlm_ct"));

}  // namespace
