// CUDA kernels of the anchor grid and the YOLO grid decode (SEMANTICS.md c.9); the math is
// detseg/anchors.h. Elementwise: one thread per output row.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "checks.h"
#include "cuda/launch.cuh"
#include "detseg/anchors.h"

namespace detseg::cuda {
namespace {

// Grid: grid-stride over the H * W * A output rows r = (y * W + x) * A + a.
template <typename scalar_t>
__global__ void grid_anchors_kernel(const at::opmath_type<scalar_t>* __restrict__ base, int64_t W, int64_t A,
                                    int64_t rows, double stride_h, double stride_w, double offset,
                                    scalar_t* __restrict__ out) {
  using T = at::opmath_type<scalar_t>;
  grid_stride(rows, [&](int64_t r) {
    const int64_t a = r % A, cell = r / A;
    const T sx = static_cast<T>(grid_shift(cell % W, stride_w, offset));
    const T sy = static_cast<T>(grid_shift(cell / W, stride_h, offset));
    T o[4];
    grid_anchor<T>(base + 4 * a, sx, sy, o);
    for (int k = 0; k < 4; ++k) out[4 * r + k] = static_cast<scalar_t>(o[k]);
  });
}

// Grid: grid-stride over the N * H * W * B (cell, anchor) pairs.
template <typename scalar_t>
__global__ void yolo_kernel(const at::opmath_type<scalar_t>* __restrict__ pred,
                            const at::opmath_type<scalar_t>* __restrict__ an, int64_t H, int64_t W, int64_t B,
                            int64_t P, int64_t rows, double stride_h, double stride_w, scalar_t* __restrict__ out) {
  using T = at::opmath_type<scalar_t>;
  grid_stride(rows, [&](int64_t r) {
    const int64_t b = r % B, cell = r / B;
    const int64_t x = cell % W, y = (cell / W) % H;
    T o[5];
    yolo_decode_one<T>(pred + cell * P + 5 * b, T(x), T(y), an[2 * b], an[2 * b + 1], T(stride_w), T(stride_h), o);
    for (int k = 0; k < 5; ++k) out[5 * r + k] = static_cast<scalar_t>(o[k]);
  });
}

void launch_level(const at::Tensor& base_anchors, int64_t feature_h, int64_t feature_w, double stride_h,
                  double stride_w, double offset, at::Tensor& out, int64_t row0, cudaStream_t stream) {
  const int64_t A = base_anchors.size(0);
  const int64_t rows = feature_h * feature_w * A;
  if (rows == 0) return;
  const auto io = out.scalar_type();
  const at::Tensor b = base_anchors.to(io == at::kDouble ? at::kDouble : at::kFloat).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, io, "detseg.grid_anchors", [&] {
    grid_anchors_kernel<scalar_t><<<grid_1d(rows), kThreads, 0, stream>>>(
        b.const_data_ptr<at::opmath_type<scalar_t>>(), feature_w, A, rows, stride_h, stride_w, offset,
        out.mutable_data_ptr<scalar_t>() + 4 * row0);
    DETSEG_CUDA_LAUNCH_CHECK();
  });
}

at::Tensor grid_anchors_cuda(const at::Tensor& base_anchors, int64_t feature_h, int64_t feature_w, double stride_h,
                             double stride_w, double offset) {
  checks::grid_anchors(base_anchors, feature_h, feature_w, stride_h, stride_w, offset);
  DeviceScope scope(base_anchors);
  at::Tensor out = at::empty({feature_h * feature_w * base_anchors.size(0), 4}, base_anchors.options());
  launch_level(base_anchors, feature_h, feature_w, stride_h, stride_w, offset, out, 0, scope.stream);
  return out;
}

at::Tensor multilevel_grid_anchors_cuda(at::TensorList base_anchors, at::IntArrayRef feature_h,
                                        at::IntArrayRef feature_w, at::ArrayRef<double> stride_h,
                                        at::ArrayRef<double> stride_w, double offset) {
  const int64_t rows = checks::multilevel_grid_anchors(base_anchors, feature_h, feature_w, stride_h, stride_w, offset);
  DeviceScope scope(base_anchors[0]);
  at::Tensor out = at::empty({rows, 4}, base_anchors[0].options());
  int64_t row0 = 0;
  for (size_t l = 0; l < base_anchors.size(); ++l) {
    launch_level(base_anchors[l], feature_h[l], feature_w[l], stride_h[l], stride_w[l], offset, out, row0,
                 scope.stream);
    row0 += feature_h[l] * feature_w[l] * base_anchors[l].size(0);
  }
  return out;
}

at::Tensor yolo_decode_cuda(const at::Tensor& pred, const at::Tensor& anchors, double stride_h, double stride_w) {
  checks::yolo_decode(pred, anchors, stride_h, stride_w);
  DeviceScope scope(pred);
  const int64_t N = pred.size(0), H = pred.size(1), W = pred.size(2), P = pred.size(3);
  const int64_t B = anchors.size(0);
  at::Tensor out = at::empty({N, H, W, B, 5}, pred.options());
  const int64_t rows = N * H * W * B;
  if (rows == 0) return out;
  const auto io = pred.scalar_type();
  const auto ct = io == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor p = pred.to(ct).contiguous(), an = anchors.to(ct).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, io, "detseg.yolo_decode", [&] {
    using T = at::opmath_type<scalar_t>;
    yolo_kernel<scalar_t><<<grid_1d(rows), kThreads, 0, scope.stream>>>(
        p.const_data_ptr<T>(), an.const_data_ptr<T>(), H, W, B, P, rows, stride_h, stride_w,
        out.mutable_data_ptr<scalar_t>());
    DETSEG_CUDA_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace detseg::cuda

TORCH_LIBRARY_IMPL(detseg, CUDA, m) {
  m.impl("grid_anchors", &detseg::cuda::grid_anchors_cuda);
  m.impl("multilevel_grid_anchors", &detseg::cuda::multilevel_grid_anchors_cuda);
  m.impl("yolo_decode", &detseg::cuda::yolo_decode_cuda);
}
