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

  // ---- anchors and box coding (issue 4) ----
  // BoxCoder (torchvision): reference_boxes Tensor[N, 4] are the TARGETS (ground truth) and
  // proposals Tensor[N, 4] the anchors, as torchvision names them -> deltas Tensor[N, 4].
  m.def("encode_boxes(Tensor reference_boxes, Tensor proposals, float[] weights) -> Tensor");
  // rel_codes Tensor[N, 4 * K] (K deltas per reference box), boxes Tensor[N, 4] -> Tensor[N, 4 * K]
  // in rel_codes' dtype; dw, dh clamped above at bbox_xform_clip before exp.
  m.def("decode_boxes(Tensor rel_codes, Tensor boxes, float[] weights, float bbox_xform_clip) -> Tensor");
  m.def("_decode_boxes_backward(Tensor grad, Tensor rel_codes, Tensor boxes, float[] weights, "
        "float bbox_xform_clip) -> (Tensor, Tensor)");
  // BoxLinearCoder (FCOS): reference_boxes Tensor[N, 4] are the ANCHORS here (torchvision's
  // naming), proposals Tensor[N, 4] the targets -> (l, t, r, b) Tensor[N, 4].
  m.def("linear_encode_boxes(Tensor reference_boxes, Tensor proposals, bool normalize_by_size) -> Tensor");
  m.def("linear_decode_boxes(Tensor rel_codes, Tensor boxes, bool normalize_by_size) -> Tensor");
  // base_anchors Tensor[A, 4] -> Tensor[feature_h * feature_w * A, 4], rows (y, x, a):
  // base + (offset + x) * stride_w, (offset + y) * stride_h.
  m.def("grid_anchors(Tensor base_anchors, int feature_h, int feature_w, float stride_h, float stride_w, "
        "float offset) -> Tensor");
  // Several levels into one Tensor[sum_l H_l * W_l * A_l, 4] (level by level), without a cat:
  // AnchorGenerator's forward. All base_anchors share one dtype and device.
  m.def("multilevel_grid_anchors(Tensor[] base_anchors, int[] feature_h, int[] feature_w, float[] stride_h, "
        "float[] stride_w, float offset) -> Tensor");
  // pred Tensor[N, H, W, B * 5 + C] (per cell: B x (tx, ty, tw, th, to), then C class scores),
  // anchors Tensor[B, 2] (w, h in pixels) -> Tensor[N, H, W, B, 5] (x1, y1, x2, y2, objectness).
  m.def("yolo_decode(Tensor pred, Tensor anchors, float stride_h, float stride_w) -> Tensor");
  // ---- masks (issue 6) ----
  // Label maps pred / target: any shape (the same), integer dtype (uint8, int8, int16, int32,
  // int64, bool; mixed dtypes promote). -> (matrix int64 Tensor[C, C], row = target class,
  // column = predicted class; invalid int64 Tensor[] = pixels with a label outside [0, C)).
  // Pixels whose target == ignore_index are left out. per_image: dim 0 is a batch, giving
  // Tensor[B, C, C] and Tensor[B]. invalid: "error" (raise on any out-of-range label) | "count".
  m.def("confusion_matrix(Tensor pred, Tensor target, int num_classes, int? ignore_index=None, "
        "bool per_image=False, str invalid=\"error\") -> (Tensor, Tensor)");
  // masks1 Tensor[N, H, W], masks2 Tensor[M, H, W] (bool or uint8 holding 0 / 1) -> float32
  // Tensor[N, M]. iscrowd bool Tensor[M]: for a crowd column, inter / area(masks1 row) (COCO).
  m.def("mask_iou(Tensor masks1, Tensor masks2, Tensor? iscrowd=None) -> Tensor");
  // masks Tensor[N, H, W] (any dtype, nonzero = inside) -> float32 Tensor[N, 4] xyxy with
  // inclusive max indices (torchvision); an empty mask gives (0, 0, 0, 0).
  m.def("masks_to_boxes(Tensor masks) -> Tensor");
  // masks Tensor[N, Mh, Mw] floating, boxes Tensor[N, 4] -> Tensor[N, height, width]: in
  // masks' dtype, or bool (>= threshold) when threshold is given. convention: "torchvision"
  // (padding, integer boxes, resize) | "detectron2" (grid_sample at pixel centres; padding unused).
  m.def("paste_masks_in_image(Tensor masks, Tensor boxes, int height, int width, int padding=1, "
        "str convention=\"torchvision\", float? threshold=None) -> Tensor");
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
  // ---- transposed convolution and max unpooling (issue 5) ----
  // torch.nn.functional.conv_transpose2d: input Tensor[N, C_in, H, W], weight Tensor[C_in,
  // C_out / groups, kH, kW], bias Tensor[C_out]? -> Tensor[N, C_out, H_out, W_out] in input's dtype
  // (float16 / bfloat16 accumulate in float32), channels-last when input is.
  m.def("conv_transpose2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
        "int[2] output_padding, int groups, int[2] dilation) -> Tensor");
  // -> (grad_input, grad_weight, grad_bias); an entry whose output_mask is false is an empty Tensor[0].
  m.def("_conv_transpose2d_backward(Tensor grad, Tensor input, Tensor weight, int[2] stride, int[2] padding, "
        "int[2] output_padding, int groups, int[2] dilation, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
  // Testing hook (CPU): the forward through one named path: "general" | "non_overlapping" |
  // "large_kernel" | "channels_last" ("auto" = what conv_transpose2d picks).
  m.def("_conv_transpose2d_path(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
        "int[2] output_padding, int groups, int[2] dilation, str path) -> Tensor");
  // SegNet unpooling: input Tensor[N, C, H, W], indices int64 Tensor[N, C, H, W] (flat h * W_out + w
  // positions of max_pool2d's return_indices) -> Tensor[N, C, H_out, W_out], zero where no index points.
  m.def("max_unpool2d(Tensor input, Tensor indices, int[2] output_size) -> Tensor");
  // The gradient is a gather: grad_input[n, c, i, j] = grad[n, c].flatten()[indices[n, c, i, j]].
  m.def("_max_unpool2d_backward(Tensor grad, Tensor indices, int[2] output_size) -> Tensor");
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
