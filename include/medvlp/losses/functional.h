#pragma once
// Building blocks shared by the built-in losses and meant for new ones: soft cross-entropy,
// row selection for one or many ranks, a learnable logit scale, and the token-level scores of
// GLoRIA/AFLoc and FILIP computed in chunks so that a 256 x 256 batch of 196 x 64 tokens fits.

#include <string>
#include <utility>

#include <ATen/Tensor.h>
#include <torch/nn/module.h>

#include "medvlp/core/config.h"
#include "medvlp/losses/loss.h"

namespace medvlp::losses {

/// Which rows of a batch-by-batch problem a rank scores. `Local` (open_clip's local_loss): this
/// rank's rows against every gathered column. `Full`: every rank computes the whole problem.
enum class RowMode { Local, Full };

/// Reads option `rows: local|full` (default local).
RowMode parse_row_mode(const core::ConfigNode& node);

/// A logit scale s = exp(θ), θ = log(1/temperature), learnable or fixed, clamped to
/// [min_scale, max_scale] in the forward pass (CLIP clamps at 100; fVLM's temperature range
/// [0.001, 0.5] is scale range [2, 1000]).
class LogitScale {
 public:
  LogitScale() = default;
  /// Registers θ on `owner` as parameter (learnable) or buffer named "log_scale".
  LogitScale(torch::nn::Module& owner, double temperature, bool learnable, double min_scale, double max_scale,
             const std::string& loss_name);
  at::Tensor operator()() const;
  /// Reads `temperature`, `learnable`, `min_scale`, `max_scale` with the given defaults.
  static LogitScale from_config(torch::nn::Module& owner, const core::ConfigNode& node, const std::string& loss_name,
                                double temperature, bool learnable, double min_scale, double max_scale);

 private:
  at::Tensor theta_;
  double min_scale_ = 0, max_scale_ = 0;
};

/// The options every mask-pooling loss (anatomy, region_sentence) shares: anatomy names in mask
/// order, C of Encoded.image_tokens and D of Encoded.anatomy_text.
struct MaskLossShape {
  std::vector<std::string> anatomies;
  int64_t token_dim = 0;
  int64_t embed_dim = 0;
};
/// Reads them, each required, with messages naming the key.
MaskLossShape read_mask_loss_shape(const core::ConfigNode& node);
/// The loss_option_registry() filler of those options (from the model and data.report).
nlohmann::json fill_mask_loss_options(const nlohmann::json& written, const LossEnvironment& env);

namespace fn {

/// float32 unless the tensor is float64, so that softmaxes never run in bf16/fp16.
at::Tensor upcast(const at::Tensor& t);

/// mean_i of -Σ_j targets_ij · log_softmax(logits)_ij. Targets are used as given (no gradient).
at::Tensor soft_cross_entropy(const at::Tensor& logits, const at::Tensor& targets);

/// Symmetric contrastive problem on gathered rows. `image_all`/`text_all` are [N,D] (all ranks);
/// `targets_i2t` [N,N] (row i: image i over texts) and `targets_t2i` [N,N] (row t: text t over
/// images) are row-stochastic; undefined targets stand for the identity (each row's own pair,
/// computed as hard labels). Returns {i2t, t2i} soft cross-entropies over the rows this rank
/// scores (`mode`), each a mean over those rows. `local_rows` is this rank's row count.
/// `exclude` [N,N] bool (optional): pairs removed from both softmax denominators.
std::pair<at::Tensor, at::Tensor> contrast(const at::Tensor& image_all, const at::Tensor& text_all,
                                           const at::Tensor& scale, const at::Tensor& targets_i2t,
                                           const at::Tensor& targets_t2i, const LossContext& context,
                                           int64_t local_rows, RowMode mode, const at::Tensor& exclude = {});

/// GLoRIA/AFLoc word-to-patch scores. words [T,L,D], word_mask [T,L] (1 = real word; every row
/// needs one), patches [I,N,D]. For report t and image i each word attends over the patches
/// (dot products, softmax over the report's words, ×t1, softmax over patches); the score is
/// log Σ_words exp(t2 · cos(word, attended context)) (`mean_over_words`: log of the mean).
/// Returns [T,I]. Above set_checkpoint_threshold() memory stays bounded: chunks of reports,
/// recomputed in the backward pass.
at::Tensor gloria_scores(const at::Tensor& words, const at::Tensor& word_mask, const at::Tensor& patches, double t1,
                         double t2, bool mean_over_words);

/// Size (T·I·L·max(N,D) elements, default 2^28) above which gloria_scores/filip_scores stop keeping
/// their intermediates for autograd and recompute them per chunk of reports in the backward pass.
void set_checkpoint_threshold(int64_t elements);

/// The same attention for matched pairs only (report b on image b): [B,L,N] weights over patches.
at::Tensor gloria_attention(const at::Tensor& words, const at::Tensor& word_mask, const at::Tensor& patches,
                            double t1);

/// FILIP token-wise maximum similarity. Returns {t2i [T,I]: mean over real words of the max over
/// patches, i2t [T,I]: mean over patches of the max over real words} (both indexed report, image).
std::pair<at::Tensor, at::Tensor> filip_scores(const at::Tensor& words, const at::Tensor& word_mask,
                                               const at::Tensor& patches);

/// Token mask of an anatomy mask on the encoder's grid: masks [B,A,*spatial] max-pooled to `grid`
/// (2 or 3 sizes, adaptive max pooling) → [B,A,prod(grid)] bool.
at::Tensor masks_to_tokens(const at::Tensor& masks, const std::vector<int64_t>& grid);

}  // namespace fn
}  // namespace medvlp::losses
