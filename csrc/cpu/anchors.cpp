// CPU kernels of the anchor grid and the YOLO grid decode (SEMANTICS.md c.9): argument
// checks, dtype handling and threading; the math is detseg/anchors.h. Every output row is
// written by one thread from a fixed sequence of operations (bitwise identical for any
// thread count).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <type_traits>
#include <vector>

#include "checks.h"
#include "detseg/anchors.h"

namespace detseg::cpu {
namespace {

template <typename O>
using compute_t = std::conditional_t<std::is_same_v<O, double>, double, float>;

at::Tensor grid_anchors_cpu(const at::Tensor& base_anchors, int64_t feature_h, int64_t feature_w, double stride_h,
                            double stride_w, double offset) {
  checks::grid_anchors(base_anchors, feature_h, feature_w, stride_h, stride_w, offset);
  const int64_t A = base_anchors.size(0);
  const int64_t cells = feature_h * feature_w;
  at::Tensor out = at::empty({cells * A, 4}, base_anchors.options());
  if (out.numel() == 0) return out;
  const auto io = base_anchors.scalar_type();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, io, "grid_anchors", [&] {
    using O = scalar_t;
    using T = compute_t<O>;
    const at::Tensor b = base_anchors.to(std::is_same_v<T, double> ? at::kDouble : at::kFloat).contiguous();
    const T* pb = b.const_data_ptr<T>();
    O* po = out.mutable_data_ptr<O>();
    // ~16 KiB of output per chunk at A = 3: enough work to amortise a task.
    at::parallel_for(0, cells, std::max<int64_t>(1, 1024 / A), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t y = c / feature_w, x = c % feature_w;
        const T sx = static_cast<T>(grid_shift(x, stride_w, offset));
        const T sy = static_cast<T>(grid_shift(y, stride_h, offset));
        O* row = po + c * A * 4;
        for (int64_t a = 0; a < A; ++a) {
          T r[4];
          grid_anchor(pb + 4 * a, sx, sy, r);
          for (int k = 0; k < 4; ++k) row[4 * a + k] = static_cast<O>(r[k]);
        }
      }
    });
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
  m.impl("yolo_decode", &detseg::cpu::yolo_decode_cpu);
}
