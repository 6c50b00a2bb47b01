// medvlp finetune (--checkpoint CHECKPOINT_OR_RUN_DIR | -c CONFIG --init) [--fraction F] [--seed S] [-o OUT.json] [--save W.safetensors]
// Fine-tunes the whole image encoder with a linear head on a fraction of the training labels (per
// patient): writes the test figures (with bootstrap CIs) and the per-case test scores beside them.
#include <cstdio>
#include <iostream>

#include <torch/torch.h>

#include "commands.h"
#include "medvlp/core/error.h"
#include "medvlp/data/build.h"
#include "medvlp/eval/evaluator.h"
#include "medvlp/eval/finetune.h"
#include "medvlp/io/files.h"
#include "medvlp/io/safetensors.h"
#include "medvlp/train/checkpoint.h"
#include "medvlp/train/experiment.h"

namespace medvlp::app {

Action add_finetune(CLI::App& app) {
  struct Args {
    ModelArgs model;
    std::string out, save;
    eval::FineTuneOptions tune;
  };
  auto args = std::make_shared<Args>();
  args->model.add_to(app, "a checkpoint folder, RUN/best, or a run folder (its newest checkpoint)",
                     "fine-tune from the seed's initial weights (from scratch; or from converted torchvision/timm "
                     "weights named by --set model.image.weights=...)");
  app.add_option("--fraction", args->tune.fraction, "fraction of the training patients whose labels train")->check(CLI::Range(1e-6, 1.0));
  app.add_option("--seed", args->tune.seed, "which patients are drawn, the head's initialization and the batch order");
  app.add_option("--objective", args->tune.objective, "bce: multi-label; ce: single-label (one positive finding per case)")
      ->check(CLI::IsMember({"bce", "ce"}));
  app.add_option("--max-steps", args->tune.max_steps, "optimizer steps at most")->check(CLI::Range(int64_t{1}, int64_t{10000000}));
  app.add_option("--batch-size", args->tune.batch_size, "cases per step")->check(CLI::Range(int64_t{1}, int64_t{65536}));
  app.add_option("--eval-every", args->tune.eval_every, "steps between validations")->check(CLI::Range(int64_t{1}, int64_t{10000000}));
  app.add_option("--patience", args->tune.patience, "validations without a better mean AUROC before stopping")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  app.add_option("--lr", args->tune.lr, "AdamW learning rate of the head")->check(CLI::Range(1e-8, 10.0));
  app.add_option("--encoder-lr", args->tune.encoder_lr, "AdamW learning rate of the encoder (0 freezes it)")->check(CLI::Range(0.0, 10.0));
  app.add_option("--bootstrap", args->tune.summary.resamples, "patient bootstrap resamples for the test CIs (0: none)")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000}));
  app.add_option("-o,--out", args->out, "the JSON result (default: RUN/finetune_<fraction>.json, or finetune_init_<fraction>.json)");
  app.add_option("--save", args->save, "write the fine-tuned encoder (medvlp names: model.image.weights loads it) to this "
                                       "safetensors file, and the head beside it as <name>_head.safetensors");
  return [args] {
    train::Experiment e = args->model.build("finetune");
    const std::string out = args->out.empty() ? args->model.default_result("finetune", args->tune.fraction) : args->out;
    const core::ConfigNode data = e.config.root().at("data");
    const data::DatasetPtr train = data::build_dataset(data, "train", /*augment=*/true);
    const data::DatasetPtr val = data::build_dataset(data, "val", /*augment=*/false);
    args->tune.image_mean = e.image_mean;
    args->tune.image_std = e.image_std;
    eval::Predictions predictions;
    torch::nn::Linear head{nullptr};
    nlohmann::json result =
        eval::fine_tune(e.model->image_encoder(), train, val, e.eval_set, e.device, args->tune, &predictions, &head);
    result["split"] = e.eval.split;
    const std::string stem = json_stem(out);
    eval::write_predictions_csv(stem + "_predictions.csv", predictions);
    io::write_file_atomic(out, result.dump(2) + "\n");
    if (!args->save.empty()) {
      io::TensorMap encoder, head_tensors;
      for (const auto& p : e.model->image_encoder()->named_parameters()) encoder[p.key()] = p.value().detach().cpu();
      for (const auto& b : e.model->image_encoder()->named_buffers()) encoder[b.key()] = b.value().detach().cpu();
      for (const auto& p : head->named_parameters()) head_tensors[p.key()] = p.value().detach().cpu();
      std::string findings;
      for (const auto& f : e.eval_set->findings()) findings += (findings.empty() ? "" : ",") + f;
      io::save_safetensors(args->save, encoder, {{"format", "medvlp"}, {"source", "medvlp finetune"}});
      std::string base = args->save;
      if (base.size() > 12 && base.compare(base.size() - 12, 12, ".safetensors") == 0) base.resize(base.size() - 12);
      io::save_safetensors(base + "_head.safetensors", head_tensors, {{"findings", findings}});
    }
    char title[200];
    std::snprintf(title, sizeof title, "fine-tuned encoder, %g of the training patients (%lld cases), best step %lld of %lld",
                  args->tune.fraction, static_cast<long long>(result["train_cases"].get<int64_t>()),
                  static_cast<long long>(result["best_step"].get<int64_t>()),
                  static_cast<long long>(result["steps"].get<int64_t>()));
    nlohmann::json table = {{"n", predictions.size()}, {"zero_shot", result}};
    table["zero_shot"]["thresholds_from"] = "val";
    std::cout << eval::format_eval_table(table, title) << "written to " << out << " and " << stem << "_predictions.csv";
    if (!args->save.empty()) std::cout << "; the encoder to " << args->save;
    std::cout << "\n";
    return 0;
  };
}

}  // namespace medvlp::app
