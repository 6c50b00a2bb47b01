// medvlp: train, evaluate and generate data for medical vision-language pretraining.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>

#include "commands.h"
#include "medvlp/core/error.h"
#include "medvlp/core/logging.h"
#include "medvlp/core/version.h"
#include "medvlp/text/report_io.h"

int main(int argc, char** argv) {
  CLI::App app{"medvlp: medical vision-language pretraining"};
  app.require_subcommand(1);
  app.set_version_flag(
      "--version",
      [] {
        const std::string configs = medvlp::text::builtin_config_root();
        return medvlp::core::build_summary() + "\nconfigs: " + (configs.empty() ? "(none found)" : configs);
      },
      "print medvlp's version, its LibTorch version, whether CUDA is usable and where the built-in "
      "configs are, and exit");
  // `medvlp train -c X --log-level warn`: options of the tool are accepted after the subcommand too.
  app.fallthrough();
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off");
  std::map<CLI::App*, medvlp::app::Action> actions;
  auto add = [&](const char* name, const char* help, medvlp::app::Action (*make)(CLI::App&)) {
    CLI::App* sub = app.add_subcommand(name, help);
    actions[sub] = make(*sub);
  };
  add("train", "pretrain a model from a config", medvlp::app::add_train);
  add("eval", "zero-shot classification and retrieval of a checkpoint", medvlp::app::add_eval);
  add("probe", "linear probe of the frozen image encoder with a fraction of the training labels", medvlp::app::add_probe);
  add("finetune", "fine-tune the image encoder with a linear head on a fraction of the training labels", medvlp::app::add_finetune);
  add("embed", "image and/or text embeddings of a trained model, into a safetensors file", medvlp::app::add_embed);
  add("zero-shot", "score image files against findings' prompts, optionally with heat maps", medvlp::app::add_zero_shot);
  add("metrics", "AUROC/AUPRC/F1/accuracy with bootstrap CIs from a predictions CSV", medvlp::app::add_metrics);
  add("synth", "write synthetic phantoms (chest X-ray PNG or CT NIfTI) + JSONL manifest", medvlp::app::add_synth);
  add("build-shards", "pre-decode a dataset into memory-mapped shards", medvlp::app::add_build_shards);
  add("loss-check", "evaluate a loss on named tensors and write its value and gradients",
      medvlp::app::add_loss_check);
  add("convert", "export an encoder's weights under torchvision / timm / Hugging Face names",
      medvlp::app::add_convert);
  add("export", "write a trained model for Python (python/medvlp_model.py): encoders, heads, tokenizer, preprocessing",
      medvlp::app::add_export);
  add("existence", "present/absent/uncertain for each sentence<TAB>term line", medvlp::app::add_existence);
  add("parse-reports", "reports -> sentences, <anatomy, finding, existence> triplets and labels (JSONL)",
      medvlp::app::add_parse_reports);
  add("tokenize", "token ids of each input line (WordPiece, CLIP BPE or SentencePiece)", medvlp::app::add_tokenize);
  add("inspect", "geometry, metadata and pixel statistics of DICOM / CT series / NIfTI / PNG / JPEG",
      medvlp::app::add_inspect);
  // Last, so that the script it writes covers every subcommand above.
  CLI::App* completion = app.add_subcommand("completion", "print a bash completion script: source <(medvlp completion bash)");
  std::string shell, completion_out;
  completion->add_option("shell", shell, "the shell")->required()->check(CLI::IsMember({"bash"}));
  completion->add_option("-o,--out", completion_out, "write the script to this file instead of standard output");
  actions[completion] = [&app, &completion_out] {
    const std::string script = medvlp::app::bash_completion(app);
    if (completion_out.empty()) {
      std::cout << script;
    } else {
      std::ofstream file(completion_out);
      file << script;
      MEDVLP_CHECK(file.good(), "completion: cannot write ", completion_out);
    }
    return 0;
  };
  CLI11_PARSE(app, argc, argv);
  // Ranks started by `medvlp train --nproc N` share one terminal: label their lines.
  const char* label = std::getenv("MEDVLP_RANK_LABEL");
  const std::string prefix = label && *label ? "[" + std::string(label) + "] " : "";
  try {
    if (!prefix.empty()) medvlp::core::set_log_prefix(prefix);
    medvlp::core::set_log_level(log_level);
    for (auto& [sub, action] : actions)
      if (sub->parsed()) return action();
  } catch (const medvlp::Error& e) {
    std::cerr << prefix << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << prefix << "internal error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
