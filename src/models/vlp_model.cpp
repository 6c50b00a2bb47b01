#include "medvlp/models/vlp_model.h"

#include <torch/torch.h>

#include "../core/log.h"
#include "medvlp/core/error.h"
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

int64_t VlpModelImpl::token_dim() const { return local_dim_ > 0 ? local_dim_ : stage_dim(token_stage_); }

int64_t VlpModelImpl::stage_dim(int64_t back) const {
  if (back == 0) return image_->out_dim();
  const std::vector<int64_t> dims = image_->stage_dims();
  return dims[dims.size() - 1 - static_cast<size_t>(back)];
}

std::pair<at::Tensor, std::vector<int64_t>> VlpModelImpl::stage(const ImageFeatures& features, int64_t back) const {
  if (back == 0) return {features.tokens, features.grid};
  const size_t i = features.stages.size() - 1 - static_cast<size_t>(back);
  return {features.stages.at(i), features.stage_grids.at(i)};
}

void VlpModelImpl::set_token_stages(int64_t tokens, int64_t words) {
  MEDVLP_CHECK(local_dim_ == 0, "VlpModel: set_token_stages() must come before set_local_dim()");
  const int64_t stages = static_cast<int64_t>(image_->stage_dims().size());
  for (const int64_t back : {tokens, words})
    MEDVLP_CHECK(back >= 0 && (back == 0 || back < stages), "VlpModel: token stage ", back, " counted back from the last ",
                 "is not a stage of this image encoder, which has ", stages, " (0 is the last)");
  token_stage_ = tokens;
  word_stage_ = words;
}

void VlpModelImpl::set_local_dim(int64_t dim) {
  MEDVLP_CHECK(local_dim_ == 0, "VlpModel: local_dim is already set");
  MEDVLP_CHECK(dim > 0 || word_stage_ == token_stage_, "VlpModel: a word token stage (", word_stage_,
               ") other than the token stage (", token_stage_, ") needs local heads (local_dim > 0)");
  if (dim <= 0) return;
  local_dim_ = dim;
  image_local_ = register_module("image_local", torch::nn::Linear(stage_dim(token_stage_), dim));
  text_local_ = register_module("text_local", torch::nn::Linear(text_->out_dim(), dim));
  if (word_stage_ != token_stage_)
    image_word_local_ = register_module("image_word_local", torch::nn::Linear(stage_dim(word_stage_), dim));
}

std::pair<at::Tensor, std::vector<int64_t>> VlpModelImpl::local_tokens(const ImageFeatures& features, int64_t back) {
  auto [tokens, grid] = stage(features, back);
  if (back != token_stage_ && image_word_local_) return {image_word_local_->forward(tokens), grid};
  return {local_dim_ > 0 ? image_local_->forward(tokens) : tokens, grid};
}

at::Tensor VlpModelImpl::local_text(const at::Tensor& features) {
  return local_dim_ > 0 ? text_local_->forward(features) : features;
}

at::Tensor VlpModelImpl::encode_units(const at::Tensor& ids, const at::Tensor& attention, const at::Tensor& units) {
  MEDVLP_CHECK(ids.dim() == 3 && attention.sizes() == ids.sizes(), "VlpModel: text units must be [B,U,L] ids with a mask of the same "
               "shape, got ", ids.sizes(), " and ", attention.sizes());
  const int64_t B = ids.size(0), U = ids.size(1), L = ids.size(2), C = text_->out_dim();
  const at::Tensor flat_ids = ids.reshape({B * U, L}), flat_mask = attention.reshape({B * U, L});
  at::Tensor rows = units.defined() ? (units.reshape({B * U}) > 0).nonzero().squeeze(1)
                                    : torch::arange(B * U, torch::TensorOptions().dtype(torch::kLong).device(ids.device()));
  if (rows.size(0) == 0) return torch::zeros({B, U, C}, torch::TensorOptions().device(ids.device()));
  // Equal units are encoded once: fVLM's normal template fills most anatomy rows, and "No
  // pneumothorax." recurs across reports. (Duplicates then share one dropout mask.)
  const at::Tensor keyed = torch::cat({flat_ids.index_select(0, rows), flat_mask.index_select(0, rows).to(ids.scalar_type())}, 1);
  const auto unique = at::unique_dim(keyed, 0, /*sorted=*/true, /*return_inverse=*/true);
  const at::Tensor distinct = std::get<0>(unique), inverse = std::get<1>(unique);
  std::vector<at::Tensor> parts;
  for (int64_t begin = 0; begin < distinct.size(0); begin += text_chunk_) {
    const at::Tensor chunk = distinct.narrow(0, begin, std::min(text_chunk_, distinct.size(0) - begin));
    parts.push_back(text_->forward(chunk.narrow(1, 0, L), chunk.narrow(1, L, L).to(attention.scalar_type())).pooled);
  }
  const at::Tensor pooled = torch::cat(parts).index_select(0, inverse);
  return torch::zeros({B * U, C}, pooled.options()).index_copy(0, rows, pooled).view({B, U, C});
}

at::Tensor word_mask(const at::Tensor& attention_mask) {
  MEDVLP_CHECK(attention_mask.dim() == 2, "word_mask: the attention mask must be [B,L], got ", attention_mask.sizes());
  const at::Tensor m = (attention_mask > 0).to(torch::kFloat);                     // [B,L]
  const at::Tensor len = m.sum(1, /*keepdim=*/true);                               // [B,1]
  const at::Tensor pos = torch::arange(m.size(1), m.options()).unsqueeze(0);       // [1,L]
  const at::Tensor inner = ((pos > 0) & (pos < len - 1)).to(torch::kFloat);
  return torch::where(len > 2, m * inner, m);
}

Encoded VlpModelImpl::forward(const data::Batch& batch) {
  MEDVLP_CHECK(batch.images.defined() && batch.token_ids.defined(), "VlpModel: the batch needs images and token ids");
  Encoded out;
  ImageFeatures img = image_->forward(batch.images);
  TextFeatures txt = text_->forward(batch.token_ids, batch.attention_mask);
  const auto opts = torch::nn::functional::NormalizeFuncOptions().dim(-1);
  out.image_embed = torch::nn::functional::normalize(image_proj_->forward(img.pooled), opts);
  out.text_embed = torch::nn::functional::normalize(text_proj_->forward(txt.pooled), opts);
  std::tie(out.image_tokens, out.grid) = local_tokens(img, token_stage_);
  if (word_stage_ != token_stage_) std::tie(out.word_image_tokens, out.word_grid) = local_tokens(img, word_stage_);
  out.text_tokens = local_text(txt.tokens);
  out.word_mask = word_mask(batch.attention_mask);
  if (batch.anatomy_ids.defined())
    out.anatomy_text =
        torch::nn::functional::normalize(text_proj_->forward(encode_units(batch.anatomy_ids, batch.anatomy_attention, {})), opts);
  if (batch.sentence_ids.defined()) {
    const at::Tensor pooled = encode_units(batch.sentence_ids, batch.sentence_attention, batch.sentence_mask);
    // Padding sentences stay zero after the local head's bias, as they are before it.
    out.sentence_embed = local_dim_ > 0 ? text_local_->forward(pooled) * (batch.sentence_mask.unsqueeze(-1) > 0) : pooled;
    out.sentence_mask = batch.sentence_mask;
  }
  if (batch.entity_ids.defined()) {
    const at::Tensor pooled = encode_units(batch.entity_ids, batch.entity_attention, batch.entity_mask);
    out.entity_embed = torch::nn::functional::normalize(text_proj_->forward(pooled), opts);
    if (entity_reference_) out.entity_reference = torch::nn::functional::normalize(pooled.detach(), opts);
  }
  if (anatomy_pooling_ && batch.anatomy_masks.defined()) {
    AnatomyFeatures anatomy = anatomy_pool(img.tokens, img.grid, batch.anatomy_masks);
    out.anatomy_image = torch::nn::functional::normalize(image_proj_->forward(anatomy.features), opts);
    out.anatomy_present = anatomy.present;
  }
  return out;
}

at::Tensor VlpModelImpl::patch_similarity(const at::Tensor& images, const at::Tensor& ids, const at::Tensor& mask,
                                          const std::string& mode, std::vector<int64_t>* grid) {
  const ImageFeatures img = image_->forward(images);
  const TextFeatures txt = text_->forward(ids, mask);
  if (grid) *grid = img.grid;
  const auto opts = torch::nn::functional::NormalizeFuncOptions().dim(-1);
  if (mode == "tokens") {
    // The patches the words were trained against: the word level's stage.
    auto [word_patches, word_grid] = local_tokens(img, word_stage_);
    if (grid) *grid = word_grid;
    const at::Tensor patches = torch::nn::functional::normalize(word_patches, opts);  // [B,N,C]
    const at::Tensor words =
        torch::nn::functional::normalize(local_text(txt.tokens), opts);  // [T,L,C]
    MEDVLP_CHECK(patches.size(-1) == words.size(-1), "localization maps \"tokens\" compare image and text token features, "
                 "but they are ", patches.size(-1), " and ", words.size(-1), " wide; set model.local_dim or use maps: embedding");
    // The words only, the units the word-level losses align (Encoded.word_mask).
    const at::Tensor m = word_mask(mask).to(words.scalar_type());                            // [T,L]
    const at::Tensor sim = torch::einsum("bnc,tlc->btln", {patches, words});                 // [B,T,L,N]
    return (sim * m.unsqueeze(0).unsqueeze(-1)).sum(2) / m.sum(1).clamp_min(1).view({1, -1, 1});
  }
  if (mode == "sentences") {
    // AFLoc's inference maps: the sentence level's patches against the prompt as one sentence unit,
    // in the local space the sentence level trains (Encoded.image_tokens · sentence_embed).
    auto [tokens, token_grid] = local_tokens(img, token_stage_);
    if (grid) *grid = token_grid;
    const at::Tensor patches = torch::nn::functional::normalize(tokens, opts);               // [B,N,C]
    const at::Tensor texts = torch::nn::functional::normalize(local_text(txt.pooled), opts);  // [T,C]
    MEDVLP_CHECK(patches.size(-1) == texts.size(-1), "localization maps \"sentences\" compare image tokens and sentence "
                 "features, but they are ", patches.size(-1), " and ", texts.size(-1), " wide; set model.local_dim or use maps: embedding");
    return torch::einsum("bnc,tc->btn", {patches, texts});
  }
  MEDVLP_CHECK(mode == "embedding", "patch_similarity: mode is tokens, sentences or embedding, got \"", mode, "\"");
  const at::Tensor patches = torch::nn::functional::normalize(image_proj_->forward(img.tokens), opts);  // [B,N,D]
  const at::Tensor texts = torch::nn::functional::normalize(text_proj_->forward(txt.pooled), opts);     // [T,D]
  return torch::einsum("bnd,td->btn", {patches, texts});
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
  const int64_t stages = static_cast<int64_t>(model->image_encoder()->stage_dims().size());
  const int64_t token_stage = node.get_int("token_stage", 0, 0, 1 << 10);
  const int64_t word_stage = node.get_int("word_token_stage", token_stage, 0, 1 << 10);
  const auto check_stage = [&](const char* key, int64_t back) {
    if (back == 0) return;
    if (stages == 0)
      node.fail(key, "image encoder \"" + image_name + "\" hands out its last tokens only; earlier stages (counted back "
                     "from the last, 0) come from CNN encoders: small_cnn, resnet18..101, resnet3d_*");
    if (back >= stages)
      node.fail(key, "image encoder \"" + image_name + "\" has " + std::to_string(stages) +
                         " stages; expected 0 (the last) to " + std::to_string(stages - 1) + ", got " +
                         std::to_string(back));
  };
  check_stage("token_stage", token_stage);
  check_stage("word_token_stage", word_stage);
  model->set_token_stages(token_stage, word_stage);
  const int64_t local_dim = node.get_int("local_dim", 0, 0, 65536);
  if (local_dim == 0 && word_stage != token_stage)
    node.fail("word_token_stage", "aligns words with another stage (" + std::to_string(word_stage) + ") than the image "
              "tokens (" + std::to_string(token_stage) + "), which needs local heads that map both into one space: set "
              "model.local_dim");
  model->set_local_dim(local_dim);
  model->set_entity_reference(node.get_bool("entity_reference", false));
  model->set_text_chunk(node.get_int("text_chunk", 1024, 1, 1 << 20));
  const std::vector<std::string> freeze = node.get_strings("freeze", {});
  if (!freeze.empty()) core::log_info("froze ", model->freeze(freeze), " parameter tensors");
  return model;
}

}  // namespace medvlp::models
