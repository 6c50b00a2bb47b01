#pragma once
// Large CPU buffers that are written once per sample (a CT volume, its resampled grid).
//
// glibc serves every allocation this size with a fresh mmap and returns it to the kernel on
// free, so each volume pays one page fault per 4 KiB it touches. On virtual machines a fault
// costs several microseconds (10-12 us on the CI machine, bench/volume-bench's page_fault_us:
// 0.5 s to first-touch 168 MB, longer than inflating the volume), which made page faults the
// largest cost of CT preprocessing. Mappings with transparent huge pages requested fault once
// per 2 MiB.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

namespace medvlp::core {

/// Uninitialized contiguous CPU tensor of `sizes`/`dtype` followed by at least `spare_bytes`
/// writable bytes (scratch space a decoder may use; freed with the tensor). Buffers of 4 MiB or
/// more live in their own anonymous mapping with MADV_HUGEPAGE (Linux; ignored where THP is off);
/// smaller ones come from at::empty.
at::Tensor empty_large(c10::IntArrayRef sizes, c10::ScalarType dtype, size_t spare_bytes = 0);

/// Widens n stored values of type Word to floats, in place: the stored bytes lie in the same
/// buffer as `dst`, starting at or after dst + n * (4 - sizeof(Word)) bytes (a decoder reads them
/// into the back of an empty_large buffer). Each block is copied out before its floats are
/// written, and the writes never reach bytes not yet read. `convert(Word) -> float`.
template <typename Word, typename Convert>
void widen_in_place(const unsigned char* src, float* dst, int64_t n, Convert convert) {
  constexpr int64_t kBlock = 2048;
  Word block[kBlock];
  for (int64_t i = 0; i < n; i += kBlock) {
    const int64_t m = std::min(kBlock, n - i);
    std::memcpy(block, src + i * static_cast<int64_t>(sizeof(Word)), static_cast<size_t>(m) * sizeof(Word));
    float* out = dst + i;
    if (m == kBlock) {
      // A constant trip count lets -O2's cheap vectorizer take the loop.
      for (int64_t j = 0; j < kBlock; ++j) out[j] = convert(block[j]);
    } else {
      for (int64_t j = 0; j < m; ++j) out[j] = convert(block[j]);
    }
  }
}

}  // namespace medvlp::core
