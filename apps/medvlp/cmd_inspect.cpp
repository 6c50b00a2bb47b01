// medvlp inspect FILE|DIR [--json] [--save OUT.safetensors]: geometry, metadata and pixel
// statistics of a DICOM file, a CT slice folder, a NIfTI volume or a PNG/JPEG image.
#include <cstring>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "commands.h"
#include "medvlp/core/error.h"
#include "medvlp/io/ct_series.h"
#include "medvlp/io/dicom.h"
#include "medvlp/io/files.h"
#include "medvlp/io/image.h"
#include "medvlp/io/nifti.h"
#include "medvlp/io/safetensors.h"

namespace medvlp::app {
namespace {

nlohmann::json affine_json(const io::Affine& a) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& r : a) rows.push_back({r[0], r[1], r[2], r[3]});
  return rows;
}

// Statistics of the finite values; NaN or infinite voxels (float NIfTI volumes may hold them) are
// counted in "nonfinite" instead of turning every statistic into null.
void add_stats(nlohmann::json& j, const at::Tensor& values) {
  const at::Tensor v = values.to(torch::kFloat64).flatten();
  const at::Tensor finite = torch::isfinite(v);
  const int64_t bad = v.numel() - finite.sum().item<int64_t>();
  const at::Tensor f = bad > 0 ? v.masked_select(finite) : v;
  if (f.numel() > 0) {
    j["min"] = f.min().item<double>();
    j["max"] = f.max().item<double>();
    j["mean"] = f.mean().item<double>();
  } else {
    j["min"] = j["max"] = j["mean"] = nullptr;
  }
  if (bad > 0) j["nonfinite"] = bad;
}

// One JSON object per input; `saved` collects the decoded values for --save.
nlohmann::json inspect(const std::string& path, bool ras, bool keep_tilt, io::TensorMap* saved, io::Volume* volume) {
  nlohmann::json j;
  j["path"] = path;
  const bool series = std::filesystem::is_directory(path);
  const std::string header = series ? "" : io::nifti_header_of(path);
  if (series || !header.empty()) {
    io::SeriesOptions options;
    options.correct_tilt = !keep_tilt;
    io::Volume v = series ? io::read_ct_series(path, options) : io::read_nifti(header, /*all_volumes=*/true);
    const bool several = v.data.dim() == 4;  // a 4D to 7D NIfTI: [T,D,H,W]
    if (ras) {
      MEDVLP_CHECK(!several, path, ": --ras reorients 3D volumes; this file holds ", v.data.size(0), " volumes");
      v = io::reorient_to_ras(std::move(v));
    }
    if (!several) *volume = v;
    j["kind"] = series ? "ct_series" : "nifti";
    j["shape"] = v.data.sizes().vec();
    j["spacing"] = {v.spacing[0], v.spacing[1], v.spacing[2]};
    j["affine"] = affine_json(v.affine);
    j["orientation"] = io::axis_codes(v.affine);
    add_stats(j, v.data);
    if (several) {
      // Each volume's statistics, in file order (time points, or what dimensions 4 to 7 hold).
      nlohmann::json per = nlohmann::json::array();
      for (int64_t t = 0; t < v.data.size(0); ++t) {
        nlohmann::json s;
        add_stats(s, v.data[t]);
        per.push_back(s);
      }
      j["volumes"] = per;
    }
    (*saved)["data"] = v.data;
  } else if (io::has_suffix(path, ".png") || io::has_suffix(path, ".jpg") || io::has_suffix(path, ".jpeg")) {
    const at::Tensor img = io::read_grey_image(path);
    j["kind"] = "image";
    j["shape"] = img.sizes().vec();
    add_stats(j, img);
    (*saved)["pixels"] = img;
  } else {
    const io::DicomImage d = io::read_dicom(path);
    const io::DicomInfo& i = d.info;
    j["kind"] = "dicom";
    j["shape"] = d.pixels.sizes().vec();
    if (i.pixel_spacing) j["spacing"] = {(*i.pixel_spacing)[0], (*i.pixel_spacing)[1]};
    else j["spacing"] = nullptr;
    j["modality"] = i.modality;
    j["photometric"] = i.photometric;
    j["transfer_syntax"] = i.transfer_syntax;
    j["transfer_syntax_name"] = i.transfer_syntax_name;
    if (i.implicit_vr_under_explicit_meta)
      j["warning"] = "dataset encoded with implicit VR although the file meta header names " + i.transfer_syntax_name +
                     " (explicit VR); read as implicit VR";
    j["bits_stored"] = i.bits_stored;
    j["signed"] = i.is_signed;
    j["rescale"] = {i.rescale_slope, i.rescale_intercept};
    j["view_position"] = i.view_position;
    j["patient_id"] = i.patient_id;
    j["study_uid"] = i.study_uid;
    j["series_uid"] = i.series_uid;
    if (!i.window_center.empty() && !i.window_width.empty()) j["window"] = {i.window_center[0], i.window_width[0]};
    if (i.image_position) j["image_position"] = *i.image_position;
    add_stats(j, d.pixels);
    (*saved)["pixels"] = d.pixels;
  }
  return j;
}

void print_text(const nlohmann::json& j) {
  std::cout << j["path"].get<std::string>() << " (" << j["kind"].get<std::string>() << ")\n";
  for (const auto& [key, value] : j.items()) {
    if (key == "path" || key == "kind") continue;
    std::cout << "  " << key << ": " << (value.is_string() ? value.get<std::string>() : value.dump()) << "\n";
  }
}

}  // namespace

Action add_inspect(CLI::App& app) {
  struct Args {
    std::vector<std::string> inputs;
    bool json = false, ras = false, keep_tilt = false;
    std::string save;
  };
  auto args = std::make_shared<Args>();
  app.add_option("inputs", args->inputs, "DICOM files, CT slice folders, NIfTI volumes or PNG/JPEG images")->required();
  app.add_flag("--json", args->json, "one JSON object per input line (shape, spacing, modality, photometric, "
                                     "transfer_syntax, min/max/mean of the modality-LUT values, ...)");
  app.add_flag("--keep-tilt", args->keep_tilt,
               "CT folders: keep a gantry-tilted series' slices as stored, with a sheared affine (default: resample "
               "them onto an orthogonal grid, as dcm2niix does)");
  app.add_flag("--ras", args->ras, "volumes: reorient to the closest RAS+ voxel order first (nibabel's as_closest_canonical)");
  app.add_option("--save", args->save,
                 "write the decoded values of the (single) input: .safetensors, or for volumes also .nii/.nii.gz");
  return [args] {
    MEDVLP_CHECK(args->save.empty() || args->inputs.size() == 1, "--save takes a single input, got ",
                 args->inputs.size());
    BatchErrors errors("inspect");
    for (const auto& path : args->inputs) {
      io::TensorMap saved;
      io::Volume volume;
      nlohmann::json j;
      try {
        j = inspect(path, args->ras, args->keep_tilt, &saved, &volume);
      } catch (const Error& e) {
        // A corrupt file among many: named, and the others are still inspected.
        const std::string what = e.what();
        errors.add(what.rfind(path, 0) == 0 ? what : path + ": " + what);
        if (args->json) std::cout << nlohmann::json{{"path", path}, {"error", what}}.dump() << "\n";
        continue;
      }
      if (args->json) std::cout << j.dump() << "\n";
      else print_text(j);
      if (args->save.empty()) continue;
      if (io::has_suffix(args->save, ".nii") || io::has_suffix(args->save, ".nii.gz")) {
        MEDVLP_CHECK(volume.data.defined(), args->save, ": only 3D volumes (NIfTI, CT series) can be saved as NIfTI; "
                     "save 2D images and 4D files as .safetensors");
        io::write_nifti(args->save, volume);
      } else {
        io::save_safetensors(args->save, saved);
      }
    }
    std::cout.flush();
    return errors.finish(args->inputs.size(), "inputs");
  };
}

}  // namespace medvlp::app
