#pragma once
// Localization without boxes (AFLoc's evaluation): each finding's prompt gives a similarity map over
// the image patches, upsampled to the image or volume, normalized per image, and scored against the
// lesion masks (2D or 3D) or boxes (2D): pointing game, IoU and Dice at thresholds, contrast-to-noise ratio.

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <nlohmann/json.hpp>

#include "medvlp/data/dataset.h"
#include "medvlp/data/sample.h"
#include "medvlp/models/vlp_model.h"
#include "medvlp/text/tokenizer.h"

namespace medvlp::eval {

/// A map's scores against one finding's target region.
struct MapScores {
  double pointing = 0;          // share of the map's maximal pixels inside the target: 1 or 0 for a single
                                // peak; the target's area fraction (chance) for a flat map
  std::vector<double> iou, dice;  // of (map >= threshold) and the target, per threshold
  double cnr = 0;               // |mean in - mean out| / sqrt(var in + var out); 0 when both are flat
};

/// Bilinear upsampling (half-pixel centres, as torch's align_corners=false) of maps [K,h,w] to
/// [K,height,width], each then min-max normalized to [0,1]; a flat map becomes all zeros.
at::Tensor upsample_maps(const at::Tensor& maps, int64_t height, int64_t width);
/// The same for maps [K,h,w] or [K,d,h,w] and a size of as many axes (trilinear in 3D).
at::Tensor upsample_maps(const at::Tensor& maps, const std::vector<int64_t>& size);

/// The union of `finding`'s boxes as a 0/1 byte mask [height,width]; box edges are rounded to pixels
/// (x0,y0 inclusive, x1,y1 exclusive) and clipped to the image.
at::Tensor box_mask(const std::vector<data::Box>& boxes, int64_t finding, int64_t height, int64_t width);

/// Scores a normalized map against a target mask of its shape ([H,W] or [D,H,W]; bytes, bool, or
/// float > 0.5) with at least one pixel.
MapScores score_map(const at::Tensor& map, const at::Tensor& target, const std::vector<double>& thresholds);

/// score_map() for every map of one image at once: `maps` [K,h,w] (patch grids) are upsampled as
/// upsample_maps() does and scored against `targets[k]` ([height,width] masks; undefined ones are
/// skipped, their entry left default), without materializing the upsampled stack: the per-image cost
/// of evaluation (bench/localization-bench).
std::vector<MapScores> score_grid_maps(const at::Tensor& maps, const std::vector<at::Tensor>& targets, int64_t height,
                                       int64_t width, const std::vector<double>& thresholds);

/// A PNG of `image` ([H,W], any range, shown grey) under `map` ([H,W] in [0,1]) as a JET heat map,
/// with the outlines of the boxes of `finding` (-1: none) and `label` written in a corner; images
/// under 256 pixels are enlarged. medvlp::Error in a build without OpenCV.
void write_heat_map(const std::string& path, const at::Tensor& image, const at::Tensor& map,
                    const std::vector<data::Box>& boxes, int64_t finding, const std::string& label);
/// The same with the outline of a target mask [H,W] (undefined: none) instead of boxes.
void write_heat_map(const std::string& path, const at::Tensor& image, const at::Tensor& map, const at::Tensor& target,
                    const std::string& label);

/// Each finding's similarity map over the patches of one image: the mean over the finding's prompts
/// of VlpModel::patch_similarity (`mode` "tokens" or "embedding"; "auto" picks as
/// LocalizationOptions::maps does). The prompts are tokenized once, at construction.
class FindingMaps {
 public:
  FindingMaps(models::VlpModel model, const text::Tokenizer& tokenizer,
              const std::vector<std::pair<std::string, std::vector<std::string>>>& prompts, int64_t max_text_len,
              const c10::Device& device, const std::string& mode);
  /// `image` [C,H,W] or [C,D,H,W], already normalized, on any device -> [K,h,w] or [K,d,h,w] on the CPU.
  at::Tensor operator()(const at::Tensor& image) const;
  const std::string& mode() const { return mode_; }

 private:
  mutable models::VlpModel model_;  // forward() is not const
  c10::Device device_;
  std::string mode_;
  at::Tensor ids_, mask_, weights_;  // weights_ [K,T]: each finding's mean over its prompts
};

/// `s` with every character but letters, digits, '-' and '.' replaced by '_': the names of heat-map files.
std::string file_safe(const std::string& s);

/// Settings of the `eval.localization` section.
struct LocalizationOptions {
  bool enabled = false;
  /// "tokens": mean over the prompt's words (begin/end specials left out) of cos(token feature, patch feature) in the token space
  /// the local losses train (AFLoc's word-patch similarity); "sentences": cos(patch, the prompt as one
  /// sentence unit) in the sentence level's space (AFLoc's inference maps); "embedding": cos(projected patch, prompt
  /// embedding), for models trained with global losses only; "auto": tokens when the model has
  /// local heads (model.local_dim), else embedding.
  std::string maps = "auto";
  std::vector<double> thresholds = {0.1, 0.2, 0.3, 0.4, 0.5};
  int64_t overlays = 4;  // heat-map PNGs for the first N cases of each finding (3D: the slice with most of the target)
};

/// Localization of `dataset`'s findings with one positive prompt set per finding (the mean of each
/// prompt's map), scored where a case has a target for the finding: its lesion mask
/// (Sample::lesion_masks, 2D or 3D) when the sample carries masks, else its boxes (2D). Returns
/// {"findings": {f: {"cases", "pointing_game", "iou": {t: v}, "dice": {t: v}, "miou", "mdice",
/// "cnr"}}, "mean": {...}, "maps": mode, "cases": cases with a target}; with `overlay_dir`,
/// heat-map overlays (image or axial slice, map, target outlines) go there as <finding>_<id>.png.
/// medvlp::Error when no case has a target or a prompt names no finding of the dataset.
nlohmann::json localize(models::VlpModel& model, const data::DatasetPtr& dataset, const text::Tokenizer& tokenizer,
                        const std::vector<std::pair<std::string, std::vector<std::string>>>& prompts,
                        const LocalizationOptions& options, int64_t max_text_len, const c10::Device& device,
                        float image_mean, float image_std, const std::string& overlay_dir = "");

}  // namespace medvlp::eval
