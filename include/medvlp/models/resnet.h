#pragma once
// ResNet-18/34/50/101 for 2D images and 3D volumes with torchvision's parameter names.

#include <memory>
#include <vector>

#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/linear.h>

#include "medvlp/models/image_encoder.h"

namespace medvlp::models {

/// Options of ResNet. `dims` 2 gives torchvision's resnetN exactly (conv1, bn1, layer1..4, fc);
/// 3 gives the same network with 3D convolutions for CT volumes [B,C,D,H,W].
struct ResNetOptions {
  int64_t dims = 2;
  int64_t depth = 50;                 // 18 | 34 | 50 | 101
  int64_t in_channels = 3;
  int64_t num_classes = 0;            // > 0 adds the classifier `fc` (1000 for ImageNet weights)
  std::vector<int64_t> stem_stride;   // stride of conv1 per spatial axis; empty = 2 everywhere
  bool channels_last = false;         // NHWC / NDHWC convolutions on CUDA
};

/// torchvision's ResNet (v1.5: the stride sits on the 3x3 convolution of a bottleneck).
/// forward() returns layer4's feature map as tokens and its spatial mean as the pooled feature.
class ResNetImpl : public ImageEncoderImpl {
 public:
  explicit ResNetImpl(const ResNetOptions& options);
  ImageFeatures forward(const at::Tensor& images) override;
  int64_t out_dim() const override { return out_dim_; }
  std::vector<int64_t> stage_dims() const override { return stage_dims_; }  // layer1..layer4
  std::string family() const override { return options_.dims == 2 ? "resnet" : "resnet3d"; }
  /// fc(pooled): class scores; needs num_classes > 0.
  at::Tensor logits(const at::Tensor& images);
  const ResNetOptions& options() const { return options_; }

 private:
  /// layer4's map; with `stages`, each layer's map as tokens (and their grids) on the way.
  at::Tensor features(const at::Tensor& images, ImageFeatures* stages = nullptr);
  void use_channels_last();

  ResNetOptions options_;
  int64_t out_dim_ = 0;
  std::vector<int64_t> stage_dims_;
  torch::nn::AnyModule conv1_, bn1_, pool_;
  std::vector<torch::nn::Sequential> layers_;
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(ResNet);

}  // namespace medvlp::models
