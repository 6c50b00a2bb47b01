// medvlp export --checkpoint CHECKPOINT_OR_RUN_DIR [-c CONFIG] -o DIR
// The whole model for Python: encoders under their original library's names, projection heads,
// logit scale, tokenizer files, preprocessing and the evaluation prompts, described by export.json,
// with the loader that reads it (python/medvlp_model.py, copied along).
#include <cmath>
#include <filesystem>
#include <iostream>

#include <torch/torch.h>

#include "commands.h"
#include "medvlp/core/error.h"
#include "medvlp/core/version.h"
#include "medvlp/io/files.h"
#include "medvlp/io/safetensors.h"
#include "medvlp/models/weights.h"
#include "medvlp/text/report_io.h"
#include "medvlp/train/experiment.h"

namespace medvlp::app {

namespace {

std::string base_name(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// Copies a tokenizer file into the export under `name`; returns `name`.
std::string copy_file(const std::string& from, const std::string& dir, const std::string& name) {
  io::write_file_atomic(dir + "/" + name, io::read_file(from));
  return name;
}

}  // namespace

Action add_export(CLI::App& app) {
  struct Args {
    ModelArgs model;
    std::string out;
  };
  auto args = std::make_shared<Args>();
  args->model.add_to(app, "a checkpoint folder (RUN/checkpoints/step_N), RUN/best, or a run folder (its newest checkpoint)");
  app.get_option("--checkpoint")->required();
  app.add_option("-o,--out", args->out, "the folder to write (created; an earlier export there is replaced)")->required();
  return [args] {
    train::Experiment e = args->model.build("export");
    const std::string dir = args->out;
    if (io::path_exists(dir)) {
      MEDVLP_CHECK(io::is_directory(dir), dir, ": exists and is not a folder");
      // Never write into a folder of other files (a run folder given by mistake); an earlier export is replaced.
      MEDVLP_CHECK(io::path_exists(dir + "/export.json") || std::filesystem::is_empty(dir), dir,
                   ": a folder that holds other files and no export.json; give a new or empty folder");
    }
    io::make_directories(dir);
    const nlohmann::json& config = e.config.tree();
    nlohmann::json d;
    d["format"] = "medvlp-export";
    d["version"] = 1;
    d["medvlp_version"] = core::version();
    d["checkpoint"] = args->model.checkpoint;
    d["step"] = args->model.step;

    // Encoders, each in the original library's names where medvlp knows them.
    const auto encoder = [&](const std::string& part, torch::nn::Module& module, const std::string& family,
                             const std::vector<std::string>& extras) {
      const std::string format = models::native_format(family);
      const std::string file = part + "_encoder.safetensors";
      io::TensorMap tensors = models::export_weights(module, family, format, extras);
      // medvlp's additions to the original architecture (an attention pool) keep medvlp's names.
      for (const auto& p : module.named_parameters())
        for (const std::string& extra : extras)
          if (p.key().rfind(extra, 0) == 0) tensors[p.key()] = p.value().detach().cpu().contiguous();
      io::save_safetensors(dir + "/" + file, tensors,
                           {{"format", "pt"}, {"medvlp_family", family}, {"medvlp_names", format}});
      nlohmann::json j = config.at("model").at(part);
      return nlohmann::json{{"name", j.value("name", std::string())}, {"family", family}, {"names", format},
                            {"file", file}, {"options", j}};
    };
    d["image"] = encoder("image", *e.model->image_encoder(), e.model->image_encoder()->family(),
                         e.model->image_encoder()->extra_parameters());
    d["text"] = encoder("text", *e.model->text_encoder(), e.model->text_encoder()->family(),
                        e.model->text_encoder()->extra_parameters());
    d["text"]["vocab_size"] = e.tokenizer->vocab_size();

    // The input the image encoder saw in evaluation: the first evaluation image's shape.
    const data::Sample first = e.eval_set->get(0, 0);
    d["image"]["input"] = {{"shape", first.image.sizes().vec()},
                           {"mean", e.image_mean},
                           {"std", e.image_std},
                           {"range", "pixels scaled to [0, 1] (8-bit / 255, 16-bit / 65535), then (x - mean) / std"}};

    // Projection heads (and the token heads of the local losses) in medvlp's names.
    io::TensorMap heads;
    double logit_scale = std::nan("");
    for (const auto& [name, t] : e.state_tensors()) {
      if (name.rfind("image_proj.", 0) == 0 || name.rfind("text_proj.", 0) == 0 || name.rfind("image_local.", 0) == 0 ||
          name.rfind("image_word_local.", 0) == 0 || name.rfind("text_local.", 0) == 0)
        heads[name] = t.detach().cpu().contiguous();
      if (std::isnan(logit_scale) && name.rfind("losses.", 0) == 0 && io::has_suffix(name, ".log_scale"))
        logit_scale = std::exp(t.item<double>());
    }
    io::save_safetensors(dir + "/heads.safetensors", heads, {{"format", "pt"}});
    d["heads"] = {{"file", "heads.safetensors"},
                  {"projection", config.at("model").value("projection", std::string("linear"))},
                  {"embed_dim", e.model->embed_dim()},
                  // The image-encoder stages (counted back from the last) the local heads read.
                  {"token_stage", e.model->token_stage()},
                  {"word_token_stage", e.model->word_token_stage()}};
    d["logit_scale"] = std::isnan(logit_scale) ? nlohmann::json(nullptr) : nlohmann::json(logit_scale);

    // Tokenizer: its files and how medvlp frames the ids.
    const nlohmann::json text = config.value("text", nlohmann::json::object());
    const std::string model_file = text.value("model", std::string());
    MEDVLP_CHECK(!model_file.empty(), "export: the config names no tokenizer file (text.model)");
    nlohmann::json tok = {{"kind", text.value("tokenizer", std::string("sentencepiece"))},
                          {"lowercase", text.value("lowercase", true)},
                          {"max_len", e.eval.max_text_len},
                          {"begin_id", e.tokenizer->begin_id()},
                          {"end_id", e.tokenizer->end_id()},
                          {"pad_id", e.tokenizer->pad_id()}};
    if (io::is_directory(model_file)) {
      // A Hugging Face model folder: the files its tokenizer reads.
      nlohmann::json files = nlohmann::json::array();
      for (const char* name : {"tokenizer.json", "vocab.txt", "tokenizer_config.json", "vocab.json", "merges.txt",
                               "special_tokens_map.json"})
        if (io::path_exists(model_file + "/" + name)) files.push_back(copy_file(model_file + "/" + name, dir, name));
      tok["kind"] = "huggingface_folder";
      tok["files"] = files;
    } else {
      tok["model"] = copy_file(model_file, dir, base_name(model_file));
      if (io::has_suffix(model_file, ".json")) tok["kind"] = "tokenizer_json";
      if (text.contains("merges")) tok["merges"] = copy_file(text.at("merges").get<std::string>(), dir, "merges.txt");
    }
    d["tokenizer"] = tok;

    // Zero-shot prompts, as `medvlp eval` and `medvlp zero-shot` score them.
    nlohmann::json prompts = nlohmann::json::object();
    for (const auto& p : e.eval.prompts) prompts[p.finding] = {{"positive", p.positive}, {"negative", p.negative}};
    d["prompts"] = prompts;
    d["zero_shot"] = "score = image_embedding . normalize(mean of the positive prompts' embeddings) - "
                     "image_embedding . normalize(mean of the negative prompts' embeddings)";

    // The loader travels with the model, so `sys.path.insert(0, DIR); import medvlp_model` works anywhere.
    const std::string loader = text::builtin_config_root() + "/../python/medvlp_model.py";
    MEDVLP_CHECK(io::path_exists(loader), "export: the Python loader is not at ", loader, " (an incomplete installation)");
    copy_file(loader, dir, "medvlp_model.py");
    io::write_file_atomic(dir + "/export.json", d.dump(2) + "\n");
    std::cout << "exported step " << args->model.step << " of " << args->model.checkpoint << " to " << dir
              << " (export.json, image_encoder.safetensors [" << d["image"]["names"].get<std::string>()
              << " names], text_encoder.safetensors [" << d["text"]["names"].get<std::string>()
              << " names], heads.safetensors, the tokenizer's files, medvlp_model.py)\n";
    return 0;
  };
}

}  // namespace medvlp::app
