"""Argument checks of each op for the Python side (public API, Triton, reference, fake
kernels). The C++ kernels check with the same words in csrc/checks.h."""

from __future__ import annotations

import math

import torch

FORMATS = ("xyxy", "xywh", "cxcywh")
KINDS = ("iou", "giou", "diou", "ciou")
REDUCTIONS = ("none", "mean", "sum")


def fail(op: str, msg: str, exc=ValueError):
    raise exc(f"detseg.{op}: {msg}")


def tensor(op: str, arg: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        fail(op, f"{arg} must be a Tensor, got {type(t).__name__}", TypeError)


def boxes_last4(op: str, arg: str, t: torch.Tensor) -> None:
    tensor(op, arg, t)
    if t.dim() < 1 or t.shape[-1] != 4:
        fail(op, f"{arg} must be a Tensor[..., 4], got shape {list(t.shape)}")


def boxes_n4(op: str, arg: str, t: torch.Tensor) -> None:
    tensor(op, arg, t)
    if t.dim() != 2 or t.shape[1] != 4:
        fail(op, f"{arg} must be a Tensor[N, 4], got shape {list(t.shape)}")


def floating(op: str, arg: str, t: torch.Tensor) -> None:
    if not t.is_floating_point():
        fail(op, f"{arg} must be a floating-point tensor (float64, float32, float16 or bfloat16), got {t.dtype}",
             TypeError)


def same_device(op: str, arg: str, t: torch.Tensor, ref: torch.Tensor) -> None:
    if t.device != ref.device:
        fail(op, f"{arg} must be on the same device as boxes ({ref.device}), got {t.device}")


def iou_threshold(op: str, thr) -> float:
    try:
        v = float(thr)
    except (TypeError, ValueError):
        fail(op, f"iou_threshold must be a number in [0, 1], got {thr!r}", TypeError)
    if not (0.0 <= v <= 1.0):  # NaN fails too
        fail(op, f"iou_threshold must be a number in [0, 1], got {v}")
    return v


def fmt(op: str, arg: str, value: str) -> str:
    if not isinstance(value, str) or value.lower() not in FORMATS:
        fail(op, f"{arg} must be one of {', '.join(map(repr, FORMATS))}, got {value!r}")
    return value.lower()


def kind(op: str, value: str) -> str:
    if value not in KINDS:
        fail(op, f"kind must be one of {', '.join(map(repr, KINDS))}, got {value!r}")
    return value


def reduction(op: str, value: str) -> str:
    if value not in REDUCTIONS:
        fail(op, f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got {value!r}")
    return value


def eps(op: str, value) -> float:
    v = float(value)
    if not (v >= 0.0 and math.isfinite(v)):
        fail(op, f"eps must be a finite number >= 0, got {value!r}")
    return v


# ---- per internal op (the schemas of csrc/ops.cpp) ----

def boxes_pair_types(op: str, b1: torch.Tensor, b2: torch.Tensor) -> None:
    """boxes1 floating, boxes2 of its dtype and on its device (the IoU matrix and loss ops)."""
    floating(op, "boxes1", b1)
    if b2.dtype != b1.dtype:
        fail(op, f"boxes2 must have the dtype of boxes1 ({b1.dtype}), got {b2.dtype}", TypeError)
    same_device(op, "boxes2", b2, b1)


def iou_matrix(b1: torch.Tensor, b2: torch.Tensor, kind_: str, eps_: float) -> None:
    op = "box_iou_matrix"
    tensor(op, "boxes1", b1)
    tensor(op, "boxes2", b2)
    if b1.dim() not in (2, 3) or b1.shape[-1] != 4:
        fail(op, f"boxes1 must be a Tensor[N, 4] or Tensor[B, N, 4], got shape {list(b1.shape)}")
    if b2.dim() != b1.dim() or b2.shape[-1] != 4 or (b1.dim() == 3 and b2.shape[0] != b1.shape[0]):
        lead = "B, " if b1.dim() == 3 else ""
        fail(op, f"boxes2 must be a Tensor[{lead}M, 4] matching boxes1 {list(b1.shape)}, got shape {list(b2.shape)}")
    boxes_pair_types(op, b1, b2)
    kind(op, kind_)


def iou_loss(b1: torch.Tensor, b2: torch.Tensor, kind_: str, eps_: float) -> None:
    op = "box_iou_loss"
    boxes_n4(op, "boxes1", b1)
    tensor(op, "boxes2", b2)
    if b2.dim() != 2 or b2.shape[1] != 4 or b2.shape[0] != b1.shape[0]:
        fail(op, f"boxes2 must be a Tensor[N, 4] with N = {b1.shape[0]} as boxes1, got shape {list(b2.shape)}")
    boxes_pair_types(op, b1, b2)
    kind(op, kind_)


def nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> None:
    op = "nms"
    boxes_n4(op, "boxes", boxes)
    tensor(op, "scores", scores)
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        fail(op, f"scores must be a Tensor[N] with N = {boxes.shape[0]} as boxes, got shape {list(scores.shape)}")
    floating(op, "boxes", boxes)
    floating(op, "scores", scores)
    same_device(op, "scores", scores, boxes)
    iou_threshold(op, thr)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, thr: float) -> None:
    op = "batched_nms"
    boxes_n4(op, "boxes", boxes)
    tensor(op, "scores", scores)
    tensor(op, "idxs", idxs)
    n = boxes.shape[0]
    if scores.dim() != 1 or scores.shape[0] != n:
        fail(op, f"scores must be a Tensor[N] with N = {n} as boxes, got shape {list(scores.shape)}")
    if idxs.dim() != 1 or idxs.shape[0] != n:
        fail(op, f"idxs must be a Tensor[N] with N = {n} as boxes, got shape {list(idxs.shape)}")
    if idxs.is_floating_point() or idxs.is_complex() or idxs.dtype == torch.bool:
        fail(op, f"idxs must be an integer tensor, got {idxs.dtype}", TypeError)
    floating(op, "boxes", boxes)
    floating(op, "scores", scores)
    same_device(op, "scores", scores, boxes)
    same_device(op, "idxs", idxs, boxes)
    iou_threshold(op, thr)


# ---- RoI ops (twin of the RoI block of csrc/checks.h) ----

POOL_MODES = ("avg", "max")


def roi_rois(op: str, rois: torch.Tensor, ref: torch.Tensor, ref_name: str) -> None:
    tensor(op, "rois", rois)
    if rois.dim() != 2 or rois.shape[1] != 5:
        fail(op, f"rois must be a Tensor[K, 5] of (batch_index, x1, y1, x2, y2), got shape {list(rois.shape)}")
    floating(op, "rois", rois)
    if rois.device != ref.device:
        fail(op, f"rois must be on the same device as {ref_name} ({ref.device}), got {rois.device}")


def roi_scale_size(op: str, spatial_scale, pooled_height: int, pooled_width: int) -> None:
    s = float(spatial_scale)
    if not (math.isfinite(s) and s > 0.0):
        fail(op, f"spatial_scale must be a finite number > 0, got {s}")
    if not (0 < pooled_height <= (1 << 20) and 0 < pooled_width <= (1 << 20)):
        fail(op, f"output_size must be positive (at most 2^20), got ({pooled_height}, {pooled_width})")


def roi_args(op: str, input: torch.Tensor, rois: torch.Tensor, spatial_scale, pooled_height: int,
             pooled_width: int) -> None:
    tensor(op, "input", input)
    if input.dim() != 4:
        fail(op, f"input must be a Tensor[N, C, H, W], got shape {list(input.shape)}")
    floating(op, "input", input)
    roi_rois(op, rois, input, "input")
    roi_scale_size(op, spatial_scale, pooled_height, pooled_width)


def roi_sampling_ratio(op: str, sampling_ratio: int) -> None:
    if sampling_ratio > (1 << 16):
        fail(op, f"sampling_ratio must be at most 65536 (<= 0: adaptive), got {sampling_ratio}")


def roi_pool_mode(op: str, mode: str) -> str:
    if mode not in POOL_MODES:
        fail(op, f"pool_mode must be 'avg' or 'max', got {mode!r}")
    return mode


def roi_batch_indices(op: str, rois: torch.Tensor, batch_size: int) -> None:
    """Data check (one host sync): rois[:, 0] integral and in [0, batch_size)."""
    if rois.shape[0] == 0:
        return
    b = rois[:, 0].double()
    bad = ~((b >= 0) & (b < batch_size) & (b == b.trunc()))
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        fail(op, f"rois[:, 0] must hold integer batch indices in [0, {batch_size}), got {float(b[i])!r} in row {i}")


def roi_channels_last(t: torch.Tensor) -> bool:
    """The layout rule of the RoI kernels: channels-last when so laid out and not also contiguous."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def ps_roi_channels(op: str, channels: int, pooled_height: int, pooled_width: int) -> None:
    if channels % (pooled_height * pooled_width) != 0:
        fail(op, f"input channels must be a multiple of output_size[0] * output_size[1] = "
                 f"{pooled_height * pooled_width}, got {channels}")


def roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, pool_mode) -> None:
    op = "roi_align"
    roi_args(op, input, rois, spatial_scale, pooled_height, pooled_width)
    roi_sampling_ratio(op, sampling_ratio)
    roi_pool_mode(op, pool_mode)


def roi_pool(input, rois, spatial_scale, pooled_height, pooled_width) -> None:
    roi_args("roi_pool", input, rois, spatial_scale, pooled_height, pooled_width)


# ---- transposed convolution and max unpooling (twin of the issue-5 block of csrc/checks.h) ----

def _dt(dtype: torch.dtype) -> str:
    """torch's name of a dtype without the module ("float32"), as csrc/checks.h prints it."""
    return str(dtype).replace("torch.", "")


def conv_out_size(i: int, k: int, s: int, p: int, d: int, op_: int) -> int:
    """(in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1 (detseg/conv_transpose.h)."""
    return (i - 1) * s - 2 * p + d * (k - 1) + op_ + 1


def conv_pair(op: str, arg: str, v) -> None:
    if len(v) != 2:
        fail(op, f"{arg} must be a pair (height, width), got {list(v)}")


def conv_transpose2d(op: str, input, weight, bias, stride, padding, output_padding, groups, dilation
                     ) -> tuple[int, int]:
    """The checks of conv_transpose2d; returns (H_out, W_out)."""
    tensor(op, "input", input)
    tensor(op, "weight", weight)
    if input.dim() != 4 or min(input.shape[1:]) <= 0:
        fail(op, f"input must be a Tensor[N, C_in, H, W] with C_in, H, W > 0 (N may be 0), got shape "
                 f"{list(input.shape)}")
    floating(op, "input", input)
    if weight.dim() != 4 or min(weight.shape[1:]) <= 0:
        fail(op, f"weight must be a Tensor[C_in, C_out / groups, kH, kW] with non-zero sizes, got shape "
                 f"{list(weight.shape)}")
    if weight.dtype != input.dtype:
        fail(op, f"weight must have the dtype of input ({_dt(input.dtype)}), got {_dt(weight.dtype)}", TypeError)
    if weight.device != input.device:
        fail(op, f"weight must be on the device of input ({input.device}), got {weight.device}")
    for arg, v in (("stride", stride), ("padding", padding), ("output_padding", output_padding),
                   ("dilation", dilation)):
        conv_pair(op, arg, v)
    stride, padding, output_padding, dilation = (list(v) for v in (stride, padding, output_padding, dilation))
    if min(stride) <= 0:
        fail(op, f"stride must be positive, got {stride}")
    if min(dilation) <= 0:
        fail(op, f"dilation must be positive, got {dilation}")
    if min(padding) < 0:
        fail(op, f"padding must be non-negative, got {padding}")
    if min(output_padding) < 0 or any(o >= s and o >= d for o, s, d in zip(output_padding, stride, dilation)):
        fail(op, f"output_padding must be non-negative and smaller than stride or dilation on each axis, got "
                 f"output_padding {output_padding} with stride {stride} and dilation {dilation}")
    if groups <= 0:
        fail(op, f"groups must be positive, got {groups}")
    cin = input.shape[1]
    if weight.shape[0] != cin:
        fail(op, f"weight.size(0) must equal the input channels {cin} (weight is Tensor[C_in, C_out / groups, kH, "
                 f"kW]), got weight of shape {list(weight.shape)}")
    if cin % groups != 0:
        fail(op, f"groups must divide the input channels {cin}, got groups = {groups}")
    if bias is not None:
        cout = weight.shape[1] * groups
        if bias.dim() != 1 or bias.shape[0] != cout:
            fail(op, f"bias must be a Tensor[C_out] with C_out = weight.size(1) * groups = {cout}, got shape "
                     f"{list(bias.shape)}")
        if bias.dtype != input.dtype:
            fail(op, f"bias must have the dtype of input ({_dt(input.dtype)}), got {_dt(bias.dtype)}", TypeError)
        if bias.device != input.device:
            fail(op, f"bias must be on the device of input ({input.device}), got {bias.device}")
    ho, wo = (conv_out_size(input.shape[2 + a], weight.shape[2 + a], stride[a], padding[a], dilation[a],
                            output_padding[a]) for a in range(2))
    if ho <= 0 or wo <= 0:
        fail(op, f"the output size ({ho}, {wo}) computed from input {list(input.shape[2:])}, kernel "
                 f"{list(weight.shape[2:])}, stride {stride}, padding {padding}, output_padding {output_padding} and "
                 f"dilation {dilation} must be positive: padding is too large")
    return ho, wo


def conv_transpose2d_backward(grad, input, weight, stride, padding, output_padding, groups, dilation
                              ) -> tuple[int, int]:
    op = "_conv_transpose2d_backward"
    ho, wo = conv_transpose2d(op, input, weight, None, stride, padding, output_padding, groups, dilation)
    cout = weight.shape[1] * groups
    want = [input.shape[0], cout, ho, wo]
    if list(grad.shape) != want:
        fail(op, f"grad must be a Tensor[{', '.join(map(str, want))}] (the output's shape), got shape "
                 f"{list(grad.shape)}")
    if grad.dtype != input.dtype:
        fail(op, f"grad must have the dtype of input ({_dt(input.dtype)}), got {_dt(grad.dtype)}", TypeError)
    return ho, wo


def max_unpool2d(op: str, input, indices, output_size) -> None:
    tensor(op, "input", input)
    tensor(op, "indices", indices)
    if input.dim() != 4:
        fail(op, f"input must be a Tensor[N, C, H, W], got shape {list(input.shape)}")
    floating(op, "input", input)
    if indices.shape != input.shape:
        fail(op, f"indices must have the shape of input {list(input.shape)}, got {list(indices.shape)}")
    if indices.dtype != torch.int64:
        fail(op, f"indices must be an int64 tensor, got {_dt(indices.dtype)}", TypeError)
    if indices.device != input.device:
        fail(op, f"indices must be on the device of input ({input.device}), got {indices.device}")
    conv_pair(op, "output_size", output_size)
    if min(output_size) <= 0:
        fail(op, f"output_size must be positive, got {list(output_size)}")


def max_unpool2d_grad(op: str, grad, indices, output_size) -> None:
    conv_pair(op, "output_size", output_size)
    if indices.dim() != 4:
        fail(op, f"indices must be a Tensor[N, C, H, W], got shape {list(indices.shape)}")
    if indices.dtype != torch.int64:
        fail(op, f"indices must be an int64 tensor, got {_dt(indices.dtype)}", TypeError)
    want = [indices.shape[0], indices.shape[1], *output_size]
    if list(grad.shape) != want:
        fail(op, f"grad must be a Tensor[{', '.join(map(str, want))}], got shape {list(grad.shape)}")
    floating(op, "grad", grad)
    if indices.device != grad.device:
        fail(op, f"indices must be on the device of grad ({grad.device}), got {indices.device}")


def max_unpool2d_indices(op: str, indices, plane: int) -> None:
    """Data check (one host sync): every index in [0, plane); names the first bad one in order."""
    if indices.numel() == 0:
        return
    bad = (indices < 0) | (indices >= plane)
    if bool(bad.any()):
        v = int(indices[bad][0])  # row-major order: plane by plane, as the C++ kernel reports
        fail(op, f"indices must hold positions in [0, output_size[0] * output_size[1] = {plane}), got {v}")
