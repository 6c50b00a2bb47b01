#include "medvlp/losses/clip_loss.h"

#include <torch/torch.h>

#include "medvlp/losses/functional.h"

namespace medvlp::losses {

ClipLossImpl::ClipLossImpl(const ClipLossOptions& options) : options_(options) {
  scale_ = LogitScale(*this, options_.temperature, options_.learnable, 1e-6, options_.max_scale, name());
}

at::Tensor ClipLossImpl::scale() const { return scale_(); }

LossOutput ClipLossImpl::forward(const models::Encoded& encoded, const data::Batch& /*batch*/,
                                 const LossContext& context) {
  require(encoded.image_embed, "image_embed");
  require(encoded.text_embed, "text_embed");
  // Softmax in at least fp32 even when the encoders ran under bf16 autocast.
  const at::Tensor image = fn::upcast(encoded.image_embed);  // [b,D]
  const at::Tensor text = fn::upcast(encoded.text_embed);    // [b,D]
  require_shape(text, "Encoded.text_embed", {image.size(0), image.size(1)}, "the shape of image_embed");
  const at::Tensor s = scale();
  const auto [i2t, t2i] = fn::contrast(context.all_gather(image), context.all_gather(text), s, {}, {}, context,
                                       image.size(0), options_.rows);
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
  o.rows = parse_row_mode(node);
  return std::make_shared<ClipLossImpl>(o);
}
}  // namespace
MEDVLP_REGISTER(loss_registry(), "clip", make_clip);

}  // namespace medvlp::losses
