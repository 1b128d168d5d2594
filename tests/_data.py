"""Seeded input generators. Every generator returns float64 CPU tensors (cast by the caller),
so the same values exist in every dtype where they are representable."""

from __future__ import annotations

import math

import numpy as np
import torch

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
INT_DTYPES = [torch.int64, torch.int32, torch.int16, torch.uint8]
LAYOUTS = ["contiguous", "colslice", "transposed", "rowstride"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_boxes(n: int, seed: int = 0, scale: float = 100.0, min_wh: float = 1.0, max_wh: float = 30.0) -> torch.Tensor:
    """Tensor[n, 4] xyxy with positive sides in [min_wh, max_wh], corners in [0, scale]."""
    g = gen(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale
    wh = min_wh + torch.rand(n, 2, generator=g, dtype=torch.float64) * (max_wh - min_wh)
    return torch.cat([xy, xy + wh], dim=1)


def clustered_boxes(n: int, seed: int = 0, clusters: int = 4, jitter: float = 2.0) -> torch.Tensor:
    """Boxes jittered around a few centres: heavy overlaps, IoUs spread over (0, 1)."""
    g = gen(seed)
    centres = random_boxes(clusters, seed + 1000, scale=200.0, min_wh=10.0, max_wh=40.0)
    which = torch.randint(0, clusters, (n,), generator=g)
    return centres[which] + (torch.rand(n, 4, generator=g, dtype=torch.float64) - 0.5) * 2 * jitter


def integer_boxes(n: int, seed: int = 0, scale: int = 64, max_wh: int = 24) -> torch.Tensor:
    """Integer-valued boxes (exact in every dtype up to 256): shared edges, equal boxes, ties."""
    g = gen(seed)
    xy = torch.randint(0, scale, (n, 2), generator=g)
    wh = torch.randint(1, max_wh, (n, 2), generator=g)
    return torch.cat([xy, xy + wh], dim=1).double()


def zero_area_boxes(n: int, seed: int = 0) -> torch.Tensor:
    """A mix of ordinary boxes, lines (one side 0) and points (both sides 0)."""
    b = integer_boxes(n, seed)
    if n:
        k = torch.arange(n)
        b[k % 3 == 1, 2] = b[k % 3 == 1, 0]      # zero width
        b[k % 5 == 2, 3] = b[k % 5 == 2, 1]      # zero height
        b[k % 7 == 3, 2:] = b[k % 7 == 3, :2]    # points
    return b


def nonfinite_boxes(n: int, seed: int = 0) -> torch.Tensor:
    """Clustered boxes with NaN, +inf and -inf coordinates sprinkled in."""
    b = clustered_boxes(n, seed)
    if n >= 4:
        b[1, 2] = math.nan
        b[n // 2, 0] = -math.inf
        b[n // 2, 2] = math.inf
        b[n - 1, 3] = math.inf
    return b


def distinct_scores(n: int, seed: int = 0) -> torch.Tensor:
    """A permutation of distinct values in (0, 1]: no ties anywhere."""
    return (torch.randperm(n, generator=gen(seed)).double() + 1) / max(n, 1)


def tie_scores(n: int, seed: int = 0, levels: int = 3) -> torch.Tensor:
    """Scores taking only `levels` values: stable order is decisive."""
    return torch.randint(0, levels, (n,), generator=gen(seed)).double() / levels


def nms_scenario(kind: str, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """1500 (boxes, scores) for NMS: "clustered" (30 dense clusters, distinct scores) or
    "ties" (integer boxes, shared edges, 3 score levels)."""
    if kind == "clustered":
        bx, s = clustered_boxes(1500, 4, clusters=30, jitter=5), distinct_scores(1500, 4)
    else:
        bx, s = integer_boxes(1500, 5, scale=100, max_wh=20), tie_scores(1500, 5)
    return bx.to(dtype), s.to(dtype)


def pair_at_iou(ratio_num: int, ratio_den: int, offset: float = 0.0, unit: float = 1.0) -> torch.Tensor:
    """Two boxes with IoU exactly num/den in exact arithmetic: [0, 0, den, 1] and [0, 0, num, 1]
    (scaled by `unit`, a power of two, and shifted by an integer offset: both exact)."""
    a = torch.tensor([0.0, 0.0, ratio_den, 1.0], dtype=torch.float64) * unit + offset
    b = torch.tensor([0.0, 0.0, ratio_num, 1.0], dtype=torch.float64) * unit + offset
    return torch.stack([a, b])


def iou_in(dtype: torch.dtype, num: int, den: int) -> float:
    """The IoU the kernels compute for pair_at_iou(num, den): float32 for every dtype but float64
    (inter = num, union = den + num - num = den exactly, so the IoU is one rounded division)."""
    if dtype == torch.float64:
        return num / den
    return float(np.float32(num) / np.float32(den))


def nearest_below(x: float) -> float:
    return math.nextafter(x, -math.inf)


def layout(t: torch.Tensor, kind: str) -> torch.Tensor:
    """The same values as `t` (Tensor[N, 4] or Tensor[N]) in a given memory layout."""
    if kind == "contiguous":
        return t.contiguous()
    if kind == "colslice":  # columns of a wider row: row stride != size(-1)
        if t.dim() == 1:
            wide = torch.zeros(t.shape[0], 3, dtype=t.dtype)
            wide[:, 1] = t
            return wide[:, 1]
        wide = torch.zeros(*t.shape[:-1], t.shape[-1] + 3, dtype=t.dtype)
        wide[..., 2:2 + t.shape[-1]] = t
        return wide[..., 2:2 + t.shape[-1]]
    if kind == "transposed":  # column-major storage: stride (1, N)
        if t.dim() < 2:
            return layout(t, "rowstride")
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if kind == "rowstride":  # every other row of a taller tensor
        tall = torch.zeros(t.shape[0] * 2, *t.shape[1:], dtype=t.dtype)
        tall[::2] = t
        return tall[::2]
    raise ValueError(kind)


def cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Casts float64 boxes to `dtype`; integer dtypes get rounded values (uint8 stays in range)."""
    if dtype.is_floating_point:
        return t.to(dtype)
    r = t.round()
    if dtype == torch.uint8:
        r = r.clamp(0, 255)
    return r.to(dtype)
