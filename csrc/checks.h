// Argument checks of each op, shared by its CPU and CUDA kernels (host side). The Python
// backends (Triton, reference) and the fake kernels use python/detseg/ops/_checks.py,
// which raises with the same words.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "detseg/boxes.h"
#include "detseg/conv_transpose.h"

namespace detseg::checks {

inline void boxes_last4(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.dim() >= 1 && t.size(-1) == 4, "detseg.", op, ": ", arg,
              " must be a Tensor[..., 4], got shape ", t.sizes());
}

inline void boxes_n4(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(1) == 4, "detseg.", op, ": ", arg,
              " must be a Tensor[N, 4], got shape ", t.sizes());
}

inline void floating(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), "detseg.", op, ": ", arg,
              " must be a floating-point tensor (float64, float32, float16 or bfloat16), got ",
              t.scalar_type());
}

inline void same_device(const char* op, const char* arg, const at::Tensor& t, const at::Tensor& ref) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), "detseg.", op, ": ", arg, " must be on the same device as boxes (",
              ref.device(), "), got ", t.device());
}

inline void iou_threshold(const char* op, double t) {
  TORCH_CHECK_VALUE(t >= 0.0 && t <= 1.0, "detseg.", op, ": iou_threshold must be a number in [0, 1], got ", t);
}

inline IouKind iou_kind(const char* op, std::string_view kind) {
  if (kind == "iou") return IouKind::kIoU;
  if (kind == "giou") return IouKind::kGIoU;
  if (kind == "diou") return IouKind::kDIoU;
  if (kind == "ciou") return IouKind::kCIoU;
  TORCH_CHECK_VALUE(false, "detseg.", op, ": kind must be one of 'iou', 'giou', 'diou', 'ciou', got '", kind, "'");
}

// boxes1 floating, boxes2 of its dtype and on its device (the IoU matrix and loss ops).
inline void boxes_pair_types(const char* op, const at::Tensor& b1, const at::Tensor& b2) {
  floating(op, "boxes1", b1);
  TORCH_CHECK_TYPE(b2.scalar_type() == b1.scalar_type(), "detseg.", op, ": boxes2 must have the dtype of boxes1 (",
              b1.scalar_type(), "), got ", b2.scalar_type());
  same_device(op, "boxes2", b2, b1);
}

// box_iou_matrix: boxes1 [N, 4] with boxes2 [M, 4], or [B, N, 4] with [B, M, 4].
inline void iou_matrix(const at::Tensor& b1, const at::Tensor& b2) {
  const char* op = "box_iou_matrix";
  TORCH_CHECK_VALUE((b1.dim() == 2 || b1.dim() == 3) && b1.size(-1) == 4, "detseg.", op,
              ": boxes1 must be a Tensor[N, 4] or Tensor[B, N, 4], got shape ", b1.sizes());
  TORCH_CHECK_VALUE(b2.dim() == b1.dim() && b2.size(-1) == 4 && (b1.dim() == 2 || b2.size(0) == b1.size(0)), "detseg.", op,
              ": boxes2 must be a Tensor[", b1.dim() == 3 ? "B, " : "", "M, 4] matching boxes1 ", b1.sizes(),
              ", got shape ", b2.sizes());
  boxes_pair_types(op, b1, b2);
}

// box_iou_loss: aligned pairs boxes1 [N, 4], boxes2 [N, 4].
inline void iou_loss(const at::Tensor& b1, const at::Tensor& b2) {
  const char* op = "box_iou_loss";
  boxes_n4(op, "boxes1", b1);
  TORCH_CHECK_VALUE(b2.dim() == 2 && b2.size(1) == 4 && b2.size(0) == b1.size(0), "detseg.", op,
              ": boxes2 must be a Tensor[N, 4] with N = ", b1.size(0), " as boxes1, got shape ", b2.sizes());
  boxes_pair_types(op, b1, b2);
}

// The backward ops: the forward's checks (under the forward's name), the kind, then grad, whose
// shape is the forward's output. Returns the parsed kind.
inline IouKind iou_matrix_backward(const at::Tensor& grad, const at::Tensor& b1, const at::Tensor& b2,
                                   std::string_view kind_s) {
  const char* op = "_box_iou_matrix_backward";
  iou_matrix(b1, b2);
  const IouKind kind = iou_kind(op, kind_s);
  const int64_t n = b1.size(-2), m = b2.size(-2);
  const auto shape = b1.dim() == 3 ? std::vector<int64_t>{b1.size(0), n, m} : std::vector<int64_t>{n, m};
  TORCH_CHECK_VALUE(grad.sizes() == at::IntArrayRef(shape), "detseg.", op, ": grad must be a Tensor",
                    at::IntArrayRef(shape), ", got shape ", grad.sizes());
  same_device(op, "grad", grad, b1);
  return kind;
}

inline IouKind iou_loss_backward(const at::Tensor& grad, const at::Tensor& b1, const at::Tensor& b2,
                                 std::string_view kind_s) {
  const char* op = "_box_iou_loss_backward";
  iou_loss(b1, b2);
  const IouKind kind = iou_kind(op, kind_s);
  const int64_t n = b1.size(0);
  TORCH_CHECK_VALUE(grad.dim() == 1 && grad.size(0) == n, "detseg.", op, ": grad must be a Tensor[", n,
                    "], got shape ", grad.sizes());
  same_device(op, "grad", grad, b1);
  return kind;
}

inline void nms(const at::Tensor& boxes, const at::Tensor& scores, double thr) {
  const char* op = "nms";
  boxes_n4(op, "boxes", boxes);
  TORCH_CHECK_VALUE(scores.dim() == 1 && scores.size(0) == boxes.size(0), "detseg.", op,
              ": scores must be a Tensor[N] with N = ", boxes.size(0), " as boxes, got shape ", scores.sizes());
  floating(op, "boxes", boxes);
  floating(op, "scores", scores);
  same_device(op, "scores", scores, boxes);
  iou_threshold(op, thr);
}

inline void batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs, double thr) {
  const char* op = "batched_nms";
  boxes_n4(op, "boxes", boxes);
  TORCH_CHECK_VALUE(scores.dim() == 1 && scores.size(0) == boxes.size(0), "detseg.", op,
              ": scores must be a Tensor[N] with N = ", boxes.size(0), " as boxes, got shape ", scores.sizes());
  TORCH_CHECK_VALUE(idxs.dim() == 1 && idxs.size(0) == boxes.size(0), "detseg.", op,
              ": idxs must be a Tensor[N] with N = ", boxes.size(0), " as boxes, got shape ", idxs.sizes());
  TORCH_CHECK_TYPE(at::isIntegralType(idxs.scalar_type(), /*includeBool=*/false), "detseg.", op,
              ": idxs must be an integer tensor, got ", idxs.scalar_type());
  floating(op, "boxes", boxes);
  floating(op, "scores", scores);
  same_device(op, "scores", scores, boxes);
  same_device(op, "idxs", idxs, boxes);
  iou_threshold(op, thr);
}

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
