// Argument checks shared by every op family (host side): tensor shapes, dtypes, devices, and
// the box / IoU / NMS ops. Family checks live beside it in csrc/checks/<family>.h.
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

}  // namespace detseg::checks
