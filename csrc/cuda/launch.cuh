// Launch plumbing shared by the CUDA kernels: grid sizing, grid-stride loops over int64
// index spaces, the per-call device guard and stream, and the post-launch error check.
//
// Only <c10/cuda/CUDAStream.h> / <c10/cuda/CUDAGuard.h> / <c10/cuda/CUDAException.h> are
// used: ATen's CUDAContext.h pulls in cuBLAS headers that a CPU-only torch does not ship,
// and nothing here needs them.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>

namespace detseg::cuda {

constexpr int kThreads = 256;
// Grid-stride kernels need no more blocks than keep every SM busy; capping the grid keeps
// the block count inside the launch limits for any element count (int64 sizes).
constexpr int64_t kMaxBlocks = 1 << 16;
// gridDim.y and gridDim.z are limited to 65535.
constexpr int64_t kMaxGridY = 65535;

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// 1-D grid for a grid-stride loop over n items with `threads` threads per block (n > 0).
inline unsigned grid_1d(int64_t n, int threads = kThreads, int64_t max_blocks = kMaxBlocks) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(ceil_div(n, threads), max_blocks)));
}

// Calls f(i) for every i in [0, n) assigned to this thread. The index is int64 because
// products of sizes (N * M matrices, N * ceil(N / 64) masks) pass 2^31.
template <typename F>
__device__ __forceinline__ void grid_stride(int64_t n, F&& f) {
  const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    f(i);
  }
}

// Kernels run on the device of their inputs and on torch's current stream for it, so they
// order correctly with the ATen ops (sort, cumsum, masked_select) issued around them.
struct DeviceScope {
  c10::cuda::CUDAGuard guard;  // constructed first: the stream lookup below needs the device
  cudaStream_t stream;
  explicit DeviceScope(const at::Tensor& t)
      : guard(t.device()), stream(c10::cuda::getCurrentCUDAStream().stream()) {}
};

}  // namespace detseg::cuda

// After every <<<...>>>: surfaces bad launch configurations at the call site (with file
// and line) instead of at the next unrelated CUDA call.
#define DETSEG_CUDA_LAUNCH_CHECK() C10_CUDA_KERNEL_LAUNCH_CHECK()
