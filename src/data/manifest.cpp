#include "medvlp/data/manifest.h"

#include <algorithm>

#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "../core/log.h"
#include "medvlp/core/error.h"
#include "medvlp/io/files.h"
#include "medvlp/io/ct_series.h"
#include "medvlp/io/image.h"
#include "medvlp/io/nifti.h"
#include "medvlp/io/volume.h"

namespace medvlp::data {

namespace {

std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

}  // namespace

ManifestDataset::ManifestDataset(const std::string& manifest_path, const std::string& split,
                                 std::vector<std::string> findings, MissingPolicy missing)
    : ManifestDataset(manifest_path, split, Options{std::move(findings), {}, missing, true}) {}

ManifestDataset::ManifestDataset(const std::string& manifest_path, const std::string& split, Options options)
    : options_(std::move(options)), manifest_path_(manifest_path) {
  const auto& findings = options_.findings;
  std::vector<ManifestEntry> entries;
  std::ifstream in(manifest_path);
  MEDVLP_CHECK(in, manifest_path, ": cannot open manifest");
  const std::string base = parent_dir(manifest_path);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    auto entry = parse_manifest_line(line, manifest_path + ":" + std::to_string(line_no), base, split, findings,
                                     !options_.anatomies.empty());
    if (entry) entries.push_back(std::move(*entry));
  }
  keep_existing(std::move(entries));
}

ManifestDataset::ManifestDataset(const std::string& source, std::vector<ManifestEntry> entries, Options options)
    : options_(std::move(options)), manifest_path_(source) {
  keep_existing(std::move(entries));
}

void ManifestDataset::keep_existing(std::vector<ManifestEntry> entries) {
  for (auto& e : entries) {
    bool ok = true;
    std::vector<const std::string*> paths = {&e.image_path, &e.mask_path, &e.report_path};
    for (const auto& lesion : e.lesion_paths) paths.push_back(&lesion.second);
    for (const std::string* path : paths) {
      if (path->empty() || io::path_exists(*path)) continue;
      if (options_.missing == MissingPolicy::kFail) throw Error(e.where + ": file " + *path + " does not exist");
      core::log_warn(e.where, ": file ", *path, " does not exist; skipping the entry");
      ok = false;
      break;
    }
    if (ok) entries_.push_back(std::move(e));
    else ++missing_;
  }
  if (missing_ > 0) core::log_warn(manifest_path_, ": skipped ", missing_, " entries whose files are missing");
}

at::Tensor ManifestDataset::finite_voxels(at::Tensor data, const std::string& path) const {
  const at::Tensor bad = torch::isfinite(data).logical_not();
  const int64_t n = bad.sum().item<int64_t>();
  if (n == 0) return data;
  MEDVLP_CHECK(options_.non_finite == NonFinitePolicy::kZero, path, ": ", n, " of ", data.numel(),
               " voxels are not finite (NaN or infinity); set data.non_finite: zero to read them as 0");
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    first = zero_filled_.insert(path).second;
  }
  if (first) core::log_warn(path, ": ", n, " of ", data.numel(), " voxels are not finite; read as 0 (data.non_finite: zero)");
  return data.masked_fill_(bad, 0.0f);
}

Sample ManifestDataset::load(const ManifestEntry& e) const {
  Sample s;
  s.id = e.id;
  s.patient_id = e.patient_id;
  const std::string nifti = io::nifti_header_of(e.image_path);  // "" for a slice folder or a 2D image
  if (!nifti.empty() || io::is_directory(e.image_path)) {
    io::Volume v = !nifti.empty() ? io::read_nifti(nifti, options_.nifti_channels) : io::read_ct_series(e.image_path);
    // A metadata rescale (CT-RATE's RescaleSlope/Intercept) applies to stored values; a NIfTI whose
    // header already rescales them holds Hounsfield units, and a second rescale would shift it
    // ~1000 HU down (CT-RATE's later "fixed" volumes).
    const bool header_scaled = !nifti.empty() && io::nifti_rescales(nifti);
    if ((e.slope != 1.0 || e.intercept != 0.0) && !header_scaled) v.data = v.data * e.slope + e.intercept;
    if (e.spacing.size() == 3) {
      // The metadata's voxel size replaces the header's: rescale the affine's columns to match.
      const auto old = io::affine_spacing(v.affine);
      for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) v.affine[r][c] *= e.spacing[2 - c] / old[2 - c];
      v.spacing = {e.spacing[0], e.spacing[1], e.spacing[2]};
    }
    const bool channels = v.data.dim() == 4;  // a 4D NIfTI read as channels
    if (options_.canonical && channels) {
      // Each volume reoriented alike (one affine for all).
      std::vector<at::Tensor> parts;
      io::Volume out;
      for (int64_t t = 0; t < v.data.size(0); ++t) {
        out = io::reorient_to_ras(io::Volume{v.data[t], v.affine, v.spacing});
        parts.push_back(out.data);
      }
      v = io::Volume{torch::stack(parts), out.affine, out.spacing};
    } else if (options_.canonical) {
      v = io::reorient_to_ras(std::move(v));
    }
    v.data = finite_voxels(std::move(v.data), e.image_path);
    s.image = channels ? v.data : v.data.unsqueeze(0);
    s.spacing = {v.spacing[0], v.spacing[1], v.spacing[2]};
    if (!e.mask_path.empty()) {
      io::Volume m = io::read_nifti(e.mask_path);
      if (options_.canonical) m = io::reorient_to_ras(std::move(m));
      MEDVLP_CHECK(m.data.sizes() == s.image.sizes().slice(1), e.mask_path, ": label map has shape ", m.data.sizes(),
                   " but its image ", e.image_path, " has ", s.image.sizes().slice(1));
      const auto a = static_cast<int64_t>(options_.anatomies.size());
      const at::Tensor values = m.data.round();
      MEDVLP_CHECK(values.min().item<float>() >= 0 && values.max().item<float>() <= static_cast<float>(a), e.mask_path,
                   ": label values must lie in [0, ", a, "] (one per configured anatomy)");
      // One comparison per anatomy: a one-hot of int64 would take 8 (A+1) bytes per voxel.
      s.anatomy_masks = torch::empty({a, values.size(0), values.size(1), values.size(2)});
      for (int64_t i = 0; i < a; ++i) s.anatomy_masks[i].copy_(values == static_cast<float>(i + 1));
    }
  } else {
    s.image = io::read_image(e.image_path);
  }
  if (e.has_lesions) {
    const at::IntArrayRef shape = s.image.sizes().slice(1);
    s.lesion_masks = torch::zeros(
        [&] {
          std::vector<int64_t> size = {static_cast<int64_t>(options_.findings.size())};
          size.insert(size.end(), shape.begin(), shape.end());
          return size;
        }());
    for (const auto& [k, path] : e.lesion_paths) {
      at::Tensor m;
      if (s.image.dim() == 4) {
        io::Volume v = io::read_nifti(path);
        if (options_.canonical) v = io::reorient_to_ras(std::move(v));
        m = v.data;
      } else {
        m = io::read_image(path)[0];
      }
      MEDVLP_CHECK(m.sizes() == shape, path, ": lesion mask of \"", options_.findings[static_cast<size_t>(k)],
                   "\" has shape ", m.sizes(), " but its image ", e.image_path, " has ", shape);
      s.lesion_masks[k] = torch::max(s.lesion_masks[k], m.gt(0.5).to(torch::kFloat32));
    }
  }
  s.report = e.report_path.empty() ? e.report : e.report + io::read_file(e.report_path);
  const auto k = static_cast<int64_t>(options_.findings.size());
  s.labels = e.labels.empty() ? torch::full({k}, -1.f) : torch::tensor(e.labels);
  if (!e.truth.empty()) s.truth = torch::tensor(e.truth);
  s.boxes = e.boxes;
  return s;
}

std::string ManifestDataset::patient_id(int64_t index) const {
  MEDVLP_CHECK(index >= 0 && index < size(), "manifest dataset: index ", index, " out of range [0, ", size(), ")");
  return entries_[static_cast<size_t>(index)].patient_id;
}

Sample ManifestDataset::get(int64_t index, int64_t /*epoch*/) const {
  MEDVLP_CHECK(index >= 0 && index < size(), "manifest dataset: index ", index, " out of range [0, ", size(), ")");
  std::string last_error;
  for (int64_t tried = 0; tried < size(); ++tried) {
    const auto at = static_cast<size_t>((index + tried) % size());
    const ManifestEntry& e = entries_[at];
    try {
      return load(e);
    } catch (const Error& error) {
      if (options_.missing == MissingPolicy::kFail) throw;
      last_error = error.what();
      std::lock_guard<std::mutex> lock(mutex_);
      if (unreadable_.insert(at).second)
        core::log_warn(manifest_path_, ": entry ", e.id, " is unreadable (", error.what(), "); using the next entry (",
                       unreadable_.size(), " unreadable so far)");
    }
  }
  throw Error(manifest_path_ + ": no entry of this split could be read (last error: " + last_error + ")");
}

int64_t write_synthetic_cxr(const SyntheticCxrOptions& options, Split split, const std::string& dir) {
  io::make_directories(dir + "/images");
  std::ofstream manifest(dir + "/manifest.jsonl", std::ios::app);
  MEDVLP_CHECK(manifest, dir, "/manifest.jsonl: cannot open for writing");
  SyntheticCxrDataset dataset(options, split);
  const auto& names = cxr_findings();
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const CxrCase c = render_cxr_case(options, split, i);
    const std::string id = split_name(split) + "_" + std::to_string(i);
    const std::string image = "images/" + id + ".png";
    io::write_grey_png(dir + "/" + image, c.image, 8);
    nlohmann::json j = {{"id", id}, {"split", split_name(split)}, {"image", image}, {"report", c.report()}};
    nlohmann::json boxes = nlohmann::json::array();
    for (const auto& b : c.boxes) boxes.push_back({{"finding", names[static_cast<size_t>(b.finding)]}, {"box", {b.x0, b.y0, b.x1, b.y1}}});
    for (size_t k = 0; k < names.size(); ++k) {
      j["labels"][names[k]] = c.report_labels[static_cast<int64_t>(k)].item<float>();
      j["truth"][names[k]] = c.truth[static_cast<int64_t>(k)].item<float>();
    }
    j["boxes"] = boxes;
    manifest << j.dump() << "\n";
  }
  MEDVLP_CHECK(manifest.good(), dir, "/manifest.jsonl: write failed");
  return dataset.size();
}

}  // namespace medvlp::data
