// CPU kernels of roi_align (forward and backward): iteration, layout and threading only; the
// pixel model is detseg/roi_align.h.
//
// Forward: one RoI per task (at::parallel_for over RoIs), so every output element is written
// by one thread in a fixed order. Two loop nests share the math: NCHW walks channel planes,
// channels-last keeps the channel loop innermost over contiguous memory (vectorisable, and
// the output stays channels-last).
// Backward: no atomics and no per-thread copies of the gradient. Work is split over
// (batch element, channel block); a task walks every RoI of its batch element in RoI order,
// so each gradient element receives its contributions in the order (RoI, bin, sample,
// corner) whatever the thread count, layout or block size: bitwise reproducible.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "cpu/isa.h"
#include "cpu/alloc.h"
#include "cpu/roi_common.h"
#include "cpu/vec/roi_vec.h"
#include "detseg/roi_align.h"
#include "detseg/roi_pool.h"  // ps_input_channel

namespace detseg::cpu {
namespace {

using checks::RoiPoolMode;

struct AlignParams {
  int64_t channels, height, width;
  int ph, pw, sampling_ratio;
  bool aligned;
  RoiPoolMode mode;
};

// The y- and x-axis samples of every bin row / column of one RoI (separable bilinear).
template <typename acc_t>
struct RoiSamples {
  RoiAlignGeom<acc_t> g;
  std::vector<AxisSample<acc_t>> ys, xs;  // [ph * grid_h], [pw * grid_w]

  void fill(const acc_t* roi, acc_t scale, const AlignParams& a) {
    g = roi_align_geom<acc_t>(roi, scale, a.ph, a.pw, a.sampling_ratio, a.aligned);
    ys.resize(size_t(a.ph) * g.grid_h);
    xs.resize(size_t(a.pw) * g.grid_w);
    for (int p = 0; p < a.ph; ++p)
      for (int i = 0; i < g.grid_h; ++i)
        ys[size_t(p) * g.grid_h + i] = axis_sample(roi_sample_pos(g.start_h, g.bin_h, p, i, g.grid_h), int(a.height));
    for (int q = 0; q < a.pw; ++q)
      for (int j = 0; j < g.grid_w; ++j)
        xs[size_t(q) * g.grid_w + j] = axis_sample(roi_sample_pos(g.start_w, g.bin_w, q, j, g.grid_w), int(a.width));
  }
};

// ---------------------------------------------------------------- forward

// One bin of one channel plane (row stride W).
template <typename scalar_t, typename acc_t>
acc_t bin_value_nchw(const scalar_t* plane, int64_t W, const RoiSamples<acc_t>& s, int p, int q, RoiPoolMode mode) {
  const int gh = s.g.grid_h, gw = s.g.grid_w;
  const AxisSample<acc_t>* ys = s.ys.data() + size_t(p) * gh;
  const AxisSample<acc_t>* xs = s.xs.data() + size_t(q) * gw;
  if (mode == RoiPoolMode::kAvg) {
    acc_t acc = acc_t(0);
    for (int i = 0; i < gh; ++i) {
      const AxisSample<acc_t>& ay = ys[i];
      if (!ay.valid) continue;
      const scalar_t* rlo = plane + ay.lo * W;
      const scalar_t* rhi = plane + ay.hi * W;
      for (int j = 0; j < gw; ++j) {
        const AxisSample<acc_t>& ax = xs[j];
        if (!ax.valid) continue;
        acc += bilinear_value(bilinear(ay, ax), acc_t(rlo[ax.lo]), acc_t(rlo[ax.hi]), acc_t(rhi[ax.lo]),
                              acc_t(rhi[ax.hi]));
      }
    }
    return acc / s.g.count;
  }
  acc_t best = acc_t(0);
  bool first = true;
  for (int i = 0; i < gh; ++i) {
    const AxisSample<acc_t>& ay = ys[i];
    const scalar_t* rlo = plane + ay.lo * W;
    const scalar_t* rhi = plane + ay.hi * W;
    for (int j = 0; j < gw; ++j) {
      const AxisSample<acc_t>& ax = xs[j];
      const acc_t v = (ay.valid && ax.valid) ? bilinear_value(bilinear(ay, ax), acc_t(rlo[ax.lo]), acc_t(rlo[ax.hi]),
                                                              acc_t(rhi[ax.lo]), acc_t(rhi[ax.hi]))
                                             : acc_t(0);
      if (max_takes(v, best, first)) best = v, first = false;
    }
  }
  return best;  // 0 for an empty grid
}

template <typename scalar_t, typename acc_t>
void forward_nchw(const scalar_t* in, const acc_t* rois, scalar_t* out, int64_t K, acc_t scale, const AlignParams& a) {
  const int64_t C = a.channels, HW = a.height * a.width, PP = int64_t(a.ph) * a.pw;
  at::parallel_for(0, K, roi_grain(C * PP * 4), [&](int64_t k0, int64_t k1) {
    RoiSamples<acc_t> s;
    for (int64_t k = k0; k < k1; ++k) {
      const acc_t* roi = rois + 5 * k;
      s.fill(roi, scale, a);
      const int64_t b = static_cast<int64_t>(roi[0]);
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* plane = in + (b * C + c) * HW;
        scalar_t* o = out + (k * C + c) * PP;
        for (int p = 0; p < a.ph; ++p)
          for (int q = 0; q < a.pw; ++q) o[p * a.pw + q] = scalar_t(bin_value_nchw(plane, a.width, s, p, q, a.mode));
      }
    }
  });
}

// Channels-last input [N, H, W, C]; output element (k, c, bin) at out[k * C * PP + c * ocs + bin * obs]
// (channels-last output: ocs 1, obs C; NCHW output: ocs PP, obs 1).
template <typename scalar_t, typename acc_t>
void forward_nhwc(const scalar_t* in, const acc_t* rois, scalar_t* out, int64_t K, acc_t scale, const AlignParams& a,
                  int64_t ocs, int64_t obs) {
  const int64_t C = a.channels, W = a.width, HWC = a.height * a.width * C;
  at::parallel_for(0, K, roi_grain(C * a.ph * a.pw * 4), [&](int64_t k0, int64_t k1) {
    RoiSamples<acc_t> s;
    std::vector<acc_t> acc(C);
    for (int64_t k = k0; k < k1; ++k) {
      const acc_t* roi = rois + 5 * k;
      s.fill(roi, scale, a);
      const int64_t b = static_cast<int64_t>(roi[0]);
      const scalar_t* base = in + b * HWC;
      const int gh = s.g.grid_h, gw = s.g.grid_w;
      for (int p = 0; p < a.ph; ++p) {
        for (int q = 0; q < a.pw; ++q) {
          std::fill(acc.begin(), acc.end(), acc_t(0));
          bool first = true;
          for (int i = 0; i < gh; ++i) {
            const AxisSample<acc_t>& ay = s.ys[size_t(p) * gh + i];
            for (int j = 0; j < gw; ++j) {
              const AxisSample<acc_t>& ax = s.xs[size_t(q) * gw + j];
              const bool valid = ay.valid && ax.valid;
              if (a.mode == RoiPoolMode::kAvg && !valid) continue;
              const Bilinear<acc_t> w = bilinear(ay, ax);
              const scalar_t* p1 = base + (ay.lo * W + ax.lo) * C;
              const scalar_t* p2 = base + (ay.lo * W + ax.hi) * C;
              const scalar_t* p3 = base + (ay.hi * W + ax.lo) * C;
              const scalar_t* p4 = base + (ay.hi * W + ax.hi) * C;
              if (a.mode == RoiPoolMode::kAvg) {
                if constexpr (std::is_same_v<scalar_t, float>) {
                  DETSEG_ISA_CALL(roi_bilinear_accumulate, acc.data(), p1, p2, p3, p4, w.w1, w.w2, w.w3, w.w4, C);
                } else {
                  for (int64_t c = 0; c < C; ++c)
                    acc[c] += bilinear_value(w, acc_t(p1[c]), acc_t(p2[c]), acc_t(p3[c]), acc_t(p4[c]));
                }
              } else {
                for (int64_t c = 0; c < C; ++c) {
                  const acc_t v =
                      valid ? bilinear_value(w, acc_t(p1[c]), acc_t(p2[c]), acc_t(p3[c]), acc_t(p4[c])) : acc_t(0);
                  if (max_takes(v, acc[c], first)) acc[c] = v;
                }
                first = false;
              }
            }
          }
          scalar_t* o = out + k * C * a.ph * a.pw + (int64_t(p) * a.pw + q) * obs;
          if (a.mode == RoiPoolMode::kAvg) {
            for (int64_t c = 0; c < C; ++c) o[c * ocs] = scalar_t(acc[c] / s.g.count);
          } else {
            for (int64_t c = 0; c < C; ++c) o[c * ocs] = scalar_t(acc[c]);
          }
        }
      }
    }
  });
}

at::Tensor roi_align_cpu(const at::Tensor& input, const at::Tensor& rois, double spatial_scale, int64_t pooled_height,
                         int64_t pooled_width, int64_t sampling_ratio, bool aligned, std::string_view pool_mode) {
  const char* op = "roi_align";
  const auto [K, N, C, H, W, cl, fmt] =
      roi_forward_begin(op, input, rois, spatial_scale, pooled_height, pooled_width, false);
  checks::roi_sampling_ratio(op, sampling_ratio);
  const RoiPoolMode mode = checks::roi_pool_mode(op, pool_mode);
  at::Tensor out = at::empty({K, C, pooled_height, pooled_width}, input.options().memory_format(fmt));
  advise_huge_pages(out);
  const at::Tensor r = roi_rows(rois, input.scalar_type());
  const AlignParams a{C, H, W, int(pooled_height), int(pooled_width), int(sampling_ratio), aligned, mode};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "detseg_roi_align", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    checks::roi_batch_indices(op, r.data_ptr<acc_t>(), K, N);
    if (K == 0 || C == 0) return;
    if (H == 0 || W == 0) {  // every sample is outside an empty map
      out.zero_();
      return;
    }
    const acc_t scale = static_cast<acc_t>(spatial_scale);
    if (cl || roi_prefer_nhwc(K, a.ph, a.pw, N, H, W)) {
      const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
      const int64_t PP = int64_t(a.ph) * a.pw;
      forward_nhwc(x.data_ptr<scalar_t>(), r.data_ptr<acc_t>(), out.data_ptr<scalar_t>(), K, scale, a, cl ? 1 : PP,
                   cl ? C : 1);
    } else {
      const at::Tensor x = input.contiguous();
      forward_nchw(x.data_ptr<scalar_t>(), r.data_ptr<acc_t>(), out.data_ptr<scalar_t>(), K, scale, a);
    }
  });
  return out;
}

// ---------------------------------------------------------------- backward

// The argmax sample (i, j) of one bin of one channel plane (max mode), or i = -1 when
// the winner contributes no gradient (empty grid, or an out-of-range sample won).
template <typename scalar_t, typename acc_t>
void bin_argmax_nchw(const scalar_t* plane, int64_t W, const RoiSamples<acc_t>& s, int p, int q, int& bi, int& bj) {
  const int gh = s.g.grid_h, gw = s.g.grid_w;
  acc_t best = acc_t(0);
  bool first = true;
  bi = bj = -1;
  for (int i = 0; i < gh; ++i) {
    const AxisSample<acc_t>& ay = s.ys[size_t(p) * gh + i];
    const scalar_t* rlo = plane + ay.lo * W;
    const scalar_t* rhi = plane + ay.hi * W;
    for (int j = 0; j < gw; ++j) {
      const AxisSample<acc_t>& ax = s.xs[size_t(q) * gw + j];
      const bool valid = ay.valid && ax.valid;
      const acc_t v = valid ? bilinear_value(bilinear(ay, ax), acc_t(rlo[ax.lo]), acc_t(rlo[ax.hi]), acc_t(rhi[ax.lo]),
                                             acc_t(rhi[ax.hi]))
                            : acc_t(0);
      if (max_takes(v, best, first)) {
        best = v, first = false;
        bi = valid ? i : -1, bj = j;
      }
    }
  }
}

template <typename acc_t>
void scatter_sample(acc_t* plane, int64_t W, const AxisSample<acc_t>& ay, const AxisSample<acc_t>& ax, acc_t g,
                    acc_t count) {
  const Bilinear<acc_t> w = bilinear(ay, ax);
  plane[ay.lo * W + ax.lo] += g * w.w1 / count;
  plane[ay.lo * W + ax.hi] += g * w.w2 / count;
  plane[ay.hi * W + ax.lo] += g * w.w3 / count;
  plane[ay.hi * W + ax.hi] += g * w.w4 / count;
}

// Average mode: the bin (p, q) spreads g over its valid samples, each weighted 1 / count.
template <typename acc_t>
void scatter_bin_avg(acc_t* plane, int64_t W, const RoiSamples<acc_t>& s, int p, int q, acc_t g) {
  const int gh = s.g.grid_h, gw = s.g.grid_w;
  for (int i = 0; i < gh; ++i) {
    const AxisSample<acc_t>& ay = s.ys[size_t(p) * gh + i];
    if (!ay.valid) continue;
    for (int j = 0; j < gw; ++j) {
      const AxisSample<acc_t>& ax = s.xs[size_t(q) * gw + j];
      if (ax.valid) scatter_sample(plane, W, ay, ax, g, s.g.count);
    }
  }
}

// grad [K, C, ph, pw] contiguous; gin [N, C, H, W] (acc_t); in: input (max mode) or null.
template <typename scalar_t, typename acc_t>
void backward_nchw(const scalar_t* grad, const acc_t* rois, const scalar_t* in, acc_t* gin, int64_t N,
                   const std::vector<std::vector<int64_t>>& by_batch, acc_t scale, const AlignParams& a) {
  const int64_t C = a.channels, W = a.width, HW = a.height * a.width, PP = int64_t(a.ph) * a.pw;
  const int64_t per_plane = (N > 0 ? 1 + by_batch_total(by_batch) / N : 1) * PP * 4;
  at::parallel_for(0, N * C, roi_grain(per_plane), [&](int64_t i0, int64_t i1) {
    RoiSamples<acc_t> s;
    for (int64_t idx = i0; idx < i1; ++idx) {
      const int64_t b = idx / C, c = idx % C;
      acc_t* plane = gin + idx * HW;
      const scalar_t* iplane = in ? in + idx * HW : nullptr;
      for (const int64_t k : by_batch[b]) {
        s.fill(rois + 5 * k, scale, a);
        const scalar_t* g = grad + (k * C + c) * PP;
        const int gh = s.g.grid_h, gw = s.g.grid_w;
        for (int p = 0; p < a.ph; ++p) {
          for (int q = 0; q < a.pw; ++q) {
            const acc_t gb = acc_t(g[p * a.pw + q]);
            if (a.mode == RoiPoolMode::kAvg) {
              scatter_bin_avg(plane, W, s, p, q, gb);
            } else {
              int bi, bj;
              bin_argmax_nchw(iplane, W, s, p, q, bi, bj);
              if (bi >= 0)
                scatter_sample(plane, W, s.ys[size_t(p) * gh + bi], s.xs[size_t(q) * gw + bj], gb, acc_t(1));
            }
          }
        }
      }
    }
  });
}

// Channels-last: grad [K, ph, pw, C], gin [N, H, W, C], in [N, H, W, C] (max mode) or null.
// Tasks are (batch element, block of kBlock channels).
template <typename scalar_t, typename acc_t>
void backward_nhwc(const scalar_t* grad, const acc_t* rois, const scalar_t* in, acc_t* gin, int64_t N,
                   const std::vector<std::vector<int64_t>>& by_batch, acc_t scale, const AlignParams& a) {
  constexpr int64_t kBlock = 32;
  const int64_t C = a.channels, W = a.width, HWC = a.height * a.width * C;
  const int64_t nblk = (C + kBlock - 1) / kBlock;
  const int64_t per_task = (N > 0 ? 1 + by_batch_total(by_batch) / N : 1) * a.ph * a.pw * 4 * std::min(kBlock, C);
  at::parallel_for(0, N * nblk, roi_grain(per_task), [&](int64_t i0, int64_t i1) {
    RoiSamples<acc_t> s;
    acc_t gb[kBlock], best[kBlock];
    int bi[kBlock], bj[kBlock];
    for (int64_t idx = i0; idx < i1; ++idx) {
      const int64_t b = idx / nblk, c0 = (idx % nblk) * kBlock, nc = std::min(kBlock, C - c0);
      acc_t* base = gin + b * HWC + c0;
      const scalar_t* ibase = in ? in + b * HWC + c0 : nullptr;
      for (const int64_t k : by_batch[b]) {
        s.fill(rois + 5 * k, scale, a);
        const int gh = s.g.grid_h, gw = s.g.grid_w;
        for (int p = 0; p < a.ph; ++p) {
          for (int q = 0; q < a.pw; ++q) {
            const scalar_t* g = grad + ((k * a.ph + p) * a.pw + q) * C + c0;
            for (int64_t c = 0; c < nc; ++c) gb[c] = acc_t(g[c]);
            if (a.mode == RoiPoolMode::kAvg) {
              const acc_t count = s.g.count;
              for (int i = 0; i < gh; ++i) {
                const AxisSample<acc_t>& ay = s.ys[size_t(p) * gh + i];
                if (!ay.valid) continue;
                for (int j = 0; j < gw; ++j) {
                  const AxisSample<acc_t>& ax = s.xs[size_t(q) * gw + j];
                  if (!ax.valid) continue;
                  const Bilinear<acc_t> w = bilinear(ay, ax);
                  acc_t* p1 = base + (ay.lo * W + ax.lo) * C;
                  acc_t* p2 = base + (ay.lo * W + ax.hi) * C;
                  acc_t* p3 = base + (ay.hi * W + ax.lo) * C;
                  acc_t* p4 = base + (ay.hi * W + ax.hi) * C;
                  // Corner by corner (not fused per channel): p1..p4 may coincide at the border,
                  // and the per-element order must match the NCHW loop.
                  if constexpr (std::is_same_v<acc_t, float>) {
                    DETSEG_ISA_CALL(roi_scatter_corner, p1, gb, w.w1, count, nc);
                    DETSEG_ISA_CALL(roi_scatter_corner, p2, gb, w.w2, count, nc);
                    DETSEG_ISA_CALL(roi_scatter_corner, p3, gb, w.w3, count, nc);
                    DETSEG_ISA_CALL(roi_scatter_corner, p4, gb, w.w4, count, nc);
                  } else {
                    for (int64_t c = 0; c < nc; ++c) p1[c] += gb[c] * w.w1 / count;
                    for (int64_t c = 0; c < nc; ++c) p2[c] += gb[c] * w.w2 / count;
                    for (int64_t c = 0; c < nc; ++c) p3[c] += gb[c] * w.w3 / count;
                    for (int64_t c = 0; c < nc; ++c) p4[c] += gb[c] * w.w4 / count;
                  }
                }
              }
            } else {
              bool first = true;
              for (int64_t c = 0; c < nc; ++c) best[c] = acc_t(0), bi[c] = bj[c] = -1;
              for (int i = 0; i < gh; ++i) {
                const AxisSample<acc_t>& ay = s.ys[size_t(p) * gh + i];
                for (int j = 0; j < gw; ++j) {
                  const AxisSample<acc_t>& ax = s.xs[size_t(q) * gw + j];
                  const bool valid = ay.valid && ax.valid;
                  const Bilinear<acc_t> w = bilinear(ay, ax);
                  const scalar_t* p1 = ibase + (ay.lo * W + ax.lo) * C;
                  const scalar_t* p2 = ibase + (ay.lo * W + ax.hi) * C;
                  const scalar_t* p3 = ibase + (ay.hi * W + ax.lo) * C;
                  const scalar_t* p4 = ibase + (ay.hi * W + ax.hi) * C;
                  for (int64_t c = 0; c < nc; ++c) {
                    const acc_t v =
                        valid ? bilinear_value(w, acc_t(p1[c]), acc_t(p2[c]), acc_t(p3[c]), acc_t(p4[c])) : acc_t(0);
                    if (max_takes(v, best[c], first)) best[c] = v, bi[c] = valid ? i : -1, bj[c] = j;
                  }
                  first = false;
                }
              }
              for (int64_t c = 0; c < nc; ++c) {
                if (bi[c] < 0) continue;
                const AxisSample<acc_t>& ay = s.ys[size_t(p) * gh + bi[c]];
                const AxisSample<acc_t>& ax = s.xs[size_t(q) * gw + bj[c]];
                const Bilinear<acc_t> w = bilinear(ay, ax);
                base[(ay.lo * W + ax.lo) * C + c] += gb[c] * w.w1 / acc_t(1);
                base[(ay.lo * W + ax.hi) * C + c] += gb[c] * w.w2 / acc_t(1);
                base[(ay.hi * W + ax.lo) * C + c] += gb[c] * w.w3 / acc_t(1);
                base[(ay.hi * W + ax.hi) * C + c] += gb[c] * w.w4 / acc_t(1);
              }
            }
          }
        }
      }
    }
  });
}

at::Tensor roi_align_backward_cpu(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                                  int64_t pooled_height, int64_t pooled_width, int64_t batch_size, int64_t channels,
                                  int64_t height, int64_t width, int64_t sampling_ratio, bool aligned,
                                  std::string_view pool_mode, const std::optional<at::Tensor>& input) {
  const char* op = "_roi_align_backward";
  const RoiPoolMode mode = roi_align_backward_checks(op, grad, rois, spatial_scale, pooled_height, pooled_width,
                                                     batch_size, channels, height, width, sampling_ratio, pool_mode,
                                                     input);
  const bool cl = checks::roi_channels_last(grad);
  const int64_t K = rois.size(0), N = batch_size, C = channels, H = height, W = width;
  // As in the forward, many RoIs per pixel make the channel-inner loop worth a transposition
  // of grad and of the result; the bits are the same either way.
  const bool nhwc = cl || roi_prefer_nhwc(K, pooled_height, pooled_width, N, H, W);
  const auto fmt = roi_memory_format(nhwc);
  at::Tensor gin = roi_grad_alloc(grad, N, C, H, W, fmt);
  advise_huge_pages(gin).zero_();
  const at::Tensor r = roi_rows(rois, grad.scalar_type());
  const AlignParams a{C, H, W, int(pooled_height), int(pooled_width), int(sampling_ratio), aligned, mode};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "detseg_roi_align_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* rp = r.data_ptr<acc_t>();
    checks::roi_batch_indices(op, rp, K, N);
    if (K == 0 || C == 0 || H == 0 || W == 0) return;
    const std::vector<std::vector<int64_t>> by_batch = rois_by_batch(rp, K, N);
    const at::Tensor g = grad.contiguous(fmt);
    at::Tensor x;
    if (mode == RoiPoolMode::kMax) x = input->contiguous(fmt);
    const scalar_t* xp = x.defined() ? x.data_ptr<scalar_t>() : nullptr;
    const acc_t scale = static_cast<acc_t>(spatial_scale);
    if (nhwc)
      backward_nhwc(g.data_ptr<scalar_t>(), rp, xp, gin.data_ptr<acc_t>(), N, by_batch, scale, a);
    else
      backward_nchw(g.data_ptr<scalar_t>(), rp, xp, gin.data_ptr<acc_t>(), N, by_batch, scale, a);
  });
  at::Tensor res = roi_grad_result(gin, grad);
  return nhwc && !cl ? res.contiguous() : res;
}

// ---------------------------------------------------------------- ps_roi_align
// Position-sensitive RoIAlign (torchvision's geometry = aligned, average mode). NCHW only:
// each output bin reads one input plane, so there is no channel-inner loop to vectorise.

std::tuple<at::Tensor, at::Tensor> ps_roi_align_cpu(const at::Tensor& input, const at::Tensor& rois,
                                                    double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                                    int64_t sampling_ratio) {
  const char* op = "ps_roi_align";
  const auto [K, N, C, H, W, cl, fmt] =
      roi_forward_begin(op, input, rois, spatial_scale, pooled_height, pooled_width, true);
  checks::roi_sampling_ratio(op, sampling_ratio);
  const int ph = int(pooled_height), pw = int(pooled_width);
  const int64_t PP = int64_t(ph) * pw, Cout = C / PP, HW = H * W;
  at::Tensor out = at::zeros({K, Cout, ph, pw}, input.options());
  at::Tensor map = at::empty({K, Cout, ph, pw}, input.options().dtype(at::kLong));
  const at::Tensor r = roi_rows(rois, input.scalar_type());
  const AlignParams a{C, H, W, ph, pw, int(sampling_ratio), true, RoiPoolMode::kAvg};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "detseg_ps_roi_align", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* rp = r.data_ptr<acc_t>();
    checks::roi_batch_indices(op, rp, K, N);
    int64_t* mp = map.data_ptr<int64_t>();
    for (int64_t i = 0; i < K * Cout * PP; ++i) mp[i] = (i / PP % Cout) * PP + i % PP;
    if (K == 0 || Cout == 0 || HW == 0) return;
    const at::Tensor x = input.contiguous();
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const acc_t scale = static_cast<acc_t>(spatial_scale);
    at::parallel_for(0, K, roi_grain(Cout * PP * 4), [&](int64_t k0, int64_t k1) {
      RoiSamples<acc_t> s;
      for (int64_t k = k0; k < k1; ++k) {
        s.fill(rp + 5 * k, scale, a);
        const int64_t b = static_cast<int64_t>(rp[5 * k]);
        for (int64_t c = 0; c < Cout; ++c)
          for (int p = 0; p < ph; ++p)
            for (int q = 0; q < pw; ++q) {
              const scalar_t* plane = in + (b * C + ps_input_channel(c, p, q, ph, pw)) * HW;
              o[((k * Cout + c) * ph + p) * pw + q] = scalar_t(bin_value_nchw(plane, W, s, p, q, RoiPoolMode::kAvg));
            }
      }
    });
  });
  return {out, map};
}

// One task per input plane (b, c_in): that plane is bin (p, q) of output channel c_out only.
at::Tensor ps_roi_align_backward_cpu(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& channel_mapping,
                                     double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                     int64_t sampling_ratio, int64_t batch_size, int64_t channels, int64_t height,
                                     int64_t width) {
  const char* op = "_ps_roi_align_backward";
  const int64_t Cout =
      ps_roi_backward_cout(op, grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height, width);
  checks::roi_sampling_ratio(op, sampling_ratio);
  ps_roi_check_channel_mapping(op, channel_mapping, grad);
  const int64_t N = batch_size, C = channels, H = height, W = width;
  const int ph = int(pooled_height), pw = int(pooled_width);
  const at::ScalarType acc_type = roi_acc_type(grad.scalar_type());
  at::Tensor gin = at::zeros({N, C, H, W}, grad.options().dtype(acc_type));
  const at::Tensor r = roi_rows(rois, grad.scalar_type());
  const AlignParams a{C, H, W, ph, pw, int(sampling_ratio), true, RoiPoolMode::kAvg};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "detseg_ps_roi_align_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    ps_roi_backward_typed<scalar_t, RoiSamples<acc_t>>(
        op, grad, r, gin, spatial_scale, ph, pw, Cout,
        [&](RoiSamples<acc_t>& s, acc_t* plane, const acc_t* roi, acc_t scale, acc_t g, int p, int q) {
          s.fill(roi, scale, a);
          scatter_bin_avg(plane, W, s, p, q, g);
        });
  });
  return gin.scalar_type() == grad.scalar_type() ? gin : gin.to(grad.scalar_type());
}

}  // namespace
}  // namespace detseg::cpu

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("roi_align", &detseg::cpu::roi_align_cpu);
  m.impl("_roi_align_backward", &detseg::cpu::roi_align_backward_cpu);
  m.impl("ps_roi_align", &detseg::cpu::ps_roi_align_cpu);
  m.impl("_ps_roi_align_backward", &detseg::cpu::ps_roi_align_backward_cpu);
}
