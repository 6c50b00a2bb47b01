#pragma once
// Image encoders: a global feature plus the spatial tokens with their grid.

#include <memory>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

#include "medvlp/core/config.h"
#include "medvlp/core/registry.h"

namespace medvlp::models {

/// Output of an image encoder: pooled [B,C] and spatial tokens [B,H'*W',C] on a (H',W') grid.
struct ImageFeatures {
  at::Tensor pooled;  // [B,C]
  at::Tensor tokens;  // [B,N,C]
  std::vector<int64_t> grid;  // (H', W') or (D', H', W')
};

/// Base of every image encoder; out_dim() is C of ImageFeatures.
class ImageEncoderImpl : public torch::nn::Module {
 public:
  virtual ImageFeatures forward(const at::Tensor& images) = 0;  // images: [B,C,H,W]
  virtual int64_t out_dim() const = 0;
};
using ImageEncoderPtr = std::shared_ptr<ImageEncoderImpl>;

/// Registry of image encoders, built from `model.image` config nodes.
core::Registry<ImageEncoderPtr, const core::ConfigNode&>& image_encoder_registry();

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

 private:
  SmallCnnOptions options_;
  torch::nn::Sequential stem_{nullptr};
  std::vector<torch::nn::Sequential> stages_;
  std::vector<torch::nn::Sequential> shortcuts_;
};

}  // namespace medvlp::models
