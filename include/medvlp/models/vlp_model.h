#pragma once
// VlpModel: image encoder + text encoder + projection heads into one joint space.

#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include "medvlp/core/config.h"
#include "medvlp/data/sample.h"
#include "medvlp/models/encoded.h"
#include "medvlp/models/image_encoder.h"
#include "medvlp/models/text_encoder.h"

namespace medvlp::models {

/// The composed vision-language model. Embeddings are L2-normalized, [B, embed_dim].
/// Parameter names are stable ("image.…", "text.…", "image_proj.…", "text_proj.…"): checkpoints use them.
class VlpModelImpl : public torch::nn::Module {
 public:
  VlpModelImpl(ImageEncoderPtr image, TextEncoderPtr text, int64_t embed_dim, const std::string& projection);

  at::Tensor encode_images(const at::Tensor& images);                         // [B,C,H,W] -> [B,D]
  at::Tensor encode_texts(const at::Tensor& ids, const at::Tensor& mask);     // [B,L] -> [B,D]
  /// Encodes a batch's images and reports (tokens included) for the losses; with anatomy pooling on
  /// and anatomy masks in the batch also the projected, L2-normalized anatomy features and their presence.
  Encoded forward(const data::Batch& batch);
  int64_t embed_dim() const { return embed_dim_; }
  /// Fill Encoded.anatomy_image / anatomy_present from the batch's anatomy masks (off by default:
  /// the built-in anatomy loss pools the tokens itself).
  void set_anatomy_pooling(bool on) { anatomy_pooling_ = on; }
  ImageEncoderPtr image_encoder() const { return image_; }
  TextEncoderPtr text_encoder() const { return text_; }
  /// Stops gradients for every parameter whose name ("image.layer1.0.conv1.weight") matches one of
  /// the glob patterns (`*` any run, `?` one character); returns how many it froze. A pattern that
  /// matches nothing is an error (a typo would silently train everything).
  int64_t freeze(const std::vector<std::string>& patterns);

 private:
  int64_t embed_dim_;
  bool anatomy_pooling_ = false;
  ImageEncoderPtr image_;
  TextEncoderPtr text_;
  torch::nn::Sequential image_proj_{nullptr}, text_proj_{nullptr};
};
TORCH_MODULE(VlpModel);

/// Builds a VlpModel from the `model` config node: image/text encoders by registry name,
/// `embed_dim`, `projection` (linear | mlp), `freeze` (glob patterns), `anatomy_pooling` (bool). Each encoder node may name
/// pretrained `weights` (safetensors) with their `weights_format` (see weight_formats()) and
/// `weights_strict` (default true). `vocab_size` comes from the tokenizer.
VlpModel build_model(const core::ConfigNode& node, int64_t vocab_size);

}  // namespace medvlp::models
