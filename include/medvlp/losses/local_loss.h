#pragma once
// Token-level alignment: `local` (GLoRIA/AFLoc attention form, or FILIP's token-wise maximum) and
// `multi_level` (AFLoc: report-image + sentence-patch + word-patch).

#include <string>

#include "medvlp/losses/functional.h"
#include "medvlp/losses/loss.h"

namespace medvlp::losses {

/// Options of LocalLoss; defaults from AFLoc's config (t1 = 4, t2 = 5, t3 = 10, sum over words).
struct LocalLossOptions {
  std::string form = "gloria";     // "gloria" or "filip"
  std::string units = "words";     // "words": Encoded.text_tokens/word_mask; "sentences": sentence_embed/mask
  double t1 = 4.0;
  double t2 = 5.0;
  double t3 = 10.0;
  std::string aggregate = "sum";   // over words: "sum" or "mean" (inside the log)
  std::string directions = "sum";  // image→text and text→image terms: "sum" (AFLoc) or "mean"
  double temperature = 0.07;       // FILIP's learnable temperature
  bool learnable = true;
  RowMode rows = RowMode::Local;
};

/// {image→text, text→image} cross-entropies of the GLoRIA/AFLoc score matrix ×t3 on this rank's rows.
/// `attention` (optional) receives the matched pairs' word-to-patch attention [b,L,N].
std::pair<at::Tensor, at::Tensor> gloria_pair_loss(const at::Tensor& words, const at::Tensor& word_mask,
                                                   const at::Tensor& patches, const LocalLossOptions& options,
                                                   const LossContext& context, at::Tensor* attention);

class LocalLossImpl : public LossImpl {
 public:
  LocalLossImpl(const LocalLossOptions& options);
  LossOutput forward(const models::Encoded& encoded, const data::Batch& batch, const LossContext& context) override;
  std::string name() const override { return "local"; }
  std::vector<std::string> needs() const override;

 private:
  LocalLossOptions options_;
  LogitScale scale_;
};

/// Options of MultiLevelLoss (AFLoc): each level's weight (1.0) and the shared temperatures.
struct MultiLevelLossOptions {
  double global_weight = 1.0;
  double sentence_weight = 1.0;
  double word_weight = 1.0;
  /// AFLoc's units start with the report's begin token ([CLS]): its word slice `words_emb[:, :cap_len]`
  /// takes [CLS] and the words but not [SEP], and its sentence units are [CLS] then the sentences.
  /// false: words without either special (Encoded.word_mask), sentences alone.
  bool begin_token = true;
  LocalLossOptions local;  // t1, t2, t3, aggregate, rows
};

/// AFLoc: L = w_g·(CE_i2t + CE_t2i)(cos(image, report)·t3) + w_s·local(sentences) + w_w·local(words).
class MultiLevelLossImpl : public LossImpl {
 public:
  explicit MultiLevelLossImpl(const MultiLevelLossOptions& options);
  LossOutput forward(const models::Encoded& encoded, const data::Batch& batch, const LossContext& context) override;
  std::string name() const override { return "multi_level"; }
  std::vector<std::string> needs() const override;

 private:
  MultiLevelLossOptions options_;
};

}  // namespace medvlp::losses
