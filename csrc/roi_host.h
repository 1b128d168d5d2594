// Host-side argument checks and preparation shared by the CPU (csrc/cpu/roi_*.cpp) and CUDA
// (csrc/cuda/roi_*.cu) RoI kernels. Torch only, no at::parallel_for and no CUDA headers, so
// both g++ and nvcc compile it; the words of the messages are those of checks.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string_view>

#include "checks.h"

namespace detseg {

// The compute type of RoI data: float64 for float64, float32 otherwise. RoIs and gradients
// are read / accumulated in it whatever their own floating dtype: float16 boxes would lose
// whole pixels.
inline at::ScalarType roi_acc_type(at::ScalarType data_type) {
  return data_type == at::kDouble ? at::kDouble : at::kFloat;
}

inline at::Tensor roi_rows(const at::Tensor& rois, at::ScalarType data_type) {
  return rois.to(roi_acc_type(data_type)).contiguous();
}

inline at::MemoryFormat roi_memory_format(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// What every RoI forward reads once its arguments are checked: the sizes, and the layout its
// outputs keep (channels-last in, channels-last out; the position-sensitive ops read one plane
// per bin and stay NCHW).
struct RoiForward {
  int64_t K, N, C, H, W;
  bool cl;
  at::MemoryFormat fmt;
};

inline RoiForward roi_forward_begin(const char* op, const at::Tensor& input, const at::Tensor& rois,
                                    double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                    bool position_sensitive) {
  checks::roi_args(op, input, rois, spatial_scale, pooled_height, pooled_width);
  if (position_sensitive) checks::ps_roi_channels(op, input.size(1), pooled_height, pooled_width);
  const bool cl = !position_sensitive && checks::roi_channels_last(input);
  return {rois.size(0), input.size(0), input.size(1), input.size(2), input.size(3), cl, roi_memory_format(cl)};
}

// The input gradient, uninitialised, in the compute type (float64 for float64, float32
// otherwise): half-precision gradients summed over many RoIs would lose whole units. Callers
// zero it (the CPU after advising huge pages).
inline at::Tensor roi_grad_alloc(const at::Tensor& grad, int64_t n, int64_t c, int64_t h, int64_t w,
                                 at::MemoryFormat fmt) {
  // at::zeros would drop the memory format
  return at::empty({n, c, h, w}, grad.options().dtype(roi_acc_type(grad.scalar_type())).memory_format(fmt));
}

inline at::Tensor roi_grad_result(const at::Tensor& gin, const at::Tensor& grad) {
  return gin.scalar_type() == grad.scalar_type() ? gin : gin.to(grad.scalar_type());
}

// The checks that open _roi_align_backward (input is required, and shaped, for 'max' only);
// returns the pooling mode.
inline checks::RoiPoolMode roi_align_backward_checks(const char* op, const at::Tensor& grad, const at::Tensor& rois,
                                                     double spatial_scale, int64_t pooled_height,
                                                     int64_t pooled_width, int64_t batch_size, int64_t channels,
                                                     int64_t height, int64_t width, int64_t sampling_ratio,
                                                     std::string_view pool_mode,
                                                     const std::optional<at::Tensor>& input) {
  using checks::RoiPoolMode;
  checks::roi_backward_sizes(op, grad, rois, batch_size, channels, height, width, pooled_height, pooled_width);
  checks::roi_scale_size(op, spatial_scale, pooled_height, pooled_width);
  checks::roi_sampling_ratio(op, sampling_ratio);
  const RoiPoolMode mode = checks::roi_pool_mode(op, pool_mode);
  TORCH_CHECK_VALUE(mode == RoiPoolMode::kAvg || (input.has_value() && input->defined()), "detseg.", op,
                    ": input must be given for pool_mode 'max'");
  if (mode == RoiPoolMode::kMax) {
    TORCH_CHECK_VALUE(input->sizes() == at::IntArrayRef({batch_size, channels, height, width}), "detseg.", op,
                      ": input must be a Tensor[", batch_size, ", ", channels, ", ", height, ", ", width,
                      "], got shape ", input->sizes());
    TORCH_CHECK_TYPE(input->scalar_type() == grad.scalar_type(), "detseg.", op,
                     ": input must have the dtype of grad (", grad.scalar_type(), "), got ", input->scalar_type());
  }
  return mode;
}

// The checks that open _roi_pool_backward.
inline void roi_pool_backward_checks(const char* op, const at::Tensor& grad, const at::Tensor& rois,
                                     const at::Tensor& argmax, double spatial_scale, int64_t pooled_height,
                                     int64_t pooled_width, int64_t batch_size, int64_t channels, int64_t height,
                                     int64_t width) {
  checks::roi_backward_sizes(op, grad, rois, batch_size, channels, height, width, pooled_height, pooled_width);
  checks::roi_scale_size(op, spatial_scale, pooled_height, pooled_width);
  TORCH_CHECK_VALUE(argmax.sizes() == grad.sizes(), "detseg.", op, ": argmax must have the shape of grad ",
                    grad.sizes(), ", got ", argmax.sizes());
  TORCH_CHECK_TYPE(argmax.scalar_type() == at::kLong, "detseg.", op, ": argmax must be an int64 tensor, got ",
                   argmax.scalar_type());
}

// Checks that open both position-sensitive backward ops; returns the output channel count
// channels / (pooled_height * pooled_width).
inline int64_t ps_roi_backward_cout(const char* op, const at::Tensor& grad, const at::Tensor& rois,
                                    double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                    int64_t batch_size, int64_t channels, int64_t height, int64_t width) {
  checks::roi_scale_size(op, spatial_scale, pooled_height, pooled_width);
  checks::ps_roi_channels(op, channels, pooled_height, pooled_width);
  const int64_t Cout = channels / (pooled_height * pooled_width);
  checks::roi_backward_sizes(op, grad, rois, batch_size, Cout, height, width, pooled_height, pooled_width);
  return Cout;
}

inline void ps_roi_check_channel_mapping(const char* op, const at::Tensor& channel_mapping, const at::Tensor& grad) {
  TORCH_CHECK_VALUE(channel_mapping.sizes() == grad.sizes(), "detseg.", op,
                    ": channel_mapping must have the shape of grad ", grad.sizes(), ", got ",
                    channel_mapping.sizes());
}

// The argmax / input tensor a backward reads must live on grad's device (CUDA kernels: the
// dispatcher picks a CPU kernel only when no argument is on a device).
inline void roi_check_same_device(const char* op, const char* arg, const at::Tensor& t, const at::Tensor& grad) {
  TORCH_CHECK_VALUE(t.device() == grad.device(), "detseg.", op, ": ", arg, " must be on the same device as grad (",
                    grad.device(), "), got ", t.device());
}

}  // namespace detseg
