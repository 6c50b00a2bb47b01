#pragma once
// Image encoders: a global feature plus the spatial tokens with their grid.

#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

#include "medvlp/core/config.h"
#include "medvlp/core/registry.h"

namespace medvlp::models {

/// Output of an image encoder: pooled [B,C] and spatial tokens [B,H'*W',C] on a (H',W') grid.
/// Encoders built of stages (CNNs) also hand out every stage's map, so that a model can align
/// text with an earlier, finer one (AFLoc: sentences with ResNet's layer3, words with layer2).
struct ImageFeatures {
  at::Tensor pooled;  // [B,C]
  at::Tensor tokens;  // [B,N,C]
  std::vector<int64_t> grid;  // (H', W') or (D', H', W')
  std::vector<at::Tensor> stages;                // first to last, [B,N_s,C_s]; the last is `tokens`; empty: no stages
  std::vector<std::vector<int64_t>> stage_grids;  // the grid of each stage
};

/// Base of every image encoder; out_dim() is C of ImageFeatures.
class ImageEncoderImpl : public torch::nn::Module {
 public:
  virtual ImageFeatures forward(const at::Tensor& images) = 0;  // [B,C,H,W] or [B,C,D,H,W]
  virtual int64_t out_dim() const = 0;
  /// Channels of each stage's map in ImageFeatures::stages, first to last; empty for encoders
  /// without stages (ViTs: every block has one grid, and only the last is handed out).
  virtual std::vector<int64_t> stage_dims() const { return {}; }
  /// Names the parameter layout for load_weights()/export_weights() ("resnet", "vit", "bert", ...).
  virtual std::string family() const { return "medvlp"; }
  /// Name prefixes of medvlp-only parameters (pooling heads) that the original library's
  /// checkpoints lack; loading such a checkpoint leaves them at their initial values.
  virtual std::vector<std::string> extra_parameters() const { return {}; }
};
using ImageEncoderPtr = std::shared_ptr<ImageEncoderImpl>;

/// Registry of image encoders, built from `model.image` config nodes.
core::Registry<ImageEncoderPtr, const core::ConfigNode&>& image_encoder_registry();

/// Anatomy (mask) pooling, fVLM's anatomy-level features: each anatomy's feature is the mean of the
/// tokens weighted by the fraction of each token's cell the mask covers (the mean over the mask's
/// pixels of the token map upsampled by nearest neighbour).
struct AnatomyFeatures {
  at::Tensor features;  // [B,A,C]
  at::Tensor present;   // [B,A] float: 1 where the mask covers at least min_voxels input voxels
};
/// tokens [B,N,C] on `grid`; masks [B,A,H,W] or [B,A,D,H,W] at input resolution (> 0.5 = inside).
AnatomyFeatures anatomy_pool(const at::Tensor& tokens, const std::vector<int64_t>& grid, const at::Tensor& masks,
                             int64_t min_voxels = 100);

/// Options of SmallCnn.
struct SmallCnnOptions {
  int64_t in_channels = 1;
  std::vector<int64_t> channels = {32, 64, 128, 256};  // one residual stage each, stride 2
};

/// A compact residual CNN for small images (the demo's encoder): stride-2 stages, BatchNorm, ReLU.
class SmallCnnImpl : public ImageEncoderImpl {
 public:
  explicit SmallCnnImpl(const SmallCnnOptions& options);
  ImageFeatures forward(const at::Tensor& images) override;
  int64_t out_dim() const override { return options_.channels.back(); }
  std::vector<int64_t> stage_dims() const override { return options_.channels; }

 private:
  SmallCnnOptions options_;
  torch::nn::Sequential stem_{nullptr};
  std::vector<torch::nn::Sequential> stages_;
  std::vector<torch::nn::Sequential> shortcuts_;
};

}  // namespace medvlp::models
