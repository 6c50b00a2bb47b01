#include "medvlp/models/vit.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"

namespace medvlp::models {

VitOptions vit_preset(const std::string& name) {
  VitOptions o;
  if (name == "vit_s16") {
    o.dim = 384, o.depth = 12, o.heads = 6;
  } else if (name == "vit_b16") {
    o.dim = 768, o.depth = 12, o.heads = 12;
  } else if (name == "vit_l16") {
    o.dim = 1024, o.depth = 24, o.heads = 16;
  } else {
    throw Error("vit: unknown preset \"" + name + "\" (known: vit_s16, vit_b16, vit_l16)");
  }
  return o;
}

VitImpl::VitImpl(const VitOptions& options) : options_(options) {
  const size_t D = static_cast<size_t>(options_.dims);
  MEDVLP_CHECK(D == 2 || D == 3, "vit: dims must be 2 or 3, got ", options_.dims);
  MEDVLP_CHECK(options_.image_size.size() == D && options_.patch_size.size() == D, "vit: image_size and patch_size need ",
               D, " values each");
  MEDVLP_CHECK(options_.dim % options_.heads == 0, "vit: dim ", options_.dim, " is not divisible by heads ",
               options_.heads);
  int64_t patches = 1;
  for (size_t i = 0; i < D; ++i) {
    MEDVLP_CHECK(options_.patch_size[i] > 0 && options_.image_size[i] % options_.patch_size[i] == 0, "vit: image_size ",
                 options_.image_size[i], " is not a multiple of patch_size ", options_.patch_size[i]);
    base_grid_.push_back(options_.image_size[i] / options_.patch_size[i]);
    patches *= base_grid_.back();
  }
  patch_embed_ = register_module("patch_embed", std::make_shared<torch::nn::Module>());
  if (D == 2) {
    const std::vector<int64_t>& p = options_.patch_size;
    proj_ = torch::nn::AnyModule(patch_embed_->register_module(
        "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(options_.in_channels, options_.dim, {p[0], p[1]})
                                      .stride({p[0], p[1]}))));
  } else {
    const std::vector<int64_t>& p = options_.patch_size;
    proj_ = torch::nn::AnyModule(patch_embed_->register_module(
        "proj", torch::nn::Conv3d(torch::nn::Conv3dOptions(options_.in_channels, options_.dim, {p[0], p[1], p[2]})
                                      .stride({p[0], p[1], p[2]}))));
  }
  // timm's initialization: truncated normal (std 0.02) for positions, 1e-6 for the class token.
  cls_token_ = register_parameter("cls_token", torch::randn({1, 1, options_.dim}) * 1e-6);
  pos_embed_ = register_parameter("pos_embed", torch::randn({1, 1 + patches, options_.dim}).clamp(-2, 2) * 0.02);
  auto list = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options_.depth; ++i) {
    blocks_.emplace_back(options_.dim, options_.heads, options_.mlp_ratio, options_.qkv_bias, options_.eps);
    list->push_back(blocks_.back());
  }
  norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({options_.dim}).eps(options_.eps)));
  if (options_.num_classes > 0) head_ = register_module("head", torch::nn::Linear(options_.dim, options_.num_classes));
}

at::Tensor VitImpl::resample_position_embedding(const at::Tensor& pos_embed, const std::vector<int64_t>& from,
                                                const std::vector<int64_t>& to) {
  if (from == to) return pos_embed;
  const int64_t C = pos_embed.size(2);
  at::Tensor cls = pos_embed.narrow(1, 0, 1);
  std::vector<int64_t> shape = {1};
  shape.insert(shape.end(), from.begin(), from.end());
  shape.push_back(C);
  // [1,N,C] -> [1,C,*from] for interpolation, then back.
  at::Tensor grid = pos_embed.narrow(1, 1, pos_embed.size(1) - 1).reshape(shape);
  grid = from.size() == 2 ? grid.permute({0, 3, 1, 2}) : grid.permute({0, 4, 1, 2, 3});
  namespace F = torch::nn::functional;
  auto options = F::InterpolateFuncOptions().size(to).align_corners(false);
  if (to.size() == 2) options.mode(torch::kBicubic);
  else options.mode(torch::kTrilinear);
  grid = F::interpolate(grid, options).flatten(2).transpose(1, 2);
  return torch::cat({cls, grid}, 1);
}

at::Tensor VitImpl::encode(const at::Tensor& images, std::vector<int64_t>& grid) {
  const int64_t D = options_.dims;
  MEDVLP_CHECK(images.dim() == D + 2 && images.size(1) == options_.in_channels, "vit: expected ",
               D == 2 ? "images [B," : "volumes [B,", options_.in_channels, D == 2 ? ",H,W]" : ",D,H,W]", ", got ",
               images.sizes());
  for (int64_t i = 0; i < D; ++i)
    MEDVLP_CHECK(images.size(2 + i) >= options_.patch_size[i], "vit: input size ", images.sizes(),
                 " is smaller than one patch ", c10::IntArrayRef(options_.patch_size));
  at::Tensor x = proj_.forward(images);  // [B,C,*grid]
  grid.assign(x.sizes().begin() + 2, x.sizes().end());
  x = x.flatten(2).transpose(1, 2);
  x = torch::cat({cls_token_.expand({x.size(0), 1, options_.dim}), x}, 1);
  x = x + resample_position_embedding(pos_embed_, base_grid_, grid);
  for (VitBlock block : blocks_)
    x = maybe_checkpointed(options_.checkpoint && is_training(),
                           [block](const at::Tensor& in) mutable { return block->forward(in); }, x);
  return norm_->forward(x);
}

ImageFeatures VitImpl::forward(const at::Tensor& images) {
  ImageFeatures out;
  at::Tensor x = encode(images, out.grid);
  out.tokens = x.narrow(1, 1, x.size(1) - 1);
  out.pooled = options_.pooling == "avg" ? out.tokens.mean(1) : x.select(1, 0);
  return out;
}

at::Tensor VitImpl::logits(const at::Tensor& images) {
  MEDVLP_CHECK(head_, "vit: logits() needs num_classes > 0");
  return head_->forward(forward(images).pooled);
}

}  // namespace medvlp::models
