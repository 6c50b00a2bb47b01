#include "medvlp/losses/local_loss.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"

namespace medvlp::losses {

namespace {

at::Tensor arange_targets(int64_t n, int64_t offset, const at::Device& device) {
  return torch::arange(n, torch::TensorOptions().dtype(torch::kLong).device(device)) + offset;
}

// {image→text, text→image} CE for a report-by-image score function on this rank's rows.
// scores(words, mask, patches, image_rows) returns [T,I]: the matrix whose rows (reports) feed the
// text→image CE, or with image_rows = true the one whose columns (images) feed image→text; they
// differ for FILIP and coincide for GLoRIA.
template <typename Scores>
std::pair<at::Tensor, at::Tensor> pair_ce(const at::Tensor& words, const at::Tensor& mask, const at::Tensor& patches,
                                          const LossContext& context, RowMode mode, bool one_matrix, Scores&& scores) {
  namespace F = torch::nn::functional;
  const int64_t b = words.size(0);
  const at::Tensor words_all = context.all_gather(words), mask_all = context.all_gather(mask.detach());
  const at::Tensor patches_all = context.all_gather(patches);
  if (mode == RowMode::Full || context.world_size == 1) {
    const at::Tensor t_rows = scores(words_all, mask_all, patches_all, false);  // [T,I]
    const at::Tensor i_rows = one_matrix ? t_rows.t() : scores(words_all, mask_all, patches_all, true).t();
    const at::Tensor targets = arange_targets(t_rows.size(0), 0, t_rows.device());
    return {F::cross_entropy(i_rows, targets), F::cross_entropy(t_rows, targets)};
  }
  const int64_t offset = context.row_offset(b);
  const at::Tensor t_rows = scores(words_all.narrow(0, offset, b), mask_all.narrow(0, offset, b), patches_all, false);
  const at::Tensor i_rows = scores(words_all, mask_all, patches_all.narrow(0, offset, b), true).t();  // [b,T]
  const at::Tensor targets = arange_targets(b, offset, t_rows.device());
  return {F::cross_entropy(i_rows, targets), F::cross_entropy(t_rows, targets)};
}

// The Encoded field that holds Encoded::word_patches(), for messages.
const char* word_patch_field(const models::Encoded& e) {
  return e.word_image_tokens.defined() ? "word_image_tokens" : "image_tokens";
}

void check_units(const LossImpl& loss, const at::Tensor& units, const at::Tensor& mask, const at::Tensor& patches,
                 const std::string& unit_field, const std::string& mask_field, const std::string& patch_field) {
  MEDVLP_CHECK(units.dim() == 3 && patches.dim() == 3 && units.size(2) == patches.size(2) &&
                   units.size(0) == patches.size(0),
               "loss ", loss.name(), ": Encoded.", unit_field, " ", units.sizes(), " and Encoded.", patch_field, " ",
               patches.sizes(), " must be [B,L,C] and [B,N,C] with the same B and C");
  MEDVLP_CHECK(mask.dim() == 2 && mask.size(0) == units.size(0) && mask.size(1) == units.size(1), "loss ", loss.name(),
               ": Encoded.", mask_field, " has shape ", mask.sizes(), ", expected ", units.sizes().slice(0, 2));
}

}  // namespace

std::pair<at::Tensor, at::Tensor> gloria_pair_loss(const at::Tensor& words, const at::Tensor& word_mask,
                                                   const at::Tensor& patches, const LocalLossOptions& o,
                                                   const LossContext& context, at::Tensor* attention) {
  const bool mean = o.aggregate == "mean";
  auto result = pair_ce(words, word_mask, patches, context, o.rows, true,
                        [&](const at::Tensor& w, const at::Tensor& m, const at::Tensor& p, bool /*image_rows*/) {
                          return fn::gloria_scores(w, m, p, o.t1, o.t2, mean) * o.t3;
                        });
  if (attention) *attention = fn::gloria_attention(words.detach(), word_mask, patches.detach(), o.t1);
  return result;
}

LocalLossImpl::LocalLossImpl(const LocalLossOptions& options) : options_(options) {
  if (options_.form == "filip") scale_ = LogitScale(*this, options_.temperature, options_.learnable, 1e-6, 100.0, name());
}

LossOutput LocalLossImpl::forward(const models::Encoded& encoded, const data::Batch& /*batch*/,
                                  const LossContext& context) {
  const bool words = options_.units == "words";
  const std::string unit_field = words ? "text_tokens" : "sentence_embed";
  const std::string mask_field = words ? "word_mask" : "sentence_mask";
  const at::Tensor& units = words ? encoded.text_tokens : encoded.sentence_embed;
  const at::Tensor& mask = words ? encoded.word_mask : encoded.sentence_mask;
  const at::Tensor& image_tokens = words ? encoded.word_patches() : encoded.image_tokens;
  const std::string patch_field = words ? word_patch_field(encoded) : "image_tokens";
  require(image_tokens, patch_field);
  require(units, unit_field);
  require(mask, mask_field);
  const at::Tensor patches = fn::upcast(image_tokens), u = fn::upcast(units);
  check_units(*this, u, mask, patches, unit_field, mask_field, patch_field);
  LossOutput out;
  at::Tensor i2t, t2i;
  if (options_.form == "gloria") {
    at::Tensor attention;
    std::tie(i2t, t2i) = gloria_pair_loss(u, mask, patches, options_, context, &attention);
    out.extras["attention"] = attention;
  } else {
    namespace F = torch::nn::functional;
    const auto norm = F::NormalizeFuncOptions().dim(2);
    const at::Tensor s = scale_();
    std::tie(i2t, t2i) = pair_ce(F::normalize(u, norm), mask, F::normalize(patches, norm), context, options_.rows, false,
                                 [&](const at::Tensor& w, const at::Tensor& m, const at::Tensor& p, bool image_rows) {
                                   const auto both = fn::filip_scores(w, m, p);
                                   return s * (image_rows ? both.second : both.first);
                                 });
    out.terms["logit_scale"] = s.detach();
  }
  out.total = options_.directions == "sum" ? i2t + t2i : (i2t + t2i) / 2.0;
  out.terms["i2t"] = i2t.detach();
  out.terms["t2i"] = t2i.detach();
  return out;
}

std::vector<std::string> LocalLossImpl::needs() const {
  if (options_.units == "words") return {"Encoded.image_tokens", "Encoded.text_tokens"};
  return {"Encoded.image_tokens", "Encoded.sentence_embed"};
}

std::vector<std::string> MultiLevelLossImpl::needs() const {
  std::vector<std::string> out;
  if (options_.global_weight > 0) out.insert(out.end(), {"Encoded.image_embed", "Encoded.text_embed"});
  if (options_.sentence_weight > 0 || options_.word_weight > 0) out.push_back("Encoded.image_tokens");
  if (options_.sentence_weight > 0) out.push_back("Encoded.sentence_embed");
  if (options_.word_weight > 0 || (options_.sentence_weight > 0 && options_.begin_token))
    out.push_back("Encoded.text_tokens");
  return out;
}

MultiLevelLossImpl::MultiLevelLossImpl(const MultiLevelLossOptions& options) : options_(options) {}

LossOutput MultiLevelLossImpl::forward(const models::Encoded& encoded, const data::Batch& /*batch*/,
                                       const LossContext& context) {
  namespace F = torch::nn::functional;
  LossOutput out;
  at::Tensor total;
  const auto add = [&](const std::string& term, double weight, const at::Tensor& value) {
    out.terms[term] = value.detach();
    total = total.defined() ? total + weight * value : weight * value;
  };
  if (options_.global_weight > 0) {
    require(encoded.image_embed, "image_embed");
    require(encoded.text_embed, "text_embed");
    // AFLoc's global term: cosine × t3, cross-entropy in both directions, summed.
    const auto norm = F::NormalizeFuncOptions().dim(1);
    const at::Tensor image = F::normalize(fn::upcast(encoded.image_embed), norm);
    const at::Tensor text = F::normalize(fn::upcast(encoded.text_embed), norm);
    const auto [i2t, t2i] = fn::contrast(context.all_gather(image), context.all_gather(text),
                                         torch::full({}, options_.local.t3, image.options()), {}, {}, context,
                                         image.size(0), options_.local.rows);
    add("global", options_.global_weight, i2t + t2i);
  }
  const auto level = [&](const std::string& term, double weight, const at::Tensor& image_tokens,
                         const std::string& patch_field, const at::Tensor& units, const at::Tensor& mask,
                         const std::string& unit_field, const std::string& mask_field) {
    if (weight <= 0) return;
    require(image_tokens, patch_field);
    require(units, unit_field);
    require(mask, mask_field);
    const at::Tensor patches = fn::upcast(image_tokens), u = fn::upcast(units);
    check_units(*this, u, mask, patches, unit_field, mask_field, patch_field);
    at::Tensor attention;
    const auto [i2t, t2i] = gloria_pair_loss(u, mask, patches, options_.local, context, &attention);
    out.extras["attention_" + term] = attention;
    add(term, weight, i2t + t2i);
  };
  // AFLoc's unit lists begin with the report's begin token, the first of Encoded.text_tokens: the
  // word level keeps it (word_mask leaves out both specials), the sentence level puts it first.
  at::Tensor sentences = encoded.sentence_embed, sentence_mask = encoded.sentence_mask, word_mask = encoded.word_mask;
  if (options_.begin_token && options_.sentence_weight > 0 && sentences.defined() && sentence_mask.defined()) {
    require(encoded.text_tokens, "text_tokens");
    sentences = torch::cat({encoded.text_tokens.narrow(1, 0, 1).to(sentences.scalar_type()), sentences}, 1);
    sentence_mask = torch::cat({torch::ones({sentence_mask.size(0), 1}, sentence_mask.options()), sentence_mask}, 1);
  }
  if (options_.begin_token && options_.word_weight > 0 && word_mask.defined() && word_mask.size(1) > 0) {
    word_mask = word_mask.clone();
    word_mask.select(1, 0).fill_(1);
  }
  // Sentences align with the image tokens, words with the word level's (AFLoc: layer3 and layer2).
  level("sentence", options_.sentence_weight, encoded.image_tokens, "image_tokens", sentences, sentence_mask,
        "sentence_embed", "sentence_mask");
  level("word", options_.word_weight, encoded.word_patches(), word_patch_field(encoded), encoded.text_tokens, word_mask,
        "text_tokens", "word_mask");
  MEDVLP_CHECK(total.defined(), "loss multi_level: every level has weight 0");
  out.total = total;
  return out;
}

namespace {
LocalLossOptions parse_local(const core::ConfigNode& node, bool multi_level) {
  LocalLossOptions o;
  if (!multi_level) {
    o.form = node.get_choice("form", o.form, {"gloria", "filip"});
    o.units = node.get_choice("units", o.units, {"words", "sentences"});
    o.directions = node.get_choice("directions", o.form == "filip" ? "mean" : "sum", {"sum", "mean"});
    o.temperature = node.get_double("temperature", o.temperature, 1e-4, 10.0);
    o.learnable = node.get_bool("learnable", o.learnable);
  }
  o.t1 = node.get_double("t1", o.t1, 1e-3, 1e3);
  o.t2 = node.get_double("t2", o.t2, 1e-3, 1e3);
  o.t3 = node.get_double("t3", o.t3, 1e-3, 1e3);
  o.aggregate = node.get_choice("aggregate", o.aggregate, {"sum", "mean"});
  o.rows = parse_row_mode(node);
  return o;
}
LossPtr make_local(const core::ConfigNode& node) { return std::make_shared<LocalLossImpl>(parse_local(node, false)); }
LossPtr make_multi_level(const core::ConfigNode& node) {
  MultiLevelLossOptions o;
  o.global_weight = node.get_double("global_weight", o.global_weight, 0.0, 1e6);
  o.sentence_weight = node.get_double("sentence_weight", o.sentence_weight, 0.0, 1e6);
  o.word_weight = node.get_double("word_weight", o.word_weight, 0.0, 1e6);
  o.begin_token = node.get_bool("begin_token", o.begin_token);
  o.local = parse_local(node, true);
  return std::make_shared<MultiLevelLossImpl>(o);
}
}  // namespace
MEDVLP_REGISTER(loss_registry(), "local", make_local);
MEDVLP_REGISTER(loss_registry(), "multi_level", make_multi_level);

}  // namespace medvlp::losses
