#pragma once
// Loading and exporting encoder weights under the parameter names of the original libraries
// (torchvision, timm, Hugging Face), with a strict report of what did not match.

#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "medvlp/io/safetensors.h"

namespace medvlp::models {

/// What load_weights() did with each name. Names are the module's (after renaming).
struct LoadReport {
  std::vector<std::string> loaded;      // copied (with dtype conversion where needed)
  std::vector<std::string> adapted;     // copied after a documented adaptation (see load_weights)
  std::vector<std::string> dropped;     // checkpoint names the format marks as not part of the encoder
  std::vector<std::string> missing;     // module names the checkpoint lacks
  std::vector<std::string> unexpected;  // checkpoint names the module lacks
  std::vector<std::string> mismatched;  // "name: checkpoint [..] vs model [..]"
  bool complete() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  /// One line: counts, then the first names of each problem list.
  std::string summary() const;
};

/// How to read a checkpoint.
struct LoadOptions {
  std::string format = "medvlp";  // see weight_formats()
  bool strict = true;             // throw unless the report is complete
  std::vector<std::string> keep_missing;  // name prefixes allowed to stay at their initial values
  std::string source = "weights";         // names the file in messages
};

/// Weight name formats known for an encoder family ("resnet", "resnet3d", "vit", "vit3d", "bert",
/// "clip_text"; any other family knows only "medvlp"):
///   resnet: torchvision and timm use medvlp's names;  vit: timm's names are medvlp's, torchvision's
///   VisionTransformer names are mapped;  bert: Hugging Face BertModel (a "bert." prefix and the
///   pretraining heads "cls.*" of BertForPreTraining checkpoints are accepted);  clip_text: Hugging
///   Face CLIPTextModel (a whole CLIPModel's vision tower and projections are dropped).
std::vector<std::string> weight_formats(const std::string& family);

/// The names of the library an architecture comes from: torchvision (resnet), timm (vit), hf (bert,
/// clip_text); "medvlp" for medvlp's own and the 3D encoders.
std::string native_format(const std::string& family);

/// The module name for a checkpoint name of `format`, or "" when the format drops it.
std::string import_name(const std::string& family, const std::string& format, const std::string& name);

/// Copies `tensors` into the parameters and buffers of `module`. Two adaptations are applied and
/// reported: a ViT position embedding for another square grid is resampled (bicubic), and a 3-channel
/// stem (ResNet conv1, ViT patch_embed.proj) loaded into a 1-channel model is summed over channels, so
/// a gray image gives the response the RGB network gives to the same gray replicated thrice.
/// Throws medvlp::Error naming `options.source` when strict and the report is not complete.
LoadReport load_weights(torch::nn::Module& module, const std::string& family, const io::TensorMap& tensors,
                        const LoadOptions& options);

/// Reads pretrained weights saved the ways Hugging Face saves them: one safetensors file; a sharded
/// checkpoint's index (`*.safetensors.index.json`, whose "weight_map" names each tensor's shard file,
/// the shards beside it); or a model folder holding `model.safetensors` or
/// `model.safetensors.index.json`. A missing shard, a tensor missing from the shard the index names,
/// a tensor in two shards or a malformed index throws medvlp::Error naming the file.
io::TensorMap read_weight_tensors(const std::string& path);

/// Reads weights with read_weight_tensors() and calls load_weights().
LoadReport load_weights_file(torch::nn::Module& module, const std::string& family, const std::string& path,
                             LoadOptions options);

/// The module's parameters and buffers (CPU copies) under the names of `format`; names starting with a
/// prefix in `skip` (medvlp-only heads) are left out.
io::TensorMap export_weights(const torch::nn::Module& module, const std::string& family, const std::string& format,
                             const std::vector<std::string>& skip = {});

}  // namespace medvlp::models
