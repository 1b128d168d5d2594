// Plumbing shared by the CUDA RoI kernels (roi_align.cu, roi_pool.cu): checked RoI rows,
// per-batch RoI buckets, layout-aware indexing, and the deterministic gather backward.
//
// Deterministic backward (used when torch.use_deterministic_algorithms(True)): no atomics and
// nothing of size K x C x H x W. Each input-gradient element (n, c, h, w) is owned by one
// thread, which adds the contributions of the RoIs of batch element n in RoI order, and
// inside a RoI in the CPU kernel's order (bin, sample, corner): the sum order is fixed, so
// the result is bitwise reproducible (and follows csrc/cpu/roi_*.cpp term for term).
//   - RoIs are bucketed by batch index on the host (a counting sort, stable: RoI order is
//     kept inside a bucket) from the copy the batch-index check needs anyway.
//   - A block owns a work item (n, channel chunk, pixel tile). It walks the RoIs of bucket n
//     in slices of kThreads: each thread prepares one RoI (its geometry and a conservative
//     window of the pixels it can touch), the RoIs whose window meets the tile are compacted
//     in order into shared memory (ballot + warp prefix), then every thread adds, for each
//     of its (channel, pixel) elements, the compacted RoIs whose window holds the pixel.
//   - Cost: the geometry of every RoI of a batch element is evaluated once per work item
//     (N * chunks * tiles * K / N evaluations, cheap and spread over the block); the adds
//     are proportional to C * (pixels covered by each RoI's window, summed over RoIs) times
//     the per-pixel work of the op (a few binary searches over the sample grid plus the
//     contributing samples). Extra memory: the gradient in the accumulation type (as the
//     CPU kernel), K + N + 1 int64 for the buckets and, for roi_align's max mode only, the
//     argmax sample of every output element (int64, grad's shape K x C x ph x pw). Host
//     traffic: the K x 5 rows down (shared with the check) and the buckets up.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "cuda/launch.cuh"
#include "roi_host.h"

namespace detseg::cuda {

// RoI rows in the compute type of the data (float64 for float64, float32 otherwise), on the
// device, plus their batch indices checked on the host (checks.h, the words of the CPU
// kernels). The check costs one device->host copy of the K x 5 rows (a sync); torchvision
// reads out of bounds instead (pytorch/vision#4828).
struct RoiRows {
  at::Tensor dev;   // [K, 5] compute type, contiguous, on the device
  at::Tensor host;  // the same rows on the host
};

inline RoiRows roi_rows_checked(const char* op, const at::Tensor& rois, at::ScalarType data_type, int64_t batch_size) {
  RoiRows r;
  r.dev = roi_rows(rois, data_type);
  r.host = r.dev.cpu();
  AT_DISPATCH_FLOATING_TYPES(r.dev.scalar_type(), "detseg_roi_rows", [&] {
    checks::roi_batch_indices(op, r.host.const_data_ptr<scalar_t>(), r.host.size(0), batch_size);
  });
  return r;
}

// The device code indexes rows and columns with int (as the header math does).
inline void roi_check_map_size(const char* op, int64_t height, int64_t width) {
  TORCH_CHECK_VALUE(height <= std::numeric_limits<int>::max() && width <= std::numeric_limits<int>::max(), "detseg.",
                    op, ": height and width must be below 2^31 on CUDA, got (", height, ", ", width, ")");
}

// Batch buckets of checked host rows, on `device`: one int64 tensor [N + 1 + K] holding the
// bucket offsets (N + 1) then the RoI indices grouped by batch element, RoI order inside.
inline at::Tensor roi_batch_buckets(const at::Tensor& host_rows, int64_t batch_size, const at::Device& device) {
  const int64_t K = host_rows.size(0), N = batch_size;
  std::vector<int64_t> batch(static_cast<size_t>(K));
  AT_DISPATCH_FLOATING_TYPES(host_rows.scalar_type(), "detseg_roi_buckets", [&] {
    const scalar_t* p = host_rows.const_data_ptr<scalar_t>();
    for (int64_t k = 0; k < K; ++k) batch[k] = static_cast<int64_t>(p[5 * k]);
  });
  at::Tensor out = at::empty({N + 1 + K}, at::TensorOptions().dtype(at::kLong));
  int64_t* off = out.mutable_data_ptr<int64_t>();
  int64_t* order = off + N + 1;
  for (int64_t b = 0; b <= N; ++b) off[b] = 0;
  for (int64_t k = 0; k < K; ++k) ++off[batch[k] + 1];
  for (int64_t b = 0; b < N; ++b) off[b + 1] += off[b];
  std::vector<int64_t> fill(off, off + N);
  for (int64_t k = 0; k < K; ++k) order[fill[batch[k]]++] = k;
  return out.to(device);
}

// Element offset of (k, c, p, q) / (n, c, h, w) in a 4-d tensor contiguous in NCHW or NHWC.
struct Strides4 {
  int64_t s0, s1, s2, s3;
  __host__ __device__ int64_t at(int64_t i0, int64_t i1, int64_t i2, int64_t i3) const {
    return i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3;
  }
};

inline Strides4 strides4(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

// Linear index in memory order -> (i0, i1, i2, i3) for a [D0, D1, D2, D3] tensor, NCHW or
// channels-last (memory order i0, i2, i3, i1).
__device__ __forceinline__ void unravel4(int64_t idx, int64_t d1, int64_t d2, int64_t d3, bool cl, int64_t& i0,
                                         int64_t& i1, int64_t& i2, int64_t& i3) {
  if (cl) {
    i1 = idx % d1;
    idx /= d1;
    i3 = idx % d3;
    idx /= d3;
    i2 = idx % d2;
    i0 = idx / d2;
  } else {
    i3 = idx % d3;
    idx /= d3;
    i2 = idx % d2;
    idx /= d2;
    i1 = idx % d1;
    i0 = idx / d1;
  }
}

inline at::Tensor roi_grad_buffer(const at::Tensor& grad, int64_t n, int64_t c, int64_t h, int64_t w, bool cl) {
  return roi_grad_alloc(grad, n, c, h, w, roi_memory_format(cl)).zero_();
}

// What every CUDA RoI backward does once its own checks have passed: the zeroed gradient
// buffer, the RoI rows (batch indices checked on the host), grad in the kernels' layout, the
// deterministic flag, then `launch(scalar_t* tag, RoiLaunch&)` for the dtype of grad, which
// runs the atomic scatter or, under torch.use_deterministic_algorithms, the gather.
struct RoiLaunch {
  at::Tensor g;       // grad, contiguous in the kernels' layout
  const RoiRows& r;
  at::Tensor& gin;    // the compute-type gradient being built
  cudaStream_t stream;
  bool deterministic;
};

template <class Launch>
at::Tensor roi_backward_cuda(const char* op, const at::Tensor& grad, const at::Tensor& rois, int64_t N, int64_t C,
                             int64_t H, int64_t W, bool cl, bool nothing_to_do, Launch&& launch) {
  DeviceScope scope(grad);
  at::Tensor gin = roi_grad_buffer(grad, N, C, H, W, cl);
  const RoiRows r = roi_rows_checked(op, rois, grad.scalar_type(), N);
  if (nothing_to_do) return roi_grad_result(gin, grad);
  RoiLaunch l{grad.contiguous(roi_memory_format(cl)), r, gin, scope.stream,
              at::globalContext().deterministicAlgorithms()};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "detseg_roi_backward_cuda",
                                  [&] { launch(static_cast<scalar_t*>(nullptr), l); });
  return roi_grad_result(gin, grad);
}

// ---------------------------------------------------------------- deterministic gather

// Inclusive pixel window [y0, y1] x [x0, x1] a RoI can touch (empty when y0 > y1 or x0 > x1).
struct PixelWindow {
  int y0, y1, x0, x1;
  __device__ bool holds(int h, int w) const { return h >= y0 && h <= y1 && w >= x0 && w <= x1; }
  __device__ bool meets(int ty0, int ty1, int tx0, int tx1) const {
    return y0 <= y1 && x0 <= x1 && y0 <= ty1 && y1 >= ty0 && x0 <= tx1 && x1 >= tx0;
  }
};

// Work decomposition of the gather: items (n, channel chunk, tile of tile_h x tile_w pixels).
// Inside an item the elements run channel-fastest for a channels-last gradient, column-
// fastest otherwise, so a warp writes contiguous memory.
struct GatherPlan {
  int64_t N, C, H, W;
  int tile_h, tile_w, chan;
  int64_t tiles_h, tiles_w, chunks;
  bool cl;
  __host__ __device__ int64_t items() const { return N * chunks * tiles_h * tiles_w; }
};

inline GatherPlan gather_plan(int64_t N, int64_t C, int64_t H, int64_t W, bool cl) {
  GatherPlan g{N, C, H, W, 8, cl ? 8 : 32, cl ? 32 : 8, 0, 0, 0, cl};
  g.tiles_h = ceil_div(H, g.tile_h);
  g.tiles_w = ceil_div(W, g.tile_w);
  g.chunks = ceil_div(C, g.chan);
  return g;
}

// Op interface (one per backward op):
//   using acc_t; struct Entry { int64_t k; PixelWindow win; ... } (trivially constructible);
//   __device__ void prepare(int64_t k, Entry& e) const;  fills e (k, window, geometry)
//   __device__ void add(const Entry& e, int64_t n, int64_t c, int h, int w, acc_t& acc) const;
//     adds RoI e.k's contributions to gradient element (n, c, h, w) in the CPU kernel's order.
// gin: [N, C, H, W] in acc_t, zeroed, NCHW or channels-last as plan.cl.
template <typename Op>
__global__ void __launch_bounds__(kThreads)
    roi_gather_kernel(Op op, const int64_t* __restrict__ buckets, GatherPlan plan,
                      typename Op::acc_t* __restrict__ gin) {
  using acc_t = typename Op::acc_t;
  using Entry = typename Op::Entry;
  constexpr int kWarps = kThreads / 32;
  __shared__ Entry entries[kThreads];
  __shared__ int warp_base[kWarps + 1];
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int64_t tiles = plan.tiles_h * plan.tiles_w, per_n = plan.chunks * tiles;
  const int64_t* order = buckets + plan.N + 1;
  const int per_item = plan.chan * plan.tile_h * plan.tile_w;
  for (int64_t item = blockIdx.x; item < plan.items(); item += gridDim.x) {
    const int64_t n = item / per_n, rem = item % per_n;
    const int64_t c0 = rem / tiles * plan.chan, tile = rem % tiles;
    const int ty0 = static_cast<int>(tile / plan.tiles_w * plan.tile_h);
    const int tx0 = static_cast<int>(tile % plan.tiles_w * plan.tile_w);
    const int ty1 = ty0 + plan.tile_h - 1, tx1 = tx0 + plan.tile_w - 1;
    const int64_t r0 = buckets[n], r1 = buckets[n + 1];
    for (int64_t base = r0; base < r1; base += kThreads) {  // block-uniform bounds
      Entry e;
      bool hit = false;
      if (base + t < r1) {
        op.prepare(order[base + t], e);
        hit = e.win.meets(ty0, ty1, tx0, tx1);
      }
      const unsigned ballot = __ballot_sync(0xffffffffu, hit);
      if (lane == 0) warp_base[warp + 1] = __popc(ballot);
      __syncthreads();
      if (t == 0) {
        warp_base[0] = 0;
        for (int i = 1; i <= kWarps; ++i) warp_base[i] += warp_base[i - 1];
      }
      __syncthreads();
      if (hit) entries[warp_base[warp] + __popc(ballot & ((1u << lane) - 1u))] = e;
      __syncthreads();
      const int m = warp_base[kWarps];
      for (int e_i = m > 0 ? t : per_item; e_i < per_item; e_i += kThreads) {
        int cc, yy, xx;
        if (plan.cl) {
          cc = e_i % plan.chan;
          xx = e_i / plan.chan % plan.tile_w;
          yy = e_i / (plan.chan * plan.tile_w);
        } else {
          xx = e_i % plan.tile_w;
          yy = e_i / plan.tile_w % plan.tile_h;
          cc = e_i / (plan.tile_w * plan.tile_h);
        }
        const int64_t c = c0 + cc;
        const int h = ty0 + yy, w = tx0 + xx;
        if (c >= plan.C || h >= plan.H || w >= plan.W) continue;
        const int64_t gi =
            plan.cl ? ((n * plan.H + h) * plan.W + w) * plan.C + c : ((n * plan.C + c) * plan.H + h) * plan.W + w;
        acc_t acc = gin[gi];
        for (int j = 0; j < m; ++j) {
          if (entries[j].win.holds(h, w)) op.add(entries[j], n, c, h, w, acc);
        }
        gin[gi] = acc;
      }
      __syncthreads();  // entries and warp_base are rewritten by the next slice
    }
  }
}

template <typename Op>
void roi_gather(const Op& op, const at::Tensor& buckets, const GatherPlan& plan, at::Tensor& gin, cudaStream_t stream) {
  if (plan.items() == 0) return;
  roi_gather_kernel<Op><<<grid_1d(plan.items(), 1), kThreads, 0, stream>>>(
      op, buckets.const_data_ptr<int64_t>(), plan, gin.mutable_data_ptr<typename Op::acc_t>());
  DETSEG_CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------- position-sensitive host side

// ps_roi_align / ps_roi_pool forward once their checks have passed: the output and the
// channel map [K, Cout, ph, pw], the checked RoI rows, then the op's kernel for the dtype of
// input, `kernel_of(scalar_t* tag)`, one thread per output element over NCHW input:
// kernel(x, rows, total, C, Cout, args, scale, out, map).
template <class Args, class KernelOf>
std::tuple<at::Tensor, at::Tensor> ps_roi_forward_cuda(const char* op, const at::Tensor& input, const at::Tensor& rois,
                                                       int64_t N, int64_t C, int64_t Cout, int64_t ph, int64_t pw,
                                                       double spatial_scale, const Args& a, KernelOf&& kernel_of) {
  DeviceScope scope(input);
  const int64_t K = rois.size(0);
  at::Tensor out = at::empty({K, Cout, ph, pw}, input.options());
  at::Tensor map = at::empty({K, Cout, ph, pw}, input.options().dtype(at::kLong));
  const RoiRows r = roi_rows_checked(op, rois, input.scalar_type(), N);
  const int64_t total = out.numel();
  if (total == 0) return {out, map};
  const at::Tensor x = input.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "detseg_ps_roi_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    kernel_of(static_cast<scalar_t*>(nullptr))<<<grid_1d(total), kThreads, 0, scope.stream>>>(
        x.const_data_ptr<scalar_t>(), r.dev.const_data_ptr<acc_t>(), total, C, Cout, a,
        static_cast<acc_t>(spatial_scale), out.mutable_data_ptr<scalar_t>(), map.mutable_data_ptr<int64_t>());
    DETSEG_CUDA_LAUNCH_CHECK();
  });
  return {out, map};
}

// ps_roi_align / ps_roi_pool backward (NCHW) once their checks have passed: the scattering
// kernel `scatter_of(scalar_t* tag)`, one thread per grad element,
// scatter(grad, rows, total, C, Cout, args, scale, gin), or under
// torch.use_deterministic_algorithms the gather of the Op that
// `gather_op(scalar_t* tag, const acc_t* rows, const scalar_t* grad, Strides4, acc_t scale)` builds.
template <class Args, class ScatterOf, class GatherOp>
at::Tensor ps_roi_backward_cuda(const char* op, const at::Tensor& grad, const at::Tensor& rois, int64_t N, int64_t C,
                                int64_t H, int64_t W, int64_t Cout, bool nothing_to_do, double spatial_scale,
                                const Args& a, ScatterOf&& scatter_of, GatherOp&& gather_op) {
  return roi_backward_cuda(op, grad, rois, N, C, H, W, false, nothing_to_do, [&](auto* tag, RoiLaunch& l) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t scale = static_cast<acc_t>(spatial_scale);
    const acc_t* rp = l.r.dev.const_data_ptr<acc_t>();
    const scalar_t* g = l.g.const_data_ptr<scalar_t>();
    if (!l.deterministic) {
      const int64_t total = l.g.numel();
      scatter_of(tag)<<<grid_1d(total), kThreads, 0, l.stream>>>(g, rp, total, C, Cout, a, scale,
                                                                  l.gin.mutable_data_ptr<acc_t>());
      DETSEG_CUDA_LAUNCH_CHECK();
      return;
    }
    roi_gather(gather_op(tag, rp, g, strides4(l.g), scale), roi_batch_buckets(l.r.host, N, grad.device()),
               gather_plan(N, C, H, W, false), l.gin, l.stream);
  });
}

}  // namespace detseg::cuda
