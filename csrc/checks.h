// Argument checks of each op, shared by its CPU and CUDA kernels (host side). The Python
// backends (Triton, reference) and the fake kernels use python/detseg/ops/_checks.py,
// which raises with the same words.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>
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

// ---------------------------------------------------------------- masks (issue 6)
// Label maps of confusion_matrix: any shape (the same for pred and target), integer dtype.
// Instance masks of mask_iou / masks_to_boxes: Tensor[N, H, W] bool or uint8 holding 0 / 1.

// C * C + 2 bins must index in 32 bits (and the [C, C] int64 matrix stays below 16 GiB).
constexpr int64_t kMaxClasses = 46340;

inline bool label_dtype(at::ScalarType t) {
  return t == at::kByte || t == at::kChar || t == at::kShort || t == at::kInt || t == at::kLong || t == at::kBool;
}

inline void confusion_matrix(const at::Tensor& pred, const at::Tensor& target, int64_t num_classes,
                             bool per_image, std::string_view invalid) {
  const char* op = "confusion_matrix";
  TORCH_CHECK_TYPE(label_dtype(pred.scalar_type()), "detseg.", op,
              ": pred must be an integer tensor (uint8, int8, int16, int32, int64 or bool), got ", pred.scalar_type());
  TORCH_CHECK_TYPE(label_dtype(target.scalar_type()), "detseg.", op,
              ": target must be an integer tensor (uint8, int8, int16, int32, int64 or bool), got ",
              target.scalar_type());
  TORCH_CHECK_VALUE(target.sizes() == pred.sizes(), "detseg.", op, ": target must have the shape of pred ",
              pred.sizes(), ", got ", target.sizes());
  TORCH_CHECK_VALUE(target.device() == pred.device(), "detseg.", op, ": target must be on the same device as pred (",
              pred.device(), "), got ", target.device());
  TORCH_CHECK_VALUE(num_classes >= 1 && num_classes <= kMaxClasses, "detseg.", op,
              ": num_classes must be in [1, ", kMaxClasses, "], got ", num_classes);
  TORCH_CHECK_VALUE(!per_image || pred.dim() >= 1, "detseg.", op,
              ": per_image=True needs a batch dimension: pred must be a Tensor[B, ...], got shape ", pred.sizes());
  TORCH_CHECK_VALUE(invalid == "error" || invalid == "count", "detseg.", op,
              ": invalid must be 'error' or 'count', got '", invalid, "'");
}

// The first pixel (flat index) of an out-of-range label, for the error message.
inline void confusion_invalid_error(int64_t index, int64_t pred, int64_t target, int64_t num_classes) {
  TORCH_CHECK_VALUE(false, "detseg.confusion_matrix: labels must be in [0, num_classes = ", num_classes,
              ") (or target == ignore_index), got pred ", pred, " and target ", target, " at flat index ", index,
              " (invalid='count' tallies such pixels instead)");
}

inline void binary_masks(const char* op, const char* arg, const at::Tensor& m) {
  TORCH_CHECK_VALUE(m.dim() == 3, "detseg.", op, ": ", arg, " must be a Tensor[N, H, W], got shape ", m.sizes());
  TORCH_CHECK_TYPE(m.scalar_type() == at::kBool || m.scalar_type() == at::kByte, "detseg.", op, ": ", arg,
              " must be a bool or uint8 tensor, got ", m.scalar_type());
}

inline void non_binary_error(const char* op, const char* arg, int64_t value) {
  TORCH_CHECK_VALUE(false, "detseg.", op, ": ", arg, " must hold only 0 and 1, got the value ", value);
}

inline void mask_iou(const at::Tensor& m1, const at::Tensor& m2, const std::optional<at::Tensor>& iscrowd) {
  const char* op = "mask_iou";
  binary_masks(op, "masks1", m1);
  binary_masks(op, "masks2", m2);
  TORCH_CHECK_VALUE(m2.size(1) == m1.size(1) && m2.size(2) == m1.size(2), "detseg.", op,
              ": masks2 must have the height and width of masks1 (", m1.size(1), ", ", m1.size(2), "), got shape ",
              m2.sizes());
  TORCH_CHECK_VALUE(m2.device() == m1.device(), "detseg.", op, ": masks2 must be on the same device as masks1 (",
              m1.device(), "), got ", m2.device());
  if (iscrowd.has_value()) {
    const at::Tensor& c = *iscrowd;
    TORCH_CHECK_VALUE(c.dim() == 1 && c.size(0) == m2.size(0), "detseg.", op, ": iscrowd must be a Tensor[M] with M = ",
                m2.size(0), " as masks2, got shape ", c.sizes());
    TORCH_CHECK_TYPE(c.scalar_type() == at::kBool, "detseg.", op, ": iscrowd must be a bool tensor, got ",
                c.scalar_type());
    TORCH_CHECK_VALUE(c.device() == m1.device(), "detseg.", op, ": iscrowd must be on the same device as masks1 (",
                m1.device(), "), got ", c.device());
  }
}

inline void masks_to_boxes(const at::Tensor& masks) {
  TORCH_CHECK_VALUE(masks.dim() == 3, "detseg.masks_to_boxes: masks must be a Tensor[N, H, W], got shape ",
              masks.sizes());
}

enum class PasteConvention : int { kTorchvision = 0, kDetectron2 = 1 };

inline PasteConvention paste_masks(const at::Tensor& masks, const at::Tensor& boxes, int64_t height, int64_t width,
                                   int64_t padding, std::string_view convention) {
  const char* op = "paste_masks_in_image";
  TORCH_CHECK_VALUE(masks.dim() == 3, "detseg.", op, ": masks must be a Tensor[N, M, M] (or Tensor[N, 1, M, M] "
              "in the public API), got shape ", masks.sizes());
  floating(op, "masks", masks);
  TORCH_CHECK_VALUE(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == masks.size(0), "detseg.", op,
              ": boxes must be a Tensor[N, 4] with N = ", masks.size(0), " as masks, got shape ", boxes.sizes());
  floating(op, "boxes", boxes);
  TORCH_CHECK_VALUE(boxes.device() == masks.device(), "detseg.", op, ": boxes must be on the same device as masks (",
              masks.device(), "), got ", boxes.device());
  TORCH_CHECK_VALUE(height >= 0 && width >= 0, "detseg.", op, ": image_shape must be (height, width) >= 0, got (",
              height, ", ", width, ")");
  TORCH_CHECK_VALUE(padding >= 0, "detseg.", op, ": padding must be >= 0, got ", padding);
  TORCH_CHECK_VALUE((masks.size(1) > 0 && masks.size(2) > 0) || masks.size(0) == 0, "detseg.", op,
              ": masks must not be empty in height or width, got shape ", masks.sizes());
  if (convention == "torchvision") return PasteConvention::kTorchvision;
  if (convention == "detectron2") return PasteConvention::kDetectron2;
  TORCH_CHECK_VALUE(false, "detseg.", op, ": convention must be 'torchvision' or 'detectron2', got '", convention, "'");
}

}  // namespace detseg::checks

// ---- anchors and box coding (issue 4) ----
namespace detseg::checks {

inline void coder_weights(const char* op, at::ArrayRef<double> w) {
  TORCH_CHECK_VALUE(w.size() == 4, "detseg.", op, ": weights must hold 4 numbers (wx, wy, ww, wh), got ", w.size());
  for (double v : w)
    TORCH_CHECK_VALUE(std::isfinite(v) && v != 0.0, "detseg.", op,
                      ": weights must be finite and non-zero, got ", w);
}

// encode_boxes: reference_boxes (targets) and proposals (anchors), both Tensor[N, 4] of one dtype.
inline void encode_boxes(const at::Tensor& ref, const at::Tensor& prop, at::ArrayRef<double> w) {
  const char* op = "encode_boxes";
  boxes_n4(op, "reference_boxes", ref);
  TORCH_CHECK_VALUE(prop.dim() == 2 && prop.size(1) == 4 && prop.size(0) == ref.size(0), "detseg.", op,
                    ": proposals must be a Tensor[N, 4] with N = ", ref.size(0), " as reference_boxes, got shape ",
                    prop.sizes());
  floating(op, "reference_boxes", ref);
  TORCH_CHECK_TYPE(prop.scalar_type() == ref.scalar_type(), "detseg.", op,
                   ": proposals must have the dtype of reference_boxes (", ref.scalar_type(), "), got ",
                   prop.scalar_type());
  TORCH_CHECK_VALUE(prop.device() == ref.device(), "detseg.", op,
                    ": proposals must be on the same device as reference_boxes (", ref.device(), "), got ",
                    prop.device());
  coder_weights(op, w);
}

// decode_boxes: rel_codes Tensor[N, 4 * K], boxes Tensor[N, 4] (any floating dtype: cast to rel_codes').
inline void decode_boxes(const char* op, const at::Tensor& codes, const at::Tensor& boxes, at::ArrayRef<double> w,
                         double clip) {
  TORCH_CHECK_VALUE(codes.dim() == 2 && codes.size(1) % 4 == 0, "detseg.", op,
                    ": rel_codes must be a Tensor[N, 4 * K], got shape ", codes.sizes());
  TORCH_CHECK_VALUE(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == codes.size(0), "detseg.", op,
                    ": boxes must be a Tensor[N, 4] with N = ", codes.size(0), " as rel_codes, got shape ",
                    boxes.sizes());
  floating(op, "rel_codes", codes);
  floating(op, "boxes", boxes);
  TORCH_CHECK_VALUE(boxes.device() == codes.device(), "detseg.", op,
                    ": boxes must be on the same device as rel_codes (", codes.device(), "), got ", boxes.device());
  coder_weights(op, w);
  TORCH_CHECK_VALUE(!std::isnan(clip), "detseg.", op, ": bbox_xform_clip must be a number (inf: no clamp), got nan");
}

inline void decode_boxes_backward(const at::Tensor& grad, const at::Tensor& codes, const at::Tensor& boxes,
                                  at::ArrayRef<double> w, double clip) {
  const char* op = "_decode_boxes_backward";
  decode_boxes(op, codes, boxes, w, clip);
  TORCH_CHECK_VALUE(grad.sizes() == codes.sizes(), "detseg.", op, ": grad must be a Tensor", codes.sizes(),
                    ", got shape ", grad.sizes());
  floating(op, "grad", grad);
  TORCH_CHECK_VALUE(grad.device() == codes.device(), "detseg.", op,
                    ": grad must be on the same device as rel_codes (", codes.device(), "), got ", grad.device());
}

// linear_encode_boxes (reference_boxes, proposals: one dtype) / linear_decode_boxes
// (rel_codes, boxes: boxes of any floating dtype): two Tensor[N, 4].
inline void linear_boxes(const char* op, const at::Tensor& a, const at::Tensor& b) {
  const bool enc = std::string_view(op) == "linear_encode_boxes";
  const char* an = enc ? "reference_boxes" : "rel_codes";
  const char* bn = enc ? "proposals" : "boxes";
  boxes_n4(op, an, a);
  TORCH_CHECK_VALUE(b.dim() == 2 && b.size(1) == 4 && b.size(0) == a.size(0), "detseg.", op, ": ", bn,
                    " must be a Tensor[N, 4] with N = ", a.size(0), " as ", an, ", got shape ", b.sizes());
  floating(op, an, a);
  floating(op, bn, b);
  TORCH_CHECK_TYPE(!enc || b.scalar_type() == a.scalar_type(), "detseg.", op, ": ", bn, " must have the dtype of ",
                   an, " (", a.scalar_type(), "), got ", b.scalar_type());
  TORCH_CHECK_VALUE(b.device() == a.device(), "detseg.", op, ": ", bn, " must be on the same device as ", an, " (",
                    a.device(), "), got ", b.device());
}

inline void grid_stride_arg(const char* op, const char* arg, double s) {
  TORCH_CHECK_VALUE(std::isfinite(s) && s > 0.0, "detseg.", op, ": ", arg, " must be a finite number > 0, got ", s);
}

inline void grid_anchors_level(const char* op, const at::Tensor& base, int64_t fh, int64_t fw, double sh, double sw,
                               double offset) {
  boxes_n4(op, "base_anchors", base);
  floating(op, "base_anchors", base);
  TORCH_CHECK_VALUE(fh >= 0 && fw >= 0 && fh <= (int64_t(1) << 24) && fw <= (int64_t(1) << 24), "detseg.", op,
                    ": feature_h and feature_w must be in [0, 2^24], got (", fh, ", ", fw, ")");
  grid_stride_arg(op, "stride_h", sh);
  grid_stride_arg(op, "stride_w", sw);
  TORCH_CHECK_VALUE(std::isfinite(offset), "detseg.", op, ": offset must be a finite number, got ", offset);
}

inline void grid_anchors(const at::Tensor& base, int64_t fh, int64_t fw, double sh, double sw, double offset) {
  grid_anchors_level("grid_anchors", base, fh, fw, sh, sw, offset);
}

// multilevel_grid_anchors: one entry per level in every list, at least one level, one dtype
// and device. Returns the total number of rows.
inline int64_t multilevel_grid_anchors(at::TensorList base, at::IntArrayRef fh, at::IntArrayRef fw,
                                       at::ArrayRef<double> sh, at::ArrayRef<double> sw, double offset) {
  const char* op = "multilevel_grid_anchors";
  const size_t L = base.size();
  TORCH_CHECK_VALUE(L >= 1 && fh.size() == L && fw.size() == L && sh.size() == L && sw.size() == L, "detseg.", op,
                    ": base_anchors, feature_h, feature_w, stride_h and stride_w must each hold one entry per level "
                    "(at least one), got ", L, ", ", fh.size(), ", ", fw.size(), ", ", sh.size(), ", ", sw.size());
  int64_t rows = 0;
  for (size_t l = 0; l < L; ++l) {
    grid_anchors_level(op, base[l], fh[l], fw[l], sh[l], sw[l], offset);
    TORCH_CHECK_TYPE(base[l].scalar_type() == base[0].scalar_type(), "detseg.", op,
                     ": base_anchors must share one dtype (", base[0].scalar_type(), "), got ", base[l].scalar_type(),
                     " at level ", l);
    TORCH_CHECK_VALUE(base[l].device() == base[0].device(), "detseg.", op, ": base_anchors must share one device (",
                      base[0].device(), "), got ", base[l].device(), " at level ", l);
    rows += fh[l] * fw[l] * base[l].size(0);
  }
  return rows;
}

inline void yolo_decode(const at::Tensor& pred, const at::Tensor& anchors, double sh, double sw) {
  const char* op = "yolo_decode";
  TORCH_CHECK_VALUE(anchors.dim() == 2 && anchors.size(1) == 2 && anchors.size(0) >= 1, "detseg.", op,
                    ": anchors must be a Tensor[B, 2] of (w, h) with B >= 1, got shape ", anchors.sizes());
  const int64_t B = anchors.size(0);
  TORCH_CHECK_VALUE(pred.dim() == 4 && pred.size(3) >= 5 * B, "detseg.", op,
                    ": pred must be a Tensor[N, H, W, B * 5 + C] with B = ", B, ", got shape ", pred.sizes());
  floating(op, "pred", pred);
  floating(op, "anchors", anchors);
  TORCH_CHECK_VALUE(anchors.device() == pred.device(), "detseg.", op, ": anchors must be on the same device as pred (",
                    pred.device(), "), got ", anchors.device());
  grid_stride_arg(op, "stride_h", sh);
  grid_stride_arg(op, "stride_w", sw);
}

// ---------------------------------------------------------------- post-processing and NMS variants
// (twin of the block at the end of python/detseg/ops/_checks.py)

enum class ScoreActivation : int { kNone = 0, kSigmoid = 1, kSoftmax = 2 };

inline void f32_or_f64(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "detseg.", op, ": ", arg,
                   " must be float32 or float64, got ", t.scalar_type());
}

inline void same_dtype(const char* op, const char* arg, const at::Tensor& t, const at::Tensor& ref,
                       const char* ref_name) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), "detseg.", op, ": ", arg, " must have the dtype of ",
                   ref_name, " (", ref.scalar_type(), "), got ", t.scalar_type());
}

inline ScoreActivation score_activation(const char* op, std::string_view a) {
  if (a == "none") return ScoreActivation::kNone;
  if (a == "sigmoid") return ScoreActivation::kSigmoid;
  if (a == "softmax") return ScoreActivation::kSoftmax;
  TORCH_CHECK_VALUE(false, "detseg.", op, ": score_activation must be one of 'none', 'sigmoid', 'softmax', got '", a,
                    "'");
}

inline ScoreActivation multiclass_nms(const at::Tensor& boxes, const at::Tensor& scores,
                                      const std::optional<at::Tensor>& anchors, at::ArrayRef<double> weights,
                                      double bbox_xform_clip, at::IntArrayRef image_size, double score_threshold,
                                      at::IntArrayRef level_sizes, int64_t level_top_k, int64_t pre_nms_top_k,
                                      double iou_thr, int64_t max_detections, int64_t background_class,
                                      std::string_view activation) {
  const char* op = "multiclass_nms";
  TORCH_CHECK_VALUE(scores.dim() == 3, "detseg.", op, ": scores must be a Tensor[B, N, C], got shape ",
                    scores.sizes());
  const int64_t b = scores.size(0), n = scores.size(1), c = scores.size(2);
  const bool shared = boxes.dim() == 3 && boxes.size(0) == b && boxes.size(1) == n && boxes.size(2) == 4;
  const bool per_class = boxes.dim() == 4 && boxes.size(0) == b && boxes.size(1) == n && boxes.size(2) == c &&
                         boxes.size(3) == 4;
  TORCH_CHECK_VALUE(shared || per_class, "detseg.", op, ": boxes (", anchors.has_value() ? "deltas" : "boxes",
                    ") must be a Tensor[B, N, 4] or Tensor[B, N, C, 4] with (B, N, C) = (", b, ", ", n, ", ", c,
                    ") from scores, got shape ", boxes.sizes());
  f32_or_f64(op, "scores", scores);
  same_dtype(op, "boxes", boxes, scores, "scores");
  same_device(op, "scores", scores, boxes);
  if (anchors.has_value()) {
    const at::Tensor& a = *anchors;
    TORCH_CHECK_VALUE((a.dim() == 2 && a.size(0) == n && a.size(1) == 4) ||
                          (a.dim() == 3 && a.size(0) == b && a.size(1) == n && a.size(2) == 4),
                      "detseg.", op, ": anchors must be a Tensor[N, 4] or Tensor[B, N, 4] with (B, N) = (", b, ", ",
                      n, "), got shape ", a.sizes());
    same_dtype(op, "anchors", a, scores, "scores");
    same_device(op, "anchors", a, boxes);
  }
  bool ok = weights.size() == 4;
  for (double w : weights) ok = ok && std::isfinite(w) && w > 0.0;
  TORCH_CHECK_VALUE(ok, "detseg.", op, ": weights must be 4 finite numbers > 0, got ", weights);
  TORCH_CHECK_VALUE(!std::isnan(bbox_xform_clip), "detseg.", op, ": bbox_xform_clip must be a number, got ",
                    bbox_xform_clip);
  TORCH_CHECK_VALUE((image_size.empty() || (image_size.size() == 2 && image_size[0] > 0 && image_size[1] > 0)),
                    "detseg.", op, ": image_size must be empty (no clipping) or [height, width] > 0, got ",
                    image_size);
  TORCH_CHECK_VALUE(!std::isnan(score_threshold), "detseg.", op, ": score_threshold must be a number, got ",
                    score_threshold);
  int64_t total = 0;
  bool levels_ok = true;
  for (int64_t v : level_sizes) {
    levels_ok = levels_ok && v >= 0;
    total += v;
  }
  TORCH_CHECK_VALUE(levels_ok && (level_sizes.empty() || total == n), "detseg.", op,
                    ": level_sizes must be counts >= 0 summing to N = ", n, ", got ", level_sizes);
  TORCH_CHECK_VALUE(level_top_k >= -1, "detseg.", op, ": level_top_k must be >= 0 or -1 (no limit), got ",
                    level_top_k);
  TORCH_CHECK_VALUE(pre_nms_top_k >= -1, "detseg.", op, ": pre_nms_top_k must be >= 0 or -1 (no limit), got ",
                    pre_nms_top_k);
  iou_threshold(op, iou_thr);
  TORCH_CHECK_VALUE(max_detections >= 0, "detseg.", op, ": max_detections must be >= 0, got ", max_detections);
  TORCH_CHECK_VALUE(background_class >= -1 && background_class < c, "detseg.", op,
                    ": background_class must be -1 (none) or a class in [0, ", c, "), got ", background_class);
  const ScoreActivation act = score_activation(op, activation);
  TORCH_CHECK_VALUE(n * c < 2147483647LL, "detseg.", op,
                    ": scores must have fewer than 2^31 - 1 (anchor, class) pairs per image, got ", n * c);
  return act;
}

// boxes Tensor[N, 4], scores Tensor[N], idxs None or Tensor[N] int (soft / DIoU / matrix NMS).
inline void nms_variant(const char* op, const at::Tensor& boxes, const at::Tensor& scores,
                        const std::optional<at::Tensor>& idxs) {
  boxes_n4(op, "boxes", boxes);
  const int64_t n = boxes.size(0);
  TORCH_CHECK_VALUE(scores.dim() == 1 && scores.size(0) == n, "detseg.", op, ": scores must be a Tensor[N] with N = ",
                    n, " as boxes, got shape ", scores.sizes());
  floating(op, "boxes", boxes);
  floating(op, "scores", scores);
  same_device(op, "scores", scores, boxes);
  if (idxs.has_value()) {
    TORCH_CHECK_VALUE(idxs->dim() == 1 && idxs->size(0) == n, "detseg.", op, ": idxs must be a Tensor[N] with N = ",
                      n, " as boxes, got shape ", idxs->sizes());
    TORCH_CHECK_TYPE(at::isIntegralType(idxs->scalar_type(), /*includeBool=*/false), "detseg.", op,
                     ": idxs must be an integer tensor, got ", idxs->scalar_type());
    same_device(op, "idxs", *idxs, boxes);
  }
  TORCH_CHECK_VALUE(n < 2147483647LL, "detseg.", op, ": boxes must have fewer than 2^31 - 1 rows, got ", n);
}

inline void positive(const char* op, const char* arg, double v) {
  TORCH_CHECK_VALUE(v > 0.0 && std::isfinite(v), "detseg.", op, ": ", arg, " must be a finite number > 0, got ", v);
}

// Returns (gaussian, opencv).
inline std::pair<bool, bool> soft_nms(const at::Tensor& boxes, const at::Tensor& scores,
                                      const std::optional<at::Tensor>& idxs, double iou_thr, double sigma,
                                      double min_score, std::string_view method, std::string_view convention) {
  const char* op = "soft_nms";
  nms_variant(op, boxes, scores, idxs);
  iou_threshold(op, iou_thr);
  positive(op, "sigma", sigma);
  TORCH_CHECK_VALUE(!std::isnan(min_score), "detseg.", op, ": min_score must be a number, got ", min_score);
  TORCH_CHECK_VALUE(method == "linear" || method == "gaussian", "detseg.", op,
                    ": method must be one of 'linear', 'gaussian', got '", method, "'");
  TORCH_CHECK_VALUE(convention == "mmcv" || convention == "opencv", "detseg.", op,
                    ": convention must be one of 'mmcv', 'opencv', got '", convention, "'");
  return {method == "gaussian", convention == "opencv"};
}

inline void diou_nms(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                     double iou_thr) {
  nms_variant("diou_nms", boxes, scores, idxs);
  iou_threshold("diou_nms", iou_thr);
}

// Returns true for the gaussian kernel.
inline bool matrix_nms(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                       std::string_view kernel, double sigma) {
  const char* op = "matrix_nms";
  nms_variant(op, boxes, scores, idxs);
  TORCH_CHECK_VALUE(kernel == "linear" || kernel == "gaussian", "detseg.", op,
                    ": kernel must be one of 'linear', 'gaussian', got '", kernel, "'");
  positive(op, "sigma", sigma);
  return kernel == "gaussian";
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
