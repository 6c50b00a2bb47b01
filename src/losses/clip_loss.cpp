#include "medvlp/losses/clip_loss.h"

#include <cmath>

#include <torch/torch.h>

namespace medvlp::losses {

ClipLossImpl::ClipLossImpl(const ClipLossOptions& options) : options_(options) {
  MEDVLP_CHECK(options_.temperature > 0.0, "clip: temperature must be positive, got ", options_.temperature);
  at::Tensor init = torch::full({}, std::log(1.0 / options_.temperature));
  log_scale_ = options_.learnable ? register_parameter("log_scale", init) : register_buffer("log_scale", init);
}

at::Tensor ClipLossImpl::scale() const { return log_scale_.exp().clamp_max(options_.max_scale); }

LossOutput ClipLossImpl::forward(const models::Encoded& encoded, const data::Batch& /*batch*/,
                                 const LossContext& context) {
  require(encoded.image_embed, "image_embed");
  require(encoded.text_embed, "text_embed");
  // Softmax in at least fp32 even when the encoders ran under bf16 autocast.
  const auto upcast = [](const at::Tensor& t) { return t.scalar_type() == torch::kDouble ? t : t.to(torch::kFloat); };
  const at::Tensor image = upcast(encoded.image_embed);  // [b,D]
  const at::Tensor text = upcast(encoded.text_embed);    // [b,D]
  const int64_t local = image.size(0);
  const at::Tensor all_image = context.all_gather(image);  // [B,D]
  const at::Tensor all_text = context.all_gather(text);    // [B,D]
  const at::Tensor s = scale();
  const at::Tensor logits_i2t = s * image.matmul(all_text.t());  // [b,B]
  const at::Tensor logits_t2i = s * text.matmul(all_image.t());  // [b,B]
  const at::Tensor targets = torch::arange(local, torch::TensorOptions().dtype(torch::kLong).device(image.device())) +
                             context.rank * local;
  const at::Tensor i2t = torch::nn::functional::cross_entropy(logits_i2t, targets);
  const at::Tensor t2i = torch::nn::functional::cross_entropy(logits_t2i, targets);
  LossOutput out;
  out.total = (i2t + t2i) / 2.0;
  out.terms = {{"i2t", i2t.detach()}, {"t2i", t2i.detach()}, {"logit_scale", s.detach()}};
  return out;
}

namespace {
LossPtr make_clip(const core::ConfigNode& node) {
  ClipLossOptions o;
  o.temperature = node.get_double("temperature", o.temperature, 1e-4, 10.0);
  o.learnable = node.get_bool("learnable", o.learnable);
  o.max_scale = node.get_double("max_scale", o.max_scale, 1.0, 1e4);
  return std::make_shared<ClipLossImpl>(o);
}
}  // namespace
MEDVLP_REGISTER(loss_registry(), "clip", make_clip);

}  // namespace medvlp::losses
