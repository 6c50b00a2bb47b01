#include "medvlp/data/shards.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "../core/log.h"
#include "medvlp/core/error.h"
#include "medvlp/io/files.h"
#include "medvlp/io/safetensors.h"

namespace medvlp::data {

namespace {

constexpr const char* kFormat = "medvlp-shards-1";

std::string shard_name(int64_t i) {
  std::string digits = std::to_string(i);
  if (digits.size() < 5) digits.insert(0, 5 - digits.size(), '0');
  return "shard_" + digits + ".safetensors";
}

}  // namespace

int64_t write_shards(const Dataset& dataset, const std::string& dir, const ShardWriteOptions& options) {
  MEDVLP_CHECK(options.samples_per_shard > 0, "write_shards: samples_per_shard must be positive");
  io::make_directories(dir);
  const std::string index_path = dir + "/index.json";
  std::remove(index_path.c_str());  // the folder is unfinished until the new index lands
  const int64_t n = dataset.size();
  const auto findings = dataset.findings();
  const auto anatomies = dataset.anatomies();
  nlohmann::json index = {{"format", kFormat}, {"findings", findings}, {"anatomies", anatomies},
                          {"dtype", options.float16 ? "float16" : "float32"}};
  nlohmann::json samples = nlohmann::json::array(), shards = nlohmann::json::array();
  std::vector<int64_t> image_shape;
  for (int64_t first = 0, shard = 0; first < n; first += options.samples_per_shard, ++shard) {
    const int64_t count = std::min(options.samples_per_shard, n - first);
    std::vector<Sample> batch(static_cast<size_t>(count));
    std::vector<std::exception_ptr> errors(static_cast<size_t>(std::max<int64_t>(1, options.workers)));
    std::vector<std::thread> threads;
    for (size_t w = 0; w < errors.size(); ++w)
      threads.emplace_back([&, w] {
        try {
          for (int64_t i = static_cast<int64_t>(w); i < count; i += static_cast<int64_t>(errors.size()))
            batch[static_cast<size_t>(i)] = dataset.get(first + i, options.epoch);
        } catch (...) {
          errors[w] = std::current_exception();
        }
      });
    for (auto& t : threads) t.join();
    for (const auto& e : errors)
      if (e) std::rethrow_exception(e);

    std::vector<at::Tensor> images, labels, truth, masks, lesions, spacing;
    for (const Sample& s : batch) {
      const std::vector<int64_t> shape(s.image.sizes().begin(), s.image.sizes().end());
      if (image_shape.empty()) image_shape = shape;
      MEDVLP_CHECK(shape == image_shape, "build-shards: sample ", s.id, " has image shape ", s.image.sizes(),
                   " but earlier samples have ", at::IntArrayRef(image_shape),
                   "; add resize / crop_pad transforms so every sample has one shape");
      images.push_back(s.image.to(options.float16 ? torch::kFloat16 : torch::kFloat32));
      labels.push_back(s.labels.to(torch::kFloat32));
      if (s.truth.defined()) truth.push_back(s.truth.to(torch::kFloat32));
      if (s.anatomy_masks.defined()) masks.push_back(s.anatomy_masks.gt(0.5).to(torch::kUInt8));
      if (s.lesion_masks.defined()) lesions.push_back(s.lesion_masks.gt(0.5).to(torch::kUInt8));
      if (!s.spacing.empty()) spacing.push_back(torch::tensor(s.spacing, torch::kFloat64));
      nlohmann::json boxes = nlohmann::json::array();
      for (const Box& b : s.boxes) boxes.push_back({b.finding, b.x0, b.y0, b.x1, b.y1});
      samples.push_back({{"id", s.id}, {"patient_id", s.patient_id}, {"report", s.report}, {"boxes", boxes}});
    }
    io::TensorMap tensors = {{"images", torch::stack(images)}, {"labels", torch::stack(labels)}};
    // Optional fields are stored only when every sample has them, so rows stay aligned.
    if (truth.size() == batch.size()) tensors["truth"] = torch::stack(truth);
    if (masks.size() == batch.size()) tensors["anatomy_masks"] = torch::stack(masks);
    if (lesions.size() == batch.size()) tensors["lesion_masks"] = torch::stack(lesions);
    if (spacing.size() == batch.size()) tensors["spacing"] = torch::stack(spacing);
    const std::string name = shard_name(shard);
    io::save_safetensors(dir + "/" + name + ".tmp", tensors);
    MEDVLP_CHECK(std::rename((dir + "/" + name + ".tmp").c_str(), (dir + "/" + name).c_str()) == 0, dir, "/", name,
                 ": cannot rename the finished shard");
    shards.push_back({{"file", name}, {"count", count}});
    core::log_info("build-shards: ", dir, "/", name, " (", first + count, " / ", n, " samples)");
  }
  index["image_shape"] = image_shape;
  index["shards"] = shards;
  index["samples"] = samples;
  io::write_file_atomic(index_path, index.dump());
  return n;
}

struct ShardDataset::State {
  std::string dir;
  std::vector<std::string> findings, anatomies;
  std::vector<io::TensorMap> shards;
  std::vector<int64_t> starts;  // first sample index of each shard
  nlohmann::json samples;
};

ShardDataset::ShardDataset(const std::string& dir) : state_(std::make_unique<State>()) {
  State& st = *state_;
  st.dir = dir;
  const std::string index_path = dir + "/index.json";
  std::string text;
  try {
    text = io::read_file(index_path);
  } catch (const Error&) {
    throw Error(index_path + ": missing; not a shard folder, or `medvlp build-shards` did not finish");
  }
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(index_path + ": invalid JSON (" + e.what() + ")");
  }
  MEDVLP_CHECK(index.is_object() && index.value("format", "") == kFormat, index_path, ": expected format \"", kFormat,
               "\"");
  try {
    st.findings = index.at("findings").get<std::vector<std::string>>();
    st.anatomies = index.at("anatomies").get<std::vector<std::string>>();
    st.samples = index.at("samples");
    int64_t start = 0;
    for (const auto& s : index.at("shards")) {
      const std::string file = dir + "/" + s.at("file").get<std::string>();
      io::SafetensorsFile f = io::map_safetensors(file);
      const int64_t count = s.at("count").get<int64_t>();
      for (const char* key : {"images", "labels"})
        MEDVLP_CHECK(f.tensors.count(key) && f.tensors.at(key).size(0) == count, file, ": expected tensor \"", key,
                     "\" with ", count, " rows");
      for (const auto& [key, t] : f.tensors)
        MEDVLP_CHECK(t.dim() >= 1 && t.size(0) == count, file, ": tensor \"", key, "\" has ",
                     t.dim() ? t.size(0) : 0, " rows; the index says ", count);
      st.starts.push_back(start);
      start += count;
      st.shards.push_back(std::move(f.tensors));
    }
    MEDVLP_CHECK(static_cast<int64_t>(st.samples.size()) == start, index_path, ": ", st.samples.size(),
                 " samples listed but the shards hold ", start);
  } catch (const nlohmann::json::exception& e) {
    throw Error(index_path + ": malformed index (" + e.what() + ")");
  }
}

ShardDataset::~ShardDataset() = default;

int64_t ShardDataset::size() const { return static_cast<int64_t>(state_->samples.size()); }
std::vector<std::string> ShardDataset::findings() const { return state_->findings; }
std::vector<std::string> ShardDataset::anatomies() const { return state_->anatomies; }

std::string ShardDataset::patient_id(int64_t index) const {
  MEDVLP_CHECK(index >= 0 && index < size(), "shards ", state_->dir, ": index ", index, " out of range [0, ", size(), ")");
  return state_->samples[static_cast<size_t>(index)].at("patient_id").get<std::string>();
}

Sample ShardDataset::get(int64_t index, int64_t /*epoch*/) const {
  const State& st = *state_;
  MEDVLP_CHECK(index >= 0 && index < size(), "shards ", st.dir, ": index ", index, " out of range [0, ", size(), ")");
  const auto shard = static_cast<size_t>(std::upper_bound(st.starts.begin(), st.starts.end(), index) - st.starts.begin() - 1);
  const int64_t row = index - st.starts[shard];
  const io::TensorMap& t = st.shards[shard];
  const nlohmann::json& meta = st.samples[static_cast<size_t>(index)];
  Sample s;
  s.id = meta.at("id").get<std::string>();
  s.patient_id = meta.at("patient_id").get<std::string>();
  s.report = meta.at("report").get<std::string>();
  for (const auto& b : meta.at("boxes"))
    s.boxes.push_back({b[0].get<int64_t>(), b[1].get<float>(), b[2].get<float>(), b[3].get<float>(), b[4].get<float>()});
  s.image = t.at("images")[row].to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true);
  s.labels = t.at("labels")[row].clone();
  if (t.count("truth")) s.truth = t.at("truth")[row].clone();
  if (t.count("anatomy_masks")) s.anatomy_masks = t.at("anatomy_masks")[row].to(torch::kFloat32);
  if (t.count("lesion_masks")) s.lesion_masks = t.at("lesion_masks")[row].to(torch::kFloat32);
  if (t.count("spacing")) {
    const at::Tensor sp = t.at("spacing")[row].contiguous();
    s.spacing.assign(sp.data_ptr<double>(), sp.data_ptr<double>() + sp.numel());
  }
  return s;
}

}  // namespace medvlp::data
