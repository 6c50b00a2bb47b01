// Registry entries of the model zoo: how each encoder is built from its `model.image` /
// `model.text` config node.
#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/models/bert.h"
#include "medvlp/models/resnet.h"
#include "medvlp/models/vit.h"

namespace medvlp::models {

namespace {

std::vector<int64_t> get_sizes(const core::ConfigNode& node, const std::string& key, std::vector<int64_t> fallback,
                               size_t count) {
  std::vector<int64_t> v = node.get_ints(key, fallback);
  if (v.size() == 1) v.assign(count, v[0]);
  if (v.size() != count) node.fail(key, "expected " + std::to_string(count) + " sizes, got " + std::to_string(v.size()));
  for (int64_t x : v)
    if (x < 1) node.fail(key, "sizes must be positive");
  return v;
}

ImageEncoderPtr make_resnet(const core::ConfigNode& node, int64_t dims, int64_t depth) {
  ResNetOptions o;
  o.dims = dims;
  o.depth = depth;
  o.in_channels = node.get_int("in_channels", 1, 1, 64);
  o.num_classes = node.get_int("num_classes", 0, 0, 1 << 20);
  o.channels_last = node.get_bool("channels_last", dims == 2);
  if (node.has("stem_stride")) o.stem_stride = get_sizes(node, "stem_stride", {}, static_cast<size_t>(dims));
  return std::make_shared<ResNetImpl>(o);
}

VitOptions read_vit(const core::ConfigNode& node, VitOptions o) {
  const size_t D = static_cast<size_t>(o.dims);
  o.image_size = get_sizes(node, "image_size", o.image_size, D);
  o.patch_size = get_sizes(node, "patch_size", o.patch_size, D);
  o.in_channels = node.get_int("in_channels", 1, 1, 64);
  o.dim = node.get_int("dim", o.dim, 8, 16384);
  o.depth = node.get_int("depth", o.depth, 1, 256);
  o.heads = node.get_int("heads", o.heads, 1, 256);
  o.mlp_ratio = node.get_double("mlp_ratio", o.mlp_ratio, 0.25, 64);
  o.num_classes = node.get_int("num_classes", 0, 0, 1 << 20);
  o.pooling = node.get_choice("pooling", o.pooling, {"token", "avg"});
  o.checkpoint = node.get_bool("checkpoint", false);
  if (o.dim % o.heads != 0) node.fail("heads", "must divide dim " + std::to_string(o.dim));
  for (size_t i = 0; i < D; ++i)
    if (o.image_size[i] % o.patch_size[i] != 0) node.fail("image_size", "must be a multiple of patch_size");
  return o;
}

ImageEncoderPtr make_vit(const core::ConfigNode& node, const std::string& preset) {
  return std::make_shared<VitImpl>(read_vit(node, vit_preset(preset)));
}

ImageEncoderPtr make_vit3d(const core::ConfigNode& node) {
  VitOptions o;
  o.dims = 3;
  o.image_size = {64, 128, 128};
  o.patch_size = {8, 16, 16};
  o.dim = 384, o.depth = 6, o.heads = 6;
  return std::make_shared<VitImpl>(read_vit(node, o));
}

// The sizes BERT and CLIP's text transformer share (their options use the same field names).
template <typename Options>
void read_transformer_sizes(const core::ConfigNode& node, int64_t vocab_size, Options& o) {
  o.vocab_size = node.get_int("vocab_size", vocab_size, 1, 1 << 24);
  o.hidden = node.get_int("hidden", o.hidden, 8, 16384);
  o.layers = node.get_int("layers", o.layers, 1, 256);
  o.heads = node.get_int("heads", o.heads, 1, 256);
  o.intermediate = node.get_int("intermediate", o.intermediate, 8, 65536);
  o.max_position = node.get_int("max_position", o.max_position, 2, 1 << 16);
  o.eps = node.get_double("eps", o.eps, 0, 1);
  o.checkpoint = node.get_bool("checkpoint", false);
  if (o.hidden % o.heads != 0) node.fail("heads", "must divide hidden " + std::to_string(o.hidden));
}

TextEncoderPtr make_bert(const core::ConfigNode& node, int64_t vocab_size) {
  BertOptions o;
  read_transformer_sizes(node, vocab_size, o);
  o.type_vocab = node.get_int("type_vocab", o.type_vocab, 1, 1024);
  o.dropout = node.get_double("dropout", o.dropout, 0, 0.99);
  o.with_pooler = node.get_bool("with_pooler", o.with_pooler);
  o.pooling = node.get_choice("pooling", o.pooling, {"cls", "mean", "pooler", "attention"});
  o.sum_last_layers = node.get_int("sum_last_layers", o.sum_last_layers, 1, o.layers);
  o.max_len = node.get_int("max_len", std::min<int64_t>(o.max_len, o.max_position), 1, o.max_position);
  if (o.pooling == "pooler" && !o.with_pooler) node.fail("pooling", "\"pooler\" needs with_pooler: true");
  return std::make_shared<BertImpl>(o);
}

TextEncoderPtr make_clip_text(const core::ConfigNode& node, int64_t vocab_size) {
  ClipTextOptions o;
  read_transformer_sizes(node, vocab_size, o);
  o.eos_id = node.get_int("eos_id", std::min(o.eos_id, o.vocab_size - 1), 0, o.vocab_size - 1);
  o.pooling = node.get_choice("pooling", o.pooling, {"eos", "mean", "attention"});
  return std::make_shared<ClipTextImpl>(o);
}

}  // namespace

MEDVLP_REGISTER(image_encoder_registry(), "resnet18", [](const core::ConfigNode& n) { return make_resnet(n, 2, 18); });
MEDVLP_REGISTER(image_encoder_registry(), "resnet34", [](const core::ConfigNode& n) { return make_resnet(n, 2, 34); });
MEDVLP_REGISTER(image_encoder_registry(), "resnet50", [](const core::ConfigNode& n) { return make_resnet(n, 2, 50); });
MEDVLP_REGISTER(image_encoder_registry(), "resnet101", [](const core::ConfigNode& n) { return make_resnet(n, 2, 101); });
MEDVLP_REGISTER(image_encoder_registry(), "resnet3d_18", [](const core::ConfigNode& n) { return make_resnet(n, 3, 18); });
MEDVLP_REGISTER(image_encoder_registry(), "resnet3d_34", [](const core::ConfigNode& n) { return make_resnet(n, 3, 34); });
MEDVLP_REGISTER(image_encoder_registry(), "vit_s16", [](const core::ConfigNode& n) { return make_vit(n, "vit_s16"); });
MEDVLP_REGISTER(image_encoder_registry(), "vit_b16", [](const core::ConfigNode& n) { return make_vit(n, "vit_b16"); });
MEDVLP_REGISTER(image_encoder_registry(), "vit_l16", [](const core::ConfigNode& n) { return make_vit(n, "vit_l16"); });
MEDVLP_REGISTER(image_encoder_registry(), "vit3d", make_vit3d);
MEDVLP_REGISTER(text_encoder_registry(), "bert", make_bert);
MEDVLP_REGISTER(text_encoder_registry(), "clip_text", make_clip_text);

}  // namespace medvlp::models
