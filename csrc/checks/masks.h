// Argument checks of the masks (issue 6): confusion_matrix, mask_iou, masks_to_boxes, paste_masks_in_image.
#pragma once

#include "checks/common.h"

namespace detseg::checks {

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
