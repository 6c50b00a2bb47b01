#include "medvlp/models/image_encoder.h"

#include <torch/torch.h>

namespace medvlp::models {

core::Registry<ImageEncoderPtr, const core::ConfigNode&>& image_encoder_registry() {
  static core::Registry<ImageEncoderPtr, const core::ConfigNode&> registry("image encoder");
  return registry;
}

AnatomyFeatures anatomy_pool(const at::Tensor& tokens, const std::vector<int64_t>& grid, const at::Tensor& masks,
                             int64_t min_voxels) {
  const int64_t D = static_cast<int64_t>(grid.size());
  MEDVLP_CHECK(D == 2 || D == 3, "anatomy pooling: the token grid must have 2 or 3 sizes, got ", D);
  MEDVLP_CHECK(masks.dim() == D + 2 && tokens.dim() == 3 && masks.size(0) == tokens.size(0),
               "anatomy pooling: expected masks [B,A] + ", D, " spatial sizes for tokens ", tokens.sizes(), ", got ",
               masks.sizes());
  int64_t cells = 1;
  for (int64_t g : grid) cells *= g;
  MEDVLP_CHECK(tokens.size(1) == cells, "anatomy pooling: ", tokens.size(1), " tokens do not fill the grid ",
               c10::IntArrayRef(grid));
  const int64_t B = masks.size(0), A = masks.size(1);
  const at::Tensor inside = (masks > 0.5).to(tokens.scalar_type());
  const at::Tensor flat = inside.flatten(0, 1).unsqueeze(1);
  // Cell coverage when the input divides evenly into the grid; adaptive pooling otherwise.
  const at::Tensor coverage = (D == 2 ? torch::adaptive_avg_pool2d(flat, grid) : torch::adaptive_avg_pool3d(flat, grid))
                                  .reshape({B, A, cells});
  AnatomyFeatures out;
  out.features = torch::bmm(coverage, tokens) / coverage.sum(2, true).clamp_min(1e-12);
  out.present = (inside.flatten(2).sum(2) >= static_cast<double>(min_voxels)).to(tokens.scalar_type());
  return out;
}

namespace {

torch::nn::Sequential conv_bn(int64_t in, int64_t out, int64_t stride, bool relu) {
  torch::nn::Sequential seq(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)),
      torch::nn::BatchNorm2d(out));
  if (relu) seq->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(true)));
  return seq;
}

}  // namespace

SmallCnnImpl::SmallCnnImpl(const SmallCnnOptions& options) : options_(options) {
  MEDVLP_CHECK(!options_.channels.empty(), "small_cnn: channels must not be empty");
  const int64_t stem = options_.channels.front() / 2 > 0 ? options_.channels.front() / 2 : 8;
  stem_ = register_module("stem", conv_bn(options_.in_channels, stem, 1, true));
  int64_t in = stem;
  for (size_t i = 0; i < options_.channels.size(); ++i) {
    const int64_t out = options_.channels[i];
    torch::nn::Sequential body = conv_bn(in, out, 2, true);
    body->extend(*conv_bn(out, out, 1, false));
    stages_.push_back(register_module("stage" + std::to_string(i), body));
    // A strided 1x1 projection keeps the residual path shape-compatible.
    shortcuts_.push_back(register_module(
        "shortcut" + std::to_string(i),
        torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(2).bias(false)),
                              torch::nn::BatchNorm2d(out))));
    in = out;
  }
}

ImageFeatures SmallCnnImpl::forward(const at::Tensor& images) {
  MEDVLP_CHECK(images.dim() == 4 && images.size(1) == options_.in_channels, "small_cnn: expected images [B,",
               options_.in_channels, ",H,W], got ", images.sizes());
  at::Tensor x = stem_->forward(images);
  ImageFeatures out;
  for (size_t i = 0; i < stages_.size(); ++i) {
    x = torch::relu(stages_[i]->forward(x) + shortcuts_[i]->forward(x));
    out.stages.push_back(x.flatten(2).transpose(1, 2));  // [B,N_s,C_s], a view
    out.stage_grids.push_back({x.size(2), x.size(3)});
  }
  out.grid = out.stage_grids.back();
  out.tokens = out.stages.back();  // [B,N,C]
  out.pooled = x.mean({2, 3});     // [B,C]
  return out;
}

namespace {
ImageEncoderPtr make_small_cnn(const core::ConfigNode& node) {
  SmallCnnOptions o;
  o.in_channels = node.get_int("in_channels", o.in_channels, 1, 16);
  o.channels = node.get_ints("channels", o.channels);
  for (int64_t c : o.channels)
    if (c < 1) node.fail("channels", "expected positive channel counts");
  return std::make_shared<SmallCnnImpl>(o);
}
}  // namespace
MEDVLP_REGISTER(image_encoder_registry(), "small_cnn", make_small_cnn);

}  // namespace medvlp::models
