// Host-side view of multiclass_nms's box-like inputs shared by the CPU (csrc/cpu/) and CUDA
// (csrc/cuda/) kernels: boxes [B, N, 4] or per class [B, N, C, 4], anchors [N, 4] (shared by
// the batch: sb = 0) or [B, N, 4], read through their strides (no contiguous copies); and the
// decode-and-clip step that turns a candidate's four values into its output box; and the
// entry points' common start (checks, sizes, padded outputs).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string_view>
#include <tuple>

#include "checks.h"

#include "detseg/box_coder.h"
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

// The op's decode (weights, bbox_xform_clip) and clip (image_size) arguments.
struct DecodeClip {
  double weights[4];
  double clip;
  bool has_image;
  int64_t height, width;
};

inline DecodeClip decode_clip_of(at::ArrayRef<double> weights, double bbox_xform_clip, at::IntArrayRef image_size) {
  DecodeClip p{};
  for (int i = 0; i < 4; ++i) p.weights[i] = weights.empty() ? 1.0 : weights[i];
  p.clip = bbox_xform_clip;
  p.has_image = !image_size.empty();
  p.height = p.has_image ? image_size[0] : 0;
  p.width = p.has_image ? image_size[1] : 0;
  return p;
}

// DecodeClip in the compute type: a candidate's output box d from its four values v, decoded
// against its anchor ref (detseg::decode_box) when ref is given, then clipped to the image.
template <typename T>
struct CandidateBox {
  T wx, wy, ww, wh, clip, hgt, wid;
  bool has_image;
  DETSEG_HOST_DEVICE explicit CandidateBox(const DecodeClip& p)
      : wx(static_cast<T>(p.weights[0])), wy(static_cast<T>(p.weights[1])), ww(static_cast<T>(p.weights[2])),
        wh(static_cast<T>(p.weights[3])), clip(static_cast<T>(p.clip)), hgt(static_cast<T>(p.height)),
        wid(static_cast<T>(p.width)), has_image(p.has_image) {}
  DETSEG_HOST_DEVICE void operator()(const T* v, const T* ref, T* d) const {
    if (ref) {
      decode_box(v, ref, wx, wy, ww, wh, clip, d);
    } else {
      for (int i = 0; i < 4; ++i) d[i] = v[i];
    }
    if (has_image) {
      // torch.clamp(min=0, max=size): NaN passes through.
      for (int i = 0; i < 4; ++i) {
        const T lim = (i & 1) ? hgt : wid;
        d[i] = d[i] < T(0) ? T(0) : (d[i] > lim ? lim : d[i]);
      }
    }
  }
};

// num_detections [B], boxes [B, K, 4], scores [B, K], classes [B, K], indices [B, K].
using McnmsOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// One call after its argument checks (checks.h): the score activation, the sizes, and the
// outputs already padded (0 for counts, boxes and scores, -1 for classes and indices), so a call
// with nothing to select returns `out` as it is.
struct McnmsCall {
  checks::ScoreActivation act;
  int64_t bsz, n, c, k;
  McnmsOutputs out;
  bool nothing_to_select() const { return bsz == 0 || n == 0 || c == 0 || k == 0; }
};

inline McnmsCall multiclass_nms_begin(const at::Tensor& boxes, const at::Tensor& scores,
                                      const std::optional<at::Tensor>& anchors, at::ArrayRef<double> weights,
                                      double bbox_xform_clip, at::IntArrayRef image_size, double score_threshold,
                                      at::IntArrayRef level_sizes, int64_t level_top_k, int64_t pre_nms_top_k,
                                      double iou_threshold, int64_t max_detections, int64_t background_class,
                                      c10::string_view score_activation) {
  McnmsCall call;
  call.act = checks::multiclass_nms(boxes, scores, anchors, weights, bbox_xform_clip, image_size, score_threshold,
                                    level_sizes, level_top_k, pre_nms_top_k, iou_threshold, max_detections,
                                    background_class, std::string_view(score_activation.data(), score_activation.size()));
  call.bsz = scores.size(0), call.n = scores.size(1), call.c = scores.size(2), call.k = max_detections;
  const auto fopt = scores.options(), lopt = scores.options().dtype(at::kLong);
  const int64_t b = call.bsz, k = call.k;
  call.out = {at::zeros({b}, lopt), at::zeros({b, k, 4}, fopt), at::zeros({b, k}, fopt), at::full({b, k}, -1, lopt),
              at::full({b, k}, -1, lopt)};
  return call;
}

}  // namespace detseg
