// Data-parallel training steps on synthetic inputs: a ViT image encoder and a BERT-shaped text
// encoder (ViT-Ti/BERT-mini widths), CLIP loss over every rank's embeddings, gradients averaged by
// train::GradientAverager, AdamW. One process per rank, started by scripts/launch (torchrun's
// environment) or alone; rank 0 prints one JSON line: median step time, gradient bytes all-reduced
// per step and the time of one all-reduce of that size on its own. bench/dist-bench runs it beside
// bench/dist_bench.py (the same networks under PyTorch's DistributedDataParallel).
#include <algorithm>
#include <chrono>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "medvlp/data/sample.h"
#include "medvlp/losses/clip_loss.h"
#include "medvlp/models/bert.h"
#include "medvlp/models/vit.h"
#include "medvlp/train/distributed.h"

using namespace medvlp;

int main(int argc, char** argv) {
  CLI::App app{"medvlp data-parallel step benchmark"};
  int64_t batch = 16, steps = 20, image = 64, seq = 32, dim = 192, depth = 4;
  double bucket_mb = 25;
  app.add_option("--batch", batch, "per-rank batch");
  app.add_option("--steps", steps, "timed steps (after 3 warm-up steps)");
  app.add_option("--image", image, "image side (1 channel)");
  app.add_option("--seq", seq, "text length");
  app.add_option("--dim", dim, "encoder width");
  app.add_option("--depth", depth, "ViT blocks (BERT gets half)");
  app.add_option("--bucket-mb", bucket_mb, "gradient bucket size in MB (DDP's bucket_cap_mb)");
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(1);

  const train::DistOptions dist = train::DistOptions::from_env();
  std::shared_ptr<train::ProcessGroup> group;
  if (dist.world_size > 1) group = std::make_shared<train::ProcessGroup>(dist);
  const int64_t rank = group ? group->rank() : 0, world = group ? group->world_size() : 1;

  torch::manual_seed(0);
  models::VitOptions vo;
  vo.image_size = {image, image};
  vo.patch_size = {8, 8};
  vo.in_channels = 1;
  vo.dim = dim, vo.depth = depth, vo.heads = dim / 64;
  auto vit = std::make_shared<models::VitImpl>(vo);
  models::BertOptions bo;
  bo.vocab_size = 1000, bo.hidden = dim, bo.layers = std::max<int64_t>(1, depth / 2), bo.heads = dim / 64;
  bo.intermediate = 4 * dim, bo.max_position = seq, bo.max_len = seq, bo.dropout = 0.0;
  bo.with_pooler = false;  // the [CLS] state is the output, as on the PyTorch side
  auto bert = std::make_shared<models::BertImpl>(bo);
  torch::nn::Linear image_proj(dim, 128), text_proj(dim, 128);
  auto loss = std::make_shared<losses::ClipLossImpl>(losses::ClipLossOptions{});
  std::vector<at::Tensor> params;
  for (auto* m : std::initializer_list<torch::nn::Module*>{vit.get(), bert.get(), image_proj.get(), text_proj.get(), loss.get()})
    for (auto& p : m->parameters()) params.push_back(p);
  int64_t count = 0;
  for (auto& p : params) count += p.numel();
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(1e-4));
  std::unique_ptr<train::GradientAverager> averager;
  if (group) averager = std::make_unique<train::GradientAverager>(group, params, static_cast<int64_t>(bucket_mb * (1 << 20)));

  torch::manual_seed(static_cast<uint64_t>(1 + rank));  // each rank its own samples
  const at::Tensor images = torch::randn({batch, 1, image, image});
  const at::Tensor ids = torch::randint(0, 1000, {batch, seq}, torch::kLong);
  const at::Tensor mask = torch::ones({batch, seq}, torch::kLong);
  const data::Batch empty;
  std::vector<double> times;
  for (int64_t s = 0; s < steps + 3; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    models::Encoded e;
    e.image_embed = torch::nn::functional::normalize(image_proj(vit->forward(images).pooled),
                                                     torch::nn::functional::NormalizeFuncOptions().dim(-1));
    e.text_embed = torch::nn::functional::normalize(text_proj(bert->forward(ids, mask).pooled),
                                                    torch::nn::functional::NormalizeFuncOptions().dim(-1));
    at::Tensor total = loss->forward(e, empty, train::make_loss_context(group, s)).total;
    optimizer.zero_grad();
    if (averager) averager->prepare();
    total.backward();
    if (averager) averager->finish();
    optimizer.step();
    if (s >= 3) times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  nlohmann::json out{{"framework", "medvlp"}, {"world", world}, {"batch_per_rank", batch}, {"parameters", count},
                     {"median_step_ms", times[times.size() / 2]}, {"threads", at::get_num_threads()}};
  if (group) {
    // One all-reduce of the gradients' size on its own, for docs/distributed.md's scaling estimate.
    at::Tensor flat = torch::zeros({averager->bytes_per_step() / 4});
    std::vector<double> reduce;
    for (int i = 0; i < 7; ++i) {
      group->barrier();
      const auto t0 = std::chrono::steady_clock::now();
      group->all_reduce_sum(flat);
      reduce.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(reduce.begin(), reduce.end());
    out["allreduce_bytes"] = averager->bytes_per_step();
    out["allreduce_buckets"] = averager->buckets();
    out["allreduce_ms"] = reduce[reduce.size() / 2];
  }
  if (rank == 0) std::cout << out.dump() << std::endl;
  return 0;
}
