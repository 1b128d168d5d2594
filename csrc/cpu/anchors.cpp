// CPU kernels of the anchor grid and the YOLO grid decode (SEMANTICS.md c.9): argument
// checks, dtype handling and threading; the math is detseg/anchors.h. Every output row is
// written by one thread from a fixed sequence of operations (bitwise identical for any
// thread count).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "cpu/isa.h"
#include "cpu/vec/anchors_vec.h"
#include "detseg/anchors.h"

namespace detseg::cpu {
namespace {

template <typename O>
using compute_t = std::conditional_t<std::is_same_v<O, double>, double, float>;

// One level into out[H * W * A, 4]. Every row y repeats one template shifted by sy in the y
// coordinates: grid_anchor(base, sx, sy) == grid_anchor(base, sx, 0) + (0, sy, 0, sy) bit for
// bit (sx + base is never -0, and sy + (0 + base) == sy + base), so a row is one vector pass
// (cpu/vec/anchors_vec.cpp) instead of A small loops per cell.
template <typename O, typename T>
void fill_level(const T* base, int64_t A, int64_t H, int64_t W, double stride_h, double stride_w, double offset,
                O* out) {
  const int64_t L = W * A * 4;
  if (H == 0 || L == 0) return;
  std::vector<T> tmpl(static_cast<size_t>(L));
  for (int64_t x = 0; x < W; ++x) {
    const T sx = static_cast<T>(grid_shift(x, stride_w, offset));
    for (int64_t a = 0; a < A; ++a) grid_anchor(base + 4 * a, sx, T(0), tmpl.data() + (x * A + a) * 4);
  }
  const T* tp = tmpl.data();
  // ~16k values per chunk: enough work to amortise a task.
  at::parallel_for(0, H, std::max<int64_t>(1, 16384 / L), [&](int64_t y0, int64_t y1) {
    for (int64_t y = y0; y < y1; ++y) {
      const T sy = static_cast<T>(grid_shift(y, stride_h, offset));
      O* row = out + y * L;
      if constexpr (std::is_same_v<O, T>) {
        DETSEG_ISA_CALL(shift_row, tp, L, sy, row);
      } else {
        for (int64_t j = 0; j < L; ++j) row[j] = static_cast<O>(tp[j] + ((j & 1) ? sy : T(0)));
      }
    }
  });
}

template <typename O>
using base_t = compute_t<O>;

at::Tensor widen_base(const at::Tensor& b) {
  return b.to(b.scalar_type() == at::kDouble ? at::kDouble : at::kFloat).contiguous();
}

at::Tensor grid_anchors_cpu(const at::Tensor& base_anchors, int64_t feature_h, int64_t feature_w, double stride_h,
                            double stride_w, double offset) {
  checks::grid_anchors(base_anchors, feature_h, feature_w, stride_h, stride_w, offset);
  const int64_t A = base_anchors.size(0);
  at::Tensor out = at::empty({feature_h * feature_w * A, 4}, base_anchors.options());
  if (out.numel() == 0) return out;
  const at::Tensor b = widen_base(base_anchors);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, base_anchors.scalar_type(), "grid_anchors", [&] {
    fill_level<scalar_t, base_t<scalar_t>>(b.const_data_ptr<base_t<scalar_t>>(), A, feature_h, feature_w, stride_h,
                                           stride_w, offset, out.mutable_data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor multilevel_grid_anchors_cpu(at::TensorList base_anchors, at::IntArrayRef feature_h,
                                       at::IntArrayRef feature_w, at::ArrayRef<double> stride_h,
                                       at::ArrayRef<double> stride_w, double offset) {
  const int64_t rows = checks::multilevel_grid_anchors(base_anchors, feature_h, feature_w, stride_h, stride_w, offset);
  at::Tensor out = at::empty({rows, 4}, base_anchors[0].options());
  if (rows == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "multilevel_grid_anchors", [&] {
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    for (size_t l = 0; l < base_anchors.size(); ++l) {
      const at::Tensor b = widen_base(base_anchors[l]);
      const int64_t A = b.size(0);
      fill_level<scalar_t, base_t<scalar_t>>(b.const_data_ptr<base_t<scalar_t>>(), A, feature_h[l], feature_w[l],
                                             stride_h[l], stride_w[l], offset, po);
      po += feature_h[l] * feature_w[l] * A * 4;
    }
  });
  return out;
}

at::Tensor yolo_decode_cpu(const at::Tensor& pred, const at::Tensor& anchors, double stride_h, double stride_w) {
  checks::yolo_decode(pred, anchors, stride_h, stride_w);
  const int64_t N = pred.size(0), H = pred.size(1), W = pred.size(2), P = pred.size(3);
  const int64_t B = anchors.size(0);
  at::Tensor out = at::empty({N, H, W, B, 5}, pred.options());
  if (out.numel() == 0) return out;
  const auto io = pred.scalar_type();
  const auto ct = io == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor p = pred.to(ct).contiguous();
  const at::Tensor an = anchors.to(ct).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, io, "yolo_decode", [&] {
    using O = scalar_t;
    using T = compute_t<O>;
    const T* pp = p.const_data_ptr<T>();
    const T* pa = an.const_data_ptr<T>();
    O* po = out.mutable_data_ptr<O>();
    const T sh = T(stride_h), sw = T(stride_w);
    at::parallel_for(0, N * H * W, std::max<int64_t>(1, 512 / B), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t x = c % W, y = (c / W) % H;
        for (int64_t b = 0; b < B; ++b) {
          T r[5];
          yolo_decode_one(pp + c * P + 5 * b, T(x), T(y), pa[2 * b], pa[2 * b + 1], sw, sh, r);
          for (int k = 0; k < 5; ++k) po[(c * B + b) * 5 + k] = static_cast<O>(r[k]);
        }
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace detseg::cpu

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("grid_anchors", &detseg::cpu::grid_anchors_cpu);
  m.impl("multilevel_grid_anchors", &detseg::cpu::multilevel_grid_anchors_cpu);
  m.impl("yolo_decode", &detseg::cpu::yolo_decode_cpu);
}
