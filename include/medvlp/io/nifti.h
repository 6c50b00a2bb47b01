#pragma once
// NIfTI-1/NIfTI-2 volumes (.nii, .nii.gz) through nifticlib.

#include <string>

#include "medvlp/io/volume.h"

namespace medvlp::io {

/// Reads a 3D NIfTI volume (a 4D file with one time point is accepted) as float values after
/// scl_slope/scl_inter, with nibabel's affine: the sform when sform_code > 0, else the qform when
/// qform_code > 0, else the pixdim-only base affine centred on the volume. Throws medvlp::Error
/// naming the file on a missing, truncated or unsupported file.
Volume read_nifti(const std::string& path);

/// Writes `volume` as a NIfTI-1 file (.nii or .nii.gz by the name) with sform and qform set from
/// its affine (code 1, scanner anatomical). `datatype` is "float32" or "int16" (values rounded;
/// for CT in Hounsfield units).
void write_nifti(const std::string& path, const Volume& volume, const std::string& datatype = "float32");

}  // namespace medvlp::io
