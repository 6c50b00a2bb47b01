// Forward + backward time of the model zoo's large encoders (ViT-B/16 on 224x224 RGB images,
// BERT-base on 128-token reports); prints one JSON line per model. bench/model-bench runs it
// next to bench/model_bench.py (the same networks in PyTorch) and prints the ratios.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "medvlp/core/torch_compat.h"
#include "medvlp/models/bert.h"
#include "medvlp/models/vit.h"

using namespace medvlp::models;

int main(int argc, char** argv) {
  CLI::App app{"medvlp model benchmark"};
  int64_t batch = 8, reps = 3, seq = 128;
  std::string device_name = "cpu", models = "vit_b16,bert_base", dtype = "fp32";
  app.add_option("--batch", batch, "batch size");
  app.add_option("--reps", reps, "timed repetitions (after one warm-up)");
  app.add_option("--seq", seq, "BERT sequence length");
  app.add_option("--device", device_name, "cpu | cuda");
  app.add_option("--dtype", dtype, "fp32 | bf16 (CUDA autocast)");
  app.add_option("--models", models, "comma-separated: vit_b16, bert_base");
  CLI11_PARSE(app, argc, argv);
  const torch::Device device(device_name);
  const bool bf16 = dtype == "bf16";
  torch::manual_seed(0);

  std::stringstream list(models);
  for (std::string name; std::getline(list, name, ',');) {
    std::shared_ptr<torch::nn::Module> module;
    std::function<at::Tensor()> step;
    if (name == "vit_b16") {
      VitOptions o = vit_preset("vit_b16");
      o.in_channels = 3;
      auto vit = std::make_shared<VitImpl>(o);
      const at::Tensor x = torch::randn({batch, 3, 224, 224}, torch::TensorOptions().device(device));
      module = vit;
      step = [vit, x] { return vit->forward(x).pooled.to(torch::kFloat).pow(2).mean(); };
    } else if (name == "bert_base") {
      auto bert = std::make_shared<BertImpl>(BertOptions{});
      const at::Tensor ids = torch::randint(0, 30522, {batch, seq}, torch::TensorOptions().dtype(torch::kLong).device(device));
      const at::Tensor mask = torch::ones({batch, seq}, ids.options());
      module = bert;
      step = [bert, ids, mask] { return bert->forward(ids, mask).pooled.to(torch::kFloat).pow(2).mean(); };
    } else {
      std::cerr << "unknown model " << name << "\n";
      return 2;
    }
    module->to(device);
    module->train();
    std::vector<double> times;
    for (int64_t r = 0; r <= reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      {
        medvlp::compat::CudaAutocast autocast(bf16, at::kBFloat16);
        at::Tensor loss = step();
        loss.backward();
      }
      for (auto& p : module->parameters()) p.mutable_grad() = at::Tensor();
      if (device.is_cuda()) torch::cuda::synchronize();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (r > 0) times.push_back(ms);  // the first is warm-up
    }
    std::sort(times.begin(), times.end());
    std::cout << nlohmann::json{{"model", name}, {"batch", batch}, {"median_ms", times[times.size() / 2]},
                                {"threads", at::get_num_threads()}}
                     .dump()
              << std::endl;
  }
  return 0;
}
