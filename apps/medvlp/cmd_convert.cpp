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
    ModelArgs model;
    std::string part, format, out;
  };
  auto args = std::make_shared<Args>();
  args->model.add_to(app, "a checkpoint folder or a run folder (its newest checkpoint); default: the config's initial weights");
  app.add_option("--part", args->part, "which encoder to export")->required()->check(CLI::IsMember({"image", "text"}));
  app.add_option("--format", args->format,
                 "parameter names: torchvision | timm (image), hf (text), medvlp; default: the original library's (torchvision for ResNets, timm for ViTs, hf for BERT/CLIP)");
  app.add_option("-o,--out", args->out, "the safetensors file to write")->required();
  return [args] {
    train::Experiment e = args->model.build("convert");
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
                          {"medvlp_source", args->model.checkpoint.empty() ? "initial weights" : args->model.checkpoint}});
    std::cout << "wrote " << tensors.size() << " tensors of the " << family << " " << args->part << " encoder ("
              << format << " names) to " << args->out << "\n";
    return 0;
  };
}

}  // namespace medvlp::app
