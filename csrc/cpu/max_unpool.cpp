// max_unpool2d on the CPU: a scatter of each input value to its recorded position (forward) and
// the matching gather (backward). Planes (n, c) are independent: parallel over them. Where two
// inputs of a plane name the same position the later one (row-major order) wins, on every
// backend, as ATen's serial CPU loop does.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "checks.h"

namespace detseg {
namespace {

// Runs fn(plane, i, index) over every element in range and raises on the first index out of
// [0, out_plane) (in plane order, so the message does not depend on the thread count).
template <typename F>
void for_each_index(const char* op, const int64_t* idx, int64_t planes, int64_t in_plane, int64_t out_plane, F fn) {
  std::vector<int64_t> bad(static_cast<size_t>(planes), 0);
  std::vector<char> has_bad(static_cast<size_t>(planes), 0);
  at::parallel_for(0, planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(in_plane, 1)), [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const int64_t* ip = idx + p * in_plane;
      for (int64_t i = 0; i < in_plane; ++i) {
        const int64_t j = ip[i];
        if (j < 0 || j >= out_plane) {
          if (!has_bad[p]) has_bad[p] = 1, bad[p] = j;
          continue;
        }
        fn(p, i, j);
      }
    }
  });
  for (int64_t p = 0; p < planes; ++p)
    if (has_bad[p]) checks::max_unpool2d_bad_index(op, bad[p], out_plane);
}

at::Tensor max_unpool2d_cpu(const at::Tensor& input, const at::Tensor& indices, at::IntArrayRef output_size) {
  const char* op = "max_unpool2d";
  checks::max_unpool2d_args(op, input, indices, output_size);
  const int64_t n = input.size(0), c = input.size(1), in_plane = input.size(2) * input.size(3);
  const int64_t out_plane = output_size[0] * output_size[1];
  at::Tensor out = at::zeros({n, c, output_size[0], output_size[1]}, input.options());
  if (out.numel() == 0 || in_plane == 0) return out;
  const at::Tensor x = input.contiguous(), ind = indices.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "detseg_max_unpool2d", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    for_each_index(op, ind.const_data_ptr<int64_t>(), n * c, in_plane, out_plane,
                   [&](int64_t p, int64_t i, int64_t j) { o[p * out_plane + j] = xp[p * in_plane + i]; });
  });
  return out;
}

at::Tensor max_unpool2d_backward_cpu(const at::Tensor& grad, const at::Tensor& indices, at::IntArrayRef output_size) {
  const char* op = "_max_unpool2d_backward";
  checks::max_unpool2d_grad_args(op, grad, indices, output_size);
  const int64_t n = indices.size(0), c = indices.size(1), in_plane = indices.size(2) * indices.size(3);
  const int64_t out_plane = output_size[0] * output_size[1];
  at::Tensor gin = at::zeros(indices.sizes(), grad.options());
  if (gin.numel() == 0) return gin;
  const at::Tensor go = grad.contiguous(), ind = indices.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "detseg_max_unpool2d_backward", [&] {
    const scalar_t* gp = go.const_data_ptr<scalar_t>();
    scalar_t* o = gin.mutable_data_ptr<scalar_t>();
    for_each_index(op, ind.const_data_ptr<int64_t>(), n * c, in_plane, out_plane,
                   [&](int64_t p, int64_t i, int64_t j) { o[p * in_plane + i] = gp[p * out_plane + j]; });
  });
  return gin;
}

}  // namespace
}  // namespace detseg

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("max_unpool2d", &detseg::max_unpool2d_cpu);
  m.impl("_max_unpool2d_backward", &detseg::max_unpool2d_backward_cpu);
}
