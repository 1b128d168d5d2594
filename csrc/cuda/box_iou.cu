// CUDA kernels of the IoU family: box_iou_matrix (iou / giou / diou / ciou), its
// backward, and the paired losses with their backward. The formulas live in
// csrc/include/detseg/boxes.h (pair_iou / pair_iou_backward); this file only iterates,
// moves memory and launches. Every dtype but float64 is computed in float32 and rounded
// once at the output, as python/detseg/reference/boxes.py does.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "cuda/boxes.cuh"
#include "cuda/launch.cuh"
#include "detseg/boxes.h"

namespace detseg::cuda {
namespace {

// ------------------------------------------------------------------ IoU family: dispatch

template <IouKind K>
using KindC = std::integral_constant<IouKind, K>;

template <typename F>
void with_kind(IouKind kind, F&& f) {
  switch (kind) {
    case IouKind::kIoU: f(KindC<IouKind::kIoU>{}); break;
    case IouKind::kGIoU: f(KindC<IouKind::kGIoU>{}); break;
    case IouKind::kDIoU: f(KindC<IouKind::kDIoU>{}); break;
    case IouKind::kCIoU: f(KindC<IouKind::kCIoU>{}); break;
  }
}

// Threads per block along the M (column) axis for the matrix kernels: a power of two
// covering M up to 256, at least a warp; the rest of the 256 threads take more rows.
int column_threads(int64_t m) {
  int t = 32;
  while (t < 256 && t < m) t *= 2;
  return t;
}

// ------------------------------------------------------------------ box_iou_matrix

// out[b, i, j] = pair_iou(boxes1[b, i], boxes2[b, j]).
// Grid: block (tx, ty) with tx * ty = 256; threadIdx.x strides the M columns (coalesced
// reads of boxes2 and writes of out), blockIdx.y * ty + threadIdx.y strides the B * N rows
// (each row box loaded once per thread and reused across its columns). No shared memory.
template <typename scalar_t, IouKind K>
__global__ void iou_matrix_kernel(const scalar_t* __restrict__ b1, const scalar_t* __restrict__ b2, int64_t rows,
                                  int64_t n, int64_t m, at::opmath_type<scalar_t> eps,
                                  at::opmath_type<scalar_t>* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t row_step = static_cast<int64_t>(gridDim.y) * blockDim.y;
  const int64_t col_step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t row = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; row < rows; row += row_step) {
    const Box<acc_t> a = load_box<acc_t>(b1 + 4 * row);
    const scalar_t* b2_batch = b2 + 4 * m * (row / n);
    acc_t* out_row = out + m * row;
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < m; j += col_step) {
      out_row[j] = pair_iou<K, IouForm::kMatrix>(a, load_box<acc_t>(b2_batch + 4 * j), eps);
    }
  }
}

at::Tensor box_iou_matrix_cuda(const at::Tensor& boxes1, const at::Tensor& boxes2, std::string_view kind_s,
                               double eps) {
  checks::iou_matrix(boxes1, boxes2);
  const IouKind kind = checks::iou_kind("box_iou_matrix", kind_s);
  DeviceScope scope(boxes1);
  const at::Tensor b1 = boxes1.contiguous(), b2 = boxes2.contiguous();
  const bool batched = b1.dim() == 3;
  const int64_t batch = batched ? b1.size(0) : 1;
  const int64_t n = b1.size(-2), m = b2.size(-2);
  const auto shape = batched ? std::vector<int64_t>{batch, n, m} : std::vector<int64_t>{n, m};
  at::Tensor out = at::empty(shape, b1.options().dtype(compute_type(b1)));
  const int64_t rows = batch * n;
  if (rows == 0 || m == 0) return out;
  const int tx = column_threads(m), ty = kThreads / tx;
  const dim3 block(tx, ty);
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(ceil_div(m, tx), kMaxBlocks)),
                  static_cast<unsigned>(std::min<int64_t>(ceil_div(rows, ty), kMaxGridY)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b1.scalar_type(), "detseg.box_iou_matrix", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    with_kind(kind, [&](auto kc) {
      iou_matrix_kernel<scalar_t, decltype(kc)::value><<<grid, block, 0, scope.stream>>>(
          b1.const_data_ptr<scalar_t>(), b2.const_data_ptr<scalar_t>(), rows, n, m, static_cast<acc_t>(eps),
          out.mutable_data_ptr<acc_t>());
      DETSEG_CUDA_LAUNCH_CHECK();
    });
  });
  return out;
}

// ------------------------------------------------------------------ _box_iou_matrix_backward
// Deterministic without atomics: the terms of every output gradient are split into a
// number of chunks that depends only on the shapes; each chunk is summed in a fixed order
// by one warp (boxes1) or one block column (boxes2) into its own slot of a partial buffer,
// and a last kernel adds the chunks in chunk order. No result depends on scheduling, so
// torch.use_deterministic_algorithms holds trivially and repeated runs are bitwise equal.
// The chunking keeps the GPU busy for the skewed shapes of detection (a few ground-truth
// boxes against 10^5 anchors, or the reverse).

constexpr int kGradWarps = kThreads / 32;  // warps per block in both partial kernels
constexpr int kGrad2Cols = 32;             // boxes2 columns per block (one per lane)

// Chunks of the reduced axis (length len) for `items` independent outputs: enough chunks
// for ~`target` parallel workers, none shorter than `min_len` terms.
int64_t grad_chunks(int64_t items, int64_t len, int64_t target, int64_t min_len) {
  const int64_t want = ceil_div(target, std::max<int64_t>(items, 1));
  const int64_t cap = std::max<int64_t>(1, ceil_div(len, min_len));
  return std::max<int64_t>(1, std::min(want, cap));
}

// partial[c, b, i] = sum over j in chunk c of d out[b, i, j] / d boxes1[b, i] * grad[b, i, j].
// Grid: 1-D, 8 warps per block, one warp per (chunk, row) work item, grid-stride over the
// chunks * B * N items. Lanes stride the chunk's columns (coalesced grad / boxes2 reads),
// then a fixed shuffle tree sums the lanes and lane 0 writes. The work item depends only
// on the warp, so every lane of a warp runs the same iterations: full-mask shuffles are legal.
template <typename scalar_t, IouKind K>
__global__ void iou_matrix_grad1_kernel(const at::opmath_type<scalar_t>* __restrict__ grad,
                                        const scalar_t* __restrict__ b1, const scalar_t* __restrict__ b2,
                                        int64_t rows, int64_t n, int64_t m, int64_t chunks, int64_t chunk_len,
                                        at::opmath_type<scalar_t> eps, at::opmath_type<scalar_t>* __restrict__ partial) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x & 31;
  const int warps = blockDim.x >> 5;
  const int64_t items = chunks * rows;
  const int64_t step = static_cast<int64_t>(gridDim.x) * warps;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * warps + (threadIdx.x >> 5); item < items; item += step) {
    const int64_t chunk = item / rows, row = item % rows;
    const int64_t j_end = std::min(m, (chunk + 1) * chunk_len);
    const Box<acc_t> a = load_box<acc_t>(b1 + 4 * row);
    const scalar_t* b2_batch = b2 + 4 * m * (row / n);
    const acc_t* grad_row = grad + m * row;
    acc_t s[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
    for (int64_t j = chunk * chunk_len + lane; j < j_end; j += 32) {
      acc_t ga[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
      acc_t gb[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
      pair_iou_backward<K, IouForm::kMatrix>(a, load_box<acc_t>(b2_batch + 4 * j), eps, grad_row[j], ga, gb);
#pragma unroll
      for (int c = 0; c < 4; ++c) s[c] += ga[c];
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
#pragma unroll
      for (int c = 0; c < 4; ++c) s[c] += __shfl_down_sync(0xffffffffu, s[c], off);
    }
    if (lane == 0) {
#pragma unroll
      for (int c = 0; c < 4; ++c) partial[4 * item + c] = s[c];
    }
  }
}

// partial[c, b, j] = sum over i in chunk c of d out[b, i, j] / d boxes2[b, j] * grad[b, i, j].
// Grid: 1-D over (chunk, 32-column tile of one batch entry) work items, grid-stride; block
// (32, 8). Lane = column (coalesced grad reads along a row), warp w sums the chunk's rows
// i = start + w, start + w + 8, ...; the 8 partial sums meet in shared memory
// (8 * 32 * 4 values) and warp 0 adds them in warp order. The item loop is block-uniform,
// so every thread reaches both __syncthreads.
template <typename scalar_t, IouKind K>
__global__ void iou_matrix_grad2_kernel(const at::opmath_type<scalar_t>* __restrict__ grad,
                                        const scalar_t* __restrict__ b1, const scalar_t* __restrict__ b2,
                                        int64_t batch, int64_t n, int64_t m, int64_t chunks, int64_t chunk_len,
                                        at::opmath_type<scalar_t> eps, at::opmath_type<scalar_t>* __restrict__ partial) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t part[kGradWarps][kGrad2Cols][4];
  const int lane = threadIdx.x, w = threadIdx.y;
  const int64_t col_tiles = ceil_div(m, kGrad2Cols);
  const int64_t tiles = batch * col_tiles;
  const int64_t items = chunks * tiles;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t chunk = item / tiles, tile = item % tiles;
    const int64_t bi = tile / col_tiles;
    const int64_t j = (tile % col_tiles) * kGrad2Cols + lane;
    const int64_t i_end = std::min(n, (chunk + 1) * chunk_len);
    acc_t s[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
    if (j < m) {
      const Box<acc_t> bb = load_box<acc_t>(b2 + 4 * (bi * m + j));
      for (int64_t i = chunk * chunk_len + w; i < i_end; i += kGradWarps) {
        const int64_t row = bi * n + i;
        acc_t ga[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
        acc_t gb[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
        pair_iou_backward<K, IouForm::kMatrix>(load_box<acc_t>(b1 + 4 * row), bb, eps, grad[row * m + j], ga, gb);
#pragma unroll
        for (int c = 0; c < 4; ++c) s[c] += gb[c];
      }
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) part[w][lane][c] = s[c];
    __syncthreads();
    if (w == 0 && j < m) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        acc_t t = part[0][lane][c];
        for (int r = 1; r < kGradWarps; ++r) t += part[r][lane][c];
        partial[4 * (chunk * batch * m + bi * m + j) + c] = t;
      }
    }
    __syncthreads();  // part is rewritten by the next item
  }
}

// out[k] = sum over c of partial[c, k], in chunk order, rounded once to the boxes dtype.
// Grid: grid-stride over the `count` output values (4 per box).
template <typename scalar_t>
__global__ void sum_chunks_kernel(const at::opmath_type<scalar_t>* __restrict__ partial, int64_t chunks,
                                  int64_t count, scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  grid_stride(count, [&](int64_t k) {
    acc_t t = partial[k];
    for (int64_t c = 1; c < chunks; ++c) t += partial[c * count + k];
    out[k] = static_cast<scalar_t>(t);
  });
}

std::tuple<at::Tensor, at::Tensor> box_iou_matrix_backward_cuda(const at::Tensor& grad, const at::Tensor& boxes1,
                                                                const at::Tensor& boxes2, std::string_view kind_s,
                                                                double eps) {
  const IouKind kind = checks::iou_matrix_backward(grad, boxes1, boxes2, kind_s);
  const int64_t batch = boxes1.dim() == 3 ? boxes1.size(0) : 1;
  const int64_t n = boxes1.size(-2), m = boxes2.size(-2);
  DeviceScope scope(boxes1);
  const at::Tensor b1 = boxes1.contiguous(), b2 = boxes2.contiguous();
  const auto acc_type = compute_type(b1);
  const at::Tensor g = grad.to(acc_type).contiguous();
  at::Tensor g1 = at::empty(b1.sizes(), b1.options());
  at::Tensor g2 = at::empty(b2.sizes(), b2.options());
  const int64_t rows = batch * n, cols = batch * m;
  const int64_t col_tiles = batch * ceil_div(m, kGrad2Cols);
  // ~4096 warps for boxes1 (>= 256 columns each), ~512 blocks for boxes2 (>= 64 rows each).
  const int64_t chunks1 = grad_chunks(rows, m, 4096, 256);
  const int64_t chunks2 = grad_chunks(col_tiles, n, 512, 64);
  const int64_t len1 = ceil_div(m, chunks1), len2 = ceil_div(n, chunks2);
  // With an empty reduced axis the partials are zeros: the empty sum.
  at::Tensor partial1 = at::empty({chunks1 * rows * 4}, b1.options().dtype(acc_type));
  at::Tensor partial2 = at::empty({chunks2 * cols * 4}, b1.options().dtype(acc_type));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b1.scalar_type(), "detseg._box_iou_matrix_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    with_kind(kind, [&](auto kc) {
      constexpr IouKind K = decltype(kc)::value;
      if (rows > 0) {
        iou_matrix_grad1_kernel<scalar_t, K><<<grid_1d(chunks1 * rows, kGradWarps), kThreads, 0, scope.stream>>>(
            g.const_data_ptr<acc_t>(), b1.const_data_ptr<scalar_t>(), b2.const_data_ptr<scalar_t>(), rows, n, m,
            chunks1, len1, static_cast<acc_t>(eps), partial1.mutable_data_ptr<acc_t>());
        DETSEG_CUDA_LAUNCH_CHECK();
        sum_chunks_kernel<scalar_t><<<grid_1d(rows * 4), kThreads, 0, scope.stream>>>(
            partial1.const_data_ptr<acc_t>(), chunks1, rows * 4, g1.mutable_data_ptr<scalar_t>());
        DETSEG_CUDA_LAUNCH_CHECK();
      }
      if (col_tiles > 0) {
        iou_matrix_grad2_kernel<scalar_t, K>
            <<<grid_1d(chunks2 * col_tiles, 1), dim3(kGrad2Cols, kGradWarps), 0, scope.stream>>>(
                g.const_data_ptr<acc_t>(), b1.const_data_ptr<scalar_t>(), b2.const_data_ptr<scalar_t>(), batch, n,
                m, chunks2, len2, static_cast<acc_t>(eps), partial2.mutable_data_ptr<acc_t>());
        DETSEG_CUDA_LAUNCH_CHECK();
        sum_chunks_kernel<scalar_t><<<grid_1d(cols * 4), kThreads, 0, scope.stream>>>(
            partial2.const_data_ptr<acc_t>(), chunks2, cols * 4, g2.mutable_data_ptr<scalar_t>());
        DETSEG_CUDA_LAUNCH_CHECK();
      }
    });
  });
  return {like_input(g1, boxes1), like_input(g2, boxes2)};
}

// ------------------------------------------------------------------ box_iou_loss

// loss[k] = 1 - pair_iou<kLoss>(boxes1[k], boxes2[k]), computed in op-math, stored in the
// input dtype. Grid: grid-stride over the N pairs, one thread per pair.
template <typename scalar_t, IouKind K>
__global__ void iou_loss_kernel(const scalar_t* __restrict__ b1, const scalar_t* __restrict__ b2, int64_t n,
                                at::opmath_type<scalar_t> eps, scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  grid_stride(n, [&](int64_t k) {
    const acc_t v = pair_iou<K, IouForm::kLoss>(load_box<acc_t>(b1 + 4 * k), load_box<acc_t>(b2 + 4 * k), eps);
    out[k] = static_cast<scalar_t>(acc_t(1) - v);
  });
}

at::Tensor box_iou_loss_cuda(const at::Tensor& boxes1, const at::Tensor& boxes2, std::string_view kind_s,
                             double eps) {
  checks::iou_loss(boxes1, boxes2);
  const IouKind kind = checks::iou_kind("box_iou_loss", kind_s);
  DeviceScope scope(boxes1);
  const at::Tensor b1 = boxes1.contiguous(), b2 = boxes2.contiguous();
  const int64_t n = b1.size(0);
  at::Tensor out = at::empty({n}, b1.options());
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b1.scalar_type(), "detseg.box_iou_loss", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    with_kind(kind, [&](auto kc) {
      iou_loss_kernel<scalar_t, decltype(kc)::value><<<grid_1d(n), kThreads, 0, scope.stream>>>(
          b1.const_data_ptr<scalar_t>(), b2.const_data_ptr<scalar_t>(), n, static_cast<acc_t>(eps),
          out.mutable_data_ptr<scalar_t>());
      DETSEG_CUDA_LAUNCH_CHECK();
    });
  });
  return out;
}

// d loss / d boxes = -grad * d value / d boxes, per pair; no reduction, so no ordering
// question. Grid: grid-stride over the N pairs, one thread per pair.
template <typename scalar_t, IouKind K>
__global__ void iou_loss_grad_kernel(const at::opmath_type<scalar_t>* __restrict__ grad,
                                     const scalar_t* __restrict__ b1, const scalar_t* __restrict__ b2, int64_t n,
                                     at::opmath_type<scalar_t> eps, scalar_t* __restrict__ g1,
                                     scalar_t* __restrict__ g2) {
  using acc_t = at::opmath_type<scalar_t>;
  grid_stride(n, [&](int64_t k) {
    acc_t ga[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
    acc_t gb[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
    pair_iou_backward<K, IouForm::kLoss>(load_box<acc_t>(b1 + 4 * k), load_box<acc_t>(b2 + 4 * k), eps, -grad[k],
                                         ga, gb);
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      g1[4 * k + c] = static_cast<scalar_t>(ga[c]);
      g2[4 * k + c] = static_cast<scalar_t>(gb[c]);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> box_iou_loss_backward_cuda(const at::Tensor& grad, const at::Tensor& boxes1,
                                                              const at::Tensor& boxes2, std::string_view kind_s,
                                                              double eps) {
  const IouKind kind = checks::iou_loss_backward(grad, boxes1, boxes2, kind_s);
  const int64_t n = boxes1.size(0);
  DeviceScope scope(boxes1);
  const at::Tensor b1 = boxes1.contiguous(), b2 = boxes2.contiguous();
  const at::Tensor g = grad.to(compute_type(b1)).contiguous();
  at::Tensor g1 = at::empty(b1.sizes(), b1.options());
  at::Tensor g2 = at::empty(b2.sizes(), b2.options());
  if (n > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b1.scalar_type(), "detseg._box_iou_loss_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      with_kind(kind, [&](auto kc) {
        iou_loss_grad_kernel<scalar_t, decltype(kc)::value><<<grid_1d(n), kThreads, 0, scope.stream>>>(
            g.const_data_ptr<acc_t>(), b1.const_data_ptr<scalar_t>(), b2.const_data_ptr<scalar_t>(), n,
            static_cast<acc_t>(eps), g1.mutable_data_ptr<scalar_t>(), g2.mutable_data_ptr<scalar_t>());
        DETSEG_CUDA_LAUNCH_CHECK();
      });
    });
  }
  return {like_input(g1, boxes1), like_input(g2, boxes2)};
}

}  // namespace
}  // namespace detseg::cuda

TORCH_LIBRARY_IMPL(detseg, CUDA, m) {
  m.impl("box_iou_matrix", &detseg::cuda::box_iou_matrix_cuda);
  m.impl("_box_iou_matrix_backward", &detseg::cuda::box_iou_matrix_backward_cuda);
  m.impl("box_iou_loss", &detseg::cuda::box_iou_loss_cuda);
  m.impl("_box_iou_loss_backward", &detseg::cuda::box_iou_loss_backward_cuda);
}
