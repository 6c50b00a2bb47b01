#pragma once
// NIfTI-1/NIfTI-2 volumes (.nii, .nii.gz) through nifticlib.

#include <string>

#include "medvlp/io/volume.h"

namespace medvlp::io {

/// Reads a 3D NIfTI volume (a 4D file with one time point is accepted) as float values after
/// scl_slope/scl_inter, with nibabel's affine: the sform when sform_code > 0, else the qform when
/// qform_code > 0, else the pixdim-only base affine centred on the volume. Throws medvlp::Error
/// naming the file on a missing, truncated or unsupported file. With `all_volumes`, a 4D to 7D file
/// reads as data [T,D,H,W] (dimensions 4 and up folded into T, in file order); without it such a
/// file is refused.
Volume read_nifti(const std::string& path, bool all_volumes = false);

/// Writes `volume` as a NIfTI-1 file (.nii or .nii.gz by the name) with sform and qform set from
/// its affine (code 1, scanner anatomical). `datatype` is "float32" or "int16" (values rounded;
/// for CT in Hounsfield units). With scl_slope/scl_inter other than 1/0 the file stores
/// (value - scl_inter) / scl_slope and its header says so, as scanners' converters write CT.
void write_nifti(const std::string& path, const Volume& volume, const std::string& datatype = "float32",
                 double scl_slope = 1.0, double scl_inter = 0.0);

/// The header file that `read_nifti` takes for `path`: the path itself when it names a .nii, .nii.gz,
/// .hdr or .hdr.gz file, the .hdr (or .hdr.gz) beside an .img/.img.gz image file of a pair, else ""
/// (not a NIfTI or ANALYZE name). Decides by name only; nothing is read.
std::string nifti_header_of(const std::string& path);

/// Whether the file's header rescales its stored values: scl_slope is valid (finite, not 0, as
/// nibabel reads it) and the pair is not the identity (1, 0).
bool nifti_rescales(const std::string& path);

}  // namespace medvlp::io
