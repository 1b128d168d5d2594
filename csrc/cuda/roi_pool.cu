// CUDA kernels of roi_pool and ps_roi_pool, forward and backward: iteration, layout and
// launch only; the quantisation is detseg/roi_pool.h, called as csrc/cpu/roi_pool.cpp calls it.
//
// Forward: one thread per output element (k, c, ph, pw) in the output's memory order (NCHW,
// or channels-last when the input is), scanning its bin row by row (first maximum wins,
// NaN wins, as the CPU kernel and torch.argmax).
// Backward, default: one thread per grad element, atomic adds (at the argmax pixel for
// roi_pool, over the bin for ps_roi_pool).
// Backward under torch.use_deterministic_algorithms(True): the gather of cuda/roi_common.cuh.
// A thread owning input-gradient element (n, c, h, w) walks the bins of each RoI of batch n
// that contain (h, w) (bin edges are monotone in the bin index, so it stops at the first bin
// past h) and adds, in RoI then bin order as the CPU kernel:
//   roi_pool     grad[k, c, p, q] where argmax[k, c, p, q] == h * W + w;
//   ps_roi_pool  grad[k, c_out, p, q] / bin area for the one bin (p, q) of its channel.
// The gather only visits bins that contain their pixel, so in deterministic mode roi_pool's
// backward requires every argmax to lie in its own bin (true of roi_pool's output) and says
// so otherwise; the atomic path, like the CPU kernel, accepts any index in [0, H * W).
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "checks.h"
#include "cuda/launch.cuh"
#include "cuda/roi_common.cuh"
#include "cuda/roi_gather.h"
#include "detseg/roi_pool.h"

namespace detseg::cuda {
namespace {

struct PoolArgs {
  int ph, pw;
  int64_t H, W;
  bool plus_one;  // roi_pool spans end - start + 1 pixels, ps_roi_pool end - start
};

// Pixel range [h0, h1) x [w0, w1) of bin (p, q) of RoI k (empty for a non-finite RoI), as
// RoiBins::fill of the CPU kernel.
struct PoolBin {
  int64_t h0, h1, w0, w1;
};

template <typename acc_t>
__device__ __forceinline__ PoolBin pool_bin(const RoiPoolGeom<acc_t>& g, int p, int q, const PoolArgs& a) {
  PoolBin r{0, 0, 0, 0};
  if (!g.finite) return r;
  roi_pool_bin(g.start_h, g.bin_h, p, a.H, r.h0, r.h1);
  roi_pool_bin(g.start_w, g.bin_w, q, a.W, r.w0, r.w1);
  return r;
}

template <typename acc_t>
__device__ __forceinline__ RoiPoolGeom<acc_t> pool_geom(const acc_t* rois, int64_t k, acc_t scale, const PoolArgs& a) {
  return roi_pool_geom<acc_t>(rois + 5 * k, scale, a.ph, a.pw, a.plus_one);
}

// ---------------------------------------------------------------- forward

// Grid: grid-stride over the K * C * ph * pw outputs in memory order (cl: channels-last);
// out and argmax share the layout.
template <typename scalar_t, typename acc_t>
__global__ void roi_pool_forward_kernel(const scalar_t* __restrict__ in, Strides4 is, const acc_t* __restrict__ rois,
                                        int64_t total, int64_t C, PoolArgs a, acc_t scale, bool cl,
                                        scalar_t* __restrict__ out, int64_t* __restrict__ arg) {
  grid_stride(total, [&](int64_t idx) {
    int64_t k, c, p, q;
    unravel4(idx, C, a.ph, a.pw, cl, k, c, p, q);
    const PoolBin bin = pool_bin(pool_geom(rois, k, scale, a), int(p), int(q), a);
    const scalar_t* plane = in + static_cast<int64_t>(rois[5 * k]) * is.s0 + c * is.s1;
    acc_t best = acc_t(0);
    int64_t bi = -1;
    for (int64_t h = bin.h0; h < bin.h1; ++h) {
      for (int64_t w = bin.w0; w < bin.w1; ++w) {
        const acc_t v = static_cast<acc_t>(plane[h * is.s2 + w * is.s3]);
        if (pool_takes(v, best, bi < 0)) best = v, bi = h * a.W + w;
      }
    }
    out[idx] = static_cast<scalar_t>(best);
    arg[idx] = bi;
  });
}

// Grid: grid-stride over the K * C_out * ph * pw outputs (NCHW): the mean of the bin of input
// channel ps_input_channel(c, p, q), 0 for an empty bin.
template <typename scalar_t, typename acc_t>
__global__ void ps_roi_pool_forward_kernel(const scalar_t* __restrict__ in, const acc_t* __restrict__ rois,
                                           int64_t total, int64_t C, int64_t Cout, PoolArgs a, acc_t scale,
                                           scalar_t* __restrict__ out, int64_t* __restrict__ map) {
  grid_stride(total, [&](int64_t idx) {
    int64_t k, c, p, q;
    unravel4(idx, Cout, a.ph, a.pw, false, k, c, p, q);
    const int64_t ci = ps_input_channel(c, int(p), int(q), a.ph, a.pw);
    map[idx] = ci;
    const PoolBin bin = pool_bin(pool_geom(rois, k, scale, a), int(p), int(q), a);
    acc_t v = acc_t(0);
    if (bin.h1 > bin.h0 && bin.w1 > bin.w0) {
      const scalar_t* plane = in + (static_cast<int64_t>(rois[5 * k]) * C + ci) * a.H * a.W;
      acc_t sum = acc_t(0);
      for (int64_t h = bin.h0; h < bin.h1; ++h)
        for (int64_t w = bin.w0; w < bin.w1; ++w) sum += static_cast<acc_t>(plane[h * a.W + w]);
      v = sum / static_cast<acc_t>((bin.h1 - bin.h0) * (bin.w1 - bin.w0));
    }
    out[idx] = static_cast<scalar_t>(v);
  });
}

// ---------------------------------------------------------------- backward, atomic

// Grid: grid-stride over the grad elements in memory order (grad, argmax and gin share the
// layout cl). Indices are validated beforehand (roi_pool_check_argmax).
template <typename scalar_t, typename acc_t>
__global__ void roi_pool_backward_atomic_kernel(const scalar_t* __restrict__ grad, const int64_t* __restrict__ argmax,
                                                const acc_t* __restrict__ rois, int64_t total, int64_t C, PoolArgs a,
                                                bool cl, acc_t* gin, Strides4 gs) {
  grid_stride(total, [&](int64_t idx) {
    const int64_t pos = argmax[idx];
    if (pos < 0) return;
    int64_t k, c, p, q;
    unravel4(idx, C, a.ph, a.pw, cl, k, c, p, q);
    const int64_t b = static_cast<int64_t>(rois[5 * k]);
    atomicAdd(gin + gs.at(b, c, pos / a.W, pos % a.W), static_cast<acc_t>(grad[idx]));
  });
}

// Grid: grid-stride over the K * C_out * ph * pw grad elements (NCHW).
template <typename scalar_t, typename acc_t>
__global__ void ps_roi_pool_backward_atomic_kernel(const scalar_t* __restrict__ grad, const acc_t* __restrict__ rois,
                                                   int64_t total, int64_t C, int64_t Cout, PoolArgs a, acc_t scale,
                                                   acc_t* gin) {
  grid_stride(total, [&](int64_t idx) {
    int64_t k, c, p, q;
    unravel4(idx, Cout, a.ph, a.pw, false, k, c, p, q);
    const PoolBin bin = pool_bin(pool_geom(rois, k, scale, a), int(p), int(q), a);
    if (bin.h1 <= bin.h0 || bin.w1 <= bin.w0) return;
    const acc_t d = static_cast<acc_t>(grad[idx]) / static_cast<acc_t>((bin.h1 - bin.h0) * (bin.w1 - bin.w0));
    acc_t* plane = gin + (static_cast<int64_t>(rois[5 * k]) * C + ps_input_channel(c, int(p), int(q), a.ph, a.pw)) *
                             a.H * a.W;
    for (int64_t h = bin.h0; h < bin.h1; ++h)
      for (int64_t w = bin.w0; w < bin.w1; ++w) atomicAdd(plane + h * a.W + w, d);
  });
}

// Bit 1: an index >= H * W (an error, as on CPU); bit 2: an index outside its own bin (only
// the deterministic gather cares). Grid: grid-stride over the argmax elements; the flag is
// an OR, so its value does not depend on the order of the atomics.
template <typename acc_t>
__global__ void roi_pool_check_argmax_kernel(const int64_t* __restrict__ argmax, const acc_t* __restrict__ rois,
                                             int64_t total, int64_t C, PoolArgs a, acc_t scale, bool cl,
                                             int* __restrict__ flag) {
  grid_stride(total, [&](int64_t idx) {
    const int64_t pos = argmax[idx];
    if (pos < 0) return;
    if (pos >= a.H * a.W) {
      atomicOr(flag, 1);
      return;
    }
    int64_t k, c, p, q;
    unravel4(idx, C, a.ph, a.pw, cl, k, c, p, q);
    const PoolBin bin = pool_bin(pool_geom(rois, k, scale, a), int(p), int(q), a);
    const int64_t h = pos / a.W, w = pos % a.W;
    if (h < bin.h0 || h >= bin.h1 || w < bin.w0 || w >= bin.w1) atomicOr(flag, 2);
  });
}

// ---------------------------------------------------------------- backward, deterministic gather

// roi_pool (ps = false: argmax matches over the bins containing the pixel) and ps_roi_pool
// (ps = true: gradient channel c is bin (p, q) of output channel c / (ph * pw) only).
template <typename scalar_t>
struct PoolGather {
  using acc_t = at::opmath_type<scalar_t>;
  struct Entry {
    int64_t k;
    PixelWindow win;
    RoiPoolGeom<acc_t> g;
  };
  const acc_t* rois;
  const scalar_t* grad;
  const int64_t* argmax;  // roi_pool: grad's layout; null for ps_roi_pool
  Strides4 gs;            // of grad [K, C(_out), ph, pw]
  acc_t scale;
  PoolArgs a;

  __device__ void prepare(int64_t k, Entry& e) const {
    e.k = k;
    e.g = pool_geom(rois, k, scale, a);
    pool_axis_window(e.g, true, a.ph, a.H, e.win.y0, e.win.y1);
    pool_axis_window(e.g, false, a.pw, a.W, e.win.x0, e.win.x1);
  }

  __device__ void add(const Entry& e, int64_t, int64_t c, int h, int w, acc_t& acc) const {
    const int64_t pp = int64_t(a.ph) * a.pw;
    const bool ps = argmax == nullptr;
    const int64_t co = ps ? c / pp : c;
    auto grad_at = [&](int p, int q) { return static_cast<acc_t>(grad[gs.at(e.k, co, p, q)]); };
    auto arg_at = [&](int p, int q) { return argmax[gs.at(e.k, co, p, q)]; };
    pool_gather_roi(e.g, a.ph, a.pw, a.H, a.W, h, w, ps ? static_cast<int>(c / a.pw % a.ph) : -1,
                    ps ? static_cast<int>(c % a.pw) : -1, grad_at, arg_at, acc);
  }
};

// ---------------------------------------------------------------- host

std::tuple<at::Tensor, at::Tensor> roi_pool_cuda(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                                                 int64_t pooled_height, int64_t pooled_width) {
  const char* op = "roi_pool";
  const auto [K, N, C, H, W, cl, fmt] =
      roi_forward_begin(op, input, rois, spatial_scale, pooled_height, pooled_width, false);
  DeviceScope scope(input);
  at::Tensor out = at::empty({K, C, pooled_height, pooled_width}, input.options().memory_format(fmt));
  at::Tensor arg = at::empty({K, C, pooled_height, pooled_width}, input.options().dtype(at::kLong).memory_format(fmt));
  const RoiRows r = roi_rows_checked(op, rois, input.scalar_type(), N);
  const int64_t total = out.numel();
  if (total == 0) return {out, arg};
  // An empty map (H or W = 0) clips every bin to empty: 0 and argmax -1, no special case.
  const at::Tensor x = input.contiguous(fmt);
  const PoolArgs a{int(pooled_height), int(pooled_width), H, W, true};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "detseg_roi_pool_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    roi_pool_forward_kernel<scalar_t, acc_t><<<grid_1d(total), kThreads, 0, scope.stream>>>(
        x.const_data_ptr<scalar_t>(), strides4(x), r.dev.const_data_ptr<acc_t>(), total, C, a,
        static_cast<acc_t>(spatial_scale), cl, out.mutable_data_ptr<scalar_t>(), arg.mutable_data_ptr<int64_t>());
    DETSEG_CUDA_LAUNCH_CHECK();
  });
  return {out, arg};
}

at::Tensor roi_pool_backward_cuda(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                                  double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                  int64_t batch_size, int64_t channels, int64_t height, int64_t width) {
  const char* op = "_roi_pool_backward";
  roi_pool_backward_checks(op, grad, rois, argmax, spatial_scale, pooled_height, pooled_width, batch_size, channels,
                           height, width);
  roi_check_same_device(op, "argmax", argmax, grad);
  roi_check_map_size(op, height, width);
  const bool cl = checks::roi_channels_last(grad);
  const auto fmt = roi_memory_format(cl);
  const int64_t K = rois.size(0), N = batch_size, C = channels, H = height, W = width;
  const PoolArgs a{int(pooled_height), int(pooled_width), H, W, true};
  return roi_backward_cuda(op, grad, rois, N, C, H, W, cl, K == 0 || C == 0 || H * W == 0, [&](auto* tag,
                                                                                               RoiLaunch& l) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t scale = static_cast<acc_t>(spatial_scale);
    const acc_t* rp = l.r.dev.const_data_ptr<acc_t>();
    const int64_t total = l.g.numel();
    const at::Tensor am = argmax.contiguous(fmt);
    // Device->host sync: the validity of the indices (an out-of-range index would write
    // outside the gradient).
    at::Tensor flag = at::zeros({1}, grad.options().dtype(at::kInt));
    roi_pool_check_argmax_kernel<acc_t><<<grid_1d(total), kThreads, 0, l.stream>>>(
        am.const_data_ptr<int64_t>(), rp, total, C, a, scale, cl, flag.mutable_data_ptr<int>());
    DETSEG_CUDA_LAUNCH_CHECK();
    const int bad = flag.item<int>();
    TORCH_CHECK_VALUE(!(bad & 1), "detseg.", op, ": argmax must hold -1 or plane indices in [0, ", H * W, ")");
    TORCH_CHECK_VALUE(!(l.deterministic && (bad & 2)), "detseg.", op,
                      ": argmax must hold -1 or a pixel of its own bin (as roi_pool returns) for the deterministic "
                      "CUDA backward");
    if (!l.deterministic) {
      roi_pool_backward_atomic_kernel<scalar_t, acc_t><<<grid_1d(total), kThreads, 0, l.stream>>>(
          l.g.const_data_ptr<scalar_t>(), am.const_data_ptr<int64_t>(), rp, total, C, a, cl,
          l.gin.mutable_data_ptr<acc_t>(), strides4(l.gin));
      DETSEG_CUDA_LAUNCH_CHECK();
      return;
    }
    const PoolGather<scalar_t> gather{rp, l.g.const_data_ptr<scalar_t>(), am.const_data_ptr<int64_t>(),
                                      strides4(l.g), scale, a};
    roi_gather(gather, roi_batch_buckets(l.r.host, N, grad.device()), gather_plan(N, C, H, W, cl), l.gin, l.stream);
  });
}

std::tuple<at::Tensor, at::Tensor> ps_roi_pool_cuda(const at::Tensor& input, const at::Tensor& rois,
                                                    double spatial_scale, int64_t pooled_height,
                                                    int64_t pooled_width) {
  const char* op = "ps_roi_pool";
  const auto [K, N, C, H, W, cl, fmt] =
      roi_forward_begin(op, input, rois, spatial_scale, pooled_height, pooled_width, true);
  const int64_t Cout = C / (pooled_height * pooled_width);
  const PoolArgs a{int(pooled_height), int(pooled_width), H, W, false};
  return ps_roi_forward_cuda(op, input, rois, N, C, Cout, pooled_height, pooled_width, spatial_scale, a, [](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    return ps_roi_pool_forward_kernel<scalar_t, at::opmath_type<scalar_t>>;
  });
}

at::Tensor ps_roi_pool_backward_cuda(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& channel_mapping,
                                     double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                     int64_t batch_size, int64_t channels, int64_t height, int64_t width) {
  const char* op = "_ps_roi_pool_backward";
  const int64_t Cout = ps_roi_backward_cout(op, grad, rois, spatial_scale, pooled_height, pooled_width, batch_size,
                                            channels, height, width);
  ps_roi_check_channel_mapping(op, channel_mapping, grad);
  roi_check_map_size(op, height, width);
  const int64_t K = rois.size(0), N = batch_size, C = channels, H = height, W = width;
  const PoolArgs a{int(pooled_height), int(pooled_width), H, W, false};
  return ps_roi_backward_cuda(
      op, grad, rois, N, C, H, W, Cout, K == 0 || Cout == 0 || H * W == 0, spatial_scale, a,
      [](auto* tag) {
        using scalar_t = std::remove_pointer_t<decltype(tag)>;
        return ps_roi_pool_backward_atomic_kernel<scalar_t, at::opmath_type<scalar_t>>;
      },
      [&](auto* tag, const auto* rp, const auto* g, Strides4 st, auto scale) {
        return PoolGather<std::remove_pointer_t<decltype(tag)>>{rp, g, nullptr, st, scale, a};
      });
}

}  // namespace
}  // namespace detseg::cuda

TORCH_LIBRARY_IMPL(detseg, CUDA, m) {
  m.impl("roi_pool", &detseg::cuda::roi_pool_cuda);
  m.impl("_roi_pool_backward", &detseg::cuda::roi_pool_backward_cuda);
  m.impl("ps_roi_pool", &detseg::cuda::ps_roi_pool_cuda);
  m.impl("_ps_roi_pool_backward", &detseg::cuda::ps_roi_pool_backward_cuda);
}
