#include "medvlp/models/vlp_model.h"

#include <torch/torch.h>

#include "../core/log.h"
#include "medvlp/models/weights.h"

namespace medvlp::models {

namespace {
torch::nn::Sequential projection(int64_t in, int64_t out, const std::string& kind) {
  if (kind == "mlp")
    return torch::nn::Sequential(torch::nn::Linear(in, in), torch::nn::GELU(), torch::nn::Linear(in, out));
  return torch::nn::Sequential(torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)));
}
}  // namespace

VlpModelImpl::VlpModelImpl(ImageEncoderPtr image, TextEncoderPtr text, int64_t embed_dim, const std::string& proj)
    : embed_dim_(embed_dim) {
  image_ = register_module("image", std::move(image));
  text_ = register_module("text", std::move(text));
  image_proj_ = register_module("image_proj", projection(image_->out_dim(), embed_dim, proj));
  text_proj_ = register_module("text_proj", projection(text_->out_dim(), embed_dim, proj));
}

at::Tensor VlpModelImpl::encode_images(const at::Tensor& images) {
  return torch::nn::functional::normalize(image_proj_->forward(image_->forward(images).pooled),
                                          torch::nn::functional::NormalizeFuncOptions().dim(-1));
}

at::Tensor VlpModelImpl::encode_texts(const at::Tensor& ids, const at::Tensor& mask) {
  return torch::nn::functional::normalize(text_proj_->forward(text_->forward(ids, mask).pooled),
                                          torch::nn::functional::NormalizeFuncOptions().dim(-1));
}

Encoded VlpModelImpl::forward(const data::Batch& batch) {
  MEDVLP_CHECK(batch.images.defined() && batch.token_ids.defined(), "VlpModel: the batch needs images and token ids");
  Encoded out;
  ImageFeatures img = image_->forward(batch.images);
  TextFeatures txt = text_->forward(batch.token_ids, batch.attention_mask);
  const auto opts = torch::nn::functional::NormalizeFuncOptions().dim(-1);
  out.image_embed = torch::nn::functional::normalize(image_proj_->forward(img.pooled), opts);
  out.text_embed = torch::nn::functional::normalize(text_proj_->forward(txt.pooled), opts);
  out.image_tokens = img.tokens;
  out.grid = img.grid;
  out.text_tokens = txt.tokens;
  out.text_mask = batch.attention_mask;
  if (anatomy_pooling_ && batch.anatomy_masks.defined()) {
    AnatomyFeatures anatomy = anatomy_pool(img.tokens, img.grid, batch.anatomy_masks);
    out.anatomy_image = torch::nn::functional::normalize(image_proj_->forward(anatomy.features), opts);
    out.anatomy_present = anatomy.present;
  }
  return out;
}

namespace {

bool glob_match(const char* pattern, const char* text) {
  if (*pattern == '\0') return *text == '\0';
  if (*pattern == '*') return glob_match(pattern + 1, text) || (*text != '\0' && glob_match(pattern, text + 1));
  if (*text == '\0') return false;
  return (*pattern == '?' || *pattern == *text) && glob_match(pattern + 1, text + 1);
}

void load_pretrained(torch::nn::Module& encoder, const std::string& family, const std::vector<std::string>& extras,
                     const core::ConfigNode& node) {
  const std::string path = node.get_string("weights", "");
  const std::vector<std::string> known = weight_formats(family);
  const std::string format = node.get_choice("weights_format", "medvlp", known);
  const bool strict = node.get_bool("weights_strict", true);
  if (path.empty()) return;
  LoadOptions o;
  o.format = format;
  o.strict = strict;
  o.keep_missing = extras;
  o.source = node.path() + ".weights (" + path + ")";
  const LoadReport report = load_weights_file(encoder, family, path, o);
  core::log_info("loaded ", family, " weights from ", path, ": ", report.summary());
}

}  // namespace

int64_t VlpModelImpl::freeze(const std::vector<std::string>& patterns) {
  int64_t frozen = 0;
  for (const std::string& pattern : patterns) {
    int64_t matched = 0;
    for (auto& p : named_parameters()) {
      if (!glob_match(pattern.c_str(), p.key().c_str())) continue;
      ++matched;
      if (p.value().requires_grad()) ++frozen;
      p.value().set_requires_grad(false);
    }
    MEDVLP_CHECK(matched > 0, "freeze: pattern \"", pattern,
                 "\" matches no parameter (names look like image.layer1.0.conv1.weight, text.embeddings.*)");
  }
  return frozen;
}

VlpModel build_model(const core::ConfigNode& node, int64_t vocab_size) {
  const int64_t embed_dim = node.get_int("embed_dim", 128, 1, 65536);
  const std::string proj = node.get_choice("projection", "linear", {"linear", "mlp"});
  const core::ConfigNode image = node.at("image");
  const core::ConfigNode text = node.at("text");
  const std::string image_name = image.get_string("name");
  const std::string text_name = text.get_string("name");
  if (!image_encoder_registry().contains(image_name))
    image.fail("name", "unknown image encoder \"" + image_name + "\"; known: " + core::join(image_encoder_registry().names()));
  if (!text_encoder_registry().contains(text_name))
    text.fail("name", "unknown text encoder \"" + text_name + "\"; known: " + core::join(text_encoder_registry().names()));
  ImageEncoderPtr image_encoder = image_encoder_registry().create(image_name, image);
  TextEncoderPtr text_encoder = text_encoder_registry().create(text_name, text, vocab_size);
  load_pretrained(*image_encoder, image_encoder->family(), image_encoder->extra_parameters(), image);
  load_pretrained(*text_encoder, text_encoder->family(), text_encoder->extra_parameters(), text);
  VlpModel model(std::move(image_encoder), std::move(text_encoder), embed_dim, proj);
  model->set_anatomy_pooling(node.get_bool("anatomy_pooling", false));
  const std::vector<std::string> freeze = node.get_strings("freeze", {});
  if (!freeze.empty()) core::log_info("froze ", model->freeze(freeze), " parameter tensors");
  return model;
}

}  // namespace medvlp::models
