// Argument checks of the transposed convolution and max unpooling (issue 5).
#pragma once

#include "detseg/conv_transpose.h"
#include "checks/common.h"
#include "checks/roi.h"

namespace detseg::checks {

// ---- transposed convolution and max unpooling (issue 5) ----
// conv_transpose2d: input Tensor[N, C_in, H, W], weight Tensor[C_in, C_out / groups, kH, kW],
// bias Tensor[C_out]? (torch.nn.functional.conv_transpose2d). Returns (H_out, W_out).

// torch's name of a dtype ("float32"), as the Python twin prints it.
inline std::string dtype_name(const at::Tensor& t) { return std::string(c10::getDtypeNames(t.scalar_type()).first); }

inline void conv_pair(const char* op, const char* arg, at::IntArrayRef v) {
  TORCH_CHECK_VALUE(v.size() == 2, "detseg.", op, ": ", arg, " must be a pair (height, width), got ", v);
}

inline std::pair<int64_t, int64_t> conv_transpose2d_args(const char* op, const at::Tensor& input,
                                                         const at::Tensor& weight, const at::Tensor* bias,
                                                         at::IntArrayRef stride, at::IntArrayRef padding,
                                                         at::IntArrayRef output_padding, int64_t groups,
                                                         at::IntArrayRef dilation) {
  TORCH_CHECK_VALUE(input.dim() == 4 && input.size(1) > 0 && input.size(2) > 0 && input.size(3) > 0, "detseg.", op,
              ": input must be a Tensor[N, C_in, H, W] with C_in, H, W > 0 (N may be 0), got shape ", input.sizes());
  floating(op, "input", input);
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(1) > 0 && weight.size(2) > 0 && weight.size(3) > 0, "detseg.",
              op, ": weight must be a Tensor[C_in, C_out / groups, kH, kW] with non-zero sizes, got shape ",
              weight.sizes());
  TORCH_CHECK_TYPE(weight.scalar_type() == input.scalar_type(), "detseg.", op,
              ": weight must have the dtype of input (", dtype_name(input), "), got ", dtype_name(weight));
  TORCH_CHECK_VALUE(weight.device() == input.device(), "detseg.", op, ": weight must be on the device of input (",
              input.device(), "), got ", weight.device());
  conv_pair(op, "stride", stride);
  conv_pair(op, "padding", padding);
  conv_pair(op, "output_padding", output_padding);
  conv_pair(op, "dilation", dilation);
  TORCH_CHECK_VALUE(stride[0] > 0 && stride[1] > 0, "detseg.", op, ": stride must be positive, got ", stride);
  TORCH_CHECK_VALUE(dilation[0] > 0 && dilation[1] > 0, "detseg.", op, ": dilation must be positive, got ", dilation);
  TORCH_CHECK_VALUE(padding[0] >= 0 && padding[1] >= 0, "detseg.", op, ": padding must be non-negative, got ",
              padding);
  TORCH_CHECK_VALUE(output_padding[0] >= 0 && output_padding[1] >= 0 &&
                  (output_padding[0] < stride[0] || output_padding[0] < dilation[0]) &&
                  (output_padding[1] < stride[1] || output_padding[1] < dilation[1]),
              "detseg.", op, ": output_padding must be non-negative and smaller than stride or dilation on each "
              "axis, got output_padding ", output_padding, " with stride ", stride, " and dilation ", dilation);
  TORCH_CHECK_VALUE(groups > 0, "detseg.", op, ": groups must be positive, got ", groups);
  TORCH_CHECK_VALUE(weight.size(0) == input.size(1), "detseg.", op, ": weight.size(0) must equal the input channels ",
              input.size(1), " (weight is Tensor[C_in, C_out / groups, kH, kW]), got weight of shape ",
              weight.sizes());
  TORCH_CHECK_VALUE(input.size(1) % groups == 0, "detseg.", op, ": groups must divide the input channels ",
              input.size(1), ", got groups = ", groups);
  if (bias != nullptr) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == weight.size(1) * groups, "detseg.", op,
                ": bias must be a Tensor[C_out] with C_out = weight.size(1) * groups = ", weight.size(1) * groups,
                ", got shape ", bias->sizes());
    TORCH_CHECK_TYPE(bias->scalar_type() == input.scalar_type(), "detseg.", op,
                ": bias must have the dtype of input (", dtype_name(input), "), got ", dtype_name(*bias));
    TORCH_CHECK_VALUE(bias->device() == input.device(), "detseg.", op, ": bias must be on the device of input (",
                input.device(), "), got ", bias->device());
  }
  const int64_t ho = conv_transpose_out_size(input.size(2), weight.size(2), stride[0], padding[0], dilation[0],
                                             output_padding[0]);
  const int64_t wo = conv_transpose_out_size(input.size(3), weight.size(3), stride[1], padding[1], dilation[1],
                                             output_padding[1]);
  TORCH_CHECK_VALUE(ho > 0 && wo > 0, "detseg.", op, ": the output size (", ho, ", ", wo,
              ") computed from input ", input.sizes().slice(2), ", kernel ", weight.sizes().slice(2), ", stride ",
              stride, ", padding ", padding, ", output_padding ", output_padding, " and dilation ", dilation,
              " must be positive: padding is too large");
  return {ho, wo};
}

// The backward op: the forward's checks, then grad of the forward's output shape.
inline std::pair<int64_t, int64_t> conv_transpose2d_backward_args(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups, at::IntArrayRef dilation) {
  const char* op = "_conv_transpose2d_backward";
  auto hw = conv_transpose2d_args(op, input, weight, nullptr, stride, padding, output_padding, groups, dilation);
  const int64_t cout = weight.size(1) * groups;
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == input.size(0) && grad.size(1) == cout &&
                  grad.size(2) == hw.first && grad.size(3) == hw.second,
              "detseg.", op, ": grad must be a Tensor[", input.size(0), ", ", cout, ", ", hw.first, ", ", hw.second,
              "] (the output's shape), got shape ", grad.sizes());
  TORCH_CHECK_TYPE(grad.scalar_type() == input.scalar_type(), "detseg.", op, ": grad must have the dtype of input (",
              dtype_name(input), "), got ", dtype_name(grad));
  return hw;
}

// max_unpool2d: input Tensor[N, C, H, W] floating, indices int64 of the same shape (flat
// positions h * W_out + w in each output plane), output_size (H_out, W_out).
inline void max_unpool2d_args(const char* op, const at::Tensor& input, const at::Tensor& indices,
                              at::IntArrayRef output_size) {
  TORCH_CHECK_VALUE(input.dim() == 4, "detseg.", op, ": input must be a Tensor[N, C, H, W], got shape ",
              input.sizes());
  floating(op, "input", input);
  TORCH_CHECK_VALUE(indices.sizes() == input.sizes(), "detseg.", op, ": indices must have the shape of input ",
              input.sizes(), ", got ", indices.sizes());
  TORCH_CHECK_TYPE(indices.scalar_type() == at::kLong, "detseg.", op, ": indices must be an int64 tensor, got ",
              dtype_name(indices));
  TORCH_CHECK_VALUE(indices.device() == input.device(), "detseg.", op, ": indices must be on the device of input (",
              input.device(), "), got ", indices.device());
  conv_pair(op, "output_size", output_size);
  TORCH_CHECK_VALUE(output_size[0] > 0 && output_size[1] > 0, "detseg.", op, ": output_size must be positive, got ",
              output_size);
}

// _max_unpool2d_backward: grad Tensor[N, C, H_out, W_out], indices int64 Tensor[N, C, H, W].
inline void max_unpool2d_grad_args(const char* op, const at::Tensor& grad, const at::Tensor& indices,
                                   at::IntArrayRef output_size) {
  conv_pair(op, "output_size", output_size);
  TORCH_CHECK_VALUE(indices.dim() == 4, "detseg.", op, ": indices must be a Tensor[N, C, H, W], got shape ",
              indices.sizes());
  TORCH_CHECK_TYPE(indices.scalar_type() == at::kLong, "detseg.", op, ": indices must be an int64 tensor, got ",
              dtype_name(indices));
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == indices.size(0) && grad.size(1) == indices.size(1) &&
                  grad.size(2) == output_size[0] && grad.size(3) == output_size[1],
              "detseg.", op, ": grad must be a Tensor[", indices.size(0), ", ", indices.size(1), ", ", output_size[0],
              ", ", output_size[1], "], got shape ", grad.sizes());
  floating(op, "grad", grad);
  TORCH_CHECK_VALUE(indices.device() == grad.device(), "detseg.", op, ": indices must be on the device of grad (",
              grad.device(), "), got ", indices.device());
}

// One bad index (host side): it names the first offending flat position.
inline void max_unpool2d_bad_index(const char* op, int64_t index, int64_t plane) {
  TORCH_CHECK_VALUE(false, "detseg.", op, ": indices must hold positions in [0, output_size[0] * output_size[1] = ",
              plane, "), got ", index);
}

}  // namespace detseg::checks
