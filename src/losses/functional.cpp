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

namespace {

// Rows of each direction's cross-entropy. Undefined targets are the identity of the gathered
// problem (row r's class is offset + r): hard labels give the same value as one-hot soft targets
// without the [rows,N] product and its backward.
at::Tensor rows_cross_entropy(const at::Tensor& logits, const at::Tensor& targets, int64_t offset) {
  if (targets.defined()) return soft_cross_entropy(logits, targets);
  const at::Tensor labels =
      torch::arange(offset, offset + logits.size(0), logits.options().dtype(torch::kLong));
  return torch::nll_loss(torch::log_softmax(logits, 1), labels);
}

// Targets as constants of the logits' type (at::dot does not promote).
at::Tensor constant_of(const at::Tensor& t, const at::Tensor& like) {
  return t.defined() ? t.detach().to(like.scalar_type()) : t;
}

// Both directions of a square problem in one autograd node. Forward: one product, then the row
// and the column log-softmax of the same contiguous matrix (no transposed copy). Backward: the
// logits' gradient is g_i2t·(P_rows·rowsum(T) − T)/N + g_t2i·(P_cols·colsum(T') − T')/N, formed
// in place in one buffer, then two products. Left to autograd the same loss also walks each
// log-softmax backward, the targets' products, the scale's product per direction and the sum of
// the two gradient paths, one [N,N] buffer each. The three products stay the bulk of the time.
// Targets and exclusions (no gradient; possibly undefined, which apply() does not take as tensor
// arguments) travel beside the differentiable inputs.
struct ContrastConstants {
  at::Tensor targets_i2t, targets_t2i, exclude;
};

struct SymmetricContrast : public torch::autograd::Function<SymmetricContrast> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& image,
                                                const at::Tensor& text, const at::Tensor& scale,
                                                const ContrastConstants& constants) {
    const at::Tensor &targets_i2t = constants.targets_i2t, &targets_t2i = constants.targets_t2i;
    const at::Tensor& exclude = constants.exclude;
    const at::Tensor products = image.matmul(text.t());  // [N,N]
    at::Tensor logits = products * scale;
    // A large negative rather than -inf: excluded entries must not produce NaN.
    if (exclude.defined()) logits.masked_fill_(exclude, -1e4);
    const at::Tensor log_rows = logits.log_softmax(1), log_cols = logits.log_softmax(0);
    const double n = static_cast<double>(logits.size(0));
    const at::Tensor i2t = targets_i2t.defined() ? at::dot(targets_i2t.reshape(-1), log_rows.reshape(-1)) / -n
                                                 : log_rows.diagonal().sum() / -n;
    // targets_t2i row t is text t over images: column t of the logits.
    const at::Tensor t2i =
        targets_t2i.defined() ? (targets_t2i.t() * log_cols).sum() / -n : log_cols.diagonal().sum() / -n;
    ctx->save_for_backward({image, text, scale, products, log_rows, log_cols});
    if (targets_i2t.defined()) ctx->saved_data["targets_i2t"] = targets_i2t;
    if (targets_t2i.defined()) ctx->saved_data["targets_t2i"] = targets_t2i;
    if (exclude.defined()) ctx->saved_data["exclude"] = exclude;
    return {i2t, t2i};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &image = saved[0], &text = saved[1], &scale = saved[2], &products = saved[3];
    const at::Tensor &log_rows = saved[4], &log_cols = saved[5];
    const auto constant = [&](const char* key) {
      const auto it = ctx->saved_data.find(key);
      return it == ctx->saved_data.end() ? at::Tensor() : it->second.toTensor();
    };
    const at::Tensor t_i2t = constant("targets_i2t"), t_t2i = constant("targets_t2i"), exclude = constant("exclude");
    const double n = static_cast<double>(products.size(0));
    // Zero-dim factors stay on the device: no host synchronisation inside the step.
    const at::Tensor g_rows = grads[0].defined() ? grads[0] / n : torch::zeros({}, products.options());
    const at::Tensor g_cols = grads[1].defined() ? grads[1] / n : torch::zeros({}, products.options());
    at::Tensor dlogits = log_rows.exp();
    if (t_i2t.defined()) {
      dlogits.mul_(t_i2t.sum(1, true) * g_rows).addcmul_(t_i2t, g_rows, -1.0);
    } else {
      dlogits.mul_(g_rows);
      dlogits.diagonal().sub_(g_rows);
    }
    const at::Tensor p_cols = log_cols.exp();
    if (t_t2i.defined()) {
      dlogits.add_(p_cols.mul_(t_t2i.sum(1).unsqueeze(0) * g_cols)).addcmul_(t_t2i.t(), g_cols, -1.0);
    } else {
      dlogits.add_(p_cols.mul_(g_cols));
      dlogits.diagonal().sub_(g_cols);
    }
    if (exclude.defined()) dlogits.masked_fill_(exclude, 0.0);
    at::Tensor grad_scale;
    if (ctx->needs_input_grad(2)) grad_scale = at::dot(dlogits.reshape(-1), products.reshape(-1));
    dlogits.mul_(scale);
    at::Tensor grad_image, grad_text;
    if (ctx->needs_input_grad(0)) grad_image = dlogits.matmul(text);
    if (ctx->needs_input_grad(1)) grad_text = dlogits.t().matmul(image);
    return {grad_image, grad_text, grad_scale, at::Tensor()};
  }
};

}  // namespace

std::pair<at::Tensor, at::Tensor> contrast(const at::Tensor& image_all, const at::Tensor& text_all,
                                           const at::Tensor& scale, const at::Tensor& targets_i2t,
                                           const at::Tensor& targets_t2i, const LossContext& context,
                                           int64_t local_rows, RowMode mode, const at::Tensor& exclude) {
  if (mode == RowMode::Full || local_rows == image_all.size(0)) {
    const ContrastConstants constants{constant_of(targets_i2t, image_all), constant_of(targets_t2i, image_all),
                                      exclude};
    const auto out = SymmetricContrast::apply(image_all, text_all, scale, constants);
    return {out[0], out[1]};
  }
  // This rank's rows only: its images against every text and its texts against every image are
  // two different blocks of the global matrix, so two products.
  const auto drop = [&](const at::Tensor& logits, const at::Tensor& ex) {
    return ex.defined() ? logits.masked_fill(ex, -1e4) : logits;
  };
  const int64_t offset = context.row_offset(local_rows);
  const at::Tensor i2t = scale * image_all.narrow(0, offset, local_rows).matmul(text_all.t());
  const at::Tensor t2i = scale * text_all.narrow(0, offset, local_rows).matmul(image_all.t());
  const at::Tensor ex_i = exclude.defined() ? exclude.narrow(0, offset, local_rows) : exclude;
  const at::Tensor ex_t = exclude.defined() ? exclude.t().narrow(0, offset, local_rows) : exclude;
  const auto rows = [&](const at::Tensor& t) { return t.defined() ? t.narrow(0, offset, local_rows) : t; };
  return {rows_cross_entropy(drop(i2t, ex_i), rows(targets_i2t), offset),
          rows_cross_entropy(drop(t2i, ex_t), rows(targets_t2i), offset)};
}

namespace {

enum ScoreKind : int64_t { kGloria = 0, kGloriaMean = 1, kFilipT2I = 2, kFilipI2T = 3 };

bool is_gloria(int64_t kind) { return kind == kGloria || kind == kGloriaMean; }

// GLoRIA's cosine needs |context| and context·word for context = Σ_N attn_N p_N. Neither needs the
// [I,n,D] context itself: context·w = Σ_N attn_N (p_N·w) reuses the word–patch products, and
// |context|² = attnᵀ G attn with the patches' Gram matrix G = P Pᵀ [I,N,N], computed once for all
// reports. That is I·n·N² work per report instead of I·n·N·D, with [I,N,n] intermediates instead
// of [I,n,D]: worth it whenever N < D (ViT-B/16: 196 patches of 512 or 768 channels).
bool use_gram(int64_t kind, const at::Tensor& patches) { return is_gloria(kind) && patches.size(1) < patches.size(2); }

at::Tensor gram_of(const at::Tensor& patches) { return torch::bmm(patches, patches.transpose(1, 2)); }

// Scores of a chunk of reports (words [c,L,D], mask [c,L]) against all images (patches [I,N,D],
// gram [I,N,N] or undefined) → [c,I]. The chunk's real words go through one product with the
// patches (one product again in the backward pass for the patches' gradient, instead of one
// [I,N,D] gradient per report summed by autograd); the rest runs one report at a time, as AFLoc
// does, so that its [I,N,words] block stays in cache (3× faster on CPU than one [I,c,L,N] block).
at::Tensor chunk_scores(const at::Tensor& words, const at::Tensor& mask, const at::Tensor& patches,
                        const at::Tensor& gram, int64_t kind, double t1, double t2) {
  // Which words are real, on the host once per chunk (one transfer, not one per report).
  const at::Tensor mask_host = mask.detach().to(torch::kCPU).to(torch::kBool);
  const at::Tensor counts = mask_host.sum(1).contiguous();
  const std::vector<int64_t> lengths(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel());
  const at::Tensor index = mask_host.flatten().nonzero().squeeze(1).to(words.device(), /*non_blocking=*/true);
  const at::Tensor packed = words.flatten(0, 1).index_select(0, index);  // [M,D]
  const std::vector<at::Tensor> word_parts = packed.split_with_sizes(lengths, 0);
  const std::vector<at::Tensor> sim_parts = torch::matmul(patches, packed.t()).split_with_sizes(lengths, 2);
  std::vector<at::Tensor> rows;
  for (size_t r = 0; r < lengths.size(); ++r) {
    const at::Tensor& w = word_parts[r];     // [n,D] real words
    const at::Tensor& sims = sim_parts[r];  // [I,N,n]
    if (kind == kFilipT2I) {
      rows.push_back(std::get<0>(sims.max(1)).mean(1));
    } else if (kind == kFilipI2T) {
      rows.push_back(std::get<0>(sims.max(2)).mean(1));
    } else {
      const at::Tensor attn = (sims.softmax(2) * t1).softmax(1);  // over words, then over patches
      at::Tensor dot, norm;                                        // context·w and |context|, [I,n]
      if (gram.defined()) {
        dot = (attn * sims).sum(1);
        norm = (attn * torch::bmm(gram, attn)).sum(1).clamp_min(1e-16).sqrt();
      } else {
        const at::Tensor context = torch::bmm(attn.transpose(1, 2), patches);  // [I,n,D]
        dot = (context * w).sum(2);
        norm = context.norm(2, 2);
      }
      const at::Tensor cos = dot / (norm * w.norm(2, 1)).clamp_min(1e-8);  // [I,n]
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
  const at::Tensor gram = use_gram(kind, patches) ? gram_of(patches) : at::Tensor();
  const int64_t T = words.size(0), step = chunk_size(words, patches);
  std::vector<at::Tensor> parts;
  for (int64_t s = 0; s < T; s += step) {
    const int64_t c = std::min(step, T - s);
    parts.push_back(chunk_scores(words.narrow(0, s, c), mask.narrow(0, s, c), patches, gram, kind, t1, t2));
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
    // The Gram matrix is a leaf of each chunk's recomputed graph; its gradient, summed over the
    // chunks, reaches the patches once at the end: d(P Pᵀ) = (dG + dGᵀ) P.
    at::Tensor gram, grad_gram;
    if (use_gram(kind, patches)) {
      gram = gram_of(patches.detach()).requires_grad_(true);
      grad_gram = torch::zeros_like(gram);
    }
    const int64_t T = words.size(0), step = chunk_size(words, patches);
    for (int64_t s = 0; s < T; s += step) {
      const int64_t c = std::min(step, T - s);
      torch::AutoGradMode enable(true);
      at::Tensor w = words.narrow(0, s, c).detach().requires_grad_(true);
      at::Tensor p = patches.detach().requires_grad_(true);
      const at::Tensor out = chunk_scores(w, mask.narrow(0, s, c), p, gram, kind, t1, t2);
      std::vector<at::Tensor> inputs = {w, p};
      if (gram.defined()) inputs.push_back(gram);
      const auto g = torch::autograd::grad({out}, inputs, {grad.narrow(0, s, c)}, false, false, true);
      if (g[0].defined()) grad_words.narrow(0, s, c).copy_(g[0]);
      if (g[1].defined()) grad_patches.add_(g[1]);
      if (gram.defined() && g[2].defined()) grad_gram.add_(g[2]);
    }
    if (gram.defined()) grad_patches.add_(torch::bmm(grad_gram + grad_gram.transpose(1, 2), patches));
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
