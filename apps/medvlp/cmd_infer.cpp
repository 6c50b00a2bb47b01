// Inference on files, from a run folder or checkpoint:
//   medvlp embed --checkpoint RUN [--images FILE...] [--texts FILE] -o OUT.safetensors
//   medvlp zero-shot --checkpoint RUN IMAGE... [--labels a,b,c] [-o SCORES.csv] [--maps DIR]
// Images are read as a manifest listing them would be (PNG/JPEG/DICOM/NIfTI, the config's
// data.transforms in evaluation form) and brought to the shape of the evaluation set's images.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <torch/torch.h>

#include "commands.h"
#include "medvlp/core/error.h"
#include "medvlp/data/manifest.h"
#include "medvlp/data/transforms.h"
#include "medvlp/eval/evaluator.h"
#include "medvlp/eval/localization.h"
#include "medvlp/io/files.h"
#include "medvlp/io/safetensors.h"
#include "medvlp/train/experiment.h"

namespace medvlp::app {

namespace {

namespace F = torch::nn::functional;

// Samples resized (bilinear / trilinear) and channel-matched to the model's input shape; says once
// on stderr that it did so.
class ShapedImages : public data::Dataset {
 public:
  ShapedImages(data::DatasetPtr base, std::vector<int64_t> shape) : base_(std::move(base)), shape_(std::move(shape)) {}
  int64_t size() const override { return base_->size(); }
  std::vector<std::string> findings() const override { return base_->findings(); }
  std::string patient_id(int64_t index) const override { return base_->patient_id(index); }
  data::Sample get(int64_t index, int64_t epoch) const override {
    data::Sample s = base_->get(index, epoch);
    if (s.image.sizes().vec() == shape_) return s;
    MEDVLP_CHECK(s.image.dim() == static_cast<int64_t>(shape_.size()), s.id, ": a ", s.image.dim() - 1,
                 "-D image, but the model takes ", shape_.size() - 1, "-D inputs of shape ", c10::IntArrayRef(shape_));
    if (!warned_) {
      std::cerr << "note: images are resized to the model's input " << c10::IntArrayRef(shape_).slice(1)
                << " (the first: " << s.id << ", " << s.image.sizes().slice(1) << ")\n";
      warned_ = true;
    }
    at::Tensor image = s.image.to(torch::kFloat);
    if (image.size(0) != shape_[0]) {
      MEDVLP_CHECK(image.size(0) == 1 || shape_[0] == 1, s.id, ": ", image.size(0), " channels, the model takes ", shape_[0]);
      image = image.size(0) == 1 ? image.expand({shape_[0], -1, -1}).contiguous() : image.mean(0, true);
    }
    const std::vector<int64_t> spatial(shape_.begin() + 1, shape_.end());
    if (image.sizes().slice(1).vec() != spatial) {
      F::InterpolateFuncOptions o = F::InterpolateFuncOptions().size(spatial).align_corners(false);
      if (spatial.size() == 2) o.mode(torch::kBilinear);
      else o.mode(torch::kTrilinear);
      image = F::interpolate(image.unsqueeze(0), o)[0];
    }
    s.image = image;
    return s;
  }

 private:
  data::DatasetPtr base_;
  std::vector<int64_t> shape_;
  mutable bool warned_ = false;
};

// The files as the dataset a manifest of them would be, read with e's data.transforms.
data::DatasetPtr image_files(const train::Experiment& e, const std::vector<std::string>& paths,
                             const std::vector<std::string>& findings) {
  std::vector<data::ManifestEntry> entries;
  for (const auto& p : paths) {
    data::ManifestEntry m;
    m.where = "image " + std::to_string(entries.size() + 1) + " of the command line";
    m.id = m.patient_id = m.image_path = p;
    entries.push_back(std::move(m));
  }
  data::ManifestDataset::Options o;
  o.findings = findings;
  o.missing = data::MissingPolicy::kFail;
  data::DatasetPtr d = std::make_shared<data::ManifestDataset>("command line", std::move(entries), o);
  const core::ConfigNode node = e.config.root().at("data");
  if (node.has("transforms"))
    d = std::make_shared<data::TransformedDataset>(
        d, data::build_transforms(node.at("transforms"), static_cast<uint64_t>(node.get_int("seed", 0, 0))), false);
  return std::make_shared<ShapedImages>(d, e.eval_set->get(0, 0).image.sizes().vec());
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> out;
  std::string line;
  if (path == "-") {
    while (std::getline(std::cin, line)) out.push_back(line);
    return out;
  }
  std::ifstream in(path);
  MEDVLP_CHECK(in.good(), path, ": cannot open the texts file");
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back(line);
  }
  return out;
}

std::string json_list(const std::vector<std::string>& items) { return nlohmann::json(items).dump(); }

}  // namespace

Action add_embed(CLI::App& app) {
  struct Args {
    ModelArgs model;
    std::vector<std::string> images;
    std::string texts, out;
  };
  auto args = std::make_shared<Args>();
  args->model.add_to(app, "a checkpoint folder, RUN/best, or a run folder (its newest checkpoint)");
  app.add_option("--images", args->images, "image files (PNG, JPEG, DICOM, NIfTI) -> image_embed [N,D]");
  app.add_option("--texts", args->texts, "a file with one text per line, or - for standard input -> text_embed [M,D]");
  app.add_option("-o,--out", args->out, "the safetensors file to write")->required();
  return [args] {
    MEDVLP_CHECK(!args->images.empty() || !args->texts.empty(), "embed: give --images, --texts or both");
    train::Experiment e = args->model.build("embed");
    torch::NoGradGuard no_grad;
    e.model->eval();
    io::TensorMap tensors;
    std::map<std::string, std::string> metadata = {{"source", "medvlp embed"}, {"checkpoint", args->model.checkpoint},
                                                   {"normalized", "L2, so dot products are cosines"}};
    if (!args->images.empty()) {
      const data::DatasetPtr files = image_files(e, args->images, {});
      std::vector<at::Tensor> out;
      for (int64_t start = 0; start < files->size(); start += e.eval.batch_size) {
        std::vector<data::Sample> samples;
        for (int64_t i = start; i < std::min(files->size(), start + e.eval.batch_size); ++i) samples.push_back(files->get(i, 0));
        const at::Tensor images = ((data::collate(samples).images - e.image_mean) / e.image_std).to(e.device);
        out.push_back(e.model->encode_images(images).to(torch::kFloat).cpu());
      }
      tensors["image_embed"] = torch::cat(out);
      metadata["images"] = json_list(args->images);
    }
    if (!args->texts.empty()) {
      const std::vector<std::string> texts = read_lines(args->texts);
      MEDVLP_CHECK(!texts.empty(), args->texts, ": no texts (one per line)");
      std::vector<at::Tensor> out;
      for (size_t start = 0; start < texts.size(); start += static_cast<size_t>(e.eval.batch_size)) {
        const std::vector<std::string> chunk(texts.begin() + static_cast<std::ptrdiff_t>(start),
                                             texts.begin() + static_cast<std::ptrdiff_t>(std::min(texts.size(), start + static_cast<size_t>(e.eval.batch_size))));
        const auto tokens = e.tokenizer->encode(chunk, e.eval.max_text_len);
        out.push_back(e.model->encode_texts(tokens.ids.to(e.device), tokens.mask.to(e.device)).to(torch::kFloat).cpu());
      }
      tensors["text_embed"] = torch::cat(out);
      metadata["texts"] = json_list(texts);
    }
    io::save_safetensors(args->out, tensors, metadata);
    std::cout << "wrote";
    for (const auto& [name, t] : tensors) std::cout << " " << name << " " << t.sizes();
    std::cout << " to " << args->out << "\n";
    return 0;
  };
}

Action add_zero_shot(CLI::App& app) {
  struct Args {
    ModelArgs model;
    std::vector<std::string> images, labels;
    std::string out, maps, map_kind = "auto";
  };
  auto args = std::make_shared<Args>();
  args->model.add_to(app, "a checkpoint folder, RUN/best, or a run folder (its newest checkpoint)");
  app.add_option("images", args->images, "image files (PNG, JPEG, DICOM, NIfTI)")->required();
  app.add_option("--labels", args->labels, "findings to score (default: those of the config's eval.prompts); a label "
                                           "without configured prompts is scored as \"<label>.\" against \"no <label>.\"")
      ->delimiter(',');
  app.add_option("-o,--out", args->out, "also write the scores as a predictions CSV (as eval_predictions.csv)");
  app.add_option("--maps", args->maps, "write a heat map PNG per image and label into this folder (a volume: its axial slice through the map's peak)");
  app.add_option("--map-kind", args->map_kind, "tokens (word-patch, models with local heads), sentences (the prompt as a sentence unit against the sentence level's patches), embedding, or auto")
      ->check(CLI::IsMember({"auto", "tokens", "sentences", "embedding"}));
  return [args] {
    train::Experiment e = args->model.build("zero-shot");
    eval::EvalOptions options = e.eval;
    std::vector<std::string> labels = args->labels;
    if (labels.empty())
      for (const auto& p : options.prompts) labels.push_back(p.finding);
    MEDVLP_CHECK(!labels.empty(), "zero-shot: no labels given and the config has no eval.prompts");
    std::vector<eval::FindingPrompts> prompts;
    for (const auto& label : labels) {
      const auto it = std::find_if(options.prompts.begin(), options.prompts.end(),
                                   [&](const eval::FindingPrompts& p) { return p.finding == label; });
      eval::FindingPrompts p = it != options.prompts.end() ? *it : eval::FindingPrompts{label, {label + "."}, {"no " + label + "."}, {}};
      MEDVLP_CHECK(p.anatomies.empty(), "zero-shot: \"", label, "\" is scored per anatomy (eval.prompts.", label,
                   ".anatomy), which needs anatomy masks that image files do not have");
      prompts.push_back(std::move(p));
    }
    options.prompts = prompts;
    const data::DatasetPtr files = image_files(e, args->images, labels);
    const eval::Predictions p = eval::predict_zero_shot(e.model, files, *e.tokenizer, options, e.device, e.image_mean, e.image_std);
    // Table: one row per image, a score per label (cos to the positive prompts minus cos to the negative).
    size_t width = 5;
    for (const auto& id : p.ids) width = std::max(width, id.size());
    std::cout << std::left << std::setw(static_cast<int>(width) + 2) << "image";
    for (const auto& l : labels) std::cout << std::setw(static_cast<int>(std::max<size_t>(l.size(), 7)) + 2) << l;
    std::cout << "\n" << std::fixed << std::setprecision(4);
    for (size_t i = 0; i < p.ids.size(); ++i) {
      std::cout << std::setw(static_cast<int>(width) + 2) << p.ids[i];
      for (size_t k = 0; k < labels.size(); ++k)
        std::cout << std::setw(static_cast<int>(std::max<size_t>(labels[k].size(), 7)) + 2) << p.scores[k][i];
      std::cout << "\n";
    }
    std::cout << "(scores: cosine to the label's positive prompts minus cosine to its negative ones; higher is more likely)\n";
    if (!args->out.empty()) {
      eval::write_predictions_csv(args->out, p);
      std::cout << "scores written to " << args->out << "\n";
    }
    if (!args->maps.empty()) {
      torch::NoGradGuard no_grad;
      e.model->eval();
      std::vector<std::pair<std::string, std::vector<std::string>>> positives;
      for (const auto& p : prompts) positives.emplace_back(p.finding, p.positive);
      const eval::FindingMaps finding_maps(e.model, *e.tokenizer, positives, options.max_text_len, e.device, args->map_kind);
      const std::string& mode = finding_maps.mode();
      io::make_directories(args->maps);
      int64_t written = 0;
      for (int64_t i = 0; i < files->size(); ++i) {
        const data::Sample s = files->get(i, 0);
        const std::vector<int64_t> shape(s.image.sizes().begin() + 1, s.image.sizes().end());
        const at::Tensor maps = eval::upsample_maps(finding_maps((s.image - e.image_mean) / e.image_std), shape);
        for (size_t k = 0; k < labels.size(); ++k, ++written) {
          char index[32];
          std::snprintf(index, sizeof index, "%04lld", static_cast<long long>(i));
          const std::string png = args->maps + "/" + index + "_" + eval::file_safe(labels[k]) + ".png";
          const at::Tensor map = maps[static_cast<int64_t>(k)];
          if (shape.size() == 3) {
            // A volume shows its axial slice through the map's peak.
            const int64_t z = std::get<0>(map.flatten(1).max(1)).argmax().item<int64_t>();
            eval::write_heat_map(png, s.image[0][z], map[z], at::Tensor(),
                                 labels[k] + " (" + mode + ", slice " + std::to_string(z) + ")");
          } else {
            eval::write_heat_map(png, s.image[0], map, at::Tensor(), labels[k] + " (" + mode + ")");
          }
        }
      }
      std::cout << written << " heat maps (" << mode << ") written to " << args->maps << "\n";
    }
    return 0;
  };
}

}  // namespace medvlp::app
