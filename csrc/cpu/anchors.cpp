// CPU kernels of the anchor grid and the YOLO grid decode (SEMANTICS.md c.9): argument
// checks, dtype handling and threading; the math is detseg/anchors.h. Every output row is
// written by one thread from a fixed sequence of operations (bitwise identical for any
// thread count).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
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

// One level of the grid: its template row and where its rows go.
template <typename O, typename T>
struct Level {
  // row y = 0 without the y shift: grid_anchor(base, sx, 0) per (x, a), at a 64-byte
  // boundary inside `storage`: read once per output row, a template whose vectors straddle
  // cache lines made the row loop ~40% slower than writing the output alone
  std::vector<T> storage;
  const T* tmpl;
  int64_t len;  // W * A * 4
  int64_t H;
  double stride_h;
  O* out;  // [H, W * A * 4]
};

template <typename O, typename T>
Level<O, T> make_level(const T* base, int64_t A, int64_t H, int64_t W, double stride_h, double stride_w,
                       double offset, O* out) {
  constexpr int64_t kPad = 64 / sizeof(T);
  Level<O, T> lv{std::vector<T>(static_cast<size_t>(W * A * 4 + kPad)), nullptr, W * A * 4, H, stride_h, out};
  T* t = lv.storage.data();
  t += (kPad - (reinterpret_cast<uintptr_t>(t) % 64) / sizeof(T)) % kPad;
  lv.tmpl = t;
  for (int64_t x = 0; x < W; ++x) {
    const T sx = static_cast<T>(grid_shift(x, stride_w, offset));
    for (int64_t a = 0; a < A; ++a) grid_anchor(base + 4 * a, sx, T(0), t + (x * A + a) * 4);
  }
  return lv;
}

// Every level in one parallel region (one fork/join, not one per level), split by output
// boxes rather than rows: the finest level holds ~3/4 of the anchors, so a split by rows
// left one of two threads with most of the work. Row y of a level repeats its template
// shifted by sy in the y coordinates: grid_anchor(base, sx, sy) == grid_anchor(base, sx, 0) +
// (0, sy, 0, sy) bit for bit (sx + base is never -0, and sy + (0 + base) == sy + base), so
// any piece of a row is one vector pass (cpu/vec/anchors_vec.cpp) and the split does not
// change a bit.
template <typename O, typename T>
void fill_levels(const std::vector<Level<O, T>>& levels, double offset) {
  std::vector<int64_t> first{0};  // first global box of each level
  for (const auto& lv : levels) first.push_back(first.back() + lv.H * (lv.len / 4));
  const int64_t boxes = first.back();
  // 16k boxes (256 KiB of float32) per task: a fresh output is written at memory speed,
  // smaller tasks only add synchronisation.
  at::parallel_for(0, boxes, 1 << 14, [&](int64_t r0, int64_t r1) {
    size_t l = std::upper_bound(first.begin(), first.end(), r0) - first.begin() - 1;
    for (int64_t r = r0; r < r1;) {
      while (r >= first[l + 1]) ++l;
      const auto& lv = levels[l];
      const int64_t per_row = lv.len / 4;
      const int64_t o = r - first[l], y = o / per_row, c = o % per_row;
      const int64_t len = std::min(per_row - c, r1 - r);
      const T sy = static_cast<T>(grid_shift(y, lv.stride_h, offset));
      const T* tp = lv.tmpl + 4 * c;
      O* dst = lv.out + 4 * o;
      if constexpr (std::is_same_v<O, T>) {
        DETSEG_ISA_CALL(shift_row, tp, 4 * len, sy, dst);
      } else {
        for (int64_t j = 0; j < 4 * len; ++j) dst[j] = static_cast<O>(tp[j] + ((j & 1) ? sy : T(0)));
      }
      r += len;
    }
  });
}

at::Tensor widen_base(const at::Tensor& b) {
  const auto ct = b.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  // the common case without a trip through the dispatcher (a few us per call in all)
  if (b.scalar_type() == ct && b.is_contiguous()) return b;
  return b.to(ct).contiguous();
}

at::Tensor levels_cpu(at::TensorList base_anchors, at::IntArrayRef feature_h, at::IntArrayRef feature_w,
                      at::ArrayRef<double> stride_h, at::ArrayRef<double> stride_w, double offset, int64_t rows) {
  at::Tensor out = at::empty({rows, 4}, base_anchors[0].options());
  if (rows == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "grid_anchors", [&] {
    using O = scalar_t;
    using T = compute_t<O>;
    std::vector<Level<O, T>> levels;
    O* po = out.mutable_data_ptr<O>();
    for (size_t l = 0; l < base_anchors.size(); ++l) {
      const at::Tensor b = widen_base(base_anchors[l]);
      const int64_t A = b.size(0);
      levels.push_back(make_level<O, T>(b.const_data_ptr<T>(), A, feature_h[l], feature_w[l], stride_h[l],
                                        stride_w[l], offset, po));
      po += feature_h[l] * feature_w[l] * A * 4;
    }
    fill_levels(levels, offset);
  });
  return out;
}

at::Tensor grid_anchors_cpu(const at::Tensor& base_anchors, int64_t feature_h, int64_t feature_w, double stride_h,
                            double stride_w, double offset) {
  checks::grid_anchors(base_anchors, feature_h, feature_w, stride_h, stride_w, offset);
  return levels_cpu({base_anchors}, {feature_h}, {feature_w}, {stride_h}, {stride_w}, offset,
                    feature_h * feature_w * base_anchors.size(0));
}

at::Tensor multilevel_grid_anchors_cpu(at::TensorList base_anchors, at::IntArrayRef feature_h,
                                       at::IntArrayRef feature_w, at::ArrayRef<double> stride_h,
                                       at::ArrayRef<double> stride_w, double offset) {
  const int64_t rows = checks::multilevel_grid_anchors(base_anchors, feature_h, feature_w, stride_h, stride_w, offset);
  return levels_cpu(base_anchors, feature_h, feature_w, stride_h, stride_w, offset, rows);
}

// float32 / float64: the per-ISA vector loop (lanes over cells). Returns false for half types.
template <typename O, typename T>
bool yolo_vectorised(const T* pp, const T* pa, O* po, int64_t cells, int64_t P, int64_t B, int64_t H, int64_t W, T sh,
                     T sw) {
  if constexpr (std::is_same_v<O, T>) {
    const YoloArgs<T> args{pp, pa, po, P, B, H, W, sh, sw};
    // Chunks are whole vectors of cells, so no cell's lane position depends on the split.
    constexpr int64_t kV = 64;
    at::parallel_for(0, (cells + kV - 1) / kV, std::max<int64_t>(1, 64 / B), [&](int64_t v0, int64_t v1) {
      DETSEG_ISA_CALL(yolo_cells, args, v0 * kV, std::min(cells, v1 * kV));
    });
    return true;
  } else {
    return false;
  }
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
    if (yolo_vectorised(pp, pa, po, N * H * W, P, B, H, W, sh, sw)) return;
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
