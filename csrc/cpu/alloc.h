// Large fresh outputs on the CPU: a new 100 MB tensor costs more in page faults (4 KiB each,
// zero-filled by the kernel) than many kernels' arithmetic. Advising huge pages cuts the
// faults 512x (what torch does under THP_MEM_ALLOC_ENABLE=1); the first write then happens in
// the kernel's parallel loop, so the zero-filling is split across threads too.
#pragma once

#include <ATen/ATen.h>
#include <sys/mman.h>

#include <cstdint>

namespace detseg::cpu {

// Measured (5000 x 5000 float32, 1 thread): 58 ms with 4 KiB faults, 17 ms advised. Below
// 8 MiB glibc usually recycles heap memory that faults no more.
inline const at::Tensor& advise_huge_pages(const at::Tensor& t) {
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const size_t bytes = t.nbytes();
  if (bytes >= (size_t(8) << 20)) {
    const auto p = reinterpret_cast<uintptr_t>(t.data_ptr());
    const uintptr_t begin = (p + kHuge - 1) & ~(kHuge - 1);
    const uintptr_t end = (p + bytes) & ~(kHuge - 1);
    // Advisory only: failure (no THP support) just leaves 4 KiB pages.
    if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
  return t;
}

// Outputs of at least this many bytes come from the pool below.
constexpr size_t kPoolMinBytes = size_t(8) << 20;

// A large output from detseg's pool of CPU blocks (csrc/cpu/output_pool.cpp): a block freed by
// its tensor is kept (up to DETSEG_CPU_CACHE_MB, default 1024; 0 keeps none) and handed to the
// next output of the same rounded size, so a loop over same-shaped batches stops paying page
// faults and the kernel's zero-filling of fresh pages (and, with THP's defrag=madvise, the
// compaction stalls of huge-page faults: 1-45 ms per call measured on the U-Net 512 output).
// New blocks are 2 MiB aligned with huge pages advised. Smaller outputs come from torch's
// allocator. The storage is resizable, like at::empty's. Contents are uninitialised.
at::Tensor empty_pooled(at::IntArrayRef sizes, const at::TensorOptions& options);
size_t pool_cached_bytes();  // bytes of freed blocks kept for reuse
void pool_empty();           // frees them

// A fresh contiguous output of `sizes` and `dtype`, huge pages advised.
inline at::Tensor empty_output(at::IntArrayRef sizes, at::ScalarType dtype) {
  return advise_huge_pages(at::empty(sizes, at::TensorOptions().dtype(dtype)));
}

}  // namespace detseg::cpu
