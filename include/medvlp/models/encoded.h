#pragma once
// Encoded: what a model hands to losses and evaluation.

#include <vector>

#include <ATen/Tensor.h>

namespace medvlp::models {

/// The words of token ids laid out as the tokenizers lay them out (real tokens first, the first and
/// last of them the begin/end specials): 1 on the real tokens but those two, as GLoRIA's and AFLoc's
/// word-level terms leave out [CLS] and [SEP]. A text of two real tokens or fewer keeps them all,
/// so that no row is empty. attention_mask [B,L] (1 on real tokens) -> float [B,L].
at::Tensor word_mask(const at::Tensor& attention_mask);

/// Embeddings of one batch. Fields the model does not produce stay undefined;
/// a loss that needs one throws an error naming the field and the loss.
struct Encoded {
  at::Tensor image_embed;      // [B,D], L2-normalized
  at::Tensor text_embed;       // [B,D], L2-normalized
  at::Tensor image_tokens;     // [B,N,C] spatial features before projection
  std::vector<int64_t> grid;  // (H', W') or (D', H', W') of image_tokens, N = their product
  at::Tensor word_image_tokens;      // [B,N_w,C] image tokens of another encoder stage for the word level
                                     // (model.word_token_stage, AFLoc's layer2 features); undefined: image_tokens
  std::vector<int64_t> word_grid;    // the grid of word_image_tokens
  at::Tensor text_tokens;      // [B,L,C] token features before projection
  at::Tensor word_mask;        // [B,L] 1 on the words: real tokens but the begin/end specials (word_mask())
  at::Tensor anatomy_image;    // [B,A,D]
  at::Tensor anatomy_text;     // [B,A,D]
  at::Tensor anatomy_present;  // [B,A]
  at::Tensor sentence_embed;   // [B,S,D] per-sentence token states (AFLoc's sentence units)
  at::Tensor sentence_mask;    // [B,S] 1 on real sentences
  at::Tensor entity_embed;     // [B,E,D] L2-normalized entity texts (MedFILIP: one per disease detail)
  at::Tensor entity_reference; // [B,E,R] the same texts under a frozen sentence encoder (soft targets)

  /// The image tokens that words align with: word_image_tokens where the model fills it, else image_tokens.
  const at::Tensor& word_patches() const { return word_image_tokens.defined() ? word_image_tokens : image_tokens; }
};

}  // namespace medvlp::models
