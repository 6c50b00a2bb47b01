#include "medvlp/losses/false_negative_loss.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"

namespace medvlp::losses {

at::Tensor false_negative_pairs(const FalseNegativeOptions& o, const at::Tensor& hash, const at::Tensor& normal,
                                const at::Tensor& labels, const at::Tensor& text) {
  torch::NoGradGuard no_grad;
  at::Tensor pairs;
  if (o.pairing == "text") {
    const at::Tensor n = normal > 0;
    pairs = hash.unsqueeze(1).eq(hash.unsqueeze(0)).logical_or(n.unsqueeze(1).logical_and(n.unsqueeze(0)));
  } else if (o.pairing == "labels") {
    // Identical 0/1 label rows: |a − b|₁ = |a| + |b| − 2 a·b = 0, one [N,K]×[K,N] product instead
    // of an [N,N,K] difference (counts are small integers, exact in fp32).
    const at::Tensor pos = (labels > 0).to(torch::kFloat);
    const at::Tensor count = pos.sum(1);
    pairs = (count.unsqueeze(1) + count.unsqueeze(0) - 2 * pos.matmul(pos.t())).eq(0);
  } else {
    pairs = text.matmul(text.t()) >= o.threshold;
  }
  return pairs.fill_diagonal_(false);  // a fresh tensor on every path above
}

std::pair<at::Tensor, at::Tensor> calibrated_contrast(const at::Tensor& image_all, const at::Tensor& text_all,
                                                      const at::Tensor& scale, const at::Tensor& pairs,
                                                      const FalseNegativeOptions& o, const LossContext& context,
                                                      int64_t local_rows, RowMode mode, bool* skipped) {
  const int64_t n = image_all.size(0);
  *skipped = n < 2 || (o.handling == "positive" && pairs.count_nonzero().item<int64_t>() == n * (n - 1));
  if (*skipped) {
    const at::Tensor zero = (image_all.sum() + text_all.sum()) * 0.0;  // keeps every input in the graph
    return {zero, zero};
  }
  if (o.handling == "mask") return fn::contrast(image_all, text_all, scale, {}, {}, context, local_rows, mode, pairs);
  // Each row holds its own pair plus its false negatives: sums are at least 1.
  at::Tensor calibrated = pairs.to(image_all.scalar_type());
  calibrated.fill_diagonal_(1.0);
  const at::Tensor targets = calibrated / calibrated.sum(1, true);
  return fn::contrast(image_all, text_all, scale, targets, targets, context, local_rows, mode);
}

FalseNegativeLossImpl::FalseNegativeLossImpl(const FalseNegativeOptions& options, const core::ConfigNode& node)
    : options_(options) {
  // fVLM's temperature: 0.07, learnable, clamped to [0.001, 0.5] (scale [2, 1000]).
  scale_ = LogitScale::from_config(*this, node, name(), 0.07, true, 2.0, 1000.0);
  rows_ = parse_row_mode(node);
}

LossOutput FalseNegativeLossImpl::forward(const models::Encoded& encoded, const data::Batch& batch,
                                          const LossContext& context) {
  require(encoded.image_embed, "image_embed");
  require(encoded.text_embed, "text_embed");
  const at::Tensor image = fn::upcast(encoded.image_embed), text = fn::upcast(encoded.text_embed);
  const int64_t b = image.size(0);
  const auto dev = image.device();
  at::Tensor hash, normal, labels, text_ref;
  if (options_.pairing == "text") {
    require_batch(batch.report_hash, "report_hash");
    require_batch(batch.report_normal, "report_normal");
    require_shape(batch.report_hash, "Batch.report_hash", {b}, "[B]");
    require_shape(batch.report_normal, "Batch.report_normal", {b}, "[B]");
    hash = context.all_gather(batch.report_hash.to(dev));
    normal = context.all_gather(batch.report_normal.to(dev));
  } else if (options_.pairing == "labels") {
    require_batch(batch.labels, "labels");
    require_shape(batch.labels, "Batch.labels", {b, -1}, "[B,K]");
    labels = context.all_gather(batch.labels.to(dev));
  }
  const at::Tensor image_all = context.all_gather(image), text_all = context.all_gather(text);
  if (options_.pairing == "embedding") text_ref = text_all.detach();
  const at::Tensor pairs = false_negative_pairs(options_, hash, normal, labels, text_ref);
  const at::Tensor s = scale_();
  bool skipped = false;
  const auto [i2t, t2i] = calibrated_contrast(image_all, text_all, s, pairs, options_, context, b, rows_, &skipped);
  LossOutput out;
  out.total = (i2t + t2i) / 2.0;
  out.terms = {{"i2t", i2t.detach()},
               {"t2i", t2i.detach()},
               {"logit_scale", s.detach()},
               {"false_negatives", pairs.sum().to(torch::kFloat).detach()}};
  return out;
}

FalseNegativeOptions parse_false_negative_options(const core::ConfigNode& node) {
  FalseNegativeOptions o;
  o.pairing = node.get_choice("pairing", o.pairing, {"text", "labels", "embedding"});
  o.handling = node.get_choice("handling", o.handling, {"positive", "mask"});
  o.threshold = node.get_double("threshold", o.threshold, -1.0, 1.0);
  return o;
}

std::vector<std::string> FalseNegativeLossImpl::needs() const {
  std::vector<std::string> out = {"Encoded.image_embed", "Encoded.text_embed"};
  if (options_.pairing == "text") out.insert(out.end(), {"Batch.report_hash", "Batch.report_normal"});
  if (options_.pairing == "labels") out.push_back("Batch.labels");
  return out;
}

namespace {
LossPtr make_false_negative(const core::ConfigNode& node) {
  return std::make_shared<FalseNegativeLossImpl>(parse_false_negative_options(node), node);
}
}  // namespace
MEDVLP_REGISTER(loss_registry(), "false_negative", make_false_negative);

}  // namespace medvlp::losses
