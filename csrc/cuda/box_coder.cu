// CUDA kernels of box coding (torchvision BoxCoder / BoxLinearCoder, SEMANTICS.md c.10). The
// math is detseg/box_coder.h; inputs are widened to the compute type (float64 for float64,
// float32 otherwise) on the host, outputs rounded once to the input dtype. The decode backward
// gives each reference box to one thread, which sums its K deltas' gradients in order (no
// atomics: deterministic).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <tuple>

#include "checks.h"
#include "cuda/launch.cuh"
#include "detseg/box_coder.h"

namespace detseg::cuda {
namespace {

struct Weights {
  double wx, wy, ww, wh;
};

Weights weights_of(at::ArrayRef<double> w) { return {w[0], w[1], w[2], w[3]}; }

at::ScalarType compute_of(at::ScalarType io) { return io == at::kDouble ? at::kDouble : at::kFloat; }

// Grid-stride over n output boxes: f(i, r) computes box i into r[4] (compute type T), stored
// to out[i] in scalar_t.
template <typename scalar_t, typename T, typename F>
__device__ __forceinline__ void per_box(int64_t n, scalar_t* __restrict__ out, const F& f) {
  grid_stride(n, [&](int64_t i) {
    T r[4];
    f(i, r);
    for (int k = 0; k < 4; ++k) out[4 * i + k] = static_cast<scalar_t>(r[k]);
  });
}

// Grid: grid-stride over the n boxes, one thread per (anchor, target) pair.
template <typename scalar_t>
__global__ void encode_kernel(const at::opmath_type<scalar_t>* __restrict__ gt,
                              const at::opmath_type<scalar_t>* __restrict__ an, int64_t n, Weights w,
                              scalar_t* __restrict__ out) {
  using T = at::opmath_type<scalar_t>;
  per_box<scalar_t, T>(n, out, [&](int64_t i, T* r) {
    encode_box<T>(an + 4 * i, gt + 4 * i, T(w.wx), T(w.wy), T(w.ww), T(w.wh), r);
  });
}

// Grid: grid-stride over the n * K (box, delta) pairs.
template <typename scalar_t>
__global__ void decode_kernel(const at::opmath_type<scalar_t>* __restrict__ d,
                              const at::opmath_type<scalar_t>* __restrict__ b, int64_t n, int64_t K, Weights w,
                              double clip, scalar_t* __restrict__ out) {
  using T = at::opmath_type<scalar_t>;
  per_box<scalar_t, T>(n * K, out, [&](int64_t q, T* r) {
    decode_box<T>(d + 4 * q, b + 4 * (q / K), T(w.wx), T(w.wy), T(w.ww), T(w.wh), T(clip), r);
  });
}

// Grid: grid-stride over the n reference boxes; each loops over its K deltas.
template <typename T>
__global__ void decode_backward_kernel(const T* __restrict__ g, const T* __restrict__ d, const T* __restrict__ b,
                                       int64_t n, int64_t K, Weights w, double clip, T* __restrict__ gd,
                                       T* __restrict__ gb) {
  grid_stride(n, [&](int64_t i) {
    T acc[4] = {T(0), T(0), T(0), T(0)};
    for (int64_t k = 0; k < K; ++k) {
      const int64_t q = (i * K + k) * 4;
      decode_box_backward<T>(g + q, d + q, b + 4 * i, T(w.wx), T(w.wy), T(w.ww), T(w.wh), T(clip), gd + q, acc);
    }
    for (int k = 0; k < 4; ++k) gb[4 * i + k] = acc[k];
  });
}

template <typename scalar_t, bool kEncode>
__global__ void linear_kernel(const at::opmath_type<scalar_t>* __restrict__ a,
                              const at::opmath_type<scalar_t>* __restrict__ b, int64_t n, bool norm,
                              scalar_t* __restrict__ out) {
  using T = at::opmath_type<scalar_t>;
  per_box<scalar_t, T>(n, out, [&](int64_t i, T* r) {
    if (kEncode) {
      linear_encode_box<T>(a + 4 * i, b + 4 * i, norm, r);
    } else {
      linear_decode_box<T>(a + 4 * i, b + 4 * i, norm, r);
    }
  });
}

at::Tensor widen(const at::Tensor& t, at::ScalarType io) { return t.to(compute_of(io)).contiguous(); }

at::Tensor encode_boxes_cuda(const at::Tensor& reference_boxes, const at::Tensor& proposals, at::ArrayRef<double> w) {
  checks::encode_boxes(reference_boxes, proposals, w);
  DeviceScope scope(reference_boxes);
  const int64_t n = reference_boxes.size(0);
  at::Tensor out = at::empty({n, 4}, reference_boxes.options());
  if (n == 0) return out;
  const auto io = reference_boxes.scalar_type();
  const at::Tensor gt = widen(reference_boxes, io), an = widen(proposals, io);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, io, "detseg.encode_boxes", [&] {
    using T = at::opmath_type<scalar_t>;
    encode_kernel<scalar_t><<<grid_1d(n), kThreads, 0, scope.stream>>>(
        gt.const_data_ptr<T>(), an.const_data_ptr<T>(), n, weights_of(w), out.mutable_data_ptr<scalar_t>());
    DETSEG_CUDA_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor decode_boxes_cuda(const at::Tensor& rel_codes, const at::Tensor& boxes, at::ArrayRef<double> w,
                             double clip) {
  checks::decode_boxes("decode_boxes", rel_codes, boxes, w, clip);
  DeviceScope scope(rel_codes);
  const int64_t n = rel_codes.size(0), k4 = rel_codes.size(1);
  at::Tensor out = at::empty({n, k4}, rel_codes.options());
  if (out.numel() == 0) return out;
  const auto io = rel_codes.scalar_type();
  const at::Tensor d = widen(rel_codes, io), b = widen(boxes.to(io), io);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, io, "detseg.decode_boxes", [&] {
    using T = at::opmath_type<scalar_t>;
    decode_kernel<scalar_t><<<grid_1d(n * (k4 / 4)), kThreads, 0, scope.stream>>>(
        d.const_data_ptr<T>(), b.const_data_ptr<T>(), n, k4 / 4, weights_of(w), clip,
        out.mutable_data_ptr<scalar_t>());
    DETSEG_CUDA_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> decode_boxes_backward_cuda(const at::Tensor& grad, const at::Tensor& rel_codes,
                                                              const at::Tensor& boxes, at::ArrayRef<double> w,
                                                              double clip) {
  checks::decode_boxes_backward(grad, rel_codes, boxes, w, clip);
  DeviceScope scope(rel_codes);
  const int64_t n = rel_codes.size(0), k4 = rel_codes.size(1);
  const auto io = rel_codes.scalar_type();
  const auto ct = compute_of(io);
  at::Tensor gd = at::empty({n, k4}, rel_codes.options().dtype(ct));
  at::Tensor gb = at::zeros({n, 4}, rel_codes.options().dtype(ct));
  if (gd.numel() != 0) {
    const at::Tensor d = widen(rel_codes, io), b = widen(boxes.to(io), io), g = widen(grad, io);
    AT_DISPATCH_FLOATING_TYPES(ct, "detseg._decode_boxes_backward", [&] {
      decode_backward_kernel<scalar_t><<<grid_1d(n), kThreads, 0, scope.stream>>>(
          g.const_data_ptr<scalar_t>(), d.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), n, k4 / 4,
          weights_of(w), clip, gd.mutable_data_ptr<scalar_t>(), gb.mutable_data_ptr<scalar_t>());
      DETSEG_CUDA_LAUNCH_CHECK();
    });
  }
  return {gd.to(io), gb.to(io).to(boxes.scalar_type())};
}

template <bool kEncode>
at::Tensor linear_cuda(const char* op, const at::Tensor& a, const at::Tensor& bx, bool norm) {
  checks::linear_boxes(op, a, bx);
  DeviceScope scope(a);
  const int64_t n = a.size(0);
  at::Tensor out = at::empty({n, 4}, a.options());
  if (n == 0) return out;
  const auto io = a.scalar_type();
  const at::Tensor pa = widen(a, io), pb = widen(bx.to(io), io);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, io, "detseg.linear_boxes", [&] {
    using T = at::opmath_type<scalar_t>;
    linear_kernel<scalar_t, kEncode><<<grid_1d(n), kThreads, 0, scope.stream>>>(
        pa.const_data_ptr<T>(), pb.const_data_ptr<T>(), n, norm, out.mutable_data_ptr<scalar_t>());
    DETSEG_CUDA_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor linear_encode_boxes_cuda(const at::Tensor& reference_boxes, const at::Tensor& proposals, bool norm) {
  return linear_cuda<true>("linear_encode_boxes", reference_boxes, proposals, norm);
}

at::Tensor linear_decode_boxes_cuda(const at::Tensor& rel_codes, const at::Tensor& boxes, bool norm) {
  return linear_cuda<false>("linear_decode_boxes", rel_codes, boxes, norm);
}

}  // namespace
}  // namespace detseg::cuda

TORCH_LIBRARY_IMPL(detseg, CUDA, m) {
  m.impl("encode_boxes", &detseg::cuda::encode_boxes_cuda);
  m.impl("decode_boxes", &detseg::cuda::decode_boxes_cuda);
  m.impl("_decode_boxes_backward", &detseg::cuda::decode_boxes_backward_cuda);
  m.impl("linear_encode_boxes", &detseg::cuda::linear_encode_boxes_cuda);
  m.impl("linear_decode_boxes", &detseg::cuda::linear_decode_boxes_cuda);
}
