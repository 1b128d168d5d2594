// Argument checks of the RoI ops (roi_align, roi_pool, ps_*): the checks of csrc/cpu/roi_*.cpp and csrc/cuda/roi_*.cu.
#pragma once

#include "checks/common.h"

namespace detseg::checks {

// ---------------------------------------------------------------- RoI ops
// roi_align / roi_pool (and their backward ops): input Tensor[N, C, H, W], rois Tensor[K, 5]
// rows (batch, x1, y1, x2, y2). rois may have any floating dtype: they are read in the
// compute type of input (float64 for float64, float32 otherwise).

inline void roi_rois(const char* op, const at::Tensor& rois, const at::Tensor& ref, const char* ref_name) {
  TORCH_CHECK_VALUE(rois.dim() == 2 && rois.size(1) == 5, "detseg.", op,
              ": rois must be a Tensor[K, 5] of (batch_index, x1, y1, x2, y2), got shape ", rois.sizes());
  floating(op, "rois", rois);
  TORCH_CHECK_VALUE(rois.device() == ref.device(), "detseg.", op, ": rois must be on the same device as ", ref_name,
              " (", ref.device(), "), got ", rois.device());
}

inline void roi_scale_size(const char* op, double spatial_scale, int64_t pooled_height, int64_t pooled_width) {
  TORCH_CHECK_VALUE(std::isfinite(spatial_scale) && spatial_scale > 0.0, "detseg.", op,
              ": spatial_scale must be a finite number > 0, got ", spatial_scale);
  TORCH_CHECK_VALUE(pooled_height > 0 && pooled_width > 0 && pooled_height <= (1 << 20) && pooled_width <= (1 << 20),
              "detseg.", op, ": output_size must be positive (at most 2^20), got (", pooled_height, ", ",
              pooled_width, ")");
}

inline void roi_args(const char* op, const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                     int64_t pooled_height, int64_t pooled_width) {
  TORCH_CHECK_VALUE(input.dim() == 4, "detseg.", op, ": input must be a Tensor[N, C, H, W], got shape ", input.sizes());
  floating(op, "input", input);
  roi_rois(op, rois, input, "input");
  roi_scale_size(op, spatial_scale, pooled_height, pooled_width);
}

// Above 2^16 samples per axis the int arithmetic of the sample grid could overflow.
inline void roi_sampling_ratio(const char* op, int64_t sampling_ratio) {
  TORCH_CHECK_VALUE(sampling_ratio <= (1 << 16), "detseg.", op,
              ": sampling_ratio must be at most 65536 (<= 0: adaptive), got ", sampling_ratio);
}

enum class RoiPoolMode : int { kAvg = 0, kMax = 1 };

inline RoiPoolMode roi_pool_mode(const char* op, std::string_view mode) {
  if (mode == "avg") return RoiPoolMode::kAvg;
  if (mode == "max") return RoiPoolMode::kMax;
  TORCH_CHECK_VALUE(false, "detseg.", op, ": pool_mode must be 'avg' or 'max', got '", mode, "'");
}

// The batch column of host-side rois (contiguous rows of 5): integral and in [0, batch_size).
// torchvision truncates and never checks (reads out of bounds: pytorch/vision#4828).
template <typename T>
inline void roi_batch_indices(const char* op, const T* rois, int64_t k, int64_t batch_size) {
  for (int64_t i = 0; i < k; ++i) {
    const double b = static_cast<double>(rois[5 * i]);
    TORCH_CHECK_VALUE(b >= 0.0 && b < static_cast<double>(batch_size) && b == std::trunc(b), "detseg.", op,
                ": rois[:, 0] must hold integer batch indices in [0, ", batch_size, "), got ", b, " in row ", i);
  }
}

// Backward ops: the shape the gradient flows back to.
inline void roi_backward_sizes(const char* op, const at::Tensor& grad, const at::Tensor& rois, int64_t batch_size,
                               int64_t channels, int64_t height, int64_t width, int64_t pooled_height,
                               int64_t pooled_width) {
  roi_rois(op, rois, grad, "grad");
  TORCH_CHECK_VALUE(batch_size >= 0 && channels >= 0 && height >= 0 && width >= 0, "detseg.", op,
              ": input sizes must be >= 0, got (", batch_size, ", ", channels, ", ", height, ", ", width, ")");
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                  grad.size(2) == pooled_height && grad.size(3) == pooled_width,
              "detseg.", op, ": grad must be a Tensor[", rois.size(0), ", ", channels, ", ", pooled_height, ", ",
              pooled_width, "], got shape ", grad.sizes());
  floating(op, "grad", grad);
}

// ps_roi_align / ps_roi_pool: input channels split into pooled_height * pooled_width groups.
inline void ps_roi_channels(const char* op, int64_t channels, int64_t pooled_height, int64_t pooled_width) {
  TORCH_CHECK_VALUE(channels % (pooled_height * pooled_width) == 0, "detseg.", op,
              ": input channels must be a multiple of output_size[0] * output_size[1] = ",
              pooled_height * pooled_width, ", got ", channels);
}

// Channels-last is kept when the tensor is laid out so and not also plain contiguous (C == 1
// or H == W == 1 are both): the fake kernels use the same rule.
inline bool roi_channels_last(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

}  // namespace detseg::checks
