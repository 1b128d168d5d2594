// Every detseg operator schema, and nothing else. Kernels register their implementations
// at the bottom of their own files (csrc/cpu/*.cpp, csrc/cuda/*.cu); autograd, fake and
// autocast kernels are registered from python/detseg/_registrations/.
#include <torch/library.h>

TORCH_LIBRARY(detseg, m) {
  // ---- box utilities (boxes: Tensor[..., 4]) ----
  m.def("box_area(Tensor boxes) -> Tensor");
  m.def("box_convert(Tensor boxes, str in_fmt, str out_fmt) -> Tensor");
  m.def("clip_boxes_to_image(Tensor boxes, int height, int width) -> Tensor");
  m.def("remove_small_boxes(Tensor boxes, float min_size) -> Tensor");

  // ---- IoU family. kind: "iou" | "giou" | "diou" | "ciou" ----
  // boxes1 Tensor[N, 4] / Tensor[B, N, 4], boxes2 Tensor[M, 4] / Tensor[B, M, 4] -> Tensor[(B,) N, M]
  m.def("box_iou_matrix(Tensor boxes1, Tensor boxes2, str kind, float eps) -> Tensor");
  m.def("_box_iou_matrix_backward(Tensor grad, Tensor boxes1, Tensor boxes2, str kind, float eps) -> (Tensor, Tensor)");
  // aligned pairs: boxes1 Tensor[N, 4], boxes2 Tensor[N, 4] -> per-pair loss Tensor[N]
  m.def("box_iou_loss(Tensor boxes1, Tensor boxes2, str kind, float eps) -> Tensor");
  m.def("_box_iou_loss_backward(Tensor grad, Tensor boxes1, Tensor boxes2, str kind, float eps) -> (Tensor, Tensor)");

  // ---- NMS ----
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  m.def("batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor");

  // ---- RoI ops (torchvision's schemas; roi_align adds mmcv's pool_mode) ----
  // input Tensor[N, C, H, W], rois Tensor[K, 5] rows (batch_index, x1, y1, x2, y2), any
  // floating dtype -> Tensor[K, C, pooled_height, pooled_width] in input's dtype, channels-last
  // when input is. pool_mode: "avg" (torchvision) | "max" (mmcv: max over the bilinear samples).
  m.def("roi_align(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, "
        "int sampling_ratio, bool aligned, str pool_mode=\"avg\") -> Tensor");
  // input is needed by pool_mode "max" only (the argmax sample is recomputed, not stored).
  m.def("_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, "
        "int batch_size, int channels, int height, int width, int sampling_ratio, bool aligned, "
        "str pool_mode=\"avg\", Tensor? input=None) -> Tensor");
  // -> (output, argmax): argmax int64 = h * W + w within the channel plane, -1 for an empty bin.
  m.def("roi_pool(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width) "
        "-> (Tensor, Tensor)");
  m.def("_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, int pooled_height, "
        "int pooled_width, int batch_size, int channels, int height, int width) -> Tensor");

  // Position-sensitive (R-FCN), torchvision's schemas: input Tensor[N, C, H, W] with
  // C = C_out * pooled_height * pooled_width -> (Tensor[K, C_out, ph, pw], channel_mapping int64
  // Tensor[K, C_out, ph, pw] = the input channel each output read). ps_roi_align uses the
  // half-pixel (aligned) geometry; ps_roi_pool averages its quantised bins.
  m.def("ps_roi_align(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, "
        "int sampling_ratio) -> (Tensor, Tensor)");
  m.def("_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, "
        "int pooled_height, int pooled_width, int sampling_ratio, int batch_size, int channels, int height, "
        "int width) -> Tensor");
  m.def("ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width) "
        "-> (Tensor, Tensor)");
  m.def("_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, "
        "int pooled_height, int pooled_width, int batch_size, int channels, int height, int width) -> Tensor");

  // ---- post-processing and NMS variants (issue 4) ----
  // Fused detection post-processing. scores Tensor[B, N, C]; boxes Tensor[B, N, 4] (shared by
  // the classes) or Tensor[B, N, C, 4]; with anchors (Tensor[N, 4] or Tensor[B, N, 4]) `boxes`
  // holds BoxCoder deltas decoded with `weights` (wx, wy, ww, wh) and bbox_xform_clip.
  // image_size: [] (no clipping) or [height, width]. level_sizes: anchors per level ([] = one
  // level), level_top_k / pre_nms_top_k: -1 = no limit. background_class: -1 = none.
  // score_activation: "none" | "sigmoid" | "softmax". boxes, scores and anchors share one dtype
  // (float32 or float64). -> (num_detections int64 Tensor[B], boxes Tensor[B, K, 4],
  // scores Tensor[B, K], classes int64 Tensor[B, K], anchor indices int64 Tensor[B, K]).
  m.def("multiclass_nms(Tensor boxes, Tensor scores, Tensor? anchors, float[] weights, float bbox_xform_clip, "
        "int[] image_size, float score_threshold, int[] level_sizes, int level_top_k, int pre_nms_top_k, "
        "float iou_threshold, int max_detections, bool class_agnostic, int background_class, "
        "str score_activation) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Soft-NMS: boxes Tensor[N, 4], scores Tensor[N], idxs (categories, Tensor[N] int) or None.
  // method "linear" | "gaussian", convention "mmcv" | "opencv" -> (kept indices int64 Tensor[K]
  // by decreasing decayed score, ties by index; their decayed scores Tensor[K]).
  m.def("soft_nms(Tensor boxes, Tensor scores, Tensor? idxs, float iou_threshold, float sigma, float min_score, "
        "str method, str convention) -> (Tensor, Tensor)");
  // DIoU-NMS (greedy, suppress iff IoU - d^2 / c^2 > iou_threshold) -> kept indices int64 Tensor[K].
  m.def("diou_nms(Tensor boxes, Tensor scores, Tensor? idxs, float iou_threshold) -> Tensor");
  // Matrix NMS (SOLOv2) on boxes: kernel "linear" | "gaussian" -> decayed scores Tensor[N]
  // in input order.
  m.def("matrix_nms(Tensor boxes, Tensor scores, Tensor? idxs, str kernel, float sigma) -> Tensor");
}
