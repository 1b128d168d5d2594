// Argument checks of each op, shared by its CPU and CUDA kernels (host side). The Python
// backends (Triton, reference) and the fake kernels use python/detseg/ops/_checks.py,
// which raises with the same words.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <string_view>
#include <vector>

#include "detseg/boxes.h"

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

}  // namespace detseg::checks

// ---- RLE and COCO evaluation (issues 6 and 7) ----
namespace detseg::checks {

// Runs of a batch of RLEs: counts int64 Tensor[total] (each in [0, 2^32)), offsets int64
// Tensor[N + 1] from 0 to total, non-decreasing. Returns N.
inline int64_t rle_runs(const char* op, const char* prefix, const at::Tensor& counts, const at::Tensor& offsets) {
  TORCH_CHECK_VALUE(counts.dim() == 1, "detseg.", op, ": ", prefix, "counts must be a Tensor[total], got shape ",
              counts.sizes());
  TORCH_CHECK_TYPE(counts.scalar_type() == at::kLong, "detseg.", op, ": ", prefix,
              "counts must be an int64 tensor, got ", counts.scalar_type());
  TORCH_CHECK_VALUE(offsets.dim() == 1 && offsets.size(0) >= 1, "detseg.", op, ": ", prefix,
              "offsets must be a Tensor[N + 1], got shape ", offsets.sizes());
  TORCH_CHECK_TYPE(offsets.scalar_type() == at::kLong, "detseg.", op, ": ", prefix,
              "offsets must be an int64 tensor, got ", offsets.scalar_type());
  TORCH_CHECK_VALUE(counts.device().is_cpu() && offsets.device().is_cpu(), "detseg.", op, ": ", prefix,
              "counts and offsets must be CPU tensors (run-length coding is sequential per mask), got ",
              counts.device());
  return offsets.size(0) - 1;
}

inline void rle_sizes(const char* op, const char* arg, const at::Tensor& sizes, int64_t n) {
  TORCH_CHECK_VALUE(sizes.dim() == 2 && sizes.size(0) == n && sizes.size(1) == 2, "detseg.", op, ": ", arg,
              " must be a Tensor[", n, ", 2] of (height, width), got shape ", sizes.sizes());
  TORCH_CHECK_TYPE(sizes.scalar_type() == at::kLong, "detseg.", op, ": ", arg, " must be an int64 tensor, got ",
              sizes.scalar_type());
}

inline void rle_masks(const char* op, const at::Tensor& masks) {
  TORCH_CHECK_VALUE(masks.dim() == 3, "detseg.", op, ": masks must be a Tensor[N, H, W], got shape ", masks.sizes());
  TORCH_CHECK_TYPE(masks.scalar_type() == at::kBool || masks.scalar_type() == at::kByte, "detseg.", op,
              ": masks must be a bool or uint8 tensor, got ", masks.scalar_type());
  TORCH_CHECK_VALUE(masks.device().is_cpu(), "detseg.", op, ": masks must be a CPU tensor, got ", masks.device());
  TORCH_CHECK_VALUE(masks.size(1) * masks.size(2) < (int64_t(1) << 32), "detseg.", op,
              ": masks must have fewer than 2^32 pixels each (pycocotools' uint32 runs), got ", masks.size(1), " x ",
              masks.size(2));
}

}  // namespace detseg::checks
