#include "medvlp/models/resnet.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"

namespace medvlp::models {

namespace {

// The 2D and 3D networks differ only in these layer types.
template <size_t D>
struct Layers;
template <>
struct Layers<2> {
  using Conv = torch::nn::Conv2d;
  using ConvOptions = torch::nn::Conv2dOptions;
  using Norm = torch::nn::BatchNorm2d;
  using Pool = torch::nn::MaxPool2d;
  using PoolOptions = torch::nn::MaxPool2dOptions;
};
template <>
struct Layers<3> {
  using Conv = torch::nn::Conv3d;
  using ConvOptions = torch::nn::Conv3dOptions;
  using Norm = torch::nn::BatchNorm3d;
  using Pool = torch::nn::MaxPool3d;
  using PoolOptions = torch::nn::MaxPool3dOptions;
};

template <size_t D>
typename Layers<D>::Conv conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  return typename Layers<D>::Conv(
      typename Layers<D>::ConvOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

// BasicBlock (two 3x3) or Bottleneck (1x1, 3x3, 1x1 with 4x expansion), named as in torchvision.
template <size_t D>
class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(int64_t in, int64_t width, int64_t stride, bool bottleneck) : bottleneck_(bottleneck) {
    using L = Layers<D>;
    const int64_t out = bottleneck ? width * 4 : width;
    if (bottleneck) {
      conv1_ = register_module("conv1", conv<D>(in, width, 1, 1, 0));
      bn1_ = register_module("bn1", typename L::Norm(width));
      conv2_ = register_module("conv2", conv<D>(width, width, 3, stride, 1));
      bn2_ = register_module("bn2", typename L::Norm(width));
      conv3_ = register_module("conv3", conv<D>(width, out, 1, 1, 0));
      bn3_ = register_module("bn3", typename L::Norm(out));
    } else {
      conv1_ = register_module("conv1", conv<D>(in, width, 3, stride, 1));
      bn1_ = register_module("bn1", typename L::Norm(width));
      conv2_ = register_module("conv2", conv<D>(width, width, 3, 1, 1));
      bn2_ = register_module("bn2", typename L::Norm(width));
    }
    if (stride != 1 || in != out)
      downsample_ = register_module("downsample", torch::nn::Sequential(conv<D>(in, out, 1, stride, 0),
                                                                        typename L::Norm(out)));
  }

  at::Tensor forward(const at::Tensor& x) {
    at::Tensor h = torch::relu(bn1_->forward(conv1_->forward(x)));
    h = bn2_->forward(conv2_->forward(h));
    if (bottleneck_) h = bn3_->forward(conv3_->forward(torch::relu(h)));
    return torch::relu(h + (downsample_ ? downsample_->forward(x) : x));
  }

 private:
  bool bottleneck_;
  typename Layers<D>::Conv conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  typename Layers<D>::Norm bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  torch::nn::Sequential downsample_{nullptr};
};

std::vector<int64_t> blocks_per_stage(int64_t depth) {
  switch (depth) {
    case 18: return {2, 2, 2, 2};
    case 34: return {3, 4, 6, 3};
    case 50: return {3, 4, 6, 3};
    case 101: return {3, 4, 23, 3};
    default: throw Error("resnet: depth " + std::to_string(depth) + " is not one of 18, 34, 50, 101");
  }
}

template <size_t D>
void build(ResNetImpl& net, const ResNetOptions& o, torch::nn::AnyModule& conv1, torch::nn::AnyModule& bn1,
           torch::nn::AnyModule& pool, std::vector<torch::nn::Sequential>& layers, std::vector<int64_t>& stage_dims) {
  using L = Layers<D>;
  std::vector<int64_t> stride = o.stem_stride.empty() ? std::vector<int64_t>(D, 2) : o.stem_stride;
  MEDVLP_CHECK(stride.size() == D, "resnet: stem_stride needs ", D, " values, got ", stride.size());
  typename L::ConvOptions stem(o.in_channels, 64, 7);
  stem.padding(3).bias(false);
  if constexpr (D == 2) stem.stride({stride[0], stride[1]});
  else stem.stride({stride[0], stride[1], stride[2]});
  conv1 = torch::nn::AnyModule(net.register_module("conv1", typename L::Conv(stem)));
  bn1 = torch::nn::AnyModule(net.register_module("bn1", typename L::Norm(64)));
  pool = torch::nn::AnyModule(typename L::Pool(typename L::PoolOptions(3).stride(2).padding(1)));
  const bool bottleneck = o.depth >= 50;
  const std::vector<int64_t> counts = blocks_per_stage(o.depth);
  int64_t in = 64;
  for (size_t s = 0; s < counts.size(); ++s) {
    const int64_t width = 64 << s;
    torch::nn::Sequential stage;
    for (int64_t b = 0; b < counts[s]; ++b) {
      stage->push_back(std::make_shared<BlockImpl<D>>(in, width, b == 0 && s > 0 ? 2 : 1, bottleneck));
      in = bottleneck ? width * 4 : width;
    }
    layers.push_back(net.register_module("layer" + std::to_string(s + 1), stage));
    stage_dims.push_back(in);
  }
}

}  // namespace

ResNetImpl::ResNetImpl(const ResNetOptions& options) : options_(options) {
  MEDVLP_CHECK(options_.dims == 2 || options_.dims == 3, "resnet: dims must be 2 or 3, got ", options_.dims);
  MEDVLP_CHECK(options_.in_channels > 0, "resnet: in_channels must be positive");
  if (options_.dims == 2) build<2>(*this, options_, conv1_, bn1_, pool_, layers_, stage_dims_);
  else build<3>(*this, options_, conv1_, bn1_, pool_, layers_, stage_dims_);
  out_dim_ = stage_dims_.back();
  if (options_.num_classes > 0) fc_ = register_module("fc", torch::nn::Linear(out_dim_, options_.num_classes));
  // torchvision's initialization: Kaiming normal (fan_out) for convolutions, BN at identity.
  for (auto& p : named_parameters()) {
    if (p.value().dim() >= 4) torch::nn::init::kaiming_normal_(p.value(), 0.0, torch::kFanOut, torch::kReLU);
  }
}

void ResNetImpl::use_channels_last() {
  const auto format = options_.dims == 2 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::ChannelsLast3d;
  torch::NoGradGuard no_grad;
  for (auto& p : parameters())
    if (p.dim() == options_.dims + 2 && !p.is_contiguous(format)) p.set_data(p.contiguous(format));
}

at::Tensor ResNetImpl::features(const at::Tensor& images, ImageFeatures* stages) {
  MEDVLP_CHECK(images.dim() == options_.dims + 2 && images.size(1) == options_.in_channels, "resnet: expected ",
               options_.dims == 2 ? "images [B," : "volumes [B,", options_.in_channels,
               options_.dims == 2 ? ",H,W]" : ",D,H,W]", ", got ", images.sizes());
  at::Tensor x = images;
  if (options_.channels_last && x.is_cuda()) {
    use_channels_last();
    x = x.contiguous(options_.dims == 2 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::ChannelsLast3d);
  }
  x = pool_.forward(torch::relu(bn1_.forward(conv1_.forward(x))));
  for (auto& layer : layers_) {
    x = layer->forward(x);
    if (!stages) continue;
    stages->stages.push_back(x.flatten(2).transpose(1, 2));  // [B,N_s,C_s], a view
    stages->stage_grids.emplace_back(x.sizes().begin() + 2, x.sizes().end());
  }
  return x;
}

ImageFeatures ResNetImpl::forward(const at::Tensor& images) {
  ImageFeatures out;
  const at::Tensor x = features(images, &out);
  out.grid = out.stage_grids.back();
  out.tokens = out.stages.back();     // [B,N,C]
  out.pooled = x.flatten(2).mean(2);  // [B,C]
  return out;
}

at::Tensor ResNetImpl::logits(const at::Tensor& images) {
  MEDVLP_CHECK(fc_, "resnet: logits() needs num_classes > 0");
  return fc_->forward(features(images).flatten(2).mean(2));
}

}  // namespace medvlp::models
