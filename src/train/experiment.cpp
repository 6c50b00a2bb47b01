#include "medvlp/train/experiment.h"

#include <torch/torch.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>

#include "../core/log.h"
#include "medvlp/core/device.h"
#include "medvlp/core/error.h"
#include "medvlp/data/build.h"
#include "medvlp/io/files.h"
#include "medvlp/losses/tag_loss.h"
#include "medvlp/text/factory.h"
#include "medvlp/text/sentencepiece_tokenizer.h"
#include "medvlp/text/wordpiece.h"

namespace medvlp::train {

namespace {

// Rank 0 trains a tokenizer and sends its file to the other ranks, which load it from a private
// temporary copy: they write nothing into the run folder, which may not even be shared with them.
std::shared_ptr<text::Tokenizer> receive_tokenizer(ProcessGroup& group, text::TokenizerSpec spec, const std::string& name) {
  std::string bytes;
  group.broadcast(bytes, 0);
  std::string dir = (std::filesystem::temp_directory_path() / "medvlp-tokenizer-XXXXXX").string();
  MEDVLP_CHECK(::mkdtemp(dir.data()) != nullptr, dir, ": cannot create a temporary folder (", std::strerror(errno), ")");
  spec.model = dir + "/" + name;
  std::shared_ptr<text::Tokenizer> tokenizer;
  try {
    io::write_file_atomic(spec.model, bytes);
    tokenizer = text::load_tokenizer(spec);
  } catch (...) {
    std::filesystem::remove_all(dir);
    throw;
  }
  std::filesystem::remove_all(dir);
  return tokenizer;
}

std::shared_ptr<text::Tokenizer> build_tokenizer(core::Config& config, const core::ConfigNode& node,
                                                 const data::DatasetPtr& train_set, const std::string& run_dir,
                                                 const std::shared_ptr<ProcessGroup>& group) {
  text::TokenizerSpec spec;
  spec.kind = node.get_choice("tokenizer", "sentencepiece", {"sentencepiece", "wordpiece", "clip_bpe"});
  spec.model = node.get_string("model", "");
  spec.merges = node.get_string("merges", "");
  spec.lowercase = node.get_bool("lowercase", true);
  const int64_t vocab_size = node.get_int("vocab_size", 512, 16, 1 << 20);
  const std::string model_type = node.get_choice("model_type", "unigram", {"unigram", "bpe", "word", "char"});
  const int64_t corpus_size = node.get_int("train_reports", 5000, 1);
  if (!spec.model.empty()) return text::load_tokenizer(spec);

  MEDVLP_CHECK(spec.kind != "clip_bpe", "text.model: a clip_bpe tokenizer needs vocab.json (text.model) and merges.txt (text.merges)");
  MEDVLP_CHECK(!run_dir.empty(), "text.model is empty and there is no run folder to train a tokenizer into");
  const bool wordpiece = spec.kind == "wordpiece";
  const std::string name = wordpiece ? "vocab.txt" : "tokenizer.model";
  const std::string path = run_dir + "/" + name;
  if (group && group->rank() != 0) {
    auto tokenizer = receive_tokenizer(*group, spec, name);
    config.set("text.model=" + path);
    node.get_string("model");
    return tokenizer;
  }
  std::vector<std::string> corpus;
  const int64_t n = std::min(corpus_size, train_set->size());
  for (int64_t i = 0; i < n; ++i) corpus.push_back(train_set->get(i, -1).report);
  std::shared_ptr<text::Tokenizer> tokenizer;
  if (wordpiece) {
    core::log_info("training a WordPiece vocabulary on ", n, " reports -> ", path);
    text::WordPieceTrainOptions o;
    o.vocab_size = vocab_size;
    o.tokenizer.lowercase = spec.lowercase;
    auto wp = std::make_shared<text::WordPieceTokenizer>(text::train_wordpiece(corpus, o), o.tokenizer);
    wp->save(path);
    tokenizer = wp;
  } else {
    core::log_info("training a SentencePiece tokenizer on ", n, " reports -> ", path);
    text::SentencePieceTrainOptions o;
    o.vocab_size = vocab_size;
    o.model_type = model_type;
    tokenizer = text::SentencePieceTokenizer::train(corpus, path, o);
  }
  if (group) {
    std::string bytes = io::read_file(path);
    group->broadcast(bytes, 0);
  }
  config.set("text.model=" + path);
  node.get_string("model");  // the resolved config now names the trained model; mark it read
  return tokenizer;
}

// Fills loss options that the model and data determine (each loss registers which), where a
// `losses` entry leaves them out.
void fill_loss_options(core::Config& config, const losses::LossEnvironment& env) {
  const nlohmann::json& list = config.tree().contains("losses") ? config.tree()["losses"] : nlohmann::json();
  if (!list.is_array()) return;  // build_losses reports the shape
  std::vector<std::string> sets;
  for (size_t i = 0; i < list.size(); ++i) {
    if (!list[i].is_object() || !list[i].contains("name") || !list[i]["name"].is_string()) continue;
    const std::string name = list[i]["name"].get<std::string>();
    const nlohmann::json options = list[i].contains("options") ? list[i]["options"] : nlohmann::json::object();
    if (!options.is_object()) continue;
    const std::string prefix = "losses." + std::to_string(i) + ".options.";
    const nlohmann::json derived = losses::derived_loss_options(name, options, env);
    for (auto it = derived.begin(); it != derived.end(); ++it) sets.push_back(prefix + it.key() + "=" + it.value().dump());
  }
  for (const auto& s : sets) config.set(s);
}

// What a loss needs that only the structured reports (data.report) provide, by unit.
struct NeedCheck {
  data::ReportUnits units;
  bool anatomy_masks = false, entity_reference = false, tokens_compared = false;
};

NeedCheck check_needs(const std::vector<losses::WeightedLoss>& losses, const core::ConfigNode& root,
                      bool has_report, const data::DatasetPtr& dataset, const models::VlpModel& model) {
  NeedCheck c;
  for (size_t i = 0; i < losses.size(); ++i) {
    const auto& wl = losses[i];
    const std::string who = "loss " + wl.name + " (losses[" + std::to_string(i) + "])";
    const auto needs = wl.loss->needs();
    const auto has = [&](const std::string& f) { return std::find(needs.begin(), needs.end(), f) != needs.end(); };
    for (const std::string& field : needs) {
      bool* unit = nullptr;
      if (field == "Encoded.anatomy_text" || field == "Batch.anatomy_abnormal" || field == "Batch.anatomy_text_hash" ||
          field == "Batch.anatomy_normal" || field == "Batch.anatomy_described")
        unit = &c.units.anatomy;
      else if (field == "Encoded.sentence_embed")
        unit = &c.units.sentences;
      else if (field == "Encoded.entity_embed" || field == "Batch.entity_disease" || field == "Batch.entity_mask")
        unit = &c.units.entities;
      else if (field == "Batch.tags")
        unit = &c.units.tags;
      if (unit) {
        if (!has_report)
          root.at("data").fail("report", who + " needs " + field +
                                             ", which comes from the structured reports: add a data.report section "
                                             "(docs/data.md#structured-reports)");
        *unit = true;
      } else if (field == "Batch.anatomy_masks") {
        if (dataset->anatomies().empty())
          root.at("data").fail("anatomies", who + " needs Batch.anatomy_masks, which dataset \"" +
                                                root.at("data").get_string("name") +
                                                "\" does not provide (set data.anatomies for a manifest's label maps, "
                                                "or use a dataset with anatomy masks)");
        c.anatomy_masks = true;
      } else if (field == "Encoded.entity_reference") {
        if (!model->entity_reference_enabled())
          root.at("model").fail("entity_reference", who +
                                                        " needs Encoded.entity_reference: set model.entity_reference: "
                                                        "true (the entity texts' own text features) or the loss's "
                                                        "options.source: labels");
      }
    }
    if (has("Encoded.image_tokens") && (has("Encoded.text_tokens") || has("Encoded.sentence_embed"))) {
      const int64_t image_c = model->token_dim();
      const int64_t text_c = model->local_dim() > 0 ? model->local_dim() : model->text_encoder()->out_dim();
      if (image_c != text_c)
        root.at("model").fail("local_dim", who + " compares image tokens (" + std::to_string(image_c) +
                                               " channels) with text units (" + std::to_string(text_c) +
                                               " channels): set model.local_dim to give both one space");
    }
  }
  return c;
}

}  // namespace

Experiment Experiment::build(core::Config config, const std::string& run_dir, std::shared_ptr<ProcessGroup> group) {
  Experiment e(std::move(config));
  e.run_dir = run_dir;
  if (group && group->world_size() == 1) group.reset();
  e.group = group;
  if (!run_dir.empty() && e.writes_run()) io::make_directories(run_dir);
  const core::ConfigNode root = e.config.root();
  e.seed = static_cast<uint64_t>(root.get_int("seed", 0, 0));
  e.device = core::select_device(root.get_string("device", "auto"));
  if (e.group && e.device.is_cuda() && !e.device.has_index()) {
    // One GPU per rank, by its index on this machine, as torchrun's LOCAL_RANK means.
    const int64_t gpus = static_cast<int64_t>(torch::cuda::device_count());
    MEDVLP_CHECK(e.group->local_rank() < gpus, "device: rank ", e.group->rank(), " has local rank ",
                 e.group->local_rank(), " but this machine has ", gpus, " CUDA device(s); start at most one rank per GPU");
    e.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(e.group->local_rank()));
  }

  const core::ConfigNode data = root.at("data");
  e.train_set = data::build_dataset(data, "train");
  e.image_mean = static_cast<float>(data.get_double("image_mean", 0.5));
  e.image_std = static_cast<float>(data.get_double("image_std", 0.25, 1e-6));
  e.loader.workers = data.get_int("workers", 1, 0, 256);
  e.loader.prefetch = data.get_int("prefetch", 4, 1, 1024);

  // The launcher (medvlp train) joins the process group before building; here the keys are checked.
  DistOptions::resolve(root.child("distributed"), /*environment=*/false);

  const core::ConfigNode text_node = root.child("text");
  e.loader.max_text_len = text_node.get_int("max_len", 96, 4, 8192);
  e.tokenizer = build_tokenizer(e.config, text_node, e.train_set, run_dir, e.group);

  const core::ConfigNode train = root.child("train");
  e.train.batch_size = train.get_int("batch_size", 64, 2, 1 << 20);
  e.train.accumulate = train.get_int("accumulate", 1, 1, 1 << 20);
  e.loader.seed = e.seed;
  const int64_t world = e.group ? e.group->world_size() : 1;
  if (e.train.batch_size % (world * e.train.accumulate) != 0)
    train.fail("batch_size", "is the global batch and must divide into " + std::to_string(e.train.accumulate) +
                                 " micro-batch(es) (train.accumulate) on each of " + std::to_string(world) +
                                 " rank(s); got " + std::to_string(e.train.batch_size));
  // The loader yields micro-batches: one optimizer step consumes `accumulate` of them.
  e.loader.batch_size = e.train.batch_size / e.train.accumulate;
  if (e.loader.batch_size < 2) train.fail("accumulate", "leaves micro-batches of " + std::to_string(e.loader.batch_size) +
                                                           " sample; a contrastive loss needs at least 2");
  if (e.group) {
    e.loader.rank = e.group->rank();
    e.loader.world_size = world;
  }
  e.train.steps = train.get_int("steps", e.train.steps, 1);
  e.train.log_every = train.get_int("log_every", e.train.log_every, 1);
  e.train.checkpoint_every = train.get_int("checkpoint_every", e.train.checkpoint_every, 0);
  e.train.keep_checkpoints = train.get_int("keep_checkpoints", e.train.keep_checkpoints, 0);
  e.train.precision = train.get_choice("precision", e.train.precision, {"auto", "fp32", "bf16"});
  e.train.grad_clip = train.get_double("grad_clip", e.train.grad_clip, 0.0);
  e.train.threads = train.get_int("threads", e.train.threads, 0, 1024);
  e.train.progress = train.get_bool("progress", e.train.progress);
  if (e.train.precision == "bf16" && !e.device.is_cuda())
    train.fail("precision", "bf16 autocast needs a CUDA device; use auto or fp32 on CPU");
  e.loader.pin_memory = e.device.is_cuda();
  if (e.train.threads > 0) torch::set_num_threads(static_cast<int>(e.train.threads));

  const core::ConfigNode optim = root.child("optim");
  optim.get_choice("name", "adamw", {"adamw"});
  e.optim.lr = optim.get_double("lr", e.optim.lr, 0.0, 10.0);
  e.optim.weight_decay = optim.get_double("weight_decay", e.optim.weight_decay, 0.0, 10.0);
  const auto betas = optim.get_doubles("betas", {e.optim.beta1, e.optim.beta2});
  if (betas.size() != 2 || betas[0] < 0 || betas[0] >= 1 || betas[1] < 0 || betas[1] >= 1)
    optim.fail("betas", "expected two numbers in [0, 1)");
  e.optim.beta1 = betas[0];
  e.optim.beta2 = betas[1];
  e.optim.eps = optim.get_double("eps", e.optim.eps, 0.0, 1.0);

  const core::ConfigNode schedule = root.child("schedule");
  schedule.get_choice("name", "cosine", {"cosine"});
  e.schedule.lr = e.optim.lr;
  e.schedule.total_steps = e.train.steps;
  e.schedule.warmup_steps = schedule.get_int("warmup_steps", 100, 0);
  e.schedule.min_lr_ratio = schedule.get_double("min_lr_ratio", 0.0, 0.0, 1.0);

  std::optional<data::ReportStructureOptions> report;
  if (data.has("report"))
    report = data::ReportStructurer::parse_options(data.at("report"), e.train_set->anatomies(), e.train_set->findings());

  // The model's initial weights are a function of the seed alone.
  torch::manual_seed(e.seed);
  e.model = models::build_model(root.at("model"), e.tokenizer->vocab_size());
  std::vector<std::string> anatomies = e.train_set->anatomies();
  if (report) {
    anatomies.clear();
    for (const auto& a : report->anatomies) anatomies.push_back(a.name);
  }
  losses::LossEnvironment env;
  env.token_dim = e.model->token_dim();
  env.embed_dim = e.model->embed_dim();
  env.text_dim = e.model->text_encoder()->out_dim();
  env.anatomies = anatomies;
  env.label_columns = static_cast<int64_t>(e.train_set->findings().size());
  env.tag_columns = report ? static_cast<int64_t>(report->tags.size()) : 0;
  fill_loss_options(e.config, env);
  e.losses = losses::build_losses(root.at("losses"));
  const NeedCheck needs = check_needs(e.losses, root, report.has_value(), e.train_set, e.model);
  if (needs.anatomy_masks && needs.units.anatomy && anatomies.size() != e.train_set->anatomies().size())
    data.at("report").fail("anatomies", "lists " + std::to_string(anatomies.size()) + " anatomies but the dataset has " +
                                            std::to_string(e.train_set->anatomies().size()) + " anatomy masks (" +
                                            core::join(e.train_set->anatomies()) + "); list one per mask, in mask order");
  if (report) {
    report->units = needs.units;
    try {
      e.reports = std::make_shared<data::ReportStructurer>(*report);
    } catch (const Error& err) {
      throw err.with_context(data.at("report").path());
    }
    if (needs.units.any()) e.loader.reports = e.reports;
  }
  // ASG's tag queries: the (pretrained) text encoder's features of the tag names, frozen from here on.
  for (auto& wl : e.losses) {
    auto tag = std::dynamic_pointer_cast<losses::TagLossImpl>(wl.loss);
    if (!tag || tag->options().queries != "tag_names") continue;
    const std::vector<std::string> names =
        tag->options().targets == "tags" && report ? report->tags : e.train_set->findings();
    torch::NoGradGuard no_grad;
    e.model->eval();
    const auto tokens = e.tokenizer->encode(names, e.loader.max_text_len);
    tag->set_query_features(e.model->text_encoder()->forward(tokens.ids, tokens.mask).pooled.to(torch::kFloat));
    e.model->train();
  }
  e.model->to(e.device);
  for (auto& l : e.losses) l.loss->to(e.device);

  const core::ConfigNode eval_node = root.child("eval");
  e.eval = eval::parse_eval_options(eval_node, e.train_set->findings());
  e.eval.max_text_len = e.loader.max_text_len;
  e.eval.workers = std::max<int64_t>(1, e.loader.workers);
  e.eval_set = data::build_dataset(data, e.eval.split);
  e.train.eval_every = train.get_int("eval_every", 0, 0);
  e.train.early_stop = train.get_int("early_stop", 0, 0);
  e.train.eval_metric = train.get_string("eval_metric", e.train.eval_metric);
  {
    const std::string& m = e.train.eval_metric;
    bool known = m == "mean_auc" || m == "mean_auprc";
    for (const char* dir : {"image_to_text.R@", "text_to_image.R@"})
      for (int64_t k : e.eval.recall_k)
        if (m == dir + std::to_string(k)) known = true;
    if (!known)
      train.fail("eval_metric", "expected mean_auc, mean_auprc, image_to_text.R@K or text_to_image.R@K with K in "
                                "eval.recall_k, got \"" + m + "\"");
  }
  if (e.train.early_stop > 0 && e.train.eval_every == 0)
    train.fail("early_stop", "stops after evaluations without improvement, but train.eval_every is 0 (no evaluations)");
  if (e.train.eval_every > 0) {
    e.val_set = data::build_dataset(data, "val");
    if (e.val_set->size() == 0) train.fail("eval_every", "validates on the val split, which is empty");
  }
  if (!e.eval.thresholds_from.empty()) {
    try {
      e.threshold_set = data::build_dataset(data, e.eval.thresholds_from);
    } catch (const Error& err) {
      // The default (val) must not break a dataset built without that split (build-shards --splits);
      // a split the config names explicitly must exist.
      if (eval_node.has("thresholds_from")) throw;
      core::log_warn("eval: no ", e.eval.thresholds_from, " split to choose thresholds on (", err.what(),
                     "); accuracy and F1 are not reported (set eval.thresholds_from: none to silence this)");
    }
    if (e.threshold_set && e.threshold_set->size() == 0) {
      core::log_warn("eval.thresholds_from: the ", e.eval.thresholds_from,
                     " split is empty; accuracy and F1 are not reported (AUROC and AUPRC need no threshold)");
      e.threshold_set = nullptr;
    }
  }
  for (const auto& p : e.eval.prompts) {
    if (p.anatomies.empty()) continue;
    const core::ConfigNode entry = eval_node.at("prompts").at(p.finding);
    const auto loss = e.anatomy_loss();
    if (!loss)
      entry.fail("anatomy", "scores \"" + p.finding + "\" on anatomy features, which come from an anatomy loss; "
                            "add one to losses or drop the key");
    const auto& names = loss->options().anatomies;
    for (const auto& a : p.anatomies)
      if (std::find(names.begin(), names.end(), a) == names.end())
        entry.fail("anatomy", "\"" + a + "\" is not an anatomy of the anatomy loss; known: " + core::join(names));
  }

  e.config.check_all_used();
  return e;
}

std::shared_ptr<losses::AnatomyLossImpl> Experiment::anatomy_loss() const {
  for (const auto& wl : losses)
    if (auto a = std::dynamic_pointer_cast<losses::AnatomyLossImpl>(wl.loss)) return a;
  return nullptr;
}

nlohmann::json Experiment::evaluate(eval::Predictions* predictions, const std::string& overlay_dir) {
  nlohmann::json r = eval::evaluate(model, eval_set, *tokenizer, eval, device, image_mean, image_std, anatomy_loss(),
                                    threshold_set, predictions);
  if (eval.localization.enabled) {
    std::vector<std::pair<std::string, std::vector<std::string>>> prompts;
    for (const auto& p : eval.prompts) {
      if (p.anatomies.empty()) {
        prompts.emplace_back(p.finding, p.positive);
        continue;
      }
      // A per-anatomy prompt stands for each of its anatomies: the finding's map is the mean over
      // them, so that it does not say where to look.
      std::vector<std::string> texts;
      for (const auto& a : p.anatomies)
        for (auto& t : eval::with_anatomy(p.positive, a)) texts.push_back(std::move(t));
      prompts.emplace_back(p.finding, texts);
    }
    r["localization"] = eval::localize(model, eval_set, *tokenizer, prompts, eval.localization, eval.max_text_len,
                                       device, image_mean, image_std, overlay_dir);
  }
  return r;
}

nlohmann::json Experiment::validate(double* metric_value) {
  MEDVLP_CHECK(val_set, "validate: no val split (train.eval_every is 0)");
  eval::EvalOptions o = eval;
  o.split = "val";
  o.bootstrap = 0;
  o.thresholds_from.clear();
  nlohmann::json r = eval::evaluate(model, val_set, *tokenizer, o, device, image_mean, image_std, anatomy_loss());
  nlohmann::json out = {{"mean_auc", r["zero_shot"]["mean"]["auroc"]},
                        {"mean_auprc", r["zero_shot"]["mean"]["auprc"]},
                        {"image_to_text", r["retrieval"]["image_to_text"]},
                        {"text_to_image", r["retrieval"]["text_to_image"]}};
  const std::string& m = train.eval_metric;
  const auto dot = m.find('.');
  const nlohmann::json& v = dot == std::string::npos ? out[m] : out[m.substr(0, dot)][m.substr(dot + 1)];
  MEDVLP_CHECK(v.is_number(), "validation: train.eval_metric ", m, " is undefined on the ", val_set->size(),
               " validation cases (no finding has both classes); choose image_to_text.R@K or enlarge the val split");
  if (metric_value) *metric_value = v.get<double>();
  return out;
}

io::TensorMap Experiment::state_tensors() const {
  io::TensorMap out;
  for (const auto& p : model->named_parameters()) out[p.key()] = p.value();
  for (const auto& b : model->named_buffers()) out[b.key()] = b.value();
  for (size_t i = 0; i < losses.size(); ++i) {
    const std::string prefix = "losses." + std::to_string(i) + ".";
    for (const auto& p : losses[i].loss->named_parameters()) out[prefix + p.key()] = p.value();
    for (const auto& b : losses[i].loss->named_buffers()) out[prefix + b.key()] = b.value();
  }
  return out;
}

void Experiment::load_state_tensors(const io::TensorMap& tensors) {
  torch::NoGradGuard no_grad;
  io::TensorMap mine = state_tensors();
  std::vector<std::string> missing, unexpected, mismatched;
  for (auto& [name, t] : mine) {
    auto it = tensors.find(name);
    if (it == tensors.end()) missing.push_back(name);
    else if (it->second.sizes() != t.sizes()) mismatched.push_back(name);
  }
  for (const auto& [name, t] : tensors)
    if (!mine.count(name)) unexpected.push_back(name);
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string message = "weights do not match the configured model:";
    if (!missing.empty()) message += " missing [" + core::join(missing) + "]";
    if (!unexpected.empty()) message += " unexpected [" + core::join(unexpected) + "]";
    if (!mismatched.empty()) message += " shape mismatch [" + core::join(mismatched) + "]";
    throw Error(message);
  }
  for (auto& [name, t] : mine) t.copy_(tensors.at(name));
}

std::vector<std::pair<std::string, at::Tensor>> Experiment::trainable() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : model->named_parameters())
    if (p.value().requires_grad()) out.emplace_back(p.key(), p.value());
  for (size_t i = 0; i < losses.size(); ++i)
    for (const auto& p : losses[i].loss->named_parameters())
      if (p.value().requires_grad()) out.emplace_back("losses." + std::to_string(i) + "." + p.key(), p.value());
  return out;
}

}  // namespace medvlp::train
