// CT volume preprocessing on one core: NIfTI load (.nii.gz, int16 + scl_slope/inter) -> RAS
// canonical orientation -> trilinear resample to 1.5 mm -> HU window [-1000, 400] to [0, 1], the
// front of a CT-RATE loader. `--make DIR` writes CT-phantom volumes (512x512 in-plane at 0.75 mm,
// SLICES slices over 320 mm, stored LPS-flipped so that reorientation has work to do) that
// bench/volume_bench.py times with nibabel + torch. Prints one JSON line.
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "medvlp/data/synthetic_ct.h"
#include "medvlp/data/transforms.h"
#include "medvlp/io/nifti.h"
#include "medvlp/io/volume.h"

using namespace medvlp;
namespace fs = std::filesystem;

namespace {
// The output's marginal profiles along z, y and x (sums over the other two axes): a flip, a
// transpose or a one-voxel shift changes them by percents where a plain sum stays put.
// bench/volume_bench.py computes the same; bench/volume-bench compares them.
nlohmann::json profiles(const at::Tensor& out) {
  const at::Tensor v = out.to(torch::kFloat64).reshape({-1, out.size(-3), out.size(-2), out.size(-1)}).sum(0);
  const auto list = [](const at::Tensor& t) {
    const at::Tensor c = t.contiguous();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  };
  const auto over = [&v](int64_t a, int64_t b) { return v.sum(std::vector<int64_t>{a, b}); };
  return nlohmann::json::array({list(over(1, 2)), list(over(0, 2)), list(over(0, 1))});
}
}  // namespace
using Clock = std::chrono::steady_clock;

// Microseconds to first-touch one 4 KiB page (64 MiB without huge pages): what a fresh buffer
// costs on this machine, the number that decides how much reusing or huge-paging buffers pays.
double page_fault_us() {
  const size_t bytes = size_t{64} << 20;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return -1;
  madvise(p, bytes, MADV_NOHUGEPAGE);
  const auto t0 = Clock::now();
  for (size_t i = 0; i < bytes; i += 4096) static_cast<volatile char*>(p)[i] = 1;
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  munmap(p, bytes);
  return s * 1e6 / static_cast<double>(bytes / 4096);
}

int main(int argc, char** argv) {
  CLI::App app{"medvlp CT volume benchmark"};
  std::string make, dir;
  int64_t files = 3, repeats = 2, slices = 160;
  app.add_option("--make", make, "write the test volumes into this folder and exit");
  app.add_option("--files", files, "volumes to write with --make");
  app.add_option("--slices", slices, "slices per volume with --make");
  app.add_option("--dir", dir, "time every .nii.gz file in this folder");
  app.add_option("--repeats", repeats, "passes over the folder (the best one counts)");
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(1);
  if (!make.empty()) {
    fs::create_directories(make);
    data::SyntheticCtOptions o;
    o.size = {slices, 512, 512};
    o.field_of_view = {320, 384, 384};
    o.with_masks = false;
    for (int64_t i = 0; i < files; ++i) {
      const data::CtCase c = data::render_ct_case(o, data::Split::kTest, i);
      io::Volume v;
      // LPS-like storage (x and y flipped), as DICOM-converted volumes usually are.
      v.data = c.hu.flip({1, 2}).round();
      v.spacing = c.spacing;
      v.affine = io::diagonal_affine(c.spacing);
      v.affine[0][0] = -c.spacing[2];
      v.affine[1][1] = -c.spacing[1];
      io::write_nifti(make + "/ct_" + std::to_string(i) + ".nii.gz", v, "int16");
    }
    return 0;
  }
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().string().size() > 7 && e.path().string().substr(e.path().string().size() - 7) == ".nii.gz")
      paths.push_back(e.path().string());
  std::sort(paths.begin(), paths.end());
  double best = 1e300, checksum = 0, voxels = 0;
  nlohmann::json profile_list = nlohmann::json::array();
  nlohmann::json phases;  // seconds per step in the best pass, to show where the time goes
  for (int64_t r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    checksum = 0, voxels = 0;
    double untimed = 0;
    double phase[4] = {0, 0, 0, 0};
    for (const auto& p : paths) {
      auto t = Clock::now();
      const auto lap = [&t](double& into) {
        const auto now = Clock::now();
        into += std::chrono::duration<double>(now - t).count();
        t = now;
      };
      io::Volume raw = io::read_nifti(p);
      lap(phase[0]);
      const io::Volume v = io::reorient_to_ras(std::move(raw));
      lap(phase[1]);
      const std::vector<double> spacing(v.spacing.begin(), v.spacing.end());
      const at::Tensor grid = data::resample(v.data.unsqueeze(0), spacing, {1.5, 1.5, 1.5});
      lap(phase[2]);
      const at::Tensor out = data::apply_windows(grid, {{-1000, 400}});
      lap(phase[3]);
      checksum += out.sum().item<double>();
      if (r == 0) {  // not timed: the profiles are the check, not the work
        const auto tp = Clock::now();
        profile_list.push_back(profiles(out));
        untimed += std::chrono::duration<double>(Clock::now() - tp).count();
        t = Clock::now();
      }
      voxels += static_cast<double>(out.numel());
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count() - untimed;
    if (seconds < best) {
      best = seconds;
      phases = {{"load", phase[0]}, {"ras", phase[1]}, {"resample", phase[2]}, {"window", phase[3]}};
    }
  }
  nlohmann::json j{{"what", "volume"}, {"dir", dir},           {"files", paths.size()},
                   {"seconds", best},  {"voxels_out", voxels}, {"files_per_s", static_cast<double>(paths.size()) / best},
                   {"checksum", checksum}, {"profiles", profile_list}, {"phases", phases}, {"page_fault_us", page_fault_us()}};
  std::cout << j.dump() << "\n";
  return 0;
}
