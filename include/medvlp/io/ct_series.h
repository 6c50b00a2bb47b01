#pragma once
// A folder of CT slices -> one Hounsfield-unit volume.

#include <string>

#include "medvlp/io/volume.h"

namespace medvlp::io {

/// How strictly a slice folder must form one regular series.
struct SeriesOptions {
  /// Which series to read when the folder holds several; empty: the folder must hold one.
  std::string series_uid;
  /// Largest relative deviation of a slice step from the median step before the series counts
  /// as having missing slices or inconsistent spacing.
  double spacing_tolerance = 0.1;
  /// Accept missing slices and uneven spacing (the affine then uses the mean step; a warning is logged).
  bool allow_irregular = false;
  /// Gantry tilt (each slice displaced within its plane from the last, so the stack is sheared):
  /// resample the slices onto one orthogonal grid, widened to hold them all, as dcm2niix does; the
  /// affine then has no shear. false keeps the slices as stored, with the shear in the affine.
  bool correct_tilt = true;
};

/// Reads every DICOM file of one series in `dir` (non-DICOM files are skipped) into [D,H,W] HU,
/// slices ordered by their position along the slice normal (not by file name or instance number).
/// The affine comes from ImagePositionPatient/ImageOrientationPatient/PixelSpacing and the slice
/// positions, converted from DICOM LPS to RAS. Mixed series, duplicate positions, missing slices,
/// inconsistent spacing or orientation and differing slice sizes throw medvlp::Error naming the folder.
/// A tilted series is corrected (logged with its angle) unless `options.correct_tilt` is false.
Volume read_ct_series(const std::string& dir, const SeriesOptions& options = {});

}  // namespace medvlp::io
