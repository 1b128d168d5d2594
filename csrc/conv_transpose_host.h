// Geometry of a transposed convolution call, shared by the CPU (csrc/cpu/conv_transpose.cpp)
// and CUDA (csrc/cuda/conv_transpose.cu) kernels: torch-only host code, no at::parallel_for and
// no CUDA headers, so g++ and nvcc both compile it. Plain data: CUDA kernels take it by value.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>

#include "checks.h"
#include "detseg/host_device.h"

namespace detseg {

struct ConvGeom {
  int64_t n, cin, h, w, cout, groups, cig, cog, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo;
  DETSEG_HOST_DEVICE int64_t rows() const { return cog * kh * kw; }  // GEMM rows (c_out, ky, kx) of one group
  DETSEG_HOST_DEVICE int64_t hw() const { return h * w; }
  DETSEG_HOST_DEVICE int64_t plane() const { return ho * wo; }
};

// input [N, C_in, H, W], weight [C_in, C_out / groups, kH, kW]; out = (H_out, W_out).
inline ConvGeom make_conv_geom(const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                               std::pair<int64_t, int64_t> out) {
  ConvGeom g{};
  g.n = input.size(0), g.cin = input.size(1), g.h = input.size(2), g.w = input.size(3);
  g.groups = groups, g.cig = g.cin / groups, g.cog = weight.size(1), g.cout = g.cog * groups;
  g.kh = weight.size(2), g.kw = weight.size(3);
  g.sh = stride[0], g.sw = stride[1], g.ph = padding[0], g.pw = padding[1], g.dh = dilation[0], g.dw = dilation[1];
  g.ho = out.first, g.wo = out.second;
  return g;
}

// The forward's argument checks (checks.h), then its geometry.
inline ConvGeom conv_transpose2d_geom(const char* op, const at::Tensor& input, const at::Tensor& weight,
                                      const at::Tensor* bias, at::IntArrayRef stride, at::IntArrayRef padding,
                                      at::IntArrayRef output_padding, int64_t groups, at::IntArrayRef dilation) {
  const auto hw = checks::conv_transpose2d_args(op, input, weight, bias, stride, padding, output_padding, groups,
                                                dilation);
  return make_conv_geom(input, weight, stride, padding, dilation, groups, hw);
}

// The backward's argument checks (checks.h), then the geometry of its forward.
inline ConvGeom conv_transpose2d_backward_geom(const at::Tensor& grad, const at::Tensor& input,
                                               const at::Tensor& weight, at::IntArrayRef stride,
                                               at::IntArrayRef padding, at::IntArrayRef output_padding,
                                               int64_t groups, at::IntArrayRef dilation) {
  const auto hw = checks::conv_transpose2d_backward_args(grad, input, weight, stride, padding, output_padding, groups,
                                                         dilation);
  return make_conv_geom(input, weight, stride, padding, dilation, groups, hw);
}

}  // namespace detseg
