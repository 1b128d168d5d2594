// Anchor grids and the YOLO grid decode (SEMANTICS.md c.9): the one statement of the
// per-element math, shared by the CPU and CUDA kernels and mirrored by the Triton and
// reference backends. Base (cell) anchors are generated on the host in Python
// (detseg/ops/anchors.py): a handful of values per level.
#pragma once

#include <cstdint>

#include "detseg/box_coder.h"
#include "detseg/host_device.h"

namespace detseg {

// Shift of grid column / row `i` along one axis: offset * stride + i * stride, evaluated in
// double and rounded once to the output type. torchvision (offset 0, integer stride) gets
// the exact integer i * stride; detectron2's arange(offset * stride, size * stride, stride)
// is start + i * step in double as well.
DETSEG_HOST_DEVICE double grid_shift(int64_t i, double stride, double offset) {
  return offset * stride + static_cast<double>(i) * stride;
}

// Anchor `a` of location (y, x): base anchor + (sx, sy, sx, sy). Output row index
// ((y * W + x) * A + a): torchvision's (location, base anchor) order.
template <typename T>
DETSEG_HOST_DEVICE void grid_anchor(const T* base, T sx, T sy, T* out) {
  out[0] = sx + base[0];
  out[1] = sy + base[1];
  out[2] = sx + base[2];
  out[3] = sy + base[3];
}

template <typename T>
DETSEG_HOST_DEVICE T dsigmoid(T x) {
  return T(1) / (T(1) + dexp(-x));
}

// YOLOv2/v3 decode of one (cell, anchor) prediction p = (tx, ty, tw, th, to):
//   cx = (sigmoid(tx) + x) * stride_w,  cy = (sigmoid(ty) + y) * stride_h
//   w  = anchor_w * exp(tw),            h  = anchor_h * exp(th)          (anchors in pixels)
//   out = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, sigmoid(to)).
// No clamp on tw / th (the papers have none): exp overflow gives inf sides, NaN propagates.
template <typename T>
DETSEG_HOST_DEVICE void yolo_decode_one(const T* p, T x, T y, T anchor_w, T anchor_h, T stride_w, T stride_h,
                                        T* out) {
  const T cx = (dsigmoid(p[0]) + x) * stride_w;
  const T cy = (dsigmoid(p[1]) + y) * stride_h;
  const T hw = T(0.5) * (anchor_w * dexp(p[2]));
  const T hh = T(0.5) * (anchor_h * dexp(p[3]));
  out[0] = cx - hw;
  out[1] = cy - hh;
  out[2] = cx + hw;
  out[3] = cy + hh;
  out[4] = dsigmoid(p[4]);
}

}  // namespace detseg
