#pragma once
// VlpModel: image encoder + text encoder + projection heads into one joint space.

#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "medvlp/core/config.h"
#include "medvlp/data/sample.h"
#include "medvlp/models/encoded.h"
#include "medvlp/models/image_encoder.h"
#include "medvlp/models/text_encoder.h"

namespace medvlp::models {

/// The composed vision-language model. Embeddings are L2-normalized, [B, embed_dim].
/// Parameter names are stable ("image.…", "text.…", "image_proj.…", "text_proj.…"): checkpoints use them.
class VlpModelImpl : public torch::nn::Module {
 public:
  VlpModelImpl(ImageEncoderPtr image, TextEncoderPtr text, int64_t embed_dim, const std::string& projection);

  at::Tensor encode_images(const at::Tensor& images);                         // [B,C,H,W] -> [B,D]
  at::Tensor encode_texts(const at::Tensor& ids, const at::Tensor& mask);     // [B,L] -> [B,D]
  /// Encodes a batch's images and reports (tokens included) for the losses; with anatomy pooling on
  /// and anatomy masks in the batch also the projected, L2-normalized anatomy features and their presence.
  /// Text units the batch carries (the loader adds only those a configured loss reads) are encoded
  /// in one flattened pass through the text encoder, in chunks, padded units skipped:
  /// anatomy_ids -> anatomy_text [B,A,D], sentence_ids -> sentence_embed [B,S,token_dim()],
  /// entity_ids -> entity_embed [B,E,D] (and entity_reference when enabled).
  Encoded forward(const data::Batch& batch);
  int64_t embed_dim() const { return embed_dim_; }
  /// Similarity of every image patch to every text, for localization: [B,T,N] for images [B,...]
  /// and texts [T,L]; `grid` receives the patch grid. "tokens": the mean over each text's words
  /// (word_mask(): the tokens the word-level losses align) of cos(token, patch) in the token space
  /// of the local losses (Encoded.text_tokens/image_tokens,
  /// which must share a width; the patches of the word level's stage); "sentences": cos(patch,
  /// the text as one sentence unit) in the space the sentence level trains (AFLoc's inference maps:
  /// layer3's local embeddings against the prompt); "embedding": cos(image projection of each
  /// patch, text embedding), the global embedding applied per patch.
  at::Tensor patch_similarity(const at::Tensor& images, const at::Tensor& ids, const at::Tensor& mask,
                              const std::string& mode, std::vector<int64_t>* grid);
  /// Channels of Encoded.image_tokens / text_tokens / sentence_embed: local_dim when set, else the
  /// width of the image encoder's stage that gives the tokens.
  int64_t token_dim() const;
  /// Which image-encoder stage, counted back from the last (0), gives Encoded.image_tokens, and
  /// which gives the word level's tokens (Encoded.word_image_tokens, filled only when the two
  /// differ). AFLoc aligns sentences with ResNet's layer3 (1) and words with layer2 (2), while the
  /// global embedding pools layer4. Encoders without stages (ViTs) take 0 only. Call before
  /// set_local_dim(), which sizes one local head per stage; a word stage of its own needs one.
  void set_token_stages(int64_t tokens, int64_t words);
  int64_t token_stage() const { return token_stage_; }
  int64_t word_token_stage() const { return word_stage_; }
  /// AFLoc's local embedding heads: linear maps of image tokens, text tokens and sentence features
  /// into one `dim`-wide space ("image_local.…", "text_local.…", and "image_word_local.…" for a
  /// word stage of its own), so that token-level losses can compare them. 0 (default) keeps the
  /// encoders' own token features.
  void set_local_dim(int64_t dim);
  int64_t local_dim() const { return local_dim_; }
  /// Fill Encoded.entity_reference with the entity texts' own (detached) text features, the
  /// stand-in for MedFILIP's frozen sentence encoder.
  void set_entity_reference(bool on) { entity_reference_ = on; }
  bool entity_reference_enabled() const { return entity_reference_; }
  /// Text units encoded per pass through the text encoder (memory bound for many units).
  void set_text_chunk(int64_t rows) { text_chunk_ = rows; }
  /// Fill Encoded.anatomy_image / anatomy_present from the batch's anatomy masks (off by default:
  /// the built-in anatomy loss pools the tokens itself).
  void set_anatomy_pooling(bool on) { anatomy_pooling_ = on; }
  ImageEncoderPtr image_encoder() const { return image_; }
  TextEncoderPtr text_encoder() const { return text_; }
  /// Stops gradients for every parameter whose name ("image.layer1.0.conv1.weight") matches one of
  /// the glob patterns (`*` any run, `?` one character); returns how many it froze. A pattern that
  /// matches nothing is an error (a typo would silently train everything).
  int64_t freeze(const std::vector<std::string>& patterns);

 private:
  /// Pooled features [B,U,C] of text units [B,U,L]; rows where `units` is 0 are not encoded (zeros).
  at::Tensor encode_units(const at::Tensor& ids, const at::Tensor& attention, const at::Tensor& units);
  /// Tokens [B,N,C] and grid of the stage `back` stages before the last.
  std::pair<at::Tensor, std::vector<int64_t>> stage(const ImageFeatures& features, int64_t back) const;
  /// Width of that stage's tokens.
  int64_t stage_dim(int64_t back) const;
  /// Tokens and grid of the stage `back` stages before the last, through that stage's local head
  /// (image_word_local for a word stage of its own, else image_local; none without local_dim).
  std::pair<at::Tensor, std::vector<int64_t>> local_tokens(const ImageFeatures& features, int64_t back);
  /// Text features through the text local head (unchanged without local_dim).
  at::Tensor local_text(const at::Tensor& features);

  int64_t embed_dim_;
  int64_t local_dim_ = 0;
  int64_t token_stage_ = 0, word_stage_ = 0;
  int64_t text_chunk_ = 1024;
  bool anatomy_pooling_ = false;
  bool entity_reference_ = false;
  ImageEncoderPtr image_;
  TextEncoderPtr text_;
  torch::nn::Sequential image_proj_{nullptr}, text_proj_{nullptr};
  torch::nn::Linear image_local_{nullptr}, text_local_{nullptr}, image_word_local_{nullptr};
};
TORCH_MODULE(VlpModel);

/// Builds a VlpModel from the `model` config node: image/text encoders by registry name,
/// `embed_dim`, `projection` (linear | mlp), `freeze` (glob patterns), `anatomy_pooling` (bool). Each encoder node may name
/// pretrained `weights` (safetensors) with their `weights_format` (see weight_formats()) and
/// `weights_strict` (default true), `local_dim` (AFLoc's local heads, 0 = none), `token_stage` and
/// `word_token_stage` (see set_token_stages), `entity_reference`
/// (bool), `text_chunk` (text units per encoder pass). `vocab_size` comes from the tokenizer.
VlpModel build_model(const core::ConfigNode& node, int64_t vocab_size);

}  // namespace medvlp::models
