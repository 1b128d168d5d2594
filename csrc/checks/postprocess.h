// Argument checks of the post-processing and NMS variants (issue 4).
#pragma once

#include "checks/common.h"

namespace detseg::checks {

// ---------------------------------------------------------------- post-processing and NMS variants
// (twin of python/detseg/ops/_checks/postprocess.py)

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
