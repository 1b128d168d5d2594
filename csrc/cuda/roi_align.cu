// CUDA kernels of roi_align (avg and mmcv's max mode) and ps_roi_align, forward and backward:
// iteration, layout and launch only; the pixel model is detseg/roi_align.h, called exactly as
// csrc/cpu/roi_align.cpp calls it (same sample order, same per-sample expressions; nvcc runs
// with --fmad=false), so results follow the CPU kernel.
//
// Forward: one thread per output element (k, c, ph, pw), in the output's memory order (NCHW,
// or channels-last when the input is: a warp then reads neighbouring channels).
// Backward, default: one thread per gradient element of the output, atomic adds into an
// accumulation-type gradient (fast, order not fixed).
// Backward under torch.use_deterministic_algorithms(True): the gather of cuda/roi_common.cuh,
// one thread per input-gradient element summing its RoIs in order. Per (pixel, RoI) a thread
// narrows the bins to those near its pixel, finds in each the samples whose bilinear
// neighbours include its row / column (a contiguous range: sample positions are monotone
// inside a bin) by binary search, and adds only those samples' corner terms, in the CPU
// order (cuda/roi_gather.h, checked bitwise against that order on the host). Max mode first
// stores the argmax sample of every output element (int64, the size of grad) so the gather
// does not re-run each bin's max per pixel.
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <tuple>

#include "checks.h"
#include "cuda/launch.cuh"
#include "cuda/roi_common.cuh"
#include "cuda/roi_gather.h"
#include "detseg/roi_align.h"
#include "detseg/roi_pool.h"  // ps_input_channel

namespace detseg::cuda {
namespace {

using checks::RoiPoolMode;

struct AlignArgs {
  int ph, pw, sampling_ratio;
  bool aligned;
  int H, W;
};

template <typename acc_t>
__device__ __forceinline__ RoiAlignGeom<acc_t> geom_of(const acc_t* rois, int64_t k, acc_t scale, const AlignArgs& a) {
  return roi_align_geom<acc_t>(rois + 5 * k, scale, a.ph, a.pw, a.sampling_ratio, a.aligned);
}

template <typename acc_t>
__device__ __forceinline__ AxisSample<acc_t> sample_y(const RoiAlignGeom<acc_t>& g, int p, int i, int H) {
  return axis_sample(roi_sample_pos(g.start_h, g.bin_h, p, i, g.grid_h), H);
}

template <typename acc_t>
__device__ __forceinline__ AxisSample<acc_t> sample_x(const RoiAlignGeom<acc_t>& g, int q, int j, int W) {
  return axis_sample(roi_sample_pos(g.start_w, g.bin_w, q, j, g.grid_w), W);
}

// Bin (p, q) of one input plane (element (h, w) at plane[h * sh + w * sw]): the average, or in
// max mode the largest sample with *arg = its index i * grid_w + j (-1 when no valid sample
// wins), as bin_value_nchw / bin_argmax_nchw of the CPU kernel.
template <typename scalar_t, typename acc_t>
__device__ acc_t align_bin(const scalar_t* __restrict__ plane, int64_t sh, int64_t sw, const RoiAlignGeom<acc_t>& g,
                           int p, int q, int H, int W, bool max_mode, int64_t* arg) {
  const int gh = g.grid_h, gw = g.grid_w;
  auto px = [&](int y, int x) { return static_cast<acc_t>(plane[y * sh + x * sw]); };
  if (!max_mode) {
    acc_t acc = acc_t(0);
    for (int i = 0; i < gh; ++i) {
      const AxisSample<acc_t> ay = sample_y(g, p, i, H);
      if (!ay.valid) continue;
      for (int j = 0; j < gw; ++j) {
        const AxisSample<acc_t> ax = sample_x(g, q, j, W);
        if (!ax.valid) continue;
        acc += bilinear_value(bilinear(ay, ax), px(ay.lo, ax.lo), px(ay.lo, ax.hi), px(ay.hi, ax.lo), px(ay.hi, ax.hi));
      }
    }
    return acc / g.count;
  }
  acc_t best = acc_t(0);
  bool first = true;
  int64_t best_arg = -1;
  for (int i = 0; i < gh; ++i) {
    const AxisSample<acc_t> ay = sample_y(g, p, i, H);
    for (int j = 0; j < gw; ++j) {
      const AxisSample<acc_t> ax = sample_x(g, q, j, W);
      const bool valid = ay.valid && ax.valid;
      const acc_t v = valid ? bilinear_value(bilinear(ay, ax), px(ay.lo, ax.lo), px(ay.lo, ax.hi), px(ay.hi, ax.lo),
                                             px(ay.hi, ax.hi))
                            : acc_t(0);
      if (max_takes(v, best, first)) {
        best = v;
        first = false;
        best_arg = valid ? int64_t(i) * gw + j : -1;
      }
    }
  }
  *arg = best_arg;
  return best;  // 0 for an empty grid
}

// ---------------------------------------------------------------- forward

// Grid: grid-stride over the K * C * ph * pw outputs in memory order (cl: channels-last).
// Writes out[idx] (when out) and, in max mode, the argmax sample (when arg: the deterministic
// backward's pre-pass).
template <typename scalar_t, typename acc_t>
__global__ void roi_align_forward_kernel(const scalar_t* __restrict__ in, Strides4 is, const acc_t* __restrict__ rois,
                                         int64_t total, int64_t C, AlignArgs a, acc_t scale, bool max_mode, bool cl,
                                         scalar_t* __restrict__ out, int64_t* __restrict__ arg) {
  grid_stride(total, [&](int64_t idx) {
    int64_t k, c, p, q;
    unravel4(idx, C, a.ph, a.pw, cl, k, c, p, q);
    const RoiAlignGeom<acc_t> g = geom_of(rois, k, scale, a);
    const int64_t b = static_cast<int64_t>(rois[5 * k]);
    int64_t am = -1;
    const acc_t v = align_bin(in + b * is.s0 + c * is.s1, is.s2, is.s3, g, int(p), int(q), a.H, a.W, max_mode, &am);
    if (out) out[idx] = static_cast<scalar_t>(v);
    if (arg) arg[idx] = am;
  });
}

// Grid: grid-stride over the K * C_out * ph * pw outputs (NCHW); output channel c of bin (p, q)
// reads input channel ps_input_channel(c, p, q).
template <typename scalar_t, typename acc_t>
__global__ void ps_roi_align_forward_kernel(const scalar_t* __restrict__ in, const acc_t* __restrict__ rois,
                                            int64_t total, int64_t C, int64_t Cout, AlignArgs a, acc_t scale,
                                            scalar_t* __restrict__ out, int64_t* __restrict__ map) {
  const int64_t HW = int64_t(a.H) * a.W;
  grid_stride(total, [&](int64_t idx) {
    int64_t k, c, p, q;
    unravel4(idx, Cout, a.ph, a.pw, false, k, c, p, q);
    const int64_t ci = ps_input_channel(c, int(p), int(q), a.ph, a.pw);
    map[idx] = ci;
    acc_t v = acc_t(0);
    if (HW > 0) {
      const RoiAlignGeom<acc_t> g = geom_of(rois, k, scale, a);
      const int64_t b = static_cast<int64_t>(rois[5 * k]);
      int64_t unused;
      v = align_bin(in + (b * C + ci) * HW, a.W, 1, g, int(p), int(q), a.H, a.W, false, &unused);
    }
    out[idx] = static_cast<scalar_t>(v);
  });
}

// ---------------------------------------------------------------- backward, atomic

// scatter_sample of the CPU kernel, with atomic adds (plane element (h, w) at h * sh + w * sw).
template <typename acc_t>
__device__ __forceinline__ void scatter_atomic(acc_t* plane, int64_t sh, int64_t sw, const AxisSample<acc_t>& ay,
                                               const AxisSample<acc_t>& ax, acc_t g, acc_t count) {
  const Bilinear<acc_t> w = bilinear(ay, ax);
  atomicAdd(plane + ay.lo * sh + ax.lo * sw, g * w.w1 / count);
  atomicAdd(plane + ay.lo * sh + ax.hi * sw, g * w.w2 / count);
  atomicAdd(plane + ay.hi * sh + ax.lo * sw, g * w.w3 / count);
  atomicAdd(plane + ay.hi * sh + ax.hi * sw, g * w.w4 / count);
}

template <typename acc_t>
__device__ void scatter_bin_atomic(acc_t* plane, int64_t sh, int64_t sw, const RoiAlignGeom<acc_t>& g, int p, int q,
                                   int H, int W, acc_t gb) {
  for (int i = 0; i < g.grid_h; ++i) {
    const AxisSample<acc_t> ay = sample_y(g, p, i, H);
    if (!ay.valid) continue;
    for (int j = 0; j < g.grid_w; ++j) {
      const AxisSample<acc_t> ax = sample_x(g, q, j, W);
      if (ax.valid) scatter_atomic(plane, sh, sw, ay, ax, gb, g.count);
    }
  }
}

// Grid: grid-stride over the grad elements in memory order (grad and gin share the layout
// cl; in, for max mode, too). Reads grad once, writes 4 atomics per valid sample.
template <typename scalar_t, typename acc_t>
__global__ void roi_align_backward_atomic_kernel(const scalar_t* __restrict__ grad, const acc_t* __restrict__ rois,
                                                 int64_t total, int64_t C, AlignArgs a, acc_t scale, bool max_mode,
                                                 bool cl, const scalar_t* __restrict__ in, Strides4 is, acc_t* gin,
                                                 Strides4 gs) {
  grid_stride(total, [&](int64_t idx) {
    int64_t k, c, p, q;
    unravel4(idx, C, a.ph, a.pw, cl, k, c, p, q);
    const RoiAlignGeom<acc_t> g = geom_of(rois, k, scale, a);
    const int64_t b = static_cast<int64_t>(rois[5 * k]);
    acc_t* plane = gin + b * gs.s0 + c * gs.s1;
    const acc_t gb = static_cast<acc_t>(grad[idx]);
    if (!max_mode) {
      scatter_bin_atomic(plane, gs.s2, gs.s3, g, int(p), int(q), a.H, a.W, gb);
      return;
    }
    int64_t am;
    align_bin(in + b * is.s0 + c * is.s1, is.s2, is.s3, g, int(p), int(q), a.H, a.W, true, &am);
    if (am < 0) return;
    const int i = static_cast<int>(am / g.grid_w), j = static_cast<int>(am % g.grid_w);
    scatter_atomic(plane, gs.s2, gs.s3, sample_y(g, int(p), i, a.H), sample_x(g, int(q), j, a.W), gb, acc_t(1));
  });
}

// Grid: grid-stride over the K * C_out * ph * pw grad elements (NCHW).
template <typename scalar_t, typename acc_t>
__global__ void ps_roi_align_backward_atomic_kernel(const scalar_t* __restrict__ grad, const acc_t* __restrict__ rois,
                                                    int64_t total, int64_t C, int64_t Cout, AlignArgs a, acc_t scale,
                                                    acc_t* gin) {
  const int64_t HW = int64_t(a.H) * a.W;
  grid_stride(total, [&](int64_t idx) {
    int64_t k, c, p, q;
    unravel4(idx, Cout, a.ph, a.pw, false, k, c, p, q);
    const RoiAlignGeom<acc_t> g = geom_of(rois, k, scale, a);
    const int64_t b = static_cast<int64_t>(rois[5 * k]);
    acc_t* plane = gin + (b * C + ps_input_channel(c, int(p), int(q), a.ph, a.pw)) * HW;
    scatter_bin_atomic(plane, a.W, 1, g, int(p), int(q), a.H, a.W, static_cast<acc_t>(grad[idx]));
  });
}

// ---------------------------------------------------------------- backward, deterministic gather

// roi_align (ps = false: every bin, avg or max through argmax) and ps_roi_align (ps = true:
// gradient channel c is bin (p, q) of output channel c / (ph * pw) only).
template <typename scalar_t>
struct AlignGather {
  using acc_t = at::opmath_type<scalar_t>;
  struct Entry {
    int64_t k;
    PixelWindow win;
    RoiAlignGeom<acc_t> g;
  };
  const acc_t* rois;
  const scalar_t* grad;
  const int64_t* argmax;  // max mode: argmax sample per grad element (grad's layout), else null
  Strides4 gs;            // of grad [K, C(_out), ph, pw]
  acc_t scale;
  AlignArgs a;
  bool ps;

  __device__ void prepare(int64_t k, Entry& e) const {
    e.k = k;
    e.g = geom_of(rois, k, scale, a);
    align_axis_window(e.g.start_h, e.g.bin_h, a.ph, e.g.grid_h, a.H, e.win.y0, e.win.y1);
    align_axis_window(e.g.start_w, e.g.bin_w, a.pw, e.g.grid_w, a.W, e.win.x0, e.win.x1);
  }

  __device__ void add(const Entry& e, int64_t, int64_t c, int h, int w, acc_t& acc) const {
    const int64_t pp = int64_t(a.ph) * a.pw;
    const int64_t co = ps ? c / pp : c;
    auto grad_at = [&](int p, int q) { return static_cast<acc_t>(grad[gs.at(e.k, co, p, q)]); };
    auto arg_at = [&](int p, int q) { return argmax[gs.at(e.k, co, p, q)]; };
    align_gather_roi(e.g, a.ph, a.pw, a.H, a.W, h, w, ps ? static_cast<int>(c / a.pw % a.ph) : -1,
                     ps ? static_cast<int>(c % a.pw) : -1, argmax != nullptr, grad_at, arg_at, acc);
  }
};

// ---------------------------------------------------------------- host

at::Tensor roi_align_cuda(const at::Tensor& input, const at::Tensor& rois, double spatial_scale, int64_t pooled_height,
                          int64_t pooled_width, int64_t sampling_ratio, bool aligned, std::string_view pool_mode) {
  const char* op = "roi_align";
  const auto [K, N, C, H, W, cl, fmt] =
      roi_forward_begin(op, input, rois, spatial_scale, pooled_height, pooled_width, false);
  checks::roi_sampling_ratio(op, sampling_ratio);
  const RoiPoolMode mode = checks::roi_pool_mode(op, pool_mode);
  roi_check_map_size(op, H, W);
  DeviceScope scope(input);
  at::Tensor out = at::empty({K, C, pooled_height, pooled_width}, input.options().memory_format(fmt));
  const RoiRows r = roi_rows_checked(op, rois, input.scalar_type(), N);
  if (K == 0 || C == 0) return out;
  if (H == 0 || W == 0) return out.zero_();  // every sample is outside an empty map
  const at::Tensor x = input.contiguous(fmt);
  const AlignArgs a{int(pooled_height), int(pooled_width), int(sampling_ratio), aligned, int(H), int(W)};
  const int64_t total = out.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "detseg_roi_align_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    roi_align_forward_kernel<scalar_t, acc_t><<<grid_1d(total), kThreads, 0, scope.stream>>>(
        x.const_data_ptr<scalar_t>(), strides4(x), r.dev.const_data_ptr<acc_t>(), total, C, a,
        static_cast<acc_t>(spatial_scale), mode == RoiPoolMode::kMax, cl, out.mutable_data_ptr<scalar_t>(), nullptr);
    DETSEG_CUDA_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor roi_align_backward_cuda(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                                   int64_t pooled_height, int64_t pooled_width, int64_t batch_size, int64_t channels,
                                   int64_t height, int64_t width, int64_t sampling_ratio, bool aligned,
                                   std::string_view pool_mode, const std::optional<at::Tensor>& input) {
  const char* op = "_roi_align_backward";
  const RoiPoolMode mode = roi_align_backward_checks(op, grad, rois, spatial_scale, pooled_height, pooled_width,
                                                     batch_size, channels, height, width, sampling_ratio, pool_mode,
                                                     input);
  const bool max_mode = mode == RoiPoolMode::kMax;
  if (max_mode) roi_check_same_device(op, "input", *input, grad);
  roi_check_map_size(op, height, width);
  const bool cl = checks::roi_channels_last(grad);
  const auto fmt = roi_memory_format(cl);
  const int64_t K = rois.size(0), N = batch_size, C = channels, H = height, W = width;
  const AlignArgs a{int(pooled_height), int(pooled_width), int(sampling_ratio), aligned, int(H), int(W)};
  return roi_backward_cuda(op, grad, rois, N, C, H, W, cl, K == 0 || C == 0 || H == 0 || W == 0, [&](auto* tag,
                                                                                                     RoiLaunch& l) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t scale = static_cast<acc_t>(spatial_scale);
    const acc_t* rp = l.r.dev.const_data_ptr<acc_t>();
    const int64_t total = l.g.numel();
    const at::Tensor x = max_mode ? input->contiguous(fmt) : at::Tensor();
    const scalar_t* xp = max_mode ? x.const_data_ptr<scalar_t>() : nullptr;
    const Strides4 xs = max_mode ? strides4(x) : Strides4{0, 0, 0, 0};
    if (!l.deterministic) {
      roi_align_backward_atomic_kernel<scalar_t, acc_t><<<grid_1d(total), kThreads, 0, l.stream>>>(
          l.g.const_data_ptr<scalar_t>(), rp, total, C, a, scale, max_mode, cl, xp, xs,
          l.gin.mutable_data_ptr<acc_t>(), strides4(l.gin));
      DETSEG_CUDA_LAUNCH_CHECK();
      return;
    }
    at::Tensor am;
    if (max_mode) {
      am = at::empty(l.g.sizes(), l.g.options().dtype(at::kLong).memory_format(fmt));
      roi_align_forward_kernel<scalar_t, acc_t><<<grid_1d(total), kThreads, 0, l.stream>>>(
          xp, xs, rp, total, C, a, scale, true, cl, nullptr, am.mutable_data_ptr<int64_t>());
      DETSEG_CUDA_LAUNCH_CHECK();
    }
    const int64_t* amp = max_mode ? am.const_data_ptr<int64_t>() : nullptr;
    const AlignGather<scalar_t> gather{rp, l.g.const_data_ptr<scalar_t>(), amp, strides4(l.g), scale, a, false};
    roi_gather(gather, roi_batch_buckets(l.r.host, N, grad.device()), gather_plan(N, C, H, W, cl), l.gin, l.stream);
  });
}

std::tuple<at::Tensor, at::Tensor> ps_roi_align_cuda(const at::Tensor& input, const at::Tensor& rois,
                                                     double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                                     int64_t sampling_ratio) {
  const char* op = "ps_roi_align";
  const auto [K, N, C, H, W, cl, fmt] =
      roi_forward_begin(op, input, rois, spatial_scale, pooled_height, pooled_width, true);
  checks::roi_sampling_ratio(op, sampling_ratio);
  roi_check_map_size(op, H, W);
  const int64_t Cout = C / (pooled_height * pooled_width);
  const AlignArgs a{int(pooled_height), int(pooled_width), int(sampling_ratio), true, int(H), int(W)};
  return ps_roi_forward_cuda(op, input, rois, N, C, Cout, pooled_height, pooled_width, spatial_scale, a, [](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    return ps_roi_align_forward_kernel<scalar_t, at::opmath_type<scalar_t>>;
  });
}

at::Tensor ps_roi_align_backward_cuda(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& channel_mapping,
                                      double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                      int64_t sampling_ratio, int64_t batch_size, int64_t channels, int64_t height,
                                      int64_t width) {
  const char* op = "_ps_roi_align_backward";
  const int64_t Cout = ps_roi_backward_cout(op, grad, rois, spatial_scale, pooled_height, pooled_width, batch_size,
                                            channels, height, width);
  ps_roi_check_channel_mapping(op, channel_mapping, grad);
  checks::roi_sampling_ratio(op, sampling_ratio);
  roi_check_map_size(op, height, width);
  const int64_t K = rois.size(0), N = batch_size, C = channels, H = height, W = width;
  const AlignArgs a{int(pooled_height), int(pooled_width), int(sampling_ratio), true, int(H), int(W)};
  return ps_roi_backward_cuda(
      op, grad, rois, N, C, H, W, Cout, K == 0 || Cout == 0 || H == 0 || W == 0, spatial_scale, a,
      [](auto* tag) {
        using scalar_t = std::remove_pointer_t<decltype(tag)>;
        return ps_roi_align_backward_atomic_kernel<scalar_t, at::opmath_type<scalar_t>>;
      },
      [&](auto* tag, const auto* rp, const auto* g, Strides4 st, auto scale) {
        return AlignGather<std::remove_pointer_t<decltype(tag)>>{rp, g, nullptr, st, scale, a, true};
      });
}

}  // namespace
}  // namespace detseg::cuda

TORCH_LIBRARY_IMPL(detseg, CUDA, m) {
  m.impl("roi_align", &detseg::cuda::roi_align_cuda);
  m.impl("_roi_align_backward", &detseg::cuda::roi_align_backward_cuda);
  m.impl("ps_roi_align", &detseg::cuda::ps_roi_align_cuda);
  m.impl("_ps_roi_align_backward", &detseg::cuda::ps_roi_align_backward_cuda);
}
