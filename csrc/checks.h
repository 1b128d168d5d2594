// Argument checks of each op, shared by its CPU and CUDA kernels (host side). The Python
// backends (Triton, reference) and the fake kernels use python/detseg/ops/_checks.py,
// which raises with the same words.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>
#include <string_view>
#include <utility>
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

}  // namespace detseg::checks
