#pragma once
// Vision Transformers for 2D images (ViT-S/B/L/16) and 3D volumes, with timm's parameter names.

#include <string>
#include <vector>

#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "medvlp/models/image_encoder.h"
#include "medvlp/models/layers.h"

namespace medvlp::models {

/// Options of Vit. With dims 2 and the vit_b16 preset this is timm's vit_base_patch16_224.
/// With dims 3, patches are boxes over slabs of slices (CT-CLIP-like), e.g. patch_size {10,16,16}.
struct VitOptions {
  int64_t dims = 2;
  std::vector<int64_t> image_size = {224, 224};  // (H,W) or (D,H,W) the position embedding is laid out for
  std::vector<int64_t> patch_size = {16, 16};
  int64_t in_channels = 3;
  int64_t dim = 768;
  int64_t depth = 12;
  int64_t heads = 12;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  double eps = 1e-6;
  int64_t num_classes = 0;        // > 0 adds the classifier `head`
  std::string pooling = "token";  // token: the class token | avg: mean of the patch tokens
  bool checkpoint = false;        // recompute each block in the backward pass (activation checkpointing)
};

/// Preset sizes: "vit_s16" (384 wide, 12 deep, 6 heads), "vit_b16" (768, 12, 12), "vit_l16" (1024, 24, 16).
VitOptions vit_preset(const std::string& name);

/// ViT: patch_embed.proj, cls_token, pos_embed, blocks.N, norm, head. Inputs of another size
/// than image_size get a resampled position embedding (bicubic in 2D, trilinear in 3D).
class VitImpl : public ImageEncoderImpl {
 public:
  explicit VitImpl(const VitOptions& options);
  ImageFeatures forward(const at::Tensor& images) override;
  int64_t out_dim() const override { return options_.dim; }
  std::string family() const override { return options_.dims == 2 ? "vit" : "vit3d"; }
  /// head(pooled): class scores; needs num_classes > 0.
  at::Tensor logits(const at::Tensor& images);
  const VitOptions& options() const { return options_; }
  /// pos_embed [1,1+N,C] resampled to a patch grid of `grid` (the class token's entry is kept).
  static at::Tensor resample_position_embedding(const at::Tensor& pos_embed, const std::vector<int64_t>& from,
                                                const std::vector<int64_t>& to);

 private:
  at::Tensor encode(const at::Tensor& images, std::vector<int64_t>& grid);

  VitOptions options_;
  std::vector<int64_t> base_grid_;
  std::shared_ptr<torch::nn::Module> patch_embed_;
  torch::nn::AnyModule proj_;
  at::Tensor cls_token_, pos_embed_;
  std::vector<VitBlock> blocks_;
  torch::nn::LayerNorm norm_{nullptr};
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(Vit);

}  // namespace medvlp::models
