// Run-length encoded binary masks, the format of pycocotools (cocoapi common/maskApi.c),
// reproduced byte for byte. Torch-free: the CPU kernels (cpu/rle.cpp), the COCO evaluator
// (cpu/coco_eval.cpp) and, by mirroring, python/detseg/reference/rle.py follow it.
//
// A mask of h x w pixels is read column-major (x outer, y inner). Its runs alternate
// 0-run, 1-run, 0-run, ... starting with a (possibly empty) 0-run; the runs sum to h * w.
// The compressed string codes each run as a signed LEB128-like number of 5-bit groups, each
// group in one printable character (value + 48, bit 0x20 = "more follows", bit 0x10 of the
// last group = sign). From the fourth run on (index i > 2: pycocotools' choice, not i >= 2)
// the number coded is the difference to the run two places before.
#pragma once

#include <cstddef>
#include <cstdint>

#include "detseg/host_device.h"

namespace detseg::rle {

// Longest code of one run: a difference of two uint32 needs 34 bits signed -> 7 groups.
constexpr int64_t kMaxCharsPerRun = 7;

// Compressed string of runs cnts[0, m) into out (>= kMaxCharsPerRun * m bytes); returns
// the number of bytes written (no terminator).
inline int64_t to_string(const uint32_t* cnts, int64_t m, char* out) {
  int64_t p = 0;
  for (int64_t i = 0; i < m; ++i) {
    int64_t x = int64_t(cnts[i]);
    if (i > 2) x -= int64_t(cnts[i - 2]);
    bool more = true;
    while (more) {
      char c = char(x & 0x1f);
      x >>= 5;  // arithmetic shift: the sign travels with x
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      out[p++] = char(c + 48);
    }
  }
  return p;
}

// Inverse of to_string: runs of the string s[0, n) into out (>= n entries, one char at
// least per run); returns the number of runs. A string that ends inside a run (the last
// char has its "more" bit set) ends there, as pycocotools does at its terminator.
inline int64_t from_string(const char* s, int64_t n, uint32_t* out) {
  int64_t m = 0, p = 0;
  while (p < n) {
    int64_t x = 0;
    int k = 0;
    bool more = true;
    while (more && p < n) {
      const int64_t c = int64_t(s[p]) - 48;
      // 5 * k beyond 63 bits: malformed input; shifting there is undefined, so stop.
      if (k < 13) x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) != 0;
      ++p;
      ++k;
      if (!more && (c & 0x10) && k < 13) x |= int64_t(-1) * (int64_t(1) << (5 * k));
    }
    if (m > 2) x += int64_t(out[m - 2]);
    out[m++] = uint32_t(x);
  }
  return m;
}

// Number of foreground pixels: the sum of the odd runs.
inline uint64_t area(const uint32_t* cnts, int64_t m) {
  uint64_t a = 0;
  for (int64_t i = 1; i < m; i += 2) a += cnts[i];
  return a;
}

// Bounding box [x, y, w, h] of the foreground, pycocotools' rleToBbox: a trailing 0-run is
// dropped; a 1-run that wraps into a new column spans the full height; an empty mask
// gives [0, 0, 0, 0]. Arithmetic in uint32 as there.
inline void to_bbox(const uint32_t* cnts, int64_t m, uint32_t h, uint32_t w, double* bb) {
  m = (m / 2) * 2;
  if (m == 0 || h == 0) {
    bb[0] = bb[1] = bb[2] = bb[3] = 0;
    return;
  }
  uint32_t xs = w, ys = h, xe = 0, ye = 0, cc = 0, xp = 0;
  // x = t / h and y = t % h, tracked from the previous position: runs mostly end in the same
  // or the next column, and a division per run was most of the cost.
  uint64_t col = 0, col0 = 0;  // column of the last position, and its first pixel col * h
  for (int64_t j = 0; j < m; ++j) {
    cc += cnts[j];
    const uint32_t t = cc - uint32_t(j % 2);
    if (t >= col0 && t - col0 < h) {
    } else if (t >= col0 + h && t - col0 < 2 * uint64_t(h)) {
      ++col;
      col0 += h;
    } else {
      col = t / h;
      col0 = col * h;
    }
    const uint32_t y = uint32_t(t - col0), x = uint32_t(col);
    if (j % 2 == 0) {
      xp = x;
    } else if (xp < x) {
      ys = 0;
      ye = h - 1;
    }
    xs = xs < x ? xs : x;
    xe = xe > x ? xe : x;
    ys = ys < y ? ys : y;
    ye = ye > y ? ye : y;
  }
  bb[0] = xs;
  bb[2] = double(xe - xs + 1);
  bb[1] = ys;
  bb[3] = double(ye - ys + 1);
}

// COCO box IoU of a detection d and a ground truth g, both [x, y, w, h] (no +1), pycocotools'
// bbIou operation for operation: crowd ground truth divides by the detection's area.
template <typename T>
DETSEG_HOST_DEVICE T bbox_iou(const T* d, const T* g, bool crowd) {
  const T w = std::fmin(d[2] + d[0], g[2] + g[0]) - std::fmax(d[0], g[0]);
  if (w <= 0) return T(0);
  const T h = std::fmin(d[3] + d[1], g[3] + g[1]) - std::fmax(d[1], g[1]);
  if (h <= 0) return T(0);
  const T i = w * h;
  const T da = d[2] * d[3];
  const T u = crowd ? da : da + g[2] * g[3] - i;
  return i / u;
}

// Intersection and union (in pixels) of two RLEs of the same size, one merge pass over the
// runs (pycocotools' rleIou inner loop).
inline void inter_union(const uint32_t* a, int64_t ka, const uint32_t* b, int64_t kb, uint64_t& inter,
                        uint64_t& uni) {
  uint64_t i = 0, u = 0;
  if (ka == 0 || kb == 0) {
    inter = uni = 0;
    return;
  }
  uint32_t ca = a[0], cb = b[0];
  int64_t ia = 1, ib = 1;
  bool va = false, vb = false;
  for (;;) {
    const uint32_t c = ca < cb ? ca : cb;
    if (va || vb) {
      u += c;
      if (va && vb) i += c;
    }
    ca -= c;
    if (!ca && ia < ka) {
      ca = a[ia++];
      va = !va;
    }
    cb -= c;
    if (!cb && ib < kb) {
      cb = b[ib++];
      vb = !vb;
    }
    if (ca == 0 && cb == 0) break;
  }
  inter = i;
  uni = u;
}

// Mask IoU of detection d and ground truth g given their RLE boxes (pycocotools' rleIou):
// 0 when the boxes do not overlap, -1 when the sizes differ, crowd -> inter / area(d).
inline double iou(const uint32_t* d, int64_t kd, const double* dbb, int64_t dh, int64_t dw, const uint32_t* g,
                  int64_t kg, const double* gbb, int64_t gh, int64_t gw, bool crowd) {
  if (!(bbox_iou(dbb, gbb, crowd) > 0)) return 0.0;
  if (dh != gh || dw != gw) return -1.0;
  uint64_t i, u;
  inter_union(d, kd, g, kg, i, u);
  if (i == 0) return 0.0;
  if (crowd) u = area(d, kd);
  return double(i) / double(u);
}

}  // namespace detseg::rle
