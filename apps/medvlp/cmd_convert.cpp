// medvlp convert [-c CONFIG] [--checkpoint CHECKPOINT_OR_RUN_DIR] --part image|text [--format F] -o OUT.safetensors
#include <iostream>

#include "commands.h"
#include "medvlp/core/config.h"
#include "medvlp/core/error.h"
#include "medvlp/models/weights.h"
#include "medvlp/train/checkpoint.h"
#include "medvlp/train/experiment.h"

namespace medvlp::app {

Action add_convert(CLI::App& app) {
  struct Args {
    std::string device, config, checkpoint, part, format, out;
    std::vector<std::string> sets;
  };
  auto args = std::make_shared<Args>();
  app.add_option("-c,--config", args->config,
                 "experiment config (default: the config.yaml of the run --checkpoint belongs to)");
  app.add_option("--set", args->sets, "override a config key: a.b.c=value (repeatable)");
  app.add_option("--device", args->device, "auto, cpu, cuda or cuda:N (overrides the config's `device`)");
  app.add_option("--checkpoint", args->checkpoint, "a checkpoint folder or a run folder (its newest checkpoint); default: the config's initial weights");
  app.add_option("--part", args->part, "which encoder to export")->required()->check(CLI::IsMember({"image", "text"}));
  app.add_option("--format", args->format,
                 "parameter names: torchvision | timm (image), hf (text), medvlp; default: the original library's (torchvision for ResNets, timm for ViTs, hf for BERT/CLIP)");
  app.add_option("-o,--out", args->out, "the safetensors file to write")->required();
  return [args] {
    if (!args->checkpoint.empty()) args->checkpoint = resolve_checkpoint_arg(args->checkpoint);
    core::Config config = load_config(config_path_for(args->config, args->checkpoint), args->sets, args->device);
    train::Experiment e = train::Experiment::build(std::move(config), "");
    if (!args->checkpoint.empty()) e.load_state_tensors(train::load_checkpoint(args->checkpoint).model);
    torch::nn::Module& encoder = args->part == "image" ? static_cast<torch::nn::Module&>(*e.model->image_encoder())
                                                       : static_cast<torch::nn::Module&>(*e.model->text_encoder());
    const std::string family =
        args->part == "image" ? e.model->image_encoder()->family() : e.model->text_encoder()->family();
    const std::vector<std::string> extras = args->part == "image" ? e.model->image_encoder()->extra_parameters()
                                                                  : e.model->text_encoder()->extra_parameters();
    const std::string format = args->format.empty() ? models::native_format(family) : args->format;
    const io::TensorMap tensors = models::export_weights(encoder, family, format, extras);
    // "format": "pt" is what Hugging Face's loaders require of a safetensors file's metadata.
    io::save_safetensors(args->out, tensors,
                         {{"format", "pt"},
                          {"medvlp_family", family},
                          {"medvlp_names", format},
                          {"medvlp_source", args->checkpoint.empty() ? "initial weights" : args->checkpoint}});
    std::cout << "wrote " << tensors.size() << " tensors of the " << family << " " << args->part << " encoder ("
              << format << " names) to " << args->out << "\n";
    return 0;
  };
}

}  // namespace medvlp::app
