#include "medvlp/train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include <torch/torch.h>

#include "../core/log.h"
#include "medvlp/data/rng.h"
#include "medvlp/core/error.h"
#include "medvlp/core/torch_compat.h"
#include "medvlp/eval/plot.h"
#include "medvlp/io/event_file.h"
#include "medvlp/io/files.h"

namespace medvlp::train {

namespace {

// Drops metrics.jsonl lines logged after `step`, so a resumed run does not log those steps twice.
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    try {
      if (nlohmann::json::parse(line).value("step", int64_t{0}) > step) continue;
    } catch (const nlohmann::json::exception&) {
      continue;  // a torn last line from a crash
    }
    kept += line + "\n";
  }
  io::write_file_atomic(path, kept);
}

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%02lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return buf;
}

// RUN/curves.png: the training loss and, with validation, its figures against the step. A chart
// that cannot be drawn costs a warning, never the run.
void write_training_charts(const std::string& run_dir) {
  if (!eval::charts_available()) return;
  const auto read = [](const std::string& path) {
    std::vector<nlohmann::json> lines;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      try {
        lines.push_back(nlohmann::json::parse(line));
      } catch (const nlohmann::json::exception&) {
      }
    }
    return lines;
  };
  const auto series = [](const std::vector<nlohmann::json>& lines, const std::string& key, const std::string& name) {
    eval::Series s{name, {}, {}};
    for (const auto& l : lines) {
      const nlohmann::json* v = &l;
      for (size_t start = 0; v && start <= key.size();) {
        const size_t dot = std::min(key.find('.', start), key.size());
        const std::string part = key.substr(start, dot - start);
        v = v->is_object() && v->contains(part) ? &(*v)[part] : nullptr;
        start = dot + 1;
      }
      if (v && v->is_number() && l.contains("step")) {
        s.x.push_back(l["step"].get<double>());
        s.y.push_back(v->get<double>());
      }
    }
    return s;
  };
  const auto chart = [&](const std::string& name, const std::string& title, const std::string& y_label,
                         const std::vector<eval::Series>& lines) {
    eval::ChartOptions o;
    o.title = title;
    o.x_label = "step";
    o.y_label = y_label;
    eval::write_line_chart(run_dir + "/" + name, lines, o);
  };
  try {
    const auto metrics = read(run_dir + "/metrics.jsonl");
    if (!metrics.empty()) chart("curves.png", "training loss", "loss", {series(metrics, "total_loss", "total loss")});
    const auto validation = read(run_dir + "/validation.jsonl");
    if (!validation.empty()) {
      std::vector<eval::Series> lines{series(validation, "mean_auc", "mean AUROC"),
                                      series(validation, "mean_auprc", "mean AUPRC")};
      const std::string metric = validation.back().value("metric", std::string());
      if (metric != "mean_auc" && metric != "mean_auprc" && !metric.empty())
        lines.push_back(series(validation, metric, metric));
      chart("validation.png", "validation (val split)", "", lines);
    }
  } catch (const std::exception& err) {
    core::log_warn("training charts not written: ", err.what());
  }
}

}  // namespace

Trainer::Trainer(Experiment& experiment) : e_(experiment) {
  const auto trainable = e_.trainable();
  for (const auto& named : trainable) params_.push_back(named.second);
  optimizer_ = std::make_unique<AdamW>(trainable, e_.optim);
  loader_ = std::make_unique<data::Loader>(e_.train_set, e_.tokenizer, e_.loader);
  if (e_.group) {
    // Every rank starts from rank 0's weights (they agree already when built from one seed; this
    // makes it so for weights loaded or initialized any other way), as DDP does.
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : e_.state_tensors()) {
      at::Tensor data = t.detach();
      MEDVLP_CHECK(data.is_contiguous(), "trainer: ", name, " is not contiguous");
      e_.group->broadcast(data, 0);
    }
    averager_ = std::make_unique<GradientAverager>(e_.group, params_);
  }
  // Not derived from the seed: two runs of one config in one folder must still tell their checkpoints apart.
  std::random_device device;
  const uint64_t id = (static_cast<uint64_t>(device()) << 32) ^ device() ^
                      static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(id));
  run_id_ = hex;
}

void Trainer::resume(const std::string& checkpoint_dir) {
  Checkpoint c = load_checkpoint(checkpoint_dir);
  try {
    e_.load_state_tensors(c.model);
    optimizer_->load_state(c.optimizer, c.state.at("optimizer_steps").get<int64_t>());
    MEDVLP_CHECK(c.state.value("seed", uint64_t{0}) == e_.seed, "the checkpoint was trained with seed ",
                 c.state.value("seed", uint64_t{0}), " but the config says ", e_.seed);
    MEDVLP_CHECK(c.state.value("batch_size", int64_t{0}) == e_.train.batch_size, "the checkpoint used batch_size ",
                 c.state.value("batch_size", int64_t{0}), " but the config says ", e_.train.batch_size);
  } catch (const Error& err) {
    throw err.with_context("resume from " + checkpoint_dir);
  } catch (const nlohmann::json::exception& err) {
    throw Error("resume from " + checkpoint_dir + ": trainer_state.json: " + err.what());
  }
  step_ = c.state.at("step").get<int64_t>();
  saved_step_ = step_;
  const nlohmann::json v = c.state.value("validation", nlohmann::json());
  if (v.is_object() && v.value("metric", std::string()) == e_.train.eval_metric && v.value("best_step", int64_t{-1}) >= 0) {
    best_value_ = v.at("best_value").get<double>();
    best_step_ = v.at("best_step").get<int64_t>();
    since_best_ = v.value("since_best", int64_t{0});
  }
  // Checkpoints written before run ids carry none: "" keeps pruning to those.
  run_id_ = c.state.value("run_id", std::string());
  resumed_ = true;
  core::log_info("resumed from ", checkpoint_dir, " at step ", step_);
}

nlohmann::json Trainer::step(const data::Batch& batch) { return step(std::vector<data::Batch>{batch}); }

nlohmann::json Trainer::step(const std::vector<data::Batch>& micro_batches) {
  MEDVLP_CHECK(!micro_batches.empty(), "trainer: a step needs at least one batch");
  const auto micros = static_cast<int64_t>(micro_batches.size());
  e_.model->train();
  for (auto& l : e_.losses) l.loss->train();
  const bool cuda = e_.device.is_cuda();
  const bool bf16 = cuda && e_.train.precision != "fp32";
  const losses::LossContext context = make_loss_context(e_.group, step_, /*training=*/true);
  optimizer_->zero_grad();
  std::vector<std::string> names{"total_loss"};
  at::Tensor sums;  // per logged name, summed over micro-batches (each already the mean over ranks)
  for (int64_t m = 0; m < micros; ++m) {
    // Any randomness inside the step (dropout, masking) draws from a generator seeded by the step
    // (and the micro-batch after the first).
    uint64_t seed = data::mix_seed(e_.seed, 0x73746570ull, static_cast<uint64_t>(step_));
    if (m > 0) seed = data::mix_seed(seed, 0x6d696372ull, static_cast<uint64_t>(m));
    torch::manual_seed(seed);
    data::Batch batch = micro_batches[static_cast<size_t>(m)].to(e_.device, /*non_blocking=*/cuda);
    batch.images = (batch.images - e_.image_mean) / e_.image_std;
    models::Encoded encoded;
    {
      compat::CudaAutocast autocast(bf16, at::kBFloat16);
      encoded = e_.model->forward(batch);
    }
    at::Tensor total = torch::zeros({}, torch::TensorOptions().device(e_.device));
    std::vector<at::Tensor> values;
    for (size_t i = 0; i < e_.losses.size(); ++i) {
      const auto& wl = e_.losses[i];
      losses::LossOutput out = wl.loss->forward(encoded, batch, context);
      total = total + wl.weight * out.total;
      const std::string prefix = e_.losses.size() > 1 ? wl.name + "." : "";
      if (m == 0) names.push_back(prefix + "loss");
      values.push_back(out.total.detach().to(torch::kDouble).reshape({}));
      for (const auto& [name, value] : out.terms) {
        if (m == 0) names.push_back(prefix + name);
        values.push_back(value.detach().to(torch::kDouble).reshape({}));
      }
    }
    values.insert(values.begin(), total.detach().to(torch::kDouble).reshape({}));
    at::Tensor logged = torch::stack(values).cpu().contiguous();
    MEDVLP_CHECK(logged.numel() == static_cast<int64_t>(names.size()), "trainer: the losses' terms changed between micro-batches");
    if (e_.group) {
      // Every rank logs (and judges finiteness by) the mean over ranks, so all stop together.
      e_.group->all_reduce_sum(logged);
      logged /= static_cast<double>(e_.group->world_size());
    }
    const double loss_value = logged.data_ptr<double>()[0];
    if (!std::isfinite(loss_value)) {
      nlohmann::json terms;
      for (size_t i = 1; i < names.size(); ++i) terms[names[i]] = logged.data_ptr<double>()[i];
      throw Error("step " + std::to_string(step_ + 1) +
                  (micros > 1 ? " (micro-batch " + std::to_string(m + 1) + " of " + std::to_string(micros) + ")" : std::string()) +
                  ": loss is " + (std::isnan(loss_value) ? std::string("nan") : std::to_string(loss_value)) + " (terms " +
                  terms.dump() + "); stopping before the update, the last checkpoint is intact. "
                  "Lower optim.lr or check the data.");
    }
    sums = m == 0 ? logged : sums + logged;
    // The last micro-batch's backward sends the accumulated gradients as its hooks fire.
    if (averager_ && m == micros - 1) averager_->prepare(/*accumulated=*/micros > 1);
    (micros > 1 ? total / static_cast<double>(micros) : total).backward();
  }
  if (averager_) averager_->finish();
  if (micros > 1) sums /= static_cast<double>(micros);
  nlohmann::json metrics;
  const double* v = sums.data_ptr<double>();
  for (size_t i = 1; i < names.size(); ++i) metrics[names[i]] = v[i];
  const double loss_value = v[0];
  double grad_norm = 0.0;
  if (e_.train.grad_clip > 0.0) grad_norm = torch::nn::utils::clip_grad_norm_(params_, e_.train.grad_clip);
  const double lr = e_.schedule.at(step_);
  optimizer_->step(lr);
  ++step_;
  metrics["step"] = step_;
  metrics["total_loss"] = loss_value;
  metrics["lr"] = lr;
  if (e_.train.grad_clip > 0.0) metrics["grad_norm"] = grad_norm;
  return metrics;
}

std::string Trainer::save(const CheckpointWriteHook& hook) {
  if (!e_.writes_run()) return "";
  Checkpoint c;
  c.model = e_.state_tensors();
  c.optimizer = optimizer_->state();
  const int64_t per_epoch = loader_->batches_per_epoch();
  const int64_t consumed = step_ * e_.train.accumulate;  // loader batches
  c.state = {{"step", step_},
             {"optimizer_steps", optimizer_->steps()},
             {"epoch", consumed / per_epoch},
             {"batch_in_epoch", consumed % per_epoch},
             {"seed", e_.seed},
             {"batch_size", e_.train.batch_size},
             {"accumulate", e_.train.accumulate},
             {"world_size", e_.group ? e_.group->world_size() : 1},
             {"torch_version", TORCH_VERSION},
             {"run_id", run_id_}};
  if (e_.train.eval_every > 0)
    c.state["validation"] = {{"metric", e_.train.eval_metric},
                             {"best_value", best_step_ >= 0 ? nlohmann::json(best_value_) : nlohmann::json()},
                             {"best_step", best_step_},
                             {"since_best", since_best_}};
  const std::string dir = save_checkpoint(e_.run_dir, step_, c, e_.train.keep_checkpoints, hook);
  saved_step_ = step_;
  core::log_info("checkpoint ", dir);
  return dir;
}

void Trainer::run(int64_t until_step) {
  if (!e_.group) return run_steps(until_step);
  try {
    run_steps(until_step);
    // No rank reports success before every rank has finished (and rank 0 has written the last checkpoint).
    e_.group->barrier();
  } catch (const std::exception& err) {
    e_.group->report_failure(err.what());
    throw;
  }
}

void Trainer::run_steps(int64_t until_step) {
  const int64_t target = until_step < 0 ? e_.train.steps : until_step;
  MEDVLP_CHECK(!e_.run_dir.empty(), "trainer: no run folder");
  const bool writer = e_.writes_run();
  if (writer && !resumed_ && !started_) {
    const std::string held = describe_existing_run(e_.run_dir, run_id_);
    MEDVLP_CHECK(held.empty(), e_.run_dir, ": already holds a run (", held,
                 "); resume it (Trainer::resume) or replace it (train::RunFolder with ExistingRun::overwrite)");
  }
  started_ = true;
  const std::string metrics_path = e_.run_dir + "/metrics.jsonl";
  const std::string validation_path = e_.run_dir + "/validation.jsonl";
  std::ofstream metrics_file, validation_file;
  std::unique_ptr<io::EventFileWriter> events;
  if (writer) {
    const std::string events_dir = e_.run_dir + "/tensorboard";
    try {
      io::truncate_event_files(events_dir, step_);
    } catch (const std::exception& err) {
      // TensorBoard's own readers stop at a damaged record too; the training run must not.
      core::log_warn("TensorBoard event files in ", events_dir, " not truncated to step ", step_, ": ", err.what());
    }
    events = std::make_unique<io::EventFileWriter>(events_dir);
    truncate_metrics(metrics_path, step_);
    metrics_file.open(metrics_path, std::ios::app);
    MEDVLP_CHECK(metrics_file, metrics_path, ": cannot open for appending");
    if (e_.train.eval_every > 0) {
      truncate_metrics(validation_path, step_);
      validation_file.open(validation_path, std::ios::app);
      MEDVLP_CHECK(validation_file, validation_path, ": cannot open for appending");
    }
  }
  const bool live = writer && e_.train.progress && ::isatty(STDERR_FILENO);
  const int64_t per_epoch = loader_->batches_per_epoch();
  const auto start = std::chrono::steady_clock::now();
  const int64_t first_step = step_;
  // The position is global (loader batches consumed), so it does not depend on the number of ranks.
  const int64_t accumulate = e_.train.accumulate;
  int64_t epoch = step_ * accumulate / per_epoch;
  loader_->start(epoch, step_ * accumulate % per_epoch);
  core::log_info("training ", step_, " -> ", target, " steps on ", e_.device.str(), " (", per_epoch,
                 " batches of ", e_.loader.batch_size, " per epoch",
                 accumulate > 1 ? ", " + std::to_string(accumulate) + " per step" : std::string(),
                 e_.group ? " over " + std::to_string(e_.group->world_size()) + " ranks" : std::string(), ")");
  double loss_ema = std::nan("");
  while (step_ < target) {
    std::vector<data::Batch> micro_batches;
    while (static_cast<int64_t>(micro_batches.size()) < accumulate) {
      data::Batch batch;
      if (!loader_->next(&batch)) {
        loader_->start(++epoch, 0);
        continue;
      }
      micro_batches.push_back(std::move(batch));
    }
    nlohmann::json m = step(micro_batches);
    const double loss = m["total_loss"].get<double>();
    loss_ema = std::isnan(loss_ema) ? loss : 0.95 * loss_ema + 0.05 * loss;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double steps_per_s = static_cast<double>(step_ - first_step) / std::max(elapsed, 1e-9);
    if (writer && (step_ % e_.train.log_every == 0 || step_ == target)) {
      m["epoch"] = epoch;
      m["images_per_s"] = steps_per_s * static_cast<double>(e_.train.batch_size);
      m["elapsed_s"] = elapsed;
      metrics_file << m.dump() << "\n" << std::flush;
      // A full disk must stop the run here, not leave a metrics log with silently missing steps.
      MEDVLP_CHECK(metrics_file.good(), metrics_path, ": write failed at step ", step_, " (", std::strerror(errno), ")");
      std::vector<io::SummaryValue> scalars;
      io::append_json_scalars(&scalars, "train", m, {"step"});
      events->write(step_, scalars);
      if (!live) {
        char line[160];
        std::snprintf(line, sizeof(line), "step %lld/%lld loss %.4f lr %.2e %.1f img/s", static_cast<long long>(step_),
                      static_cast<long long>(target), loss, m["lr"].get<double>(), m["images_per_s"].get<double>());
        core::log_info(line);
      }
    }
    if (live) {
      const double frac = static_cast<double>(step_) / static_cast<double>(target);
      const int width = 30;
      const int filled = static_cast<int>(frac * width);
      const double eta = static_cast<double>(target - step_) / std::max(steps_per_s, 1e-9);
      std::fprintf(stderr, "\r[%s%s] %lld/%lld loss %.4f %.1f img/s ETA %s ", std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), static_cast<long long>(step_),
                   static_cast<long long>(target), loss_ema, steps_per_s * static_cast<double>(e_.train.batch_size),
                   format_duration(eta).c_str());
      std::fflush(stderr);
    }
    if (e_.train.eval_every > 0 && step_ % e_.train.eval_every == 0) {
      if (live) std::fprintf(stderr, "\n");
      if (validate(validation_file, events.get())) break;
    }
    if (e_.train.checkpoint_every > 0 && step_ % e_.train.checkpoint_every == 0 && step_ < target && saved_step_ != step_)
      save();
  }
  if (live) std::fprintf(stderr, "\n");
  if (saved_step_ != step_) save();
  if (writer) write_training_charts(e_.run_dir);
}

bool Trainer::validate(std::ofstream& log, io::EventFileWriter* events) {
  // Rank 0 evaluates (the others wait in the broadcast of its decision), so that all stop together.
  double stop = 0.0;
  if (e_.writes_run()) {
    const auto start = std::chrono::steady_clock::now();
    double value = 0.0;
    nlohmann::json line = e_.validate(&value);
    const bool improved = value > best_value_;
    if (improved) {
      best_value_ = value;
      best_step_ = step_;
      since_best_ = 0;
    } else {
      ++since_best_;
    }
    line["step"] = step_;
    line["metric"] = e_.train.eval_metric;
    line["value"] = value;
    line["best_value"] = best_value_;
    line["best_step"] = best_step_;
    line["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    log << line.dump() << "\n" << std::flush;
    MEDVLP_CHECK(log.good(), e_.run_dir, "/validation.jsonl: write failed at step ", step_, " (", std::strerror(errno), ")");
    if (events) {
      std::vector<io::SummaryValue> scalars;
      io::append_json_scalars(&scalars, "val", line, {"step", "best_step"});
      events->write(step_, scalars);
    }
    char text[200];
    std::snprintf(text, sizeof(text), "validation at step %lld: %s %.4f (best %.4f at step %lld)%s",
                  static_cast<long long>(step_), e_.train.eval_metric.c_str(), value, best_value_,
                  static_cast<long long>(best_step_), improved ? ", new best" : "");
    core::log_info(text);
    if (improved) {
      // The checkpoint holds the validation state, so it is written after the update above.
      mark_best_checkpoint(e_.run_dir, save());
    }
    if (e_.train.early_stop > 0 && since_best_ >= e_.train.early_stop) {
      core::log_info("early stop at step ", step_, ": ", since_best_, " validations without improving on ",
                     e_.train.eval_metric, " ", best_value_, " (step ", best_step_, "); the best checkpoint is ",
                     e_.run_dir, "/best");
      stop = 1.0;
    }
  }
  if (e_.group) {
    at::Tensor flag = torch::full({1}, stop, torch::kDouble);
    e_.group->broadcast(flag, 0);
    stop = flag.item<double>();
  }
  return stop > 0.0;
}

}  // namespace medvlp::train
