// CPU kernels of box coding (torchvision BoxCoder / BoxLinearCoder, SEMANTICS.md c.10):
// argument checks, dtype handling and threading. The math is detseg/box_coder.h. Each output
// box is computed by one thread from a fixed sequence of operations (the K deltas of one
// reference box are summed into its gradient in order by the thread owning the box), so the
// results are bitwise identical for any thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <type_traits>
#include <vector>

#include "checks.h"
#include "cpu/isa.h"
#include "cpu/vec/box_coder_vec.h"
#include "detseg/box_coder.h"

namespace detseg::cpu {
namespace {

// Boxes per parallel_for chunk: a few hundred microseconds of exp/log work at most.
constexpr int64_t kGrainBoxes = 1 << 12;

// float64 computes in float64; float32 / float16 / bfloat16 in float32 (outputs rounded back).
template <typename O>
using compute_t = std::conditional_t<std::is_same_v<O, double>, double, float>;

// One delta per box (anchors / proposals) in float32 / float64: the vectorised loop of
// cpu/vec/box_coder_vec.cpp. Returns false where the scalar loop must run instead.
template <typename O, typename T>
bool decode_vectorised(const T* pd, const T* pb, O* po, int64_t n, int64_t K, DecodeArgs<T> args) {
  if constexpr (std::is_same_v<O, T>) {
    if (K != 1) return false;
    args.out = po;
    at::parallel_for(0, n, kGrainBoxes,
                     [&](int64_t i0, int64_t i1) { DETSEG_ISA_CALL(decode_boxes_k1, args, i0, i1); });
    return true;
  } else {
    return false;
  }
}

at::Tensor widen(const at::Tensor& t, at::ScalarType io) {
  return t.to(io == at::kDouble ? at::kDouble : at::kFloat).contiguous();
}

at::Tensor encode_boxes_cpu(const at::Tensor& reference_boxes, const at::Tensor& proposals, at::ArrayRef<double> w) {
  checks::encode_boxes(reference_boxes, proposals, w);
  const int64_t n = reference_boxes.size(0);
  at::Tensor out = at::empty({n, 4}, reference_boxes.options());
  if (n == 0) return out;
  const auto io = reference_boxes.scalar_type();
  const at::Tensor gt = widen(reference_boxes, io), an = widen(proposals, io);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, io, "encode_boxes", [&] {
    using O = scalar_t;
    using T = compute_t<O>;
    const T* pg = gt.const_data_ptr<T>();
    const T* pa = an.const_data_ptr<T>();
    O* po = out.mutable_data_ptr<O>();
    const T wx = T(w[0]), wy = T(w[1]), ww = T(w[2]), wh = T(w[3]);
    at::parallel_for(0, n, kGrainBoxes, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        T r[4];
        encode_box(pa + 4 * i, pg + 4 * i, wx, wy, ww, wh, r);
        for (int k = 0; k < 4; ++k) po[4 * i + k] = static_cast<O>(r[k]);
      }
    });
  });
  return out;
}

at::Tensor decode_boxes_cpu(const at::Tensor& rel_codes, const at::Tensor& boxes, at::ArrayRef<double> w,
                            double clip) {
  checks::decode_boxes("decode_boxes", rel_codes, boxes, w, clip);
  const int64_t n = rel_codes.size(0), k4 = rel_codes.size(1);
  at::Tensor out = at::empty({n, k4}, rel_codes.options());
  if (out.numel() == 0) return out;
  const auto io = rel_codes.scalar_type();
  // torchvision: boxes.to(rel_codes.dtype) first, then the arithmetic.
  const at::Tensor d = widen(rel_codes, io), b = widen(boxes.to(io), io);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, io, "decode_boxes", [&] {
    using O = scalar_t;
    using T = compute_t<O>;
    const T* pd = d.const_data_ptr<T>();
    const T* pb = b.const_data_ptr<T>();
    O* po = out.mutable_data_ptr<O>();
    const T wx = T(w[0]), wy = T(w[1]), ww = T(w[2]), wh = T(w[3]), c = T(clip);
    const int64_t K = k4 / 4;
    if (decode_vectorised(pd, pb, po, n, K, DecodeArgs<T>{pd, pb, nullptr, wx, wy, ww, wh, c})) return;
    at::parallel_for(0, n, std::max<int64_t>(1, kGrainBoxes / K), [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t k = 0; k < K; ++k) {
          const int64_t q = i * k4 + 4 * k;
          T r[4];
          decode_box(pd + q, pb + 4 * i, wx, wy, ww, wh, c, r);
          for (int j = 0; j < 4; ++j) po[q + j] = static_cast<O>(r[j]);
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> decode_boxes_backward_cpu(const at::Tensor& grad, const at::Tensor& rel_codes,
                                                             const at::Tensor& boxes, at::ArrayRef<double> w,
                                                             double clip) {
  checks::decode_boxes_backward(grad, rel_codes, boxes, w, clip);
  const int64_t n = rel_codes.size(0), k4 = rel_codes.size(1);
  const auto io = rel_codes.scalar_type();
  const auto ct = io == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor gd = at::empty({n, k4}, rel_codes.options().dtype(ct));
  at::Tensor gb = at::zeros({n, 4}, rel_codes.options().dtype(ct));
  if (gd.numel() != 0) {
    const at::Tensor d = widen(rel_codes, io), b = widen(boxes.to(io), io), g = widen(grad, io);
    AT_DISPATCH_FLOATING_TYPES(ct, "_decode_boxes_backward", [&] {
      using T = scalar_t;
      const T* pd = d.const_data_ptr<T>();
      const T* pb = b.const_data_ptr<T>();
      const T* pg = g.const_data_ptr<T>();
      T* od = gd.mutable_data_ptr<T>();
      T* ob = gb.mutable_data_ptr<T>();
      const T wx = T(w[0]), wy = T(w[1]), ww = T(w[2]), wh = T(w[3]), c = T(clip);
      const int64_t K = k4 / 4;
      at::parallel_for(0, n, std::max<int64_t>(1, kGrainBoxes / K), [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t k = 0; k < K; ++k) {
            const int64_t q = i * k4 + 4 * k;
            decode_box_backward(pg + q, pd + q, pb + 4 * i, wx, wy, ww, wh, c, od + q, ob + 4 * i);
          }
      });
    });
  }
  // The reference boxes were cast to rel_codes' dtype: their gradient flows back through that
  // cast (rounded to it, as autograd of boxes.to(rel_codes.dtype) would).
  return {gd.to(io), gb.to(io).to(boxes.scalar_type())};
}

template <bool kEncode>
at::Tensor linear_cpu(const char* op, const at::Tensor& a, const at::Tensor& bx, bool normalize_by_size) {
  // encode: a = anchors (reference_boxes), bx = targets; decode: a = rel_codes, bx = anchors.
  checks::linear_boxes(op, a, bx);
  const int64_t n = a.size(0);
  at::Tensor out = at::empty({n, 4}, a.options());
  if (n == 0) return out;
  const auto io = a.scalar_type();
  const at::Tensor pa_t = widen(a, io), pb_t = widen(bx.to(io), io);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, io, "linear_boxes", [&] {
    using O = scalar_t;
    using T = compute_t<O>;
    const T* pa = pa_t.const_data_ptr<T>();
    const T* pb = pb_t.const_data_ptr<T>();
    O* po = out.mutable_data_ptr<O>();
    at::parallel_for(0, n, kGrainBoxes, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        T r[4];
        if constexpr (kEncode) {
          linear_encode_box(pa + 4 * i, pb + 4 * i, normalize_by_size, r);
        } else {
          linear_decode_box(pa + 4 * i, pb + 4 * i, normalize_by_size, r);
        }
        for (int k = 0; k < 4; ++k) po[4 * i + k] = static_cast<O>(r[k]);
      }
    });
  });
  return out;
}

at::Tensor linear_encode_boxes_cpu(const at::Tensor& reference_boxes, const at::Tensor& proposals, bool norm) {
  return linear_cpu<true>("linear_encode_boxes", reference_boxes, proposals, norm);
}

at::Tensor linear_decode_boxes_cpu(const at::Tensor& rel_codes, const at::Tensor& boxes, bool norm) {
  return linear_cpu<false>("linear_decode_boxes", rel_codes, boxes, norm);
}

}  // namespace
}  // namespace detseg::cpu

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("encode_boxes", &detseg::cpu::encode_boxes_cpu);
  m.impl("decode_boxes", &detseg::cpu::decode_boxes_cpu);
  m.impl("_decode_boxes_backward", &detseg::cpu::decode_boxes_backward_cpu);
  m.impl("linear_encode_boxes", &detseg::cpu::linear_encode_boxes_cpu);
  m.impl("linear_decode_boxes", &detseg::cpu::linear_decode_boxes_cpu);
}
