// Trains a method's recipe with an explicit loop over medvlp's parts, as a researcher would in their
// own code: the experiment wires data, structured reports, tokenizer, model and losses from the
// config; the loop below loads batches (which carry the anatomy / sentence / entity / tag units the
// losses read), encodes them, sums the weighted losses with a real LossContext and steps AdamW.
// Usage: train_recipe RECIPE.yaml RUN_DIR [STEPS]   (e.g. configs/recipes/fvlm_ct_phantom.yaml)
#include <torch/torch.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "medvlp/core/config.h"
#include "medvlp/core/error.h"
#include "medvlp/data/loader.h"
#include "medvlp/eval/evaluator.h"
#include "medvlp/train/experiment.h"
#include "medvlp/train/optimizer.h"

int main(int argc, char** argv) {
  using namespace medvlp;
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " RECIPE.yaml RUN_DIR [STEPS]\n";
    return 2;
  }
  const int64_t steps = argc > 3 ? std::stoll(argv[3]) : 4;
  try {
    core::Config config = core::Config::load(argv[1]);
    // Small enough to run in seconds on a CPU; drop these lines for the recipe's own sizes.
    for (const char* s : {"data.train_size=32", "data.val_size=8", "data.test_size=32", "text.train_reports=32",
                          "text.vocab_size=120", "train.batch_size=8", "data.workers=1"})
      config.set(s);
    train::Experiment e = train::Experiment::build(config, argv[2]);

    std::cout << "losses:";
    for (const auto& wl : e.losses) {
      std::cout << " " << wl.name << " (reads";
      for (const auto& field : wl.loss->needs()) std::cout << " " << field;
      std::cout << ")";
    }
    std::cout << "\n";

    train::AdamW optimizer(e.trainable(), e.optim);
    data::Loader loader(e.train_set, e.tokenizer, e.loader);
    int64_t epoch = 0;
    loader.start(epoch);
    e.model->train();
    for (auto& wl : e.losses) wl.loss->train();
    for (int64_t step = 0; step < steps; ++step) {
      data::Batch batch;
      while (!loader.next(&batch)) loader.start(++epoch);
      batch = batch.to(e.device);
      batch.images = (batch.images - e.image_mean) / e.image_std;
      const models::Encoded encoded = e.model->forward(batch);
      const losses::LossContext context = train::make_loss_context(e.group, step, /*training=*/true);
      at::Tensor total = torch::zeros({}, torch::TensorOptions().device(e.device));
      std::string terms;
      for (const auto& wl : e.losses) {
        const losses::LossOutput out = wl.loss->forward(encoded, batch, context);
        total = total + wl.weight * out.total;
        terms += " " + wl.name + "=" + std::to_string(out.total.item<double>());
      }
      optimizer.zero_grad();
      total.backward();
      optimizer.step(e.schedule.at(step));
      std::printf("step %lld total %.4f%s\n", static_cast<long long>(step + 1), total.item<double>(), terms.c_str());
    }
    const auto result = e.evaluate();
    std::cout << eval::format_eval_table(result);
  } catch (const Error& err) {
    std::cerr << "error: " << err.what() << "\n";
    return 1;
  }
  return 0;
}
