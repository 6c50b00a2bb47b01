#pragma once
// DICOM files through DCMTK: pixel data of every transfer syntax DCMTK's free toolkit decodes,
// modality LUT to float, VOI window, geometry and key metadata.

#include <array>
#include <optional>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace medvlp::io {

/// What one DICOM file says about its image (no pixel data).
struct DicomInfo {
  std::string path;
  std::string transfer_syntax;       // UID, e.g. 1.2.840.10008.1.2.4.70
  std::string transfer_syntax_name;  // DCMTK's name, e.g. "JPEG Lossless, Non-hierarchical, 1st Order Prediction"
  std::string modality, photometric, view_position;
  std::string patient_id, study_uid, series_uid, sop_uid;
  int64_t rows = 0, columns = 0, frames = 1, samples_per_pixel = 1;
  int64_t bits_allocated = 0, bits_stored = 0;
  bool is_signed = false;
  double rescale_slope = 1.0, rescale_intercept = 0.0;
  bool has_modality_lut_sequence = false;
  /// (row spacing, column spacing) in mm from PixelSpacing, else ImagerPixelSpacing; empty when absent.
  std::optional<std::array<double, 2>> pixel_spacing;
  std::vector<double> window_center, window_width;
  std::string voi_lut_function;      // LINEAR (default), LINEAR_EXACT or SIGMOID
  // Slice geometry (CT/MR), in DICOM patient coordinates (LPS, mm).
  std::optional<std::array<double, 3>> image_position;
  std::optional<std::array<double, 6>> image_orientation;  // row direction cosines, then column
  std::optional<double> slice_thickness;
  int64_t instance_number = 0;
  /// The dataset is encoded with implicit VR although the meta header names an explicit-VR
  /// transfer syntax (a writer's error some archives carry); read as pydicom reads it.
  bool implicit_vr_under_explicit_meta = false;
};

/// A decoded DICOM image. `pixels` is [F,C,H,W] float: F frames, C samples per pixel (1 for
/// MONOCHROME1/2, 3 for RGB), holding modality-LUT output (for CT: Hounsfield units) exactly as
/// pydicom's apply_modality_lut gives it. MONOCHROME1 is not inverted here (see to_display).
struct DicomImage {
  DicomInfo info;
  at::Tensor pixels;
};

/// Reads the header only (fast; no pixel data decoded). Throws medvlp::Error naming the file.
DicomInfo read_dicom_info(const std::string& path);

/// Reads and decodes a DICOM file: uncompressed (implicit/explicit VR, little/big endian),
/// deflated, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000 and RLE. Syntaxes without a
/// decoder throw a medvlp::Error naming the file and the transfer syntax.
DicomImage read_dicom(const std::string& path);

/// How modality values become a display image in [0,1].
struct VoiOptions {
  /// A window to use instead of the file's; when unset the file's first window is used, and
  /// when the file has none, the image's own min..max.
  std::optional<double> center, width;
  /// MONOCHROME1 stores bright as low values; inverting makes every output "high = bright".
  bool invert_monochrome1 = true;
};

/// Applies the VOI window (DICOM PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT or SIGMOID) to one
/// frame of `image` and returns it as [C,H,W] float in [0,1].
at::Tensor to_display(const DicomImage& image, const VoiOptions& options = {}, int64_t frame = 0);

/// True for a file that starts with the DICOM preamble ("DICM" at byte 128).
bool looks_like_dicom(const std::string& path);

}  // namespace medvlp::io

namespace medvlp::io {

/// What write_dicom puts into a file: one MONOCHROME2 frame stored as 16-bit signed integers,
/// explicit VR little endian, with the stated rescale and geometry.
struct DicomWriteSpec {
  at::Tensor values;  // [H,W] modality values (e.g. HU); stored as round((v - intercept) / slope)
  double rescale_slope = 1.0, rescale_intercept = 0.0;
  std::string modality = "CT";
  std::string patient_id = "PHANTOM", study_uid, series_uid, sop_uid;  // empty UIDs are generated
  std::array<double, 2> pixel_spacing{1.0, 1.0};                       // row, column (mm)
  std::optional<std::array<double, 3>> image_position;                 // LPS mm
  std::array<double, 6> image_orientation{1, 0, 0, 0, 1, 0};
  std::optional<double> slice_thickness;
  int64_t instance_number = 1;
  std::optional<double> window_center, window_width;
};

/// Writes a single-frame DICOM file (written to a temporary name, then renamed).
void write_dicom(const std::string& path, const DicomWriteSpec& spec);

}  // namespace medvlp::io
