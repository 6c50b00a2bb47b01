// Forward + backward time of each built-in loss on random embeddings; prints one JSON line per
// loss. bench/loss-bench runs it next to bench/loss_bench.py (PyTorch) and prints the ratios.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "medvlp/core/config.h"
#include "medvlp/losses/loss.h"
#include "medvlp/testing/named_inputs.h"

using namespace medvlp;

namespace {

struct Sizes {
  int64_t batch = 256, dim = 512, patches = 196, words = 64, anatomies = 8, tags = 14, entities = 4;
};

at::Tensor unit(const at::Tensor& x) { return x / x.norm(2, -1, true); }

testing::NamedTensors make_inputs(const Sizes& s, const torch::Device& device) {
  torch::manual_seed(0);
  const auto f = torch::TensorOptions().dtype(torch::kFloat).device(device);
  const auto l = torch::TensorOptions().dtype(torch::kLong).device(device);
  testing::NamedTensors in;
  in["image_embed"] = unit(torch::randn({s.batch, s.dim}, f));
  in["text_embed"] = unit(torch::randn({s.batch, s.dim}, f));
  in["labels"] = torch::randint(-1, 2, {s.batch, s.tags}, l).to(torch::kFloat);
  in["report_hash"] = torch::randint(0, s.batch / 2, {s.batch}, l);
  in["report_normal"] = (torch::rand({s.batch}, f) < 0.3).to(torch::kFloat);
  const int64_t side = 14;  // 196 patches on a 14 x 14 grid
  in["image_tokens"] = torch::randn({s.batch, s.patches, s.dim}, f);
  in["grid"] = torch::tensor({side, s.patches / side}, torch::kLong);
  in["text_tokens"] = torch::randn({s.batch, s.words, s.dim}, f);
  in["word_mask"] = (torch::arange(s.words, l).unsqueeze(0) < torch::randint(8, s.words + 1, {s.batch, 1}, l)).to(torch::kFloat);
  in["sentence_embed"] = torch::randn({s.batch, 6, s.dim}, f);
  in["sentence_mask"] = torch::ones({s.batch, 6}, f);
  in["anatomy_masks"] = (torch::rand({s.batch, s.anatomies, 56, 56}, f) < 0.2).to(torch::kFloat);
  in["anatomy_text"] = unit(torch::randn({s.batch, s.anatomies, s.dim}, f));
  in["anatomy_abnormal"] = (torch::rand({s.batch, s.anatomies}, f) < 0.2).to(torch::kFloat);
  in["entity_embed"] = unit(torch::randn({s.batch, s.entities, s.dim}, f));
  in["entity_reference"] = torch::randn({s.batch, s.entities, 384}, f);
  in["entity_disease"] = torch::randint(0, s.tags, {s.batch, s.entities}, l);
  in["entity_mask"] = torch::ones({s.batch, s.entities}, f);
  return in;
}

}  // namespace

int main(int argc, char** argv) {
  Sizes s;
  int reps = 0;  // 0: at least 5 timed runs, more until 2 s of them (at most 200): a stable median
  std::string only, device_name = "cpu";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--batch") s.batch = std::stoll(v);
    else if (k == "--dim") s.dim = std::stoll(v);
    else if (k == "--reps") reps = std::stoi(v);
    else if (k == "--losses") only = "," + v + ",";
    else if (k == "--device") device_name = v;
    else {
      std::cerr << "usage: medvlp_loss_bench [--batch 256] [--dim 512] [--reps N] [--losses clip,local] [--device cpu|cuda]\n";
      return 2;
    }
  }
  const torch::Device device(device_name);
  const std::string C = std::to_string(s.dim);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"clip", "{}"},
      {"soft_target", "{}"},
      {"soft_target_entities", "{form: entities}"},
      {"false_negative", "{}"},
      {"anatomy", "{anatomies: [a0, a1, a2, a3, a4, a5, a6, a7], token_dim: " + C + ", embed_dim: " + C + "}"},
      {"local", "{}"},
      {"local_filip", "{form: filip}"},
      {"multi_level", "{}"},
      {"tag", "{tags: 14, token_dim: " + C + ", heads: 8}"},
  };
  const testing::NamedTensors base = make_inputs(s, device);
  for (const auto& [label, options] : cases) {
    if (!only.empty() && only.find("," + label + ",") == std::string::npos) continue;
    const std::string name = label.substr(0, label.find("_entities")) == "soft_target" ? "soft_target"
                             : label == "local_filip" ? "local" : label;
    auto cfg = core::Config::parse(options, label);
    losses::LossPtr loss = losses::loss_registry().create(name, cfg.root());
    loss->to(device);
    std::vector<double> times;
    double value = 0;
    double spent = 0;
    const auto more = [&](int r) { return reps > 0 ? r < reps + 1 : r < 6 || (spent < 2.0 && r < 201); };
    for (int r = 0; more(r); ++r) {  // the first run warms up allocators and kernels
      testing::NamedTensors in;
      for (const auto& [k, t] : base) {
        const auto* spec = &testing::input_specs()[0];
        for (const auto& sp : testing::input_specs())
          if (sp.name == k) spec = &sp;
        in[k] = spec->differentiable ? t.detach().clone().requires_grad_(true) : t;
      }
      const auto [encoded, batch] = testing::bind_inputs(in);
      if (device.is_cuda()) torch::cuda::synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      const at::Tensor total = loss->forward(encoded, batch, {}).total;
      total.backward();
      if (device.is_cuda()) torch::cuda::synchronize();
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (r > 0) times.push_back(dt), spent += dt;
      if (r == 0) value = total.item<double>();  // compared with the PyTorch side's value
    }
    std::sort(times.begin(), times.end());
    std::cout << nlohmann::json{{"loss", label}, {"batch", s.batch}, {"dim", s.dim}, {"device", device_name},
                                {"median_ms", 1000 * times[times.size() / 2]}, {"value", value}}
                     .dump()
              << std::endl;
  }
  return 0;
}
