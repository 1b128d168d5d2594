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

  // ---- RLE masks and COCO evaluation (issues 6 and 7) ----
  // pycocotools' run-length format (detseg/rle.h). A batch of N RLEs travels as runs
  // counts int64 Tensor[total] (column-major, 0-run first) + offsets int64 Tensor[N + 1], or
  // as compressed strings chars uint8 Tensor[total] + offsets. sizes: int64 Tensor[N, 2] of
  // (height, width). CPU only: run-length coding is a sequential scan per mask.
  // masks bool/uint8 Tensor[N, H, W] (any strides; column-major per mask is read in place).
  m.def("rle_encode(Tensor masks) -> (Tensor, Tensor)");
  m.def("rle_encode_string(Tensor masks) -> (Tensor, Tensor)");
  m.def("rle_counts_to_string(Tensor counts, Tensor offsets) -> (Tensor, Tensor)");
  m.def("rle_string_to_counts(Tensor chars, Tensor offsets) -> (Tensor, Tensor)");
  // -> bool Tensor[N, height, width] with column-major strides per mask.
  m.def("rle_decode(Tensor counts, Tensor offsets, int height, int width) -> Tensor");
  m.def("rle_area(Tensor counts, Tensor offsets) -> Tensor");
  // -> float64 Tensor[N, 4] xywh (pycocotools toBbox).
  m.def("rle_to_bbox(Tensor counts, Tensor offsets, Tensor sizes) -> Tensor");
  // -> float64 Tensor[D, G]; iscrowd Tensor[G] (crowd: intersection / detection area).
  m.def("rle_iou(Tensor dt_counts, Tensor dt_offsets, Tensor dt_sizes, Tensor gt_counts, Tensor gt_offsets, "
        "Tensor gt_sizes, Tensor iscrowd) -> Tensor");
  // COCOeval (evaluate + accumulate) for bbox (boxes float64 xywh) or segm (the optional RLE
  // runs given). *_image / *_category: dense int64 indices into the sorted image / category
  // ids; gt_ids: annotation ids (a match to id 0 counts as none, as in pycocotools).
  // -> (precision Tensor[T, R, K, A, M], recall Tensor[T, K, A, M], scores Tensor[T, R, K, A, M]).
  m.def("coco_evaluate(Tensor gt_image, Tensor gt_category, Tensor gt_boxes, Tensor gt_area, Tensor gt_crowd, "
        "Tensor gt_ids, Tensor dt_image, Tensor dt_category, Tensor dt_boxes, Tensor dt_area, Tensor dt_scores, "
        "Tensor? gt_counts, Tensor? gt_offsets, Tensor? gt_sizes, Tensor? dt_counts, Tensor? dt_offsets, "
        "Tensor? dt_sizes, Tensor iou_thrs, Tensor rec_thrs, int[] max_dets, Tensor area_rng, int num_images, "
        "int num_categories, bool use_cats) -> (Tensor, Tensor, Tensor)");
}
