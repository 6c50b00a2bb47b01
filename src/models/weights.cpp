#include "medvlp/models/weights.h"

#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "medvlp/core/config.h"
#include "medvlp/core/error.h"
#include "medvlp/io/files.h"
#include "medvlp/models/vit.h"

namespace medvlp::models {

namespace {

// Renaming rules applied in order; a rule whose replacement is "" drops the name.
struct Rule {
  std::regex pattern;
  std::string replacement;
};
using Rules = std::vector<Rule>;

struct Format {
  Rules import_rules, export_rules;
};

const std::string kBlock = R"(^encoder\.layers\.encoder_layer_(\d+)\.)";

// family -> format -> rules. "medvlp" (no renaming) is implied for every family.
const std::map<std::string, std::map<std::string, Format>>& formats() {
  static const std::map<std::string, std::map<std::string, Format>> table = [] {
    std::map<std::string, std::map<std::string, Format>> t;
    // torchvision's and timm's ResNets share their names with ours.
    for (const char* family : {"resnet", "resnet3d"}) {
      t[family]["torchvision"] = {};
      t[family]["timm"] = {};
    }
    for (const char* family : {"vit", "vit3d"}) t[family]["timm"] = {};
    t["vit"]["torchvision"] = Format{
        {{std::regex("^class_token$"), "cls_token"},
         {std::regex(R"(^conv_proj\.)"), "patch_embed.proj."},
         {std::regex(R"(^encoder\.pos_embedding$)"), "pos_embed"},
         {std::regex(kBlock + R"(ln_1\.)"), "blocks.$1.norm1."},
         {std::regex(kBlock + R"(ln_2\.)"), "blocks.$1.norm2."},
         {std::regex(kBlock + R"(self_attention\.in_proj_(weight|bias)$)"), "blocks.$1.attn.qkv.$2"},
         {std::regex(kBlock + R"(self_attention\.out_proj\.)"), "blocks.$1.attn.proj."},
         {std::regex(kBlock + R"(mlp\.(0|linear_1)\.)"), "blocks.$1.mlp.fc1."},
         {std::regex(kBlock + R"(mlp\.(3|linear_2)\.)"), "blocks.$1.mlp.fc2."},
         {std::regex(R"(^encoder\.ln\.)"), "norm."},
         {std::regex(R"(^heads\.head\.)"), "head."}},
        {{std::regex("^cls_token$"), "class_token"},
         {std::regex(R"(^patch_embed\.proj\.)"), "conv_proj."},
         {std::regex("^pos_embed$"), "encoder.pos_embedding"},
         {std::regex(R"(^blocks\.(\d+)\.norm1\.)"), "encoder.layers.encoder_layer_$1.ln_1."},
         {std::regex(R"(^blocks\.(\d+)\.norm2\.)"), "encoder.layers.encoder_layer_$1.ln_2."},
         {std::regex(R"(^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$)"), "encoder.layers.encoder_layer_$1.self_attention.in_proj_$2"},
         {std::regex(R"(^blocks\.(\d+)\.attn\.proj\.)"), "encoder.layers.encoder_layer_$1.self_attention.out_proj."},
         {std::regex(R"(^blocks\.(\d+)\.mlp\.fc1\.)"), "encoder.layers.encoder_layer_$1.mlp.0."},
         {std::regex(R"(^blocks\.(\d+)\.mlp\.fc2\.)"), "encoder.layers.encoder_layer_$1.mlp.3."},
         {std::regex(R"(^norm\.)"), "encoder.ln."},
         {std::regex(R"(^head\.)"), "heads.head."}}};
    t["bert"]["hf"] = Format{{{std::regex(R"(^bert\.)"), ""},  // BertFor*: strip the prefix, keep the name
                              {std::regex(R"(^cls\..*)"), ""},
                              {std::regex(R"(^embeddings\.position_ids$)"), ""},
                              {std::regex(R"(LayerNorm\.gamma$)"), "LayerNorm.weight"},
                              {std::regex(R"(LayerNorm\.beta$)"), "LayerNorm.bias"}},
                             {}};
    t["clip_text"]["hf"] = Format{{{std::regex(R"(^(vision_model|visual_projection|text_projection)\..*)"), ""},
                                   {std::regex("^logit_scale$"), ""},
                                   {std::regex(R"(^text_model\.embeddings\.position_ids$)"), ""}},
                                  {}};
    return t;
  }();
  return table;
}

const Format& find_format(const std::string& family, const std::string& format) {
  static const Format identity;
  if (format == "medvlp") return identity;
  auto f = formats().find(family);
  if (f != formats().end()) {
    auto it = f->second.find(format);
    if (it != f->second.end()) return it->second;
  }
  throw Error("weights: format \"" + format + "\" is not known for " + family + " encoders (known: " +
              core::join(weight_formats(family)) + ")");
}

// Applies the rules in order. A rule that matches a whole name with an empty replacement drops it;
// "^bert\." style prefix rules only strip.
std::string rename(const Rules& rules, const std::string& name) {
  std::string out = name;
  for (const Rule& r : rules) {
    std::smatch m;
    if (!std::regex_search(out, m, r.pattern)) continue;
    if (r.replacement.empty() && m.length(0) == static_cast<std::ptrdiff_t>(out.size())) return "";
    out = std::regex_replace(out, r.pattern, r.replacement);
  }
  return out;
}

std::string shape(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

bool starts_with_any(const std::string& name, const std::vector<std::string>& prefixes) {
  for (const auto& p : prefixes)
    if (name.rfind(p, 0) == 0) return true;
  return false;
}

// A checkpoint tensor reshaped for the module where a documented adaptation applies; undefined otherwise.
at::Tensor adapt(const std::string& family, const std::string& name, const at::Tensor& from, const at::Tensor& to) {
  const bool stem = (family.rfind("resnet", 0) == 0 && name == "conv1.weight") ||
                    (family.rfind("vit", 0) == 0 && name == "patch_embed.proj.weight");
  if (stem && from.dim() == to.dim() && from.size(1) == 3 && to.size(1) == 1 &&
      from.sizes().slice(2) == to.sizes().slice(2) && from.size(0) == to.size(0))
    return from.sum(1, true);
  if (family == "vit" && name == "pos_embed" && from.dim() == 3 && to.dim() == 3 && from.size(2) == to.size(2)) {
    const auto side = [](int64_t n) {
      const auto s = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
      return s * s == n ? s : int64_t{-1};
    };
    const int64_t a = side(from.size(1) - 1), b = side(to.size(1) - 1);
    if (a > 0 && b > 0) return VitImpl::resample_position_embedding(from.to(to.scalar_type()), {a, a}, {b, b});
  }
  return {};
}

std::string first(const std::vector<std::string>& names, size_t n = 8) {
  std::vector<std::string> head(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(std::min(n, names.size())));
  std::string out = core::join(head);
  if (names.size() > n) out += ", ... (" + std::to_string(names.size()) + " in all)";
  return out;
}

}  // namespace

std::string LoadReport::summary() const {
  std::ostringstream s;
  s << loaded.size() << " loaded, " << adapted.size() << " adapted, " << dropped.size() << " dropped";
  if (!missing.empty()) s << "; missing [" << first(missing) << "]";
  if (!unexpected.empty()) s << "; unexpected [" << first(unexpected) << "]";
  if (!mismatched.empty()) s << "; shape mismatch [" << first(mismatched, 4) << "]";
  return s.str();
}

std::vector<std::string> weight_formats(const std::string& family) {
  std::vector<std::string> out = {"medvlp"};
  auto f = formats().find(family);
  if (f != formats().end())
    for (const auto& [name, format] : f->second) out.push_back(name);
  return out;
}

std::string native_format(const std::string& family) {
  if (family == "resnet") return "torchvision";
  if (family == "vit") return "timm";
  if (family == "bert" || family == "clip_text") return "hf";
  return "medvlp";
}

std::string import_name(const std::string& family, const std::string& format, const std::string& name) {
  return rename(find_format(family, format).import_rules, name);
}

LoadReport load_weights(torch::nn::Module& module, const std::string& family, const io::TensorMap& tensors,
                        const LoadOptions& options) {
  const Format& format = find_format(family, options.format);
  std::map<std::string, at::Tensor> targets;
  for (const auto& p : module.named_parameters()) targets[p.key()] = p.value();
  for (const auto& b : module.named_buffers()) targets[b.key()] = b.value();

  LoadReport report;
  std::set<std::string> seen;
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (destination, source), applied when all is known
  for (const auto& [file_name, tensor] : tensors) {
    const std::string name = rename(format.import_rules, file_name);
    if (name.empty()) {
      report.dropped.push_back(file_name);
      continue;
    }
    auto it = targets.find(name);
    if (it == targets.end()) {
      report.unexpected.push_back(file_name == name ? name : file_name + " (as " + name + ")");
      continue;
    }
    if (!seen.insert(name).second) {
      report.mismatched.push_back(name + ": given twice in the checkpoint");
      continue;
    }
    if (tensor.sizes() == it->second.sizes()) {
      copies.emplace_back(it->second, tensor);
      report.loaded.push_back(name);
    } else if (at::Tensor a = adapt(family, name, tensor, it->second); a.defined()) {
      copies.emplace_back(it->second, a);
      report.adapted.push_back(name + ": " + shape(tensor) + " -> " + shape(it->second));
    } else {
      report.mismatched.push_back(name + ": checkpoint " + shape(tensor) + " vs model " + shape(it->second));
    }
  }
  for (const auto& [name, t] : targets)
    if (!seen.count(name) && !starts_with_any(name, options.keep_missing)) report.missing.push_back(name);

  if (options.strict && !report.complete())
    throw Error(options.source + ": weights (format " + options.format + ") do not match the " + family +
                " encoder: " + report.summary() + " (set strict: false to load what matches)");
  torch::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
  return report;
}

io::TensorMap read_weight_tensors(const std::string& path) {
  namespace fs = std::filesystem;
  std::string file = path;
  if (fs::is_directory(path)) {
    const fs::path dir(path);
    if (fs::exists(dir / "model.safetensors")) {
      file = (dir / "model.safetensors").string();
    } else if (fs::exists(dir / "model.safetensors.index.json")) {
      file = (dir / "model.safetensors.index.json").string();
    } else {
      throw Error(path + ": a folder of weights must hold model.safetensors or model.safetensors.index.json "
                         "(a Hugging Face model folder); name the safetensors file instead");
    }
  }
  if (!io::has_suffix(file, ".index.json")) return io::load_safetensors(file).tensors;

  // A sharded checkpoint, as transformers' save_pretrained(max_shard_size=...) writes it.
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(io::read_file(file));
  } catch (const nlohmann::json::exception& e) {
    throw Error(file + ": not valid JSON (" + e.what() + ")");
  }
  MEDVLP_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(), file,
               ": expected a JSON object with a \"weight_map\" object from tensor name to shard file");
  std::map<std::string, std::vector<std::string>> by_shard;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    MEDVLP_CHECK(shard.is_string(), file, ": weight_map.", name, ": expected a shard file name, got ", shard.dump());
    const std::string shard_name = shard.get<std::string>();
    MEDVLP_CHECK(!shard_name.empty() && shard_name.find('/') == std::string::npos && shard_name != "..", file,
                 ": weight_map.", name, ": \"", shard_name, "\" is not a file name beside the index");
    by_shard[shard_name].push_back(name);
  }
  MEDVLP_CHECK(!by_shard.empty(), file, ": weight_map is empty");
  const fs::path dir = fs::path(file).parent_path();
  io::TensorMap out;
  for (const auto& [shard_name, names] : by_shard) {
    const std::string shard_path = (dir / shard_name).string();
    MEDVLP_CHECK(fs::exists(shard_path), file, ": shard ", shard_name, " (", names.size(),
                 names.size() == 1 ? " tensor" : " tensors", ", e.g. ", names.front(), ") is missing: no ", shard_path);
    io::TensorMap tensors = io::load_safetensors(shard_path).tensors;
    for (const auto& name : names) {
      auto it = tensors.find(name);
      MEDVLP_CHECK(it != tensors.end(), file, ": weight_map puts ", name, " in ", shard_name, ", which does not hold it");
      MEDVLP_CHECK(out.emplace(name, std::move(it->second)).second, file, ": ", name, " is held by ", shard_name,
                   " and by another shard");
      tensors.erase(it);
    }
    // Tensors the index does not list are read too, as transformers loads each shard whole; one that
    // another shard also holds is ambiguous.
    for (auto& [name, t] : tensors)
      MEDVLP_CHECK(out.emplace(name, std::move(t)).second, file, ": ", name, " is held by ", shard_name,
                   " and by another shard");
  }
  return out;
}

LoadReport load_weights_file(torch::nn::Module& module, const std::string& family, const std::string& path,
                             LoadOptions options) {
  if (options.source == "weights") options.source = path;
  return load_weights(module, family, read_weight_tensors(path), options);
}

io::TensorMap export_weights(const torch::nn::Module& module, const std::string& family, const std::string& format,
                             const std::vector<std::string>& skip) {
  const Format& f = find_format(family, format);
  io::TensorMap out;
  auto add = [&](const std::string& name, const at::Tensor& t) {
    if (starts_with_any(name, skip)) return;
    const std::string renamed = rename(f.export_rules, name);
    if (!renamed.empty()) out[renamed] = t.detach().to(torch::kCPU).contiguous();
  };
  for (const auto& p : module.named_parameters()) add(p.key(), p.value());
  for (const auto& b : module.named_buffers()) add(b.key(), b.value());
  return out;
}

}  // namespace medvlp::models
