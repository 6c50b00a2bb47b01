#pragma once
// Large CPU buffers that are written once per sample (a CT volume, its resampled grid).
//
// glibc serves every allocation this size with a fresh mmap and returns it to the kernel on
// free, so each volume pays one page fault per 4 KiB it touches. On virtual machines a fault
// costs several microseconds (12 us measured on the CI machine: 0.5 s to first-touch 168 MB,
// three times longer than inflating the volume), which made page faults the largest cost of CT
// preprocessing. Mappings with transparent huge pages requested fault once per 2 MiB.
#include <cstddef>

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

namespace medvlp::core {

/// Uninitialized contiguous CPU tensor of `sizes`/`dtype` followed by at least `spare_bytes`
/// writable bytes (scratch space a decoder may use; freed with the tensor). Buffers of 4 MiB or
/// more live in their own anonymous mapping with MADV_HUGEPAGE (Linux; ignored where THP is off);
/// smaller ones come from at::empty.
at::Tensor empty_large(c10::IntArrayRef sizes, c10::ScalarType dtype, size_t spare_bytes = 0);

}  // namespace medvlp::core
