#include "siglip_loss.h"

#include <cmath>

#include <torch/torch.h>

namespace example {

SigLipLossImpl::SigLipLossImpl(double init_scale, double init_bias) {
  log_scale_ = register_parameter("log_scale", torch::full({}, std::log(init_scale)));
  bias_ = register_parameter("bias", torch::full({}, init_bias));
}

medvlp::losses::LossOutput SigLipLossImpl::forward(const medvlp::models::Encoded& encoded,
                                                   const medvlp::data::Batch& /*batch*/,
                                                   const medvlp::losses::LossContext& context) {
  require(encoded.image_embed, "image_embed");  // "loss siglip: needs Encoded.image_embed, ..."
  require(encoded.text_embed, "text_embed");
  const at::Tensor image = encoded.image_embed;
  const int64_t b = image.size(0);
  // This rank's images against every rank's reports; the gather keeps the gradient.
  const at::Tensor text_all = context.all_gather(encoded.text_embed);
  const at::Tensor logits = log_scale_.exp() * image.matmul(text_all.t()) + bias_;  // [b, N]
  const at::Tensor z = 2 * torch::eye(b, text_all.size(0), logits.options()).roll(context.row_offset(b), 1) - 1;
  medvlp::losses::LossOutput out;
  out.total = -torch::log_sigmoid(z * logits).sum() / static_cast<double>(b);
  out.terms = {{"scale", log_scale_.exp().detach()}, {"bias", bias_.detach()}};
  return out;
}

namespace {
medvlp::losses::LossPtr make(const medvlp::core::ConfigNode& node) {
  return std::make_shared<SigLipLossImpl>(node.get_double("init_scale", 10.0, 1e-3, 1e3),
                                          node.get_double("init_bias", -10.0, -100.0, 100.0));
}
}  // namespace
MEDVLP_REGISTER(medvlp::losses::loss_registry(), "siglip", make);

}  // namespace example
