// CPU kernels of the instance-mask ops: mask_iou (bit-packed masks, popcount, pairs whose boxes
// do not overlap skipped), masks_to_boxes (the box that packing learns anyway) and
// paste_masks_in_image (bilinear per output pixel, only inside each mask's box). The math is
// detseg/masks.h; packing and popcount are csrc/cpu/vec/mask_pack_vec.cpp. Every output
// element is computed by one thread from exact integer counts or a fixed sequence of float
// operations: results are bitwise identical for any thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <string_view>
#include <vector>

#include "checks.h"
#include "cpu/alloc.h"
#include "masks_host.h"
#include "cpu/isa.h"
#include "cpu/vec/mask_pack_vec.h"
#include "detseg/masks.h"

namespace detseg::cpu {
namespace {

// Packs masks [n, h, w] (bytes) into words [n, h, ww] (or only their stats when words is
// null: one row-set of scratch per task then), in parallel over masks.
void pack_all(const uint8_t* masks, int64_t n, int64_t h, int64_t w, uint64_t* words, PackedMask* stats) {
  const int64_t ww = (w + 63) / 64;
  const int64_t plane = h * w;
  at::parallel_for(0, n, std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(plane, 1)),
                   [&](int64_t i0, int64_t i1) {
    std::vector<uint64_t> col_or(static_cast<size_t>(ww));
    std::vector<uint64_t> scratch(words ? 0 : static_cast<size_t>(h * ww));
    for (int64_t i = i0; i < i1; ++i) {
      uint64_t* dst = words ? words + i * h * ww : scratch.data();
      DETSEG_ISA_CALL(pack_mask, masks + i * plane, h, w, dst, ww, col_or.data(), stats + i);
    }
  });
}

at::Tensor as_bytes(const at::Tensor& m) {
  const at::Tensor c = m.contiguous();
  return c.scalar_type() == at::kBool ? c.view(at::kByte) : c;
}

void require_binary(const char* arg, const at::Tensor& bytes, const std::vector<PackedMask>& stats, int64_t first,
                    int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (stats[first + i].or_bytes > 1) {
      const at::Tensor bad = bytes.select(0, i);
      checks::non_binary_error("mask_iou", arg, bad.masked_select(bad.gt(1)).select(0, 0).item<int64_t>());
    }
  }
}

at::Tensor mask_iou_cpu(const at::Tensor& masks1, const at::Tensor& masks2, const std::optional<at::Tensor>& iscrowd) {
  checks::mask_iou(masks1, masks2, iscrowd);
  const int64_t n = masks1.size(0), m = masks2.size(0), h = masks1.size(1), w = masks1.size(2);
  at::Tensor out = at::empty({n, m}, masks1.options().dtype(at::kFloat));
  if (n == 0 || m == 0) return out;
  const at::Tensor b1 = as_bytes(masks1), b2 = as_bytes(masks2);
  const at::Tensor crowd = iscrowd.has_value() ? iscrowd->contiguous() : at::Tensor();
  const int64_t ww = (w + 63) / 64, words_per = h * ww;
  std::vector<uint64_t> words(static_cast<size_t>((n + m) * words_per));
  std::vector<PackedMask> stats(static_cast<size_t>(n + m));
  pack_all(b1.const_data_ptr<uint8_t>(), n, h, w, words.data(), stats.data());
  pack_all(b2.const_data_ptr<uint8_t>(), m, h, w, words.data() + n * words_per, stats.data() + n);
  require_binary("masks1", b1, stats, 0, n);
  require_binary("masks2", b2, stats, n, m);
  const bool* is_crowd = crowd.defined() ? crowd.const_data_ptr<bool>() : nullptr;
  float* o = out.mutable_data_ptr<float>();
  at::parallel_for(0, n, std::max<int64_t>(1, 256 / m), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const PackedMask& a = stats[i];
      for (int64_t j = 0; j < m; ++j) {
        const PackedMask& b = stats[n + j];
        const int64_t y0 = std::max(a.y0, b.y0), y1 = std::min(a.y1, b.y1);
        const int64_t x0 = std::max(a.x0, b.x0), x1 = std::min(a.x1, b.x1);
        int64_t inter = 0;
        if (y0 <= y1 && x0 <= x1) {  // boxes overlap (an empty mask's box is empty)
          inter = DETSEG_ISA_CALL(packed_intersection, words.data() + i * words_per,
                                  words.data() + (n + j) * words_per, ww, y0, y1, x0 / 64, x1 / 64);
        }
        o[i * m + j] = static_cast<float>(mask_pair_iou(inter, a.area, b.area, is_crowd && is_crowd[j]));
      }
    }
  });
  return out;
}

at::Tensor masks_to_boxes_cpu(const at::Tensor& masks) {
  checks::masks_to_boxes(masks);
  const int64_t n = masks.size(0), h = masks.size(1), w = masks.size(2);
  at::Tensor out = at::zeros({n, 4}, masks.options().dtype(at::kFloat));
  if (n == 0 || h == 0 || w == 0) return out;
  // Packing reads any nonzero byte as inside; wider dtypes are compared with 0 first.
  const at::ScalarType st = masks.scalar_type();
  const at::Tensor bytes = (st == at::kBool || st == at::kByte || st == at::kChar)
                               ? as_bytes(masks.scalar_type() == at::kChar ? masks.view(at::kByte) : masks)
                               : as_bytes(masks.ne(0));
  std::vector<PackedMask> stats(static_cast<size_t>(n));
  pack_all(bytes.const_data_ptr<uint8_t>(), n, h, w, nullptr, stats.data());
  float* o = out.mutable_data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    const PackedMask& s = stats[i];
    if (s.area == 0) continue;  // (0, 0, 0, 0)
    o[4 * i] = static_cast<float>(s.x0);
    o[4 * i + 1] = static_cast<float>(s.y0);
    o[4 * i + 2] = static_cast<float>(s.x1);
    o[4 * i + 3] = static_cast<float>(s.y1);
  }
  return out;
}

// ---------------------------------------------------------------- paste_masks_in_image

// One mask's taps along one image axis: output pixels [lo, hi) read the mask; the others are 0.
template <typename T>
struct AxisPlan {
  int64_t lo = 0, hi = 0;
  std::vector<AxisTap<T>> taps;  // taps[x - lo]; index -1 = outside the mask (weight 0)
};

// torchvision: image pixels [max(b0, 0), min(b1 + 1, size)) of the integer box b0..b1 read the
// padded mask (in_size = M + 2p) resized to max(b1 - b0 + 1, 1); padded indices map back to
// the mask by - pad (outside [0, M): the zero padding, as index -1).
template <typename T>
void plan_torchvision(AxisPlan<T>& plan, int64_t b0, int64_t b1, int64_t size, int64_t m, int64_t pad) {
  const int64_t out_size = std::max<int64_t>(b1 - b0 + 1, 1);
  plan.lo = std::max<int64_t>(b0, 0);
  plan.hi = std::max(plan.lo, std::min<int64_t>(b1 + 1, size));
  plan.taps.resize(static_cast<size_t>(plan.hi - plan.lo));
  for (int64_t x = plan.lo; x < plan.hi; ++x) {
    AxisTap<T> t = resize_tap<T>(x - b0, m + 2 * pad, out_size);
    t.i0 -= pad;
    t.i1 -= pad;
    if (t.i0 < 0 || t.i0 >= m) t.i0 = -1, t.l0 = T(0);
    if (t.i1 < 0 || t.i1 >= m) t.i1 = -1, t.l1 = T(0);
    plan.taps[x - plan.lo] = t;
  }
}

// detectron2: the image pixels whose grid_sample taps touch the mask (a contiguous run).
template <typename T>
void plan_detectron2(AxisPlan<T>& plan, T lo_edge, T hi_edge, int64_t size, int64_t m) {
  plan.taps.clear();
  plan.lo = plan.hi = 0;
  for (int64_t x = 0; x < size; ++x) {
    const AxisTap<T> t = grid_sample_tap<T>(x, lo_edge, hi_edge, m);
    if (t.i0 < 0 && t.i1 < 0) {
      if (!plan.taps.empty()) break;
      continue;
    }
    if (plan.taps.empty()) plan.lo = x;
    plan.taps.push_back(t);
  }
  plan.hi = plan.lo + static_cast<int64_t>(plan.taps.size());
}

template <typename T>
T tap_value(const T* row, const AxisTap<T>& t) {
  return (t.i0 >= 0 ? t.l0 * row[t.i0] : T(0)) + (t.i1 >= 0 ? t.l1 * row[t.i1] : T(0));
}

template <typename T, typename O>
void paste_impl(const T* masks, const T* boxes, int64_t n, int64_t mh, int64_t mw, int64_t height, int64_t width,
                int64_t pad, checks::PasteConvention conv, std::optional<double> threshold, O* out) {
  const int64_t plane = height * width;
  const T thr = threshold.has_value() ? static_cast<T>(*threshold) : T(0);
  const double scale = static_cast<double>(mw + 2 * pad) / static_cast<double>(mw);
  at::parallel_for(0, n, 1, [&](int64_t i0, int64_t i1) {
    AxisPlan<T> px, py;
    for (int64_t i = i0; i < i1; ++i) {
      const T* mask = masks + i * mh * mw;
      const T* box = boxes + 4 * i;
      if (conv == checks::PasteConvention::kTorchvision) {
        int64_t b[4];
        torchvision_paste_box<T>(box, scale, b);
        plan_torchvision(px, b[0], b[2], width, mw, pad);
        plan_torchvision(py, b[1], b[3], height, mh, pad);
      } else {
        plan_detectron2(px, box[0], box[2], width, mw);
        plan_detectron2(py, box[1], box[3], height, mh);
      }
      O* dst = out + i * plane;
      // Every output pixel is written once (zeros outside the mask's box): the first touch of
      // a fresh output happens here, split over threads.
      for (int64_t y = 0; y < height; ++y) {
        O* orow = dst + y * width;
        if (y < py.lo || y >= py.hi || px.hi <= px.lo) {
          std::fill(orow, orow + width, O(0));
          continue;
        }
        std::fill(orow, orow + px.lo, O(0));
        const AxisTap<T>& ty = py.taps[y - py.lo];
        const T* r0 = ty.i0 >= 0 ? mask + ty.i0 * mw : nullptr;
        const T* r1 = ty.i1 >= 0 ? mask + ty.i1 * mw : nullptr;
        for (int64_t x = px.lo; x < px.hi; ++x) {
          const AxisTap<T>& tx = px.taps[x - px.lo];
          // upsample_bilinear2d's order (torchvision): h0 * (w0 v00 + w1 v01) + h1 * (w0 v10 + w1 v11);
          // grid_sample's (detectron2): nw + ne + sw + se, each value * (x weight * y weight).
          T v;
          if (conv == checks::PasteConvention::kTorchvision) {
            v = (r0 ? ty.l0 * tap_value(r0, tx) : T(0)) + (r1 ? ty.l1 * tap_value(r1, tx) : T(0));
          } else {
            v = T(0);
            if (r0 && tx.i0 >= 0) v += r0[tx.i0] * (tx.l0 * ty.l0);
            if (r0 && tx.i1 >= 0) v += r0[tx.i1] * (tx.l1 * ty.l0);
            if (r1 && tx.i0 >= 0) v += r1[tx.i0] * (tx.l0 * ty.l1);
            if (r1 && tx.i1 >= 0) v += r1[tx.i1] * (tx.l1 * ty.l1);
          }
          if constexpr (std::is_same_v<O, bool>) {
            orow[x] = v >= thr;
          } else {
            orow[x] = v;
          }
        }
        std::fill(orow + px.hi, orow + width, O(0));
      }
    }
  });
}

at::Tensor paste_masks_cpu(const at::Tensor& masks, const at::Tensor& boxes, int64_t height, int64_t width,
                           int64_t padding, c10::string_view convention, std::optional<double> threshold) {
  const PasteMasksArgs a = paste_masks_args(masks, boxes, height, width, padding,
                                            std::string_view(convention.data(), convention.size()), threshold);
  const at::Tensor &m = a.m, &b = a.b;
  const int64_t n = a.n;
  at::Tensor out = empty_output({n, height, width}, a.kernel_dtype());
  if (n == 0 || height == 0 || width == 0) return a.finish(out);
  AT_DISPATCH_FLOATING_TYPES(a.st, "paste_masks_in_image", [&] {
    if (threshold.has_value()) {
      paste_impl<scalar_t, bool>(m.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), n, m.size(1), m.size(2),
                                 height, width, padding, a.conv, threshold, out.mutable_data_ptr<bool>());
    } else {
      paste_impl<scalar_t, scalar_t>(m.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), n, m.size(1),
                                     m.size(2), height, width, padding, a.conv, threshold,
                                     out.mutable_data_ptr<scalar_t>());
    }
  });
  return a.finish(out);
}

}  // namespace

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("mask_iou", &mask_iou_cpu);
  m.impl("masks_to_boxes", &masks_to_boxes_cpu);
  m.impl("paste_masks_in_image", &paste_masks_cpu);
}

}  // namespace detseg::cpu
