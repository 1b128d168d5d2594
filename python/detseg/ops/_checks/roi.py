"""Argument checks of the RoI ops (twin of csrc/checks/roi.h)."""

from __future__ import annotations

import math

import torch

from .common import *  # noqa: F401,F403

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
