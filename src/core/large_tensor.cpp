#include "large_tensor.h"

#include <ATen/ATen.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <cstdint>

#include "medvlp/core/error.h"

namespace medvlp::core {

at::Tensor empty_large(c10::IntArrayRef sizes, c10::ScalarType dtype, size_t spare_bytes) {
  int64_t numel = 1;
  for (int64_t s : sizes) {
    MEDVLP_CHECK(s >= 0, "empty_large: negative size in ", sizes);
    numel *= s;
  }
  const size_t bytes = static_cast<size_t>(numel) * c10::elementSize(dtype);
  constexpr size_t kHuge = size_t{2} << 20;
#if defined(__linux__)
  if (bytes + spare_bytes >= 2 * kHuge) {
    // One extra huge page of address space so the data can start on a 2 MiB boundary (THP only
    // backs aligned 2 MiB ranges); unused address space costs nothing.
    const size_t length = bytes + spare_bytes + kHuge;
    void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) throw Error("out of memory: cannot map " + std::to_string(length >> 20) + " MiB");
    const auto aligned = (reinterpret_cast<uintptr_t>(base) + kHuge - 1) & ~static_cast<uintptr_t>(kHuge - 1);
    void* data = reinterpret_cast<void*>(aligned);
    madvise(data, length - (aligned - reinterpret_cast<uintptr_t>(base)), MADV_HUGEPAGE);
    return at::from_blob(
        data, sizes, [base, length](void*) { munmap(base, length); }, at::TensorOptions().dtype(dtype));
  }
#endif
  if (spare_bytes == 0) return at::empty(sizes, at::TensorOptions().dtype(dtype));
  // Small buffer with scratch space: a byte tensor owns the memory, the result aliases its front.
  at::Tensor storage = at::empty({static_cast<int64_t>(bytes + spare_bytes)}, at::kByte);
  void* data = storage.data_ptr();
  return at::from_blob(
      data, sizes, [storage](void*) mutable { storage.reset(); }, at::TensorOptions().dtype(dtype));
}

}  // namespace medvlp::core
