// Mask-family math (confusion matrix bins, mask IoU of one pair, the source coordinates of
// mask pasting), torch-free: the CPU and CUDA kernels call these; python/detseg/reference/masks.py
// and python/detseg/triton/masks.py mirror them term for term.
#pragma once

#include <cstdint>
#include <type_traits>

#include "detseg/host_device.h"
#include "detseg/roi_pool.h"  // dfloor

namespace detseg {

// ---------------------------------------------------------------- confusion matrix
//
// The matrix has C * C bins (row = target class, column = predicted class, as torchmetrics
// and sklearn) plus two tally bins after them: kIgnoredBin(C) counts pixels whose target is
// ignore_index (left out on both sides, whatever the prediction), kInvalidBin(C) pixels with
// a label outside [0, C) on either side. Every pixel lands in exactly one bin, so a kernel
// histograms without branches and the tallies come for free.
DETSEG_HOST_DEVICE int64_t confusion_ignored_bin(int64_t c) { return c * c; }
DETSEG_HOST_DEVICE int64_t confusion_invalid_bin(int64_t c) { return c * c + 1; }
DETSEG_HOST_DEVICE int64_t confusion_bins(int64_t c) { return c * c + 2; }

// T: the label dtype; W: an unsigned type holding every bin (uint16 when C <= 255, else
// uint32; the num_classes cap keeps C * C + 2 below 2^32), the arithmetic type too, so that
// narrow labels vectorise in narrow lanes. The range test runs in the wider of T and W,
// unsigned, so negative labels of any signed dtype fail it. ignore_index is given as a T
// (the caller drops it when no T can equal it).
template <typename W, typename T>
DETSEG_HOST_DEVICE W confusion_bin(T pred, T target, W c, T ignore_index, bool has_ignore) {
  using U = std::make_unsigned_t<std::conditional_t<(sizeof(T) > sizeof(W)), T, W>>;
  // One unsigned max and one compare: cheaper than two compares and an and (measured).
  const U mx = static_cast<U>(pred) > static_cast<U>(target) ? static_cast<U>(pred) : static_cast<U>(target);
  const bool valid = mx < static_cast<U>(c);
  const bool ignored = has_ignore && target == ignore_index;
  const W cc = static_cast<W>(c * c);
  const W bin = static_cast<W>(static_cast<W>(target) * c + static_cast<W>(pred));  // wraps only when unused
  return ignored ? cc : (valid ? bin : static_cast<W>(cc + 1));
}

// ---------------------------------------------------------------- mask IoU of one pair
//
// IoU = inter / (area1 + area2 - inter), 0 when the union is empty (two empty masks). crowd
// (COCO iscrowd on the second mask): inter / area1, the first mask being the detection; 0 for
// an empty detection. Computed in double from exact integer counts, then rounded once.
DETSEG_HOST_DEVICE double mask_pair_iou(int64_t inter, int64_t area1, int64_t area2, bool crowd) {
  const int64_t denom = crowd ? area1 : area1 + area2 - inter;
  return denom > 0 ? static_cast<double>(inter) / static_cast<double>(denom) : 0.0;
}

// ---------------------------------------------------------------- mask pasting
//
// torchvision (paste_masks_in_image, padding p): the M x M mask is zero-padded to M + 2p and
// its box scaled by (M + 2p) / M about the centre, truncated to int64 (toward zero); the padded
// mask is resized bilinearly (align_corners=False) to (y2 - y1 + 1) x (x2 - x1 + 1), both at
// least 1, and written at (x1, y1), clipped to the image. One axis of the resize:
// upsample_bilinear2d's source index (scale = in / out in float, clamp below at 0, floor,
// neighbour min(i0 + 1, in - 1), lambda clamped to [0, 1]).
template <typename T>
struct AxisTap {
  int64_t i0, i1;  // source indices (into the padded mask for torchvision)
  T l0, l1;        // weights of i0 and i1
};

template <typename T>
DETSEG_HOST_DEVICE AxisTap<T> resize_tap(int64_t dst, int64_t in_size, int64_t out_size) {
  const T scale = static_cast<T>(in_size) / static_cast<T>(out_size);
  T src = scale * (static_cast<T>(dst) + T(0.5)) - T(0.5);
  src = src < T(0) ? T(0) : src;
  int64_t i0 = static_cast<int64_t>(src);  // src >= 0: truncation is floor
  i0 = i0 < in_size - 1 ? i0 : in_size - 1;
  T l1 = src - static_cast<T>(i0);
  l1 = l1 < T(0) ? T(0) : (l1 > T(1) ? T(1) : l1);
  const int64_t i1 = i0 + 1 < in_size ? i0 + 1 : in_size - 1;
  return AxisTap<T>{i0, i1, T(1) - l1, l1};
}

// torchvision's integer box of one mask: expand_boxes by scale, then .to(int64). A box with
// a non-finite coordinate pastes nothing (torchvision's int64 cast is undefined there); huge
// coordinates are clamped to +-2^40 so that the index arithmetic cannot overflow.
template <typename T>
DETSEG_HOST_DEVICE int64_t paste_index(T v) {
  const T lim = static_cast<T>(int64_t(1) << 40);
  return static_cast<int64_t>(v < -lim ? -lim : (v > lim ? lim : v));
}

template <typename T>
DETSEG_HOST_DEVICE void torchvision_paste_box(const T* box, double scale, int64_t out[4]) {
  const T w_half = (box[2] - box[0]) * T(0.5) * static_cast<T>(scale);
  const T h_half = (box[3] - box[1]) * T(0.5) * static_cast<T>(scale);
  const T x_c = (box[2] + box[0]) * T(0.5);
  const T y_c = (box[3] + box[1]) * T(0.5);
  const T e[4] = {x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half};
  for (int k = 0; k < 4; ++k) {
    if (!(e[k] - e[k] == T(0))) {  // NaN or inf
      out[0] = out[1] = 0;
      out[2] = out[3] = -1;
      return;
    }
  }
  for (int k = 0; k < 4; ++k) out[k] = paste_index(e[k]);
}

// detectron2 (_do_paste_mask): image pixel centre (x + 0.5) is normalised into the box
// ((x + 0.5 - x1) / (x2 - x1) * 2 - 1), then grid_sample(align_corners=False, zeros padding)
// maps it to the mask coordinate ((g + 1) * size - 1) / 2. A tap outside [0, size) has weight
// 0 (zeros padding), signalled here by a negative index.
template <typename T>
DETSEG_HOST_DEVICE AxisTap<T> grid_sample_tap(int64_t dst, T lo, T hi, int64_t size) {
  const T g = (static_cast<T>(dst) + T(0.5) - lo) / (hi - lo) * T(2) - T(1);
  const T src = ((g + T(1)) * static_cast<T>(size) - T(1)) / T(2);
  const T f = dfloor(src);
  // Far outside (or NaN): no tap. Keeps the int64 conversion below in range.
  if (!(f >= T(-2) && f <= static_cast<T>(size) + T(1))) return AxisTap<T>{-1, -1, T(0), T(0)};
  const int64_t i0 = static_cast<int64_t>(f);
  const T l1 = src - f;          // grid_sample's weights: (i0 + 1 - src) and (src - i0)
  const T l0 = (f + T(1)) - src;
  const bool in0 = i0 >= 0 && i0 < size;
  const bool in1 = i0 + 1 >= 0 && i0 + 1 < size;
  return AxisTap<T>{in0 ? i0 : -1, in1 ? i0 + 1 : -1, in0 ? l0 : T(0), in1 ? l1 : T(0)};
}

}  // namespace detseg
