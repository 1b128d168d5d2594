"""Reference anchor grid and YOLO grid decode in plain PyTorch (mirrors
csrc/include/detseg/anchors.h)."""

from __future__ import annotations

import torch

from ..ops import _checks


def _ct(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def grid_anchors(base_anchors: torch.Tensor, feature_h: int, feature_w: int, stride_h: float, stride_w: float,
                 offset: float) -> torch.Tensor:
    """Base anchors Tensor[A, 4] tiled over a feature_h x feature_w grid -> Tensor[H * W * A, 4],
    rows in (y, x, a) order; shifts offset * stride + i * stride (in float64, rounded once)."""
    _checks.grid_anchors(base_anchors, feature_h, feature_w, stride_h, stride_w, offset)
    ct = _ct(base_anchors.dtype)
    dev = base_anchors.device
    sx = (offset * stride_w + torch.arange(feature_w, dtype=torch.float64, device=dev) * stride_w).to(ct)
    sy = (offset * stride_h + torch.arange(feature_h, dtype=torch.float64, device=dev) * stride_h).to(ct)
    shift_y, shift_x = torch.meshgrid(sy, sx, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
    out = shifts.view(-1, 1, 4) + base_anchors.to(ct).view(1, -1, 4)
    return out.reshape(-1, 4).to(base_anchors.dtype)


def yolo_decode(pred: torch.Tensor, anchors: torch.Tensor, stride_h: float, stride_w: float) -> torch.Tensor:
    """Tensor[N, H, W, B * 5 + C] head output, anchors Tensor[B, 2] (w, h, pixels) ->
    Tensor[N, H, W, B, 5] of (x1, y1, x2, y2, sigmoid(to)); see detseg::yolo_decode_one."""
    _checks.yolo_decode(pred, anchors, stride_h, stride_w)
    ct = _ct(pred.dtype)
    n, h, w, _ = pred.shape
    nb = anchors.shape[0]
    t = pred.to(ct)[..., :5 * nb].reshape(n, h, w, nb, 5)
    an = anchors.to(ct)
    xs = torch.arange(w, dtype=ct, device=pred.device).view(1, 1, w, 1)
    ys = torch.arange(h, dtype=ct, device=pred.device).view(1, h, 1, 1)
    cx = (torch.sigmoid(t[..., 0]) + xs) * stride_w
    cy = (torch.sigmoid(t[..., 1]) + ys) * stride_h
    hw = 0.5 * (an[:, 0] * torch.exp(t[..., 2]))
    hh = 0.5 * (an[:, 1] * torch.exp(t[..., 3]))
    out = torch.stack((cx - hw, cy - hh, cx + hw, cy + hh, torch.sigmoid(t[..., 4])), dim=-1)
    return out.to(pred.dtype)


def multilevel_grid_anchors(base_anchors: list[torch.Tensor], feature_h: list[int], feature_w: list[int],
                            stride_h: list[float], stride_w: list[float], offset: float) -> torch.Tensor:
    """grid_anchors of every level, concatenated: Tensor[sum_l H_l W_l A_l, 4]."""
    _checks.multilevel_grid_anchors(base_anchors, feature_h, feature_w, stride_h, stride_w, offset)
    return torch.cat([grid_anchors(b, h, w, sh, sw, offset)
                      for b, h, w, sh, sw in zip(base_anchors, feature_h, feature_w, stride_h, stride_w)])
