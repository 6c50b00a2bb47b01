#include "medvlp/losses/functional.h"

#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "medvlp/core/error.h"

namespace medvlp::losses {

RowMode parse_row_mode(const core::ConfigNode& node) {
  return node.get_choice("rows", "local", {"local", "full"}) == "full" ? RowMode::Full : RowMode::Local;
}

LogitScale::LogitScale(torch::nn::Module& owner, double temperature, bool learnable, double min_scale,
                       double max_scale, const std::string& loss_name)
    : min_scale_(min_scale), max_scale_(max_scale) {
  MEDVLP_CHECK(temperature > 0.0, "loss ", loss_name, ": temperature must be positive, got ", temperature);
  MEDVLP_CHECK(min_scale > 0.0 && min_scale <= max_scale, "loss ", loss_name, ": min_scale ", min_scale,
               " must be positive and at most max_scale ", max_scale);
  at::Tensor init = torch::full({}, std::log(1.0 / temperature));
  theta_ = learnable ? owner.register_parameter("log_scale", init) : owner.register_buffer("log_scale", init);
}

at::Tensor LogitScale::operator()() const { return theta_.exp().clamp(min_scale_, max_scale_); }

LogitScale LogitScale::from_config(torch::nn::Module& owner, const core::ConfigNode& node,
                                   const std::string& loss_name, double temperature, bool learnable,
                                   double min_scale, double max_scale) {
  const double t = node.get_double("temperature", temperature, 1e-5, 100.0);
  const bool l = node.get_bool("learnable", learnable);
  const double lo = node.get_double("min_scale", min_scale, 1e-6, 1e6);
  const double hi = node.get_double("max_scale", max_scale, 1e-6, 1e6);
  return LogitScale(owner, t, l, lo, hi, loss_name);
}

MaskLossShape read_mask_loss_shape(const core::ConfigNode& node) {
  MaskLossShape s;
  s.anatomies = node.get_strings("anatomies", {});
  if (s.anatomies.empty()) node.fail("anatomies", "required: the anatomy names in mask order");
  s.token_dim = node.get_int("token_dim", 0, 1, 1 << 16);
  s.embed_dim = node.get_int("embed_dim", 0, 1, 1 << 16);
  if (s.token_dim == 0) node.fail("token_dim", "required: channels of Encoded.image_tokens");
  if (s.embed_dim == 0) node.fail("embed_dim", "required: size of Encoded.anatomy_text");
  return s;
}

nlohmann::json fill_mask_loss_options(const nlohmann::json& /*written*/, const LossEnvironment& env) {
  nlohmann::json o = {{"token_dim", env.token_dim}, {"embed_dim", env.embed_dim}};
  if (!env.anatomies.empty()) o["anatomies"] = env.anatomies;
  return o;
}

namespace fn {

at::Tensor upcast(const at::Tensor& t) {
  return t.scalar_type() == torch::kDouble ? t : t.to(torch::kFloat);
}

at::Tensor soft_cross_entropy(const at::Tensor& logits, const at::Tensor& targets) {
  return -(targets.detach() * torch::log_softmax(logits, 1)).sum(1).mean();
}

at::Tensor row_normalize(const at::Tensor& t) {
  const at::Tensor sums = t.sum(1, true);
  return torch::where(sums > 0, t / sums.clamp_min(std::numeric_limits<float>::min()), torch::zeros_like(t));
}

std::pair<at::Tensor, at::Tensor> contrast(const at::Tensor& image_all, const at::Tensor& text_all,
                                           const at::Tensor& scale, const at::Tensor& targets_i2t,
                                           const at::Tensor& targets_t2i, const LossContext& context,
                                           int64_t local_rows, RowMode mode, const at::Tensor& exclude) {
  const auto drop = [&](const at::Tensor& logits, const at::Tensor& ex) {
    // A large negative rather than -inf: excluded entries must not produce NaN gradients.
    return ex.defined() ? logits.masked_fill(ex, -1e4) : logits;
  };
  if (mode == RowMode::Full) {
    const at::Tensor logits = scale * image_all.matmul(text_all.t());
    const at::Tensor ex_t = exclude.defined() ? exclude.t() : exclude;
    return {soft_cross_entropy(drop(logits, exclude), targets_i2t),
            soft_cross_entropy(drop(logits.t(), ex_t), targets_t2i)};
  }
  const int64_t offset = context.row_offset(local_rows);
  const at::Tensor image = image_all.narrow(0, offset, local_rows);
  const at::Tensor text = text_all.narrow(0, offset, local_rows);
  const at::Tensor i2t = scale * image.matmul(text_all.t());
  const at::Tensor t2i = scale * text.matmul(image_all.t());
  const at::Tensor ex_i = exclude.defined() ? exclude.narrow(0, offset, local_rows) : exclude;
  const at::Tensor ex_t = exclude.defined() ? exclude.t().narrow(0, offset, local_rows) : exclude;
  return {soft_cross_entropy(drop(i2t, ex_i), targets_i2t.narrow(0, offset, local_rows)),
          soft_cross_entropy(drop(t2i, ex_t), targets_t2i.narrow(0, offset, local_rows))};
}

namespace {

enum ScoreKind : int64_t { kGloria = 0, kGloriaMean = 1, kFilipT2I = 2, kFilipI2T = 3 };

// Scores of a chunk of reports (words [c,L,D], mask [c,L]) against all images (patches [I,N,D]) → [c,I].
// One report at a time, as AFLoc does: its [I,N,words] block stays in cache, which measured 3x
// faster on CPU than one [I,c,L,N] block for the whole chunk.
at::Tensor chunk_scores(const at::Tensor& words, const at::Tensor& mask, const at::Tensor& patches, int64_t kind,
                        double t1, double t2) {
  std::vector<at::Tensor> rows;
  for (int64_t r = 0; r < words.size(0); ++r) {
    const at::Tensor w = words[r].index_select(0, mask[r].nonzero().squeeze(1));  // [n,D] real words
    const at::Tensor sims = torch::matmul(patches, w.t());                         // [I,N,n]
    if (kind == kFilipT2I) {
      rows.push_back(std::get<0>(sims.max(1)).mean(1));
    } else if (kind == kFilipI2T) {
      rows.push_back(std::get<0>(sims.max(2)).mean(1));
    } else {
      const at::Tensor attn = (sims.softmax(2) * t1).softmax(1);      // over words, then over patches
      const at::Tensor context = torch::bmm(attn.transpose(1, 2), patches);  // [I,n,D]
      const at::Tensor cos = (context * w).sum(2) / (context.norm(2, 2) * w.norm(2, 1)).clamp_min(1e-8);  // [I,n]
      const at::Tensor e = (cos * t2).exp();
      rows.push_back((kind == kGloriaMean ? e.mean(1) : e.sum(1)).log());
    }
  }
  return torch::stack(rows, 0);
}

int64_t chunk_size(const at::Tensor& words, const at::Tensor& patches) {
  // Keep the autograd state of one chunk's [c,I,L,max(N,D)] intermediates near 2^24 elements.
  const int64_t per_report = patches.size(0) * words.size(1) * std::max(patches.size(1), patches.size(2));
  return std::max<int64_t>(1, (int64_t{1} << 24) / std::max<int64_t>(1, per_report));
}

at::Tensor all_scores(const at::Tensor& words, const at::Tensor& mask, const at::Tensor& patches, int64_t kind,
                      double t1, double t2) {
  const int64_t T = words.size(0), step = chunk_size(words, patches);
  std::vector<at::Tensor> parts;
  for (int64_t s = 0; s < T; s += step) {
    const int64_t c = std::min(step, T - s);
    parts.push_back(chunk_scores(words.narrow(0, s, c), mask.narrow(0, s, c), patches, kind, t1, t2));
  }
  return torch::cat(parts, 0);
}

int64_t& checkpoint_threshold() {
  static int64_t elements = int64_t{1} << 28;  // 1 GiB of fp32 intermediates
  return elements;
}

// Plain autograd while the whole [T,I,L,max(N,D)] state fits the threshold (fastest: nothing is
// recomputed); checkpointed chunks above it (B = 256, L = 64, N = 196, D = 512 would need ~18 GB).
bool checkpoint(const at::Tensor& words, const at::Tensor& patches) {
  return words.size(0) * patches.size(0) * words.size(1) * std::max(patches.size(1), patches.size(2)) >
         checkpoint_threshold();
}

// Checkpointed pairwise token scores: the forward keeps only the [T,I] result; the backward
// recomputes one chunk of reports at a time.
struct TokenScores : public torch::autograd::Function<TokenScores> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& words, const at::Tensor& mask,
                            const at::Tensor& patches, int64_t kind, double t1, double t2) {
    ctx->save_for_backward({words, mask, patches});
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["t1"] = t1;
    ctx->saved_data["t2"] = t2;
    return all_scores(words, mask, patches, kind, t1, t2);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& words = saved[0];
    const at::Tensor& mask = saved[1];
    const at::Tensor& patches = saved[2];
    const int64_t kind = ctx->saved_data["kind"].toInt();
    const double t1 = ctx->saved_data["t1"].toDouble(), t2 = ctx->saved_data["t2"].toDouble();
    const at::Tensor& grad = grad_outputs[0];
    at::Tensor grad_words = torch::zeros_like(words), grad_patches = torch::zeros_like(patches);
    const int64_t T = words.size(0), step = chunk_size(words, patches);
    for (int64_t s = 0; s < T; s += step) {
      const int64_t c = std::min(step, T - s);
      torch::AutoGradMode enable(true);
      at::Tensor w = words.narrow(0, s, c).detach().requires_grad_(true);
      at::Tensor p = patches.detach().requires_grad_(true);
      const at::Tensor out = chunk_scores(w, mask.narrow(0, s, c), p, kind, t1, t2);
      const auto g = torch::autograd::grad({out}, {w, p}, {grad.narrow(0, s, c)}, false, false, true);
      if (g[0].defined()) grad_words.narrow(0, s, c).copy_(g[0]);
      if (g[1].defined()) grad_patches.add_(g[1]);
    }
    return {grad_words, at::Tensor(), grad_patches, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

void check_tokens(const at::Tensor& words, const at::Tensor& mask, const at::Tensor& patches) {
  MEDVLP_CHECK(words.dim() == 3 && patches.dim() == 3 && words.size(2) == patches.size(2),
               "token scores: words [T,L,D] and patches [I,N,D] must share D, got ", words.sizes(), " and ",
               patches.sizes());
  MEDVLP_CHECK(mask.dim() == 2 && mask.size(0) == words.size(0) && mask.size(1) == words.size(1),
               "token scores: word mask must be [T,L] = ", words.sizes().slice(0, 2), ", got ", mask.sizes());
  MEDVLP_CHECK((mask.sum(1) > 0).all().item<bool>(), "token scores: every report needs at least one real word");
}

}  // namespace

at::Tensor gloria_scores(const at::Tensor& words, const at::Tensor& word_mask, const at::Tensor& patches, double t1,
                         double t2, bool mean_over_words) {
  check_tokens(words, word_mask, patches);
  const int64_t kind = mean_over_words ? kGloriaMean : kGloria;
  if (!checkpoint(words, patches)) return all_scores(words, word_mask, patches, kind, t1, t2);
  return TokenScores::apply(words, word_mask, patches, kind, t1, t2);
}

at::Tensor gloria_attention(const at::Tensor& words, const at::Tensor& word_mask, const at::Tensor& patches,
                            double t1) {
  torch::NoGradGuard no_grad;
  const at::Tensor sims = torch::matmul(words, patches.transpose(1, 2));  // [B,L,N]
  const at::Tensor real = word_mask.to(torch::kBool).unsqueeze(2);
  at::Tensor attn = sims.masked_fill(real.logical_not(), -std::numeric_limits<double>::infinity()).softmax(1);
  return (attn * t1).softmax(2);
}

std::pair<at::Tensor, at::Tensor> filip_scores(const at::Tensor& words, const at::Tensor& word_mask,
                                               const at::Tensor& patches) {
  check_tokens(words, word_mask, patches);
  if (!checkpoint(words, patches))
    return {all_scores(words, word_mask, patches, kFilipT2I, 0, 0), all_scores(words, word_mask, patches, kFilipI2T, 0, 0)};
  return {TokenScores::apply(words, word_mask, patches, kFilipT2I, 0.0, 0.0),
          TokenScores::apply(words, word_mask, patches, kFilipI2T, 0.0, 0.0)};
}

void set_checkpoint_threshold(int64_t elements) { checkpoint_threshold() = elements; }

at::Tensor masks_to_tokens(const at::Tensor& masks, const std::vector<int64_t>& grid) {
  MEDVLP_CHECK(grid.size() == 2 || grid.size() == 3, "anatomy masks: the token grid must have 2 or 3 sizes, got ",
               grid.size());
  MEDVLP_CHECK(masks.dim() == static_cast<int64_t>(grid.size()) + 2, "anatomy masks: expected [B,A] + ", grid.size(),
               " spatial sizes to match the token grid, got ", masks.sizes());
  const int64_t B = masks.size(0), A = masks.size(1);
  const at::Tensor flat = masks.to(torch::kFloat).flatten(0, 1).unsqueeze(1);
  const at::Tensor pooled = grid.size() == 2 ? std::get<0>(torch::adaptive_max_pool2d(flat, grid))
                                             : std::get<0>(torch::adaptive_max_pool3d(flat, grid));
  return pooled.reshape({B, A, -1}) > 0;
}

}  // namespace fn
}  // namespace medvlp::losses
