// Per-image cost of localization scoring (eval.localization): 14 finding maps on a 14x14 patch
// grid, upsampled to 512x512, normalized, and scored (pointing game, IoU/Dice at 5 thresholds, CNR)
// against one box each. Writes its inputs for bench/localization_bench.py (--write DIR) and prints
// one JSON line. Usage: medvlp_localization_bench [--images N] [--write DIR]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "medvlp/data/rng.h"
#include "medvlp/eval/localization.h"

using namespace medvlp;

int main(int argc, char** argv) {
  CLI::App app{"localization scoring cost per image"};
  int64_t images = 50, size = 512, grid = 14, findings = 14;
  std::string write;
  app.add_option("--images", images);
  app.add_option("--write", write, "write maps.f32 and boxes.json here for the Python side");
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(1);
  const std::vector<double> thresholds{0.1, 0.2, 0.3, 0.4, 0.5};
  // Smooth blobs plus noise, each finding's box near its blob (a map that localizes, imperfectly).
  data::Rng rng(7);
  at::Tensor maps = torch::empty({images, findings, grid, grid});
  std::vector<std::array<int64_t, 4>> boxes;  // per (image, finding): x0, y0, x1, y1
  float* m = maps.data_ptr<float>();
  for (int64_t i = 0; i < images * findings; ++i) {
    const double cx = rng.uniform(2, grid - 2), cy = rng.uniform(2, grid - 2), r = rng.uniform(1, 3);
    for (int64_t y = 0; y < grid; ++y)
      for (int64_t x = 0; x < grid; ++x)
        m[i * grid * grid + y * grid + x] =
            static_cast<float>(std::exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (2 * r * r)) + 0.2 * rng.normal());
    const double scale = static_cast<double>(size) / static_cast<double>(grid);
    const auto half = static_cast<int64_t>(r * scale);
    const auto bx = static_cast<int64_t>((cx + 0.5 + rng.uniform(-1, 1)) * scale), by = static_cast<int64_t>((cy + 0.5 + rng.uniform(-1, 1)) * scale);
    boxes.push_back({std::max<int64_t>(0, bx - half), std::max<int64_t>(0, by - half), std::min(size, bx + half), std::min(size, by + half)});
  }
  if (!write.empty()) {
    std::ofstream(write + "/maps.f32", std::ios::binary).write(reinterpret_cast<const char*>(m), static_cast<std::streamsize>(maps.numel() * 4));
    std::ofstream(write + "/boxes.json") << nlohmann::json(boxes).dump();
  }
  double miou = 0, pointing = 0, cnr = 0;
  double seconds = 0;
  for (int64_t i = 0; i < images; ++i) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<at::Tensor> targets;
    for (int64_t k = 0; k < findings; ++k) {
      const auto& b = boxes[static_cast<size_t>(i * findings + k)];
      targets.push_back(eval::box_mask({{0, static_cast<float>(b[0]), static_cast<float>(b[1]), static_cast<float>(b[2]),
                                         static_cast<float>(b[3])}}, 0, size, size));
    }
    const auto scores = eval::score_grid_maps(maps[i], targets, size, size, thresholds);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const auto& s : scores) {
      for (double v : s.iou) miou += v / static_cast<double>(thresholds.size());
      pointing += s.pointing;
      cnr += s.cnr;
    }
  }
  const auto n = static_cast<double>(images * findings);
  std::cout << nlohmann::json{{"images", images},
                              {"ms_per_image", 1000 * seconds / static_cast<double>(images)},
                              {"miou", miou / n},
                              {"pointing", pointing / n},
                              {"cnr", cnr / n}}
                   .dump()
            << std::endl;
  return 0;
}
