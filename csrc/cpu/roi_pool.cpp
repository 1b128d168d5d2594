// CPU kernels of roi_pool (forward and backward): iteration, layout and threading only; the
// quantisation is detseg/roi_pool.h. Same threading scheme as roi_align.cpp: forward one
// RoI per task; backward one (batch element, channel block) per task walking its RoIs in
// order, so gradients are bitwise identical for any thread count, without atomics.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "cpu/alloc.h"
#include "cpu/roi_common.h"
#include "cpu/vec/roi_vec.h"
#include "detseg/roi_pool.h"

namespace detseg::cpu {
namespace {

struct PoolParams {
  int64_t channels, height, width;
  int ph, pw;
};

// Pixel ranges of every bin row / column of one RoI.
template <typename acc_t>
struct RoiBins {
  std::vector<int64_t> h0, h1, w0, w1;
  void fill(const acc_t* roi, acc_t scale, const PoolParams& a, bool extent_plus_one = true) {
    const RoiPoolGeom<acc_t> g = roi_pool_geom<acc_t>(roi, scale, a.ph, a.pw, extent_plus_one);
    h0.resize(a.ph), h1.resize(a.ph), w0.resize(a.pw), w1.resize(a.pw);
    for (int p = 0; p < a.ph; ++p) {
      if (g.finite) roi_pool_bin(g.start_h, g.bin_h, p, a.height, h0[p], h1[p]);
      else h0[p] = h1[p] = 0;
    }
    for (int q = 0; q < a.pw; ++q) {
      if (g.finite) roi_pool_bin(g.start_w, g.bin_w, q, a.width, w0[q], w1[q]);
      else w0[q] = w1[q] = 0;
    }
  }
};

template <typename scalar_t, typename acc_t>
void forward_nchw(const scalar_t* in, const acc_t* rois, scalar_t* out, int64_t* arg, int64_t K, acc_t scale,
                  const PoolParams& a) {
  const int64_t C = a.channels, W = a.width, HW = a.height * a.width, PP = int64_t(a.ph) * a.pw;
  at::parallel_for(0, K, roi_grain(C * PP * 4), [&](int64_t k0, int64_t k1) {
    RoiBins<acc_t> bins;
    for (int64_t k = k0; k < k1; ++k) {
      const acc_t* roi = rois + 5 * k;
      bins.fill(roi, scale, a);
      const int64_t b = static_cast<int64_t>(roi[0]);
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* plane = in + (b * C + c) * HW;
        scalar_t* o = out + (k * C + c) * PP;
        int64_t* am = arg + (k * C + c) * PP;
        for (int p = 0; p < a.ph; ++p) {
          for (int q = 0; q < a.pw; ++q) {
            acc_t best = acc_t(0);
            int64_t bi = -1;
            for (int64_t h = bins.h0[p]; h < bins.h1[p]; ++h) {
              for (int64_t w = bins.w0[q]; w < bins.w1[q]; ++w) {
                const acc_t v = acc_t(plane[h * W + w]);
                if (pool_takes(v, best, bi < 0)) best = v, bi = h * W + w;
              }
            }
            o[p * a.pw + q] = scalar_t(best);
            am[p * a.pw + q] = bi;
          }
        }
      }
    }
  });
}

// NCHW float32 input: one task per (batch element, block of kRoiPoolBlock channels) copies its
// planes into a channel-blocked [H * W][block] buffer (L3-resident: ~3.5 MB for a 200 x 272
// map), then runs every RoI of that element over it with one vector per pixel. Reading the
// map once beats both a per-plane scalar scan and a transposition of the whole map.
void forward_nchw_blocked(const float* in, const float* rois, float* out, int64_t* arg, int64_t K, int64_t N,
                          float scale, const PoolParams& a) {
  constexpr int B = kRoiPoolBlock;
  const int64_t C = a.channels, H = a.height, W = a.width, HW = H * W, PP = int64_t(a.ph) * a.pw;
  const int ph = a.ph, pw = a.pw;
  const int64_t stride = 2 * (ph + pw);
  std::vector<int64_t> ranges(static_cast<size_t>(K * stride));  // h0 h1 per bin row, then w0 w1 per column
  at::parallel_for(0, K, roi_grain(stride * 8), [&](int64_t k0, int64_t k1) {
    RoiBins<float> bins;
    for (int64_t k = k0; k < k1; ++k) {
      bins.fill(rois + 5 * k, scale, a);
      int64_t* r = ranges.data() + k * stride;
      for (int p = 0; p < ph; ++p) r[2 * p] = bins.h0[p], r[2 * p + 1] = bins.h1[p];
      for (int q = 0; q < pw; ++q) r[2 * ph + 2 * q] = bins.w0[q], r[2 * ph + 2 * q + 1] = bins.w1[q];
    }
  });
  std::vector<std::vector<int64_t>> by_batch = rois_by_batch(rois, K, N);
  // Top to bottom: consecutive RoIs then share rows of the buffer in L2 (the order of RoIs
  // does not change any result, each writes its own outputs).
  for (auto& v : by_batch)
    std::stable_sort(v.begin(), v.end(), [&](int64_t i, int64_t j) { return ranges[i * stride] < ranges[j * stride]; });
  const int64_t blocks = (C + B - 1) / B;
  at::parallel_for(0, N * blocks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> buf(static_cast<size_t>(HW * B));
    std::vector<float> best(static_cast<size_t>(PP * B));
    std::vector<int32_t> am(static_cast<size_t>(PP * B));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / blocks, c0 = (t % blocks) * B, nc = std::min<int64_t>(B, C - c0);
      if (by_batch[static_cast<size_t>(n)].empty()) continue;
      DETSEG_ISA_CALL(roi_pool_block_fill, in + (n * C + c0) * HW, HW, nc, buf.data());
      for (const int64_t k : by_batch[static_cast<size_t>(n)]) {
        const int64_t* r = ranges.data() + k * stride;
        DETSEG_ISA_CALL(roi_pool_block, buf.data(), W, r, r + 2 * ph, ph, pw, best.data(), am.data());
        for (int64_t j = 0; j < nc; ++j) {
          float* o = out + (k * C + c0 + j) * PP;
          int64_t* ao = arg + (k * C + c0 + j) * PP;
          for (int64_t bin = 0; bin < PP; ++bin) o[bin] = best[bin * B + j], ao[bin] = am[bin * B + j];
        }
      }
    }
  });
}

// Channels-last input [N, H, W, C]; out / argmax element (k, c, bin) at k * C * PP + c * ocs + bin * obs
// (channels-last output: ocs 1, obs C; NCHW output: ocs PP, obs 1).
template <typename scalar_t, typename acc_t>
void forward_nhwc(const scalar_t* in, const acc_t* rois, scalar_t* out, int64_t* arg, int64_t K, acc_t scale,
                  const PoolParams& a, int64_t ocs, int64_t obs) {
  const int64_t C = a.channels, W = a.width, HWC = a.height * a.width * C;
  at::parallel_for(0, K, roi_grain(C * a.ph * a.pw * 4), [&](int64_t k0, int64_t k1) {
    RoiBins<acc_t> bins;
    std::vector<acc_t> best(C);
    std::vector<int64_t> am(C);
    // float32 with int32-sized positions: the vectorised per-ISA update (same bits as below).
    constexpr bool kFloat = std::is_same_v<scalar_t, float>;
    [[maybe_unused]] const bool fast = kFloat && a.height * a.width <= std::numeric_limits<int32_t>::max();
    std::vector<int32_t> am32(fast ? C : 0);
    for (int64_t k = k0; k < k1; ++k) {
      const acc_t* roi = rois + 5 * k;
      bins.fill(roi, scale, a);
      const scalar_t* base = in + static_cast<int64_t>(roi[0]) * HWC;
      for (int p = 0; p < a.ph; ++p) {
        for (int q = 0; q < a.pw; ++q) {
          const int64_t off = k * C * a.ph * a.pw + (int64_t(p) * a.pw + q) * obs;
          if constexpr (kFloat) {
            const int64_t h0 = bins.h0[p], h1 = bins.h1[p], w0 = bins.w0[q], w1 = bins.w1[q];
            if (fast && h1 > h0 && w1 > w0) {
              // The first pixel always wins (pool_takes with first = true).
              const scalar_t* px0 = base + (h0 * W + w0) * C;
              std::copy(px0, px0 + C, best.begin());
              std::fill(am32.begin(), am32.end(), static_cast<int32_t>(h0 * W + w0));
              for (int64_t h = h0; h < h1; ++h)
                for (int64_t w = (h == h0 ? w0 + 1 : w0); w < w1; ++w)
                  DETSEG_ISA_CALL(roi_pool_max_update, best.data(), am32.data(), base + (h * W + w) * C,
                                  static_cast<int32_t>(h * W + w), C);
              for (int64_t c = 0; c < C; ++c) out[off + c * ocs] = best[c], arg[off + c * ocs] = am32[c];
              continue;
            }
          }
          std::fill(best.begin(), best.end(), acc_t(0));
          std::fill(am.begin(), am.end(), int64_t(-1));
          bool first = true;
          for (int64_t h = bins.h0[p]; h < bins.h1[p]; ++h) {
            for (int64_t w = bins.w0[q]; w < bins.w1[q]; ++w) {
              const scalar_t* px = base + (h * W + w) * C;
              const int64_t pos = h * W + w;
              for (int64_t c = 0; c < C; ++c) {
                const acc_t v = acc_t(px[c]);
                if (pool_takes(v, best[c], first)) best[c] = v, am[c] = pos;
              }
              first = false;
            }
          }
          for (int64_t c = 0; c < C; ++c) out[off + c * ocs] = scalar_t(best[c]), arg[off + c * ocs] = am[c];
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> roi_pool_cpu(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                                                int64_t pooled_height, int64_t pooled_width) {
  const char* op = "roi_pool";
  const auto [K, N, C, H, W, cl, fmt] =
      roi_forward_begin(op, input, rois, spatial_scale, pooled_height, pooled_width, false);
  at::Tensor out = at::empty({K, C, pooled_height, pooled_width}, input.options().memory_format(fmt));
  at::Tensor arg = at::empty({K, C, pooled_height, pooled_width}, input.options().dtype(at::kLong).memory_format(fmt));
  advise_huge_pages(out), advise_huge_pages(arg);
  const at::Tensor r = roi_rows(rois, input.scalar_type());
  const PoolParams a{C, H, W, int(pooled_height), int(pooled_width)};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "detseg_roi_pool", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    checks::roi_batch_indices(op, r.data_ptr<acc_t>(), K, N);
    if (K == 0 || C == 0) return;
    const acc_t scale = static_cast<acc_t>(spatial_scale);
    // An empty map (H or W = 0) clips every bin to empty: 0 and argmax -1, no special case.
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (!cl && H * W <= std::numeric_limits<int32_t>::max()) {
        const at::Tensor x = input.contiguous();
        forward_nchw_blocked(x.data_ptr<float>(), r.data_ptr<float>(), out.data_ptr<float>(), arg.data_ptr<int64_t>(),
                             K, N, scale, a);
        return;
      }
    }
    if (cl || roi_prefer_nhwc(K, a.ph, a.pw, N, H, W)) {
      const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
      const int64_t PP = int64_t(a.ph) * a.pw;
      forward_nhwc(x.data_ptr<scalar_t>(), r.data_ptr<acc_t>(), out.data_ptr<scalar_t>(), arg.data_ptr<int64_t>(), K,
                   scale, a, cl ? 1 : PP, cl ? C : 1);
    } else {
      const at::Tensor x = input.contiguous();
      forward_nchw(x.data_ptr<scalar_t>(), r.data_ptr<acc_t>(), out.data_ptr<scalar_t>(), arg.data_ptr<int64_t>(), K,
                   scale, a);
    }
  });
  return {out, arg};
}

// ---------------------------------------------------------------- backward

void bad_argmax(int64_t v, int64_t hw) {
  TORCH_CHECK_VALUE(false, "detseg._roi_pool_backward: argmax must hold -1 or plane indices in [0, ", hw, "), got ",
              v);
}

at::Tensor roi_pool_backward_cpu(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                                 double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                 int64_t batch_size, int64_t channels, int64_t height, int64_t width) {
  const char* op = "_roi_pool_backward";
  roi_pool_backward_checks(op, grad, rois, argmax, spatial_scale, pooled_height, pooled_width, batch_size, channels,
                           height, width);
  const bool cl = checks::roi_channels_last(grad);
  const auto fmt = roi_memory_format(cl);
  const int64_t K = rois.size(0), N = batch_size, C = channels, HW = height * width;
  const int ph = int(pooled_height), pw = int(pooled_width);
  at::Tensor gin = roi_grad_alloc(grad, N, C, height, width, fmt);
  advise_huge_pages(gin).zero_();
  const at::Tensor r = roi_rows(rois, grad.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "detseg_roi_pool_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* rp = r.data_ptr<acc_t>();
    checks::roi_batch_indices(op, rp, K, N);
    if (K == 0 || C == 0 || HW == 0) return;
    const std::vector<std::vector<int64_t>> by_batch = rois_by_batch(rp, K, N);
    const at::Tensor g = grad.contiguous(fmt);
    const at::Tensor am = argmax.contiguous(fmt);
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const int64_t* ap = am.data_ptr<int64_t>();
    acc_t* out = gin.data_ptr<acc_t>();
    const int64_t PP = int64_t(ph) * pw;
    if (!cl) {
      const int64_t per_plane = (1 + K / std::max<int64_t>(N, 1)) * PP;
      at::parallel_for(0, N * C, roi_grain(per_plane), [&](int64_t i0, int64_t i1) {
        for (int64_t idx = i0; idx < i1; ++idx) {
          const int64_t b = idx / C, c = idx % C;
          acc_t* plane = out + idx * HW;
          for (const int64_t k : by_batch[b]) {
            const scalar_t* gk = gp + (k * C + c) * PP;
            const int64_t* ak = ap + (k * C + c) * PP;
            for (int64_t t = 0; t < PP; ++t) {
              const int64_t pos = ak[t];
              if (pos < 0) continue;
              if (pos >= HW) bad_argmax(pos, HW);
              plane[pos] += acc_t(gk[t]);
            }
          }
        }
      });
    } else {
      constexpr int64_t kBlock = 64;
      const int64_t nblk = (C + kBlock - 1) / kBlock;
      const int64_t per_task = (1 + K / std::max<int64_t>(N, 1)) * PP * std::min(kBlock, C);
      at::parallel_for(0, N * nblk, roi_grain(per_task), [&](int64_t i0, int64_t i1) {
        for (int64_t idx = i0; idx < i1; ++idx) {
          const int64_t b = idx / nblk, c0 = (idx % nblk) * kBlock, c1 = std::min(C, c0 + kBlock);
          acc_t* base = out + b * HW * C;
          for (const int64_t k : by_batch[b]) {
            for (int64_t t = 0; t < PP; ++t) {
              const scalar_t* gk = gp + (k * PP + t) * C;
              const int64_t* ak = ap + (k * PP + t) * C;
              for (int64_t c = c0; c < c1; ++c) {
                const int64_t pos = ak[c];
                if (pos < 0) continue;
                if (pos >= HW) bad_argmax(pos, HW);
                base[pos * C + c] += acc_t(gk[c]);
              }
            }
          }
        }
      });
    }
  });
  return gin.scalar_type() == grad.scalar_type() ? gin : gin.to(grad.scalar_type());
}

// ---------------------------------------------------------------- ps_roi_pool
// Position-sensitive RoIPool (R-FCN): the average of a quantised bin of one input plane.

std::tuple<at::Tensor, at::Tensor> ps_roi_pool_cpu(const at::Tensor& input, const at::Tensor& rois,
                                                   double spatial_scale, int64_t pooled_height,
                                                   int64_t pooled_width) {
  const char* op = "ps_roi_pool";
  const auto [K, N, C, H, W, cl, fmt] =
      roi_forward_begin(op, input, rois, spatial_scale, pooled_height, pooled_width, true);
  const int ph = int(pooled_height), pw = int(pooled_width);
  const int64_t PP = int64_t(ph) * pw, Cout = C / PP, HW = H * W;
  at::Tensor out = at::empty({K, Cout, ph, pw}, input.options());
  at::Tensor map = at::empty({K, Cout, ph, pw}, input.options().dtype(at::kLong));
  const at::Tensor r = roi_rows(rois, input.scalar_type());
  const PoolParams a{C, H, W, ph, pw};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "detseg_ps_roi_pool", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* rp = r.data_ptr<acc_t>();
    checks::roi_batch_indices(op, rp, K, N);
    int64_t* mp = map.data_ptr<int64_t>();
    for (int64_t i = 0; i < K * Cout * PP; ++i) mp[i] = (i / PP % Cout) * PP + i % PP;
    if (K == 0 || Cout == 0) return;
    const at::Tensor x = input.contiguous();
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const acc_t scale = static_cast<acc_t>(spatial_scale);
    at::parallel_for(0, K, roi_grain(Cout * PP * 4), [&](int64_t k0, int64_t k1) {
      RoiBins<acc_t> bins;
      for (int64_t k = k0; k < k1; ++k) {
        bins.fill(rp + 5 * k, scale, a, /*extent_plus_one=*/false);
        const int64_t b = static_cast<int64_t>(rp[5 * k]);
        for (int64_t c = 0; c < Cout; ++c)
          for (int p = 0; p < ph; ++p)
            for (int q = 0; q < pw; ++q) {
              const int64_t h0 = bins.h0[p], h1 = bins.h1[p], w0 = bins.w0[q], w1 = bins.w1[q];
              acc_t v = acc_t(0);
              if (h1 > h0 && w1 > w0) {
                const scalar_t* plane = in + (b * C + ps_input_channel(c, p, q, ph, pw)) * HW;
                acc_t sum = acc_t(0);
                for (int64_t h = h0; h < h1; ++h)
                  for (int64_t w = w0; w < w1; ++w) sum += acc_t(plane[h * W + w]);
                v = sum / static_cast<acc_t>((h1 - h0) * (w1 - w0));
              }
              o[((k * Cout + c) * ph + p) * pw + q] = scalar_t(v);
            }
      }
    });
  });
  return {out, map};
}

at::Tensor ps_roi_pool_backward_cpu(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& channel_mapping,
                                    double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                    int64_t batch_size, int64_t channels, int64_t height, int64_t width) {
  const char* op = "_ps_roi_pool_backward";
  const int64_t Cout =
      ps_roi_backward_cout(op, grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height, width);
  ps_roi_check_channel_mapping(op, channel_mapping, grad);
  const int64_t N = batch_size, C = channels, W = width;
  const int ph = int(pooled_height), pw = int(pooled_width);
  const at::ScalarType acc_type = roi_acc_type(grad.scalar_type());
  at::Tensor gin = at::zeros({N, C, height, width}, grad.options().dtype(acc_type));
  const at::Tensor r = roi_rows(rois, grad.scalar_type());
  const PoolParams a{C, height, width, ph, pw};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "detseg_ps_roi_pool_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    ps_roi_backward_typed<scalar_t, RoiBins<acc_t>>(
        op, grad, r, gin, spatial_scale, ph, pw, Cout,
        [&](RoiBins<acc_t>& bins, acc_t* plane, const acc_t* roi, acc_t scale, acc_t g, int p, int q) {
          bins.fill(roi, scale, a, /*extent_plus_one=*/false);
          const int64_t h0 = bins.h0[p], h1 = bins.h1[p], w0 = bins.w0[q], w1 = bins.w1[q];
          if (h1 <= h0 || w1 <= w0) return;
          const acc_t d = g / static_cast<acc_t>((h1 - h0) * (w1 - w0));
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) plane[h * W + w] += d;
        });
  });
  return gin.scalar_type() == grad.scalar_type() ? gin : gin.to(grad.scalar_type());
}

}  // namespace
}  // namespace detseg::cpu

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("roi_pool", &detseg::cpu::roi_pool_cpu);
  m.impl("_roi_pool_backward", &detseg::cpu::roi_pool_backward_cpu);
  m.impl("ps_roi_pool", &detseg::cpu::ps_roi_pool_cpu);
  m.impl("_ps_roi_pool_backward", &detseg::cpu::ps_roi_pool_backward_cpu);
}
