#pragma once
// A 3D scan with its geometry: what NIfTI files and CT series both become.

#include <array>
#include <string>

#include <ATen/Tensor.h>

namespace medvlp::io {

/// A 4x4 matrix, row-major.
using Affine = std::array<std::array<double, 4>, 4>;

/// A volume of voxel values with its placement in the patient.
/// `data` is [D,H,W] float (slowest axis first, NIfTI's k,j,i); `affine` maps the voxel index
/// (i,j,k,1) = (w,h,d,1) to world millimetres in RAS+ (NIfTI/nibabel convention; DICOM's LPS
/// positions are converted). `spacing` is the voxel size along (d,h,w), the affine's column norms.
struct Volume {
  at::Tensor data;
  Affine affine{};
  std::array<double, 3> spacing{1.0, 1.0, 1.0};
};

/// The identity with the given spacing on the diagonal (i along x, j along y, k along z).
Affine diagonal_affine(const std::array<double, 3>& spacing_dhw);

/// Voxel size along (d,h,w): the norms of the affine's k, j, i columns.
std::array<double, 3> affine_spacing(const Affine& affine);

/// The axis codes of an affine as nibabel's aff2axcodes writes them, e.g. "RAS" or "LPS":
/// for voxel axes i, j, k, the world direction each one points to most.
std::string axis_codes(const Affine& affine);

/// The volume with its voxel axes permuted and flipped so that i, j, k point to R, A, S as
/// closely as possible (nibabel's as_closest_canonical); the affine is updated to match, so
/// every voxel keeps its world position.
Volume reorient_to_ras(const Volume& volume);
/// The same, flipping in place when `volume` holds the only reference to contiguous float data
/// (what read_nifti returns): no second copy of a large scan.
Volume reorient_to_ras(Volume&& volume);

}  // namespace medvlp::io
