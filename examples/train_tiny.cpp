// Trains a few steps of CLIP-style pretraining from a config file through medvlp's public API,
// then evaluates zero-shot classification. Usage: train_tiny CONFIG RUN_DIR
#include <iostream>

#include "medvlp/core/config.h"
#include "medvlp/core/error.h"
#include "medvlp/eval/evaluator.h"
#include "medvlp/train/experiment.h"
#include "medvlp/train/trainer.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " CONFIG RUN_DIR\n";
    return 2;
  }
  try {
    medvlp::core::Config config = medvlp::core::Config::load(argv[1]);
    // Shrink the experiment so the example runs in seconds.
    for (const char* s : {"data.image_size=32", "data.train_size=64", "data.test_size=32", "train.steps=4",
                          "train.batch_size=16", "text.train_reports=64", "train.progress=false"})
      config.set(s);
    medvlp::train::Experiment experiment = medvlp::train::Experiment::build(config, argv[2]);
    medvlp::train::Trainer trainer(experiment);
    trainer.run();
    const auto result = medvlp::eval::evaluate(experiment.model, experiment.eval_set, *experiment.tokenizer,
                                               experiment.eval, experiment.device, experiment.image_mean,
                                               experiment.image_std);
    std::cout << medvlp::eval::format_eval_table(result);
  } catch (const medvlp::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
