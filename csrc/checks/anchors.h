// Argument checks of the anchors and box coding (issue 4).
#pragma once

#include "checks/common.h"

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

}  // namespace detseg::checks
