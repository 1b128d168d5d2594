// CUDA kernels of the transposed convolution and max unpooling: the gather formulation, one
// thread per output element, looping over the taps that land on it (detseg/conv_transpose.h).
// No atomics anywhere: each thread owns the value it writes, so results are deterministic.
// A straightforward direct kernel (no tensor cores); float16 / bfloat16 accumulate in float32.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "checks.h"
#include "conv_transpose_host.h"
#include "cuda/launch.cuh"
#include "detseg/conv_transpose.h"

namespace detseg::cuda {
namespace {

using Geom = ConvGeom;

// Grid: grid-stride over N * C_out * H_out * W_out outputs (NCHW), one thread each; loops over
// the kernel taps, keeps those that land (tap_source), then over the group's input channels.
template <typename scalar_t>
__global__ void forward_kernel(Geom g, const scalar_t* __restrict__ x, const scalar_t* __restrict__ wt,
                               const scalar_t* __restrict__ bias, scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  grid_stride(g.n * g.cout * g.ho * g.wo, [&](int64_t i) {
    const int64_t ox = i % g.wo, oy = (i / g.wo) % g.ho, c = (i / (g.wo * g.ho)) % g.cout;
    const int64_t n = i / (g.wo * g.ho * g.cout), gi = c / g.cog, co = c % g.cog;
    acc_t acc = bias ? static_cast<acc_t>(bias[c]) : acc_t(0);
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t iy = conv_transpose_tap_source(oy, ky, g.h, g.sh, g.ph, g.dh);
      if (iy < 0) continue;
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const int64_t ix = conv_transpose_tap_source(ox, kx, g.w, g.sw, g.pw, g.dw);
        if (ix < 0) continue;
        const scalar_t* xp = x + ((n * g.cin + gi * g.cig) * g.h + iy) * g.w + ix;
        const scalar_t* wp = wt + ((gi * g.cig) * g.cog + co) * g.kh * g.kw + ky * g.kw + kx;
        for (int64_t ci = 0; ci < g.cig; ++ci)
          acc += static_cast<acc_t>(xp[ci * g.h * g.w]) * static_cast<acc_t>(wp[ci * g.cog * g.kh * g.kw]);
      }
    }
    out[i] = static_cast<scalar_t>(acc);
  });
}

// grad_input = conv2d(grad, weight): one thread per input element, over the taps it sent.
template <typename scalar_t>
__global__ void grad_input_kernel(Geom g, const scalar_t* __restrict__ grad, const scalar_t* __restrict__ wt,
                                  scalar_t* __restrict__ gin) {
  using acc_t = at::opmath_type<scalar_t>;
  grid_stride(g.n * g.cin * g.h * g.w, [&](int64_t i) {
    const int64_t ix = i % g.w, iy = (i / g.w) % g.h, ci = (i / (g.w * g.h)) % g.cin, n = i / (g.w * g.h * g.cin);
    const int64_t gi = ci / g.cig;
    acc_t acc = 0;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t oy = iy * g.sh - g.ph + ky * g.dh;
      if (oy < 0 || oy >= g.ho) continue;
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const int64_t ox = ix * g.sw - g.pw + kx * g.dw;
        if (ox < 0 || ox >= g.wo) continue;
        for (int64_t co = 0; co < g.cog; ++co)
          acc += static_cast<acc_t>(grad[((n * g.cout + gi * g.cog + co) * g.ho + oy) * g.wo + ox]) *
                 static_cast<acc_t>(wt[((ci * g.cog + co) * g.kh + ky) * g.kw + kx]);
      }
    }
    gin[i] = static_cast<scalar_t>(acc);
  });
}

// grad_weight: one thread per weight element, summing over images and input pixels in order.
template <typename scalar_t>
__global__ void grad_weight_kernel(Geom g, const scalar_t* __restrict__ grad, const scalar_t* __restrict__ x,
                                   scalar_t* __restrict__ gw) {
  using acc_t = at::opmath_type<scalar_t>;
  grid_stride(g.cin * g.cog * g.kh * g.kw, [&](int64_t i) {
    const int64_t kx = i % g.kw, ky = (i / g.kw) % g.kh, co = (i / (g.kw * g.kh)) % g.cog;
    const int64_t ci = i / (g.kw * g.kh * g.cog), c = (ci / g.cig) * g.cog + co;
    int64_t ylo, yhi, xlo, xhi;
    conv_transpose_tap_inputs(ky, 0, g.ho, g.h, g.sh, g.ph, g.dh, &ylo, &yhi);
    conv_transpose_tap_inputs(kx, 0, g.wo, g.w, g.sw, g.pw, g.dw, &xlo, &xhi);
    acc_t acc = 0;
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t iy = ylo; iy < yhi; ++iy)
        for (int64_t ix = xlo; ix < xhi; ++ix)
          acc += static_cast<acc_t>(x[((n * g.cin + ci) * g.h + iy) * g.w + ix]) *
                 static_cast<acc_t>(grad[((n * g.cout + c) * g.ho + iy * g.sh - g.ph + ky * g.dh) * g.wo +
                                         ix * g.sw - g.pw + kx * g.dw]);
    gw[i] = static_cast<scalar_t>(acc);
  });
}

// grad_bias: one block per output channel, a fixed-shape tree reduction in shared memory.
template <typename scalar_t>
__global__ void grad_bias_kernel(Geom g, const scalar_t* __restrict__ grad, scalar_t* __restrict__ gb) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t part[kThreads];
  const int64_t c = blockIdx.x, plane = g.ho * g.wo;
  acc_t acc = 0;
  for (int64_t j = threadIdx.x; j < g.n * plane; j += blockDim.x)
    acc += static_cast<acc_t>(grad[((j / plane) * g.cout + c) * plane + j % plane]);
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) gb[c] = static_cast<scalar_t>(part[0]);
}

at::Tensor conv_transpose2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                                 at::IntArrayRef output_padding, int64_t groups, at::IntArrayRef dilation) {
  const at::Tensor* b = bias.has_value() && bias->defined() ? &*bias : nullptr;
  const Geom g =
      conv_transpose2d_geom("conv_transpose2d", input, weight, b, stride, padding, output_padding, groups, dilation);
  DeviceScope scope(input);
  at::Tensor out = at::empty({g.n, g.cout, g.ho, g.wo}, input.options());
  const int64_t total = out.numel();
  if (total > 0) {
    const at::Tensor x = input.contiguous(), w = weight.contiguous();
    const at::Tensor bc = b ? b->contiguous() : at::Tensor();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "detseg_conv_transpose2d_cuda", [&] {
      forward_kernel<scalar_t><<<grid_1d(total), kThreads, 0, scope.stream>>>(
          g, x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), b ? bc.const_data_ptr<scalar_t>() : nullptr,
          out.mutable_data_ptr<scalar_t>());
      DETSEG_CUDA_LAUNCH_CHECK();
    });
  }
  return checks::roi_channels_last(input) ? out.contiguous(at::MemoryFormat::ChannelsLast) : out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_transpose2d_backward_cuda(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups, at::IntArrayRef dilation,
    std::array<bool, 3> mask) {
  const Geom g =
      conv_transpose2d_backward_geom(grad, input, weight, stride, padding, output_padding, groups, dilation);
  DeviceScope scope(input);
  at::Tensor gin = at::empty(mask[0] ? input.sizes() : at::IntArrayRef{0}, input.options());
  at::Tensor gw = at::empty(mask[1] ? weight.sizes() : at::IntArrayRef{0}, weight.options());
  at::Tensor gb = at::empty({mask[2] ? g.cout : 0}, weight.options());
  const at::Tensor go = grad.contiguous(), x = input.contiguous(), w = weight.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "detseg_conv_transpose2d_bwd", [&] {
    if (mask[0] && gin.numel() > 0) {
      grad_input_kernel<scalar_t><<<grid_1d(gin.numel()), kThreads, 0, scope.stream>>>(
          g, go.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), gin.mutable_data_ptr<scalar_t>());
      DETSEG_CUDA_LAUNCH_CHECK();
    }
    if (mask[1] && gw.numel() > 0) {
      grad_weight_kernel<scalar_t><<<grid_1d(gw.numel()), kThreads, 0, scope.stream>>>(
          g, go.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), gw.mutable_data_ptr<scalar_t>());
      DETSEG_CUDA_LAUNCH_CHECK();
    }
    if (mask[2] && g.cout > 0) {
      grad_bias_kernel<scalar_t><<<static_cast<unsigned>(g.cout), kThreads, 0, scope.stream>>>(
          g, go.const_data_ptr<scalar_t>(), gb.mutable_data_ptr<scalar_t>());
      DETSEG_CUDA_LAUNCH_CHECK();
    }
  });
  // Channels-last input: grad_input and grad_weight channels-last (ATen's layouts, the fake kernel's).
  if (checks::roi_channels_last(input)) {
    if (mask[0]) gin = gin.contiguous(at::MemoryFormat::ChannelsLast);
    if (mask[1]) gw = gw.contiguous(at::MemoryFormat::ChannelsLast);
  }
  return {gin, gw, gb};
}

// ------------------------------------------------------------------ max_unpool2d
// Forward in two passes so that duplicates resolve like the CPU (the later input wins) without
// a race: winner[plane, j] = 1 + the largest input position naming j (atomicMax), then a gather.
// An index outside its plane sets `bad`, checked on the host after the launch (one sync).

__global__ void unpool_winner_kernel(const int64_t* __restrict__ idx, int64_t planes, int64_t in_plane,
                                     int64_t out_plane, unsigned long long* __restrict__ winner, int* bad) {
  grid_stride(planes * in_plane, [&](int64_t k) {
    const int64_t p = k / in_plane, i = k % in_plane, j = idx[k];
    if (j < 0 || j >= out_plane) {
      *bad = 1;
      return;
    }
    atomicMax(winner + p * out_plane + j, static_cast<unsigned long long>(i + 1));
  });
}

template <typename scalar_t>
__global__ void unpool_gather_kernel(const scalar_t* __restrict__ x, const unsigned long long* __restrict__ winner,
                                     int64_t planes, int64_t in_plane, int64_t out_plane, scalar_t* __restrict__ out) {
  grid_stride(planes * out_plane, [&](int64_t k) {
    const unsigned long long w = winner[k];
    out[k] = w ? x[(k / out_plane) * in_plane + static_cast<int64_t>(w - 1)] : scalar_t(0);
  });
}

template <typename scalar_t>
__global__ void unpool_backward_kernel(const scalar_t* __restrict__ grad, const int64_t* __restrict__ idx,
                                       int64_t planes, int64_t in_plane, int64_t out_plane,
                                       scalar_t* __restrict__ gin, int* bad) {
  grid_stride(planes * in_plane, [&](int64_t k) {
    const int64_t j = idx[k];
    const bool ok = j >= 0 && j < out_plane;
    if (!ok) *bad = 1;
    gin[k] = ok ? grad[(k / in_plane) * out_plane + j] : scalar_t(0);
  });
}

void check_bad(const char* op, const at::Tensor& bad, int64_t out_plane) {
  TORCH_CHECK_VALUE(bad.item<int>() == 0, "detseg.", op, ": indices must hold positions in [0, output_size[0] * "
              "output_size[1] = ", out_plane, ")");
}

at::Tensor max_unpool2d_cuda(const at::Tensor& input, const at::Tensor& indices, at::IntArrayRef output_size) {
  const char* op = "max_unpool2d";
  checks::max_unpool2d_args(op, input, indices, output_size);
  DeviceScope scope(input);
  const int64_t planes = input.size(0) * input.size(1), in_plane = input.size(2) * input.size(3);
  const int64_t out_plane = output_size[0] * output_size[1];
  at::Tensor out = at::empty({input.size(0), input.size(1), output_size[0], output_size[1]}, input.options());
  if (out.numel() == 0) return out;
  const at::Tensor x = input.contiguous(), ind = indices.contiguous();
  at::Tensor winner = at::zeros({planes * out_plane}, input.options().dtype(at::kLong));
  at::Tensor bad = at::zeros({1}, input.options().dtype(at::kInt));
  if (planes * in_plane > 0) {
    unpool_winner_kernel<<<grid_1d(planes * in_plane), kThreads, 0, scope.stream>>>(
        ind.const_data_ptr<int64_t>(), planes, in_plane, out_plane,
        reinterpret_cast<unsigned long long*>(winner.mutable_data_ptr<int64_t>()), bad.mutable_data_ptr<int>());
    DETSEG_CUDA_LAUNCH_CHECK();
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "detseg_max_unpool2d_cuda", [&] {
    unpool_gather_kernel<scalar_t><<<grid_1d(out.numel()), kThreads, 0, scope.stream>>>(
        x.const_data_ptr<scalar_t>(), reinterpret_cast<const unsigned long long*>(winner.const_data_ptr<int64_t>()),
        planes, in_plane, out_plane, out.mutable_data_ptr<scalar_t>());
    DETSEG_CUDA_LAUNCH_CHECK();
  });
  check_bad(op, bad, out_plane);
  return out;
}

at::Tensor max_unpool2d_backward_cuda(const at::Tensor& grad, const at::Tensor& indices, at::IntArrayRef output_size) {
  const char* op = "_max_unpool2d_backward";
  checks::max_unpool2d_grad_args(op, grad, indices, output_size);
  DeviceScope scope(grad);
  const int64_t planes = indices.size(0) * indices.size(1), in_plane = indices.size(2) * indices.size(3);
  const int64_t out_plane = output_size[0] * output_size[1];
  at::Tensor gin = at::empty(indices.sizes(), grad.options());
  if (gin.numel() == 0) return gin;
  const at::Tensor go = grad.contiguous(), ind = indices.contiguous();
  at::Tensor bad = at::zeros({1}, grad.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "detseg_max_unpool2d_bwd_cuda", [&] {
    unpool_backward_kernel<scalar_t><<<grid_1d(gin.numel()), kThreads, 0, scope.stream>>>(
        go.const_data_ptr<scalar_t>(), ind.const_data_ptr<int64_t>(), planes, in_plane, out_plane,
        gin.mutable_data_ptr<scalar_t>(), bad.mutable_data_ptr<int>());
    DETSEG_CUDA_LAUNCH_CHECK();
  });
  check_bad(op, bad, out_plane);
  return gin;
}

}  // namespace
}  // namespace detseg::cuda

TORCH_LIBRARY_IMPL(detseg, CUDA, m) {
  m.impl("conv_transpose2d", &detseg::cuda::conv_transpose2d_cuda);
  m.impl("_conv_transpose2d_backward", &detseg::cuda::conv_transpose2d_backward_cuda);
  m.impl("max_unpool2d", &detseg::cuda::max_unpool2d_cuda);
  m.impl("_max_unpool2d_backward", &detseg::cuda::max_unpool2d_backward_cuda);
}
