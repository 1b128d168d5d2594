// Transposed convolution on the CPU, backward (the forward is conv_transpose.cpp).
//
// Determinism as the forward: tasks fixed by the shape, per-chunk grad_weight partials summed in
// chunk order, every GEMM single-threaded inside at::parallel_for.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "checks.h"
#include "conv_transpose_host.h"
#include "cpu/alloc.h"
#include "cpu/conv_transpose_cpu.h"
#include "cpu/isa.h"
#include "cpu/vec/conv_scatter_vec.h"

namespace detseg {
namespace {

using namespace conv_cpu;

// grad_input = conv2d(grad, weight) (im2col of grad + GEMM), grad_weight = sum over images of
// X cols^T, grad_bias = the sum of grad over (N, H_out, W_out). Channels-last inputs run natively
// (no layout copies): cols is then [pixel, (ky, kx, c_out)] and grad_weight comes out in the
// weight's channels-last layout [C_in, kH, kW, C_out / groups], as ATen returns it.

// NCHW: cols[(c_out, ky, kx), pixel of input rows [iy0, iy1)] = the grad value each tap sent there.
template <typename T>
void im2col(const Geom& g, const T* grad, int64_t n, int64_t gi, int64_t iy0, int64_t iy1, T* cols) {
  const int64_t P = (iy1 - iy0) * g.w;
  for (int64_t co = 0; co < g.cog; ++co) {
    const T* gp = grad + (n * g.cout + gi * g.cog + co) * g.plane();
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        T* dst = cols + ((co * g.kh + ky) * g.kw + kx) * P;
        int64_t jlo, jhi;
        conv_transpose_tap_inputs(kx, 0, g.wo, g.w, g.sw, g.pw, g.dw, &jlo, &jhi);
        for (int64_t iy = iy0; iy < iy1; ++iy) {
          T* d = dst + (iy - iy0) * g.w;
          const int64_t oy = iy * g.sh - g.ph + ky * g.dh;
          if (oy < 0 || oy >= g.ho || jlo >= jhi) {
            std::fill(d, d + g.w, T(0));
            continue;
          }
          const T* grow = gp + oy * g.wo + (kx * g.dw - g.pw);
          std::fill(d, d + jlo, T(0));
          if (jhi > jlo) DETSEG_ISA_CALL(conv_gather, d + jlo, grow + jlo * g.sw, jhi - jlo, g.sw);
          std::fill(d + jhi, d + g.w, T(0));
        }
      }
    }
  }
}

// Channels-last: cols[pixel, (ky, kx, c_out)], each tap a contiguous run of C_out / groups.
template <typename T>
void im2col_cl(const Geom& g, const T* grad, int64_t n, int64_t gi, int64_t iy0, int64_t iy1, T* cols) {
  const int64_t R = g.rows();
  for (int64_t iy = iy0; iy < iy1; ++iy)
    for (int64_t ix = 0; ix < g.w; ++ix) {
      T* d = cols + ((iy - iy0) * g.w + ix) * R;
      for (int64_t ky = 0; ky < g.kh; ++ky) {
        const int64_t oy = iy * g.sh - g.ph + ky * g.dh;
        for (int64_t kx = 0; kx < g.kw; ++kx) {
          const int64_t ox = ix * g.sw - g.pw + kx * g.dw;
          T* dd = d + (ky * g.kw + kx) * g.cog;
          if (oy < 0 || oy >= g.ho || ox < 0 || ox >= g.wo) {
            std::fill(dd, dd + g.cog, T(0));
          } else {
            const T* s = grad + ((n * g.ho + oy) * g.wo + ox) * g.cout + gi * g.cog;
            std::copy(s, s + g.cog, dd);
          }
        }
      }
    }
}

// Per-chunk grad_weight partials, summed in chunk order: at most this many chunks.
constexpr int64_t kWeightChunks = 8;

// Runs task_fn(task, cols buffer, grad_weight partial or nullptr) for tasks [0, ntasks) split
// into chunks fixed by the shape, then sums the partials into gw in chunk order.
template <typename T, typename F>
void backward_tasks(int64_t ntasks, int64_t wsize, int64_t buf_elems, T* gw, const F& task_fn) {
  const int64_t nchunks =
      gw ? std::clamp<int64_t>(std::min(kWeightChunks, (int64_t(64) << 20) / std::max<int64_t>(wsize * 4, 1)), 1,
                               std::max<int64_t>(ntasks, 1))
         : std::max<int64_t>(ntasks, 1);
  std::vector<T> partial(gw ? static_cast<size_t>(nchunks * wsize) : 0, T(0));
  at::parallel_for(0, nchunks, 1, [&](int64_t cb, int64_t ce) {
    auto buf = scratch<T>(buf_elems);
    for (int64_t chunk = cb; chunk < ce; ++chunk)
      for (int64_t task = chunk * ntasks / nchunks; task < (chunk + 1) * ntasks / nchunks; ++task)
        task_fn(task, buf.get(), gw ? partial.data() + chunk * wsize : nullptr);
  });
  if (gw) {
    at::parallel_for(0, wsize, 4096, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        T s = partial[i];
        for (int64_t c = 1; c < nchunks; ++c) s += partial[c * wsize + i];
        gw[i] = s;
      }
    });
  }
}

// grad_bias: per channel, a float64 sum in pixel order (NCHW: planes; channels-last: a column
// of the [N * H_out * W_out, C_out] matrix, summed for a block of channels at a time).
template <typename T>
void bias_grad(const Geom& g, const T* grad, bool cl, T* gb) {
  constexpr int64_t kBlock = 16;
  at::parallel_for(0, (g.cout + kBlock - 1) / kBlock, 1, [&](int64_t b, int64_t e) {
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t c0 = blk * kBlock, c1 = std::min(g.cout, c0 + kBlock);
      double s[kBlock] = {};
      if (cl) {
        const int64_t pixels = g.n * g.plane();
        for (int64_t p = 0; p < pixels; ++p) {
          const T* row = grad + p * g.cout;
          for (int64_t c = c0; c < c1; ++c) s[c - c0] += static_cast<double>(row[c]);
        }
      } else {
        // kLanes interleaved partial sums (vectorisable), combined in a fixed order.
        constexpr int64_t kLanes = 8;
        const int64_t plane = g.plane(), body = plane / kLanes * kLanes;
        for (int64_t c = c0; c < c1; ++c) {
          double lane[kLanes] = {};
          for (int64_t n = 0; n < g.n; ++n) {
            const T* p = grad + (n * g.cout + c) * plane;
            for (int64_t i = 0; i < body; i += kLanes)
              for (int64_t j = 0; j < kLanes; ++j) lane[j] += static_cast<double>(p[i + j]);
            for (int64_t i = body; i < plane; ++i) lane[i - body] += static_cast<double>(p[i]);
          }
          for (int64_t j = 0; j < kLanes; ++j) s[c - c0] += lane[j];
        }
      }
      for (int64_t c = c0; c < c1; ++c) gb[c] = static_cast<T>(s[c - c0]);
    }
  });
}

// wt: the weight as [C_in, R] rows, (c_out, ky, kx) for NCHW, (ky, kx, c_out) for channels-last;
// gw comes out in the same order.
template <typename T>
void backward_impl(const Geom& g, bool cl, const T* grad, const T* x, const T* wt, T* gin, T* gw, T* gb) {
  const int64_t R = g.rows(), HW = g.hw(), wsize = g.cin * R;
  const int64_t in_rows = rows_for(R * g.w, g.h), nbi = (g.h + in_rows - 1) / in_rows;
  if (gin || gw) {
    // grad_input's products (NCHW) share the weight block of a group: packed once per thread.
    std::vector<std::unique_ptr<WeightGemm<T>>> wgemm(static_cast<size_t>(at::get_num_threads()));
    std::vector<int64_t> wgemm_of(wgemm.size(), -1);
    backward_tasks<T>(g.n * g.groups * nbi, wsize, R * in_rows * g.w, gw, [&](int64_t task, T* cols, T* partial) {
      const int64_t n = task / (g.groups * nbi), gi = (task / nbi) % g.groups;
      const int64_t iy0 = (task % nbi) * in_rows, iy1 = std::min(g.h, iy0 + in_rows), P = (iy1 - iy0) * g.w;
      if (cl) {
        im2col_cl(g, grad, n, gi, iy0, iy1, cols);
        const int64_t off = (n * HW + iy0 * g.w) * g.cin + gi * g.cig;
        if (gin) gemm_rm<T>(false, true, P, g.cig, R, cols, R, wt + gi * g.cig * R, R, false, gin + off, g.cin);
        if (partial) gemm_rm<T>(true, false, g.cig, R, P, x + off, g.cin, cols, R, true, partial + gi * g.cig * R, R);
      } else {
        im2col(g, grad, n, gi, iy0, iy1, cols);
        const int64_t off = (n * g.cin + gi * g.cig) * HW + iy0 * g.w;
        if (gin) {
          const auto t = static_cast<size_t>(at::get_thread_num());
          std::unique_ptr<WeightGemm<T>> own;  // (a thread id past the count seen outside: not shared)
          auto& slot = t < wgemm.size() ? wgemm[t] : own;
          if (!slot || t >= wgemm.size() || wgemm_of[t] != gi) {
            slot = std::make_unique<WeightGemm<T>>(false, g.cig, R, wt + gi * g.cig * R, R, in_rows * g.w);
            if (t < wgemm.size()) wgemm_of[t] = gi;
          }
          (*slot)(P, cols, P, gin + off, HW);
        }
        if (partial) gemm_rm<T>(false, true, g.cig, R, P, x + off, HW, cols, P, true, partial + gi * g.cig * R, R);
      }
    });
  }
  if (gb) bias_grad(g, grad, cl, gb);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_transpose2d_backward_cpu(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups, at::IntArrayRef dilation,
    std::array<bool, 3> mask) {
  const Geom g =
      conv_transpose2d_backward_geom(grad, input, weight, stride, padding, output_padding, groups, dilation);
  const auto dt = input.scalar_type(), ct = compute_type(dt);
  const bool cl = checks::roi_channels_last(input);
  const auto fmt = cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  // Channels-last: grad_input and grad_weight channels-last, as ATen returns them.
  at::Tensor gin = mask[0] ? cpu::empty_pooled(input.sizes(), input.options().dtype(ct).memory_format(fmt))
                           : at::empty({0}, input.options());
  at::Tensor gw = mask[1] ? at::empty(weight.sizes(), weight.options().dtype(ct).memory_format(fmt))
                          : at::empty({0}, weight.options());
  at::Tensor gb = mask[2] ? at::empty({g.cout}, weight.options().dtype(ct)) : at::empty({0}, weight.options());
  if (g.n == 0) {
    if (mask[1]) gw.zero_();
    if (mask[2]) gb.zero_();
  } else {
    const at::Tensor go = grad.to(ct).contiguous(fmt), x = input.to(ct).contiguous(fmt);
    const at::Tensor w = cl ? weight.to(ct).permute({0, 2, 3, 1}).contiguous() : weight.to(ct).contiguous();
    AT_DISPATCH_FLOATING_TYPES(ct, "detseg_conv_transpose2d_backward", [&] {
      backward_impl<scalar_t>(g, cl, go.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                              w.const_data_ptr<scalar_t>(), mask[0] ? gin.mutable_data_ptr<scalar_t>() : nullptr,
                              mask[1] ? gw.mutable_data_ptr<scalar_t>() : nullptr,
                              mask[2] ? gb.mutable_data_ptr<scalar_t>() : nullptr);
    });
  }
  if (mask[0]) gin = gin.to(dt);
  if (mask[1]) gw = gw.to(dt);
  if (mask[2]) gb = gb.to(dt);
  return {gin, gw, gb};
}

}  // namespace
}  // namespace detseg

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("_conv_transpose2d_backward", &detseg::conv_transpose2d_backward_cpu);
}
