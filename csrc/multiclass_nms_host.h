// Host-side view of multiclass_nms's box-like inputs shared by the CPU (csrc/cpu/) and CUDA
// (csrc/cuda/) kernels: boxes [B, N, 4] or per class [B, N, C, 4], anchors [N, 4] (shared by
// the batch: sb = 0) or [B, N, 4], read through their strides (no contiguous copies).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "detseg/host_device.h"

namespace detseg {

template <typename T>
struct Quad {
  const T* p = nullptr;
  int64_t sb = 0, sn = 0, sc = 0, s4 = 0;
  DETSEG_HOST_DEVICE const T* at(int64_t b, int64_t n, int64_t c) const { return p + b * sb + n * sn + c * sc; }
  DETSEG_HOST_DEVICE void load(int64_t b, int64_t n, int64_t c, T* v) const {
    const T* q = at(b, n, c);
    v[0] = q[0];
    v[1] = q[s4];
    v[2] = q[2 * s4];
    v[3] = q[3 * s4];
  }
};

template <typename T>
Quad<T> quad_of(const at::Tensor& t, bool batched) {
  Quad<T> q;
  q.p = t.const_data_ptr<T>();
  const int64_t d = t.dim();
  q.s4 = t.stride(d - 1);
  if (d == 4) {
    q.sb = t.stride(0);
    q.sn = t.stride(1);
    q.sc = t.stride(2);
  } else if (batched) {
    q.sb = t.stride(0);
    q.sn = t.stride(1);
  } else {
    q.sn = t.stride(0);
  }
  return q;
}

}  // namespace detseg
