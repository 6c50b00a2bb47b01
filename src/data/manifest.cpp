#include "medvlp/data/manifest.h"

#include <sys/stat.h>

#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "../core/log.h"
#include "medvlp/core/error.h"
#include "medvlp/io/files.h"
#include "medvlp/io/image.h"

namespace medvlp::data {

namespace {

std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

ManifestDataset::ManifestDataset(const std::string& manifest_path, const std::string& split,
                                 std::vector<std::string> findings, MissingPolicy missing)
    : findings_(std::move(findings)) {
  std::ifstream in(manifest_path);
  MEDVLP_CHECK(in, manifest_path, ": cannot open manifest");
  const std::string base = parent_dir(manifest_path);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = manifest_path + ":" + std::to_string(line_no);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(where + ": invalid JSON (" + e.what() + ")");
    }
    MEDVLP_CHECK(j.is_object() && j.contains("image") && j["image"].is_string() && j.contains("report") &&
                     j["report"].is_string(),
                 where, ": expected an object with string fields \"image\" and \"report\"");
    if (j.contains("split") && j["split"].get<std::string>() != split) continue;
    Entry e;
    e.id = j.value("id", "line" + std::to_string(line_no));
    e.patient_id = j.value("patient_id", e.id);
    const std::string image = j["image"].get<std::string>();
    e.image_path = !image.empty() && image[0] == '/' ? image : base + "/" + image;
    e.report = j["report"].get<std::string>();
    for (const char* key : {"labels", "truth"}) {
      std::vector<float>& dst = std::string(key) == "labels" ? e.labels : e.truth;
      if (!j.contains(key)) continue;
      MEDVLP_CHECK(j[key].is_object(), where, ": \"", key, "\" must map finding names to 1, 0 or -1");
      dst.assign(findings_.size(), -1.f);
      for (size_t k = 0; k < findings_.size(); ++k)
        if (j[key].contains(findings_[k])) dst[k] = j[key][findings_[k]].get<float>();
    }
    if (!file_exists(e.image_path)) {
      if (missing == MissingPolicy::kFail) throw Error(where + ": image file " + e.image_path + " does not exist");
      core::log_warn(where, ": image file ", e.image_path, " does not exist; skipping");
      ++skipped_;
      continue;
    }
    entries_.push_back(std::move(e));
  }
  if (skipped_ > 0) core::log_warn(manifest_path, ": skipped ", skipped_, " entries with missing images");
}

Sample ManifestDataset::get(int64_t index, int64_t /*epoch*/) const {
  MEDVLP_CHECK(index >= 0 && index < size(), "manifest dataset: index ", index, " out of range [0, ", size(), ")");
  const Entry& e = entries_[static_cast<size_t>(index)];
  Sample s;
  s.id = e.id;
  s.patient_id = e.patient_id;
  s.image = io::read_image(e.image_path);
  s.report = e.report;
  const auto k = static_cast<int64_t>(findings_.size());
  s.labels = e.labels.empty() ? torch::full({k}, -1.f) : torch::tensor(e.labels);
  if (!e.truth.empty()) s.truth = torch::tensor(e.truth);
  return s;
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
