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
}
