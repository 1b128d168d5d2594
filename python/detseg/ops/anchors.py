"""Anchor generation (SEMANTICS.md c.9): the ``grid_anchors`` and ``yolo_decode`` ops, and the
modules ``AnchorGenerator`` (torchvision's semantics; detectron2's as an option) and
``DefaultBoxGenerator`` (SSD priors), with torchvision's ``forward(image_list, feature_maps)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .. import _backend
from . import _checks

__all__ = ["grid_anchors", "yolo_decode", "ImageList", "AnchorGenerator", "DefaultBoxGenerator"]

CONVENTIONS = ("torchvision", "detectron2")


def _pair(op: str, arg: str, v) -> tuple[float, float]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            _checks.fail(op, f"{arg} must be a number or a (height, width) pair, got {v!r}")
        return float(v[0]), float(v[1])
    return float(v), float(v)


def grid_anchors(base_anchors: torch.Tensor, feature_size: tuple[int, int], stride, offset: float = 0.0, *,
                 backend: str = "auto") -> torch.Tensor:
    """Tiles base anchors ``Tensor[A, 4]`` over a feature map of ``feature_size = (H, W)``:
    ``Tensor[H * W * A, 4]``, rows in (y, x, a) order (torchvision's (location, base anchor)),
    anchor = base + ((offset + x) * stride_w, (offset + y) * stride_h) on both corners.
    ``stride``: a number or (stride_h, stride_w). Output in base_anchors' dtype."""
    op = "grid_anchors"
    _checks.tensor(op, "base_anchors", base_anchors)
    if len(feature_size) != 2:
        _checks.fail(op, f"feature_size must be (height, width), got {feature_size!r}")
    fh, fw = (int(s) for s in feature_size)
    sh, sw = _pair(op, "stride", stride)
    return _backend.dispatch(op, backend, base_anchors.device, base_anchors, fh, fw, sh, sw, float(offset))


def yolo_decode(pred: torch.Tensor, anchors: torch.Tensor, stride, *, backend: str = "auto") -> torch.Tensor:
    """YOLOv2/v3 grid decode. ``pred`` ``Tensor[N, H, W, B * 5 + C]``: per cell, B groups of
    (tx, ty, tw, th, to) then C class scores (ignored here); ``anchors`` ``Tensor[B, 2]`` (w, h) in
    pixels; ``stride`` a number or (stride_h, stride_w) in pixels per cell. Returns
    ``Tensor[N, H, W, B, 5]`` of (x1, y1, x2, y2, objectness) in pixels, with
    cx = (sigmoid(tx) + x) * stride_w, w = anchor_w * exp(tw), objectness = sigmoid(to) (no clamp
    on tw, th: exp overflow gives inf sides). A head laid out ``[N, B * 5 + C, H, W]`` is passed as
    ``pred.permute(0, 2, 3, 1)``."""
    op = "yolo_decode"
    _checks.tensor(op, "pred", pred)
    _checks.tensor(op, "anchors", anchors)
    sh, sw = _pair(op, "stride", stride)
    return _backend.dispatch(op, backend, pred.device, pred, anchors, sh, sw)


@dataclass
class ImageList:
    """torchvision's ImageList: padded batch ``tensors`` ``Tensor[N, C, H, W]`` and the
    ``image_sizes`` (h, w) before padding."""
    tensors: torch.Tensor
    image_sizes: list[tuple[int, int]]


def _image_size_and_count(op: str, image_list) -> tuple[tuple[int, int], int]:
    if isinstance(image_list, torch.Tensor):
        if image_list.dim() < 2:
            _checks.fail(op, f"images must be a Tensor[N, C, H, W], got shape {list(image_list.shape)}")
        return (int(image_list.shape[-2]), int(image_list.shape[-1])), int(image_list.shape[0])
    t = getattr(image_list, "tensors", None)
    sizes = getattr(image_list, "image_sizes", None)
    if not isinstance(t, torch.Tensor) or sizes is None:
        _checks.fail(op, f"image_list must have .tensors (Tensor[N, C, H, W]) and .image_sizes, got "
                         f"{type(image_list).__name__}", TypeError)
    return (int(t.shape[-2]), int(t.shape[-1])), len(sizes)


def _positive_numbers(op: str, arg: str, levels) -> tuple[tuple[float, ...], ...]:
    out = []
    for lev in levels:
        vals = tuple(float(v) for v in lev)
        if len(vals) == 0 or not all(math.isfinite(v) and v > 0 for v in vals):
            _checks.fail(op, f"{arg} must be finite numbers > 0 (at least one per level), got {list(lev)!r}")
        out.append(vals)
    return tuple(out)


class AnchorGenerator(nn.Module):
    """Anchors for a set of feature maps (one level per map), torchvision's ``AnchorGenerator``.

    Args:
        sizes: per level, anchor sizes (sqrt of the area), e.g. ``((32,), (64,), ...)``.
        aspect_ratios: per level, ratios h / w (or one tuple for every level).
        convention: "torchvision" (default): w = size / sqrt(r), h = size * sqrt(r), base anchors
            ROUNDED to integers, ratios outer / sizes inner, shifts from 0.
            "detectron2": w = sqrt(size^2 / r), h = r * w, no rounding, sizes outer / ratios inner,
            shifts from ``offset * stride``.
        offset: grid offset in strides (detectron2's option; 0.0 = torchvision's grid).
        strides: per level (stride_h, stride_w) or a number; default ``image_size // feature_size``
            per axis (torchvision).

    ``forward(image_list, feature_maps)`` -> list (one per image) of ``Tensor[sum_l H_l W_l A_l, 4]``
    in the feature maps' dtype, ordered (level, location, base anchor).
    """

    def __init__(self, sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),), *,
                 convention: str = "torchvision", offset: float = 0.0, strides=None, backend: str = "auto"):
        super().__init__()
        op = "AnchorGenerator"
        if convention not in CONVENTIONS:
            _checks.fail(op, f"convention must be one of {', '.join(map(repr, CONVENTIONS))}, got {convention!r}")
        if not isinstance(sizes[0], (list, tuple)):
            sizes = tuple((s,) for s in sizes)
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (aspect_ratios,) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            _checks.fail(op, f"sizes and aspect_ratios must have one entry per level, got {len(sizes)} and "
                             f"{len(aspect_ratios)}")
        self.sizes = _positive_numbers(op, "sizes", sizes)
        self.aspect_ratios = _positive_numbers(op, "aspect_ratios", aspect_ratios)
        if not math.isfinite(float(offset)):
            _checks.fail(op, f"offset must be a finite number, got {offset!r}")
        if strides is not None and len(strides) != len(self.sizes):
            _checks.fail(op, f"strides must have one entry per level ({len(self.sizes)}), got {len(strides)}")
        self.convention = convention
        self.offset = float(offset)
        self.strides = None if strides is None else [_pair(op, "strides", s) for s in strides]
        self.backend = backend
        self.cell_anchors = [self.generate_anchors(s, a) for s, a in zip(self.sizes, self.aspect_ratios)]
        self._forward_args: dict = {}

    def generate_anchors(self, scales: Sequence[float], aspect_ratios: Sequence[float],
                         dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        """Zero-centred base anchors ``Tensor[len(scales) * len(aspect_ratios), 4]``."""
        if self.convention == "torchvision":
            s = torch.as_tensor(scales, dtype=dtype, device=device)
            r = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
            h_ratios = torch.sqrt(r)
            w_ratios = 1 / h_ratios
            ws = (w_ratios[:, None] * s[None, :]).view(-1)
            hs = (h_ratios[:, None] * s[None, :]).view(-1)
            return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()
        rows = []
        for size in scales:
            area = float(size) ** 2
            for ratio in aspect_ratios:
                w = math.sqrt(area / ratio)
                h = ratio * w
                rows.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
        return torch.tensor(rows, dtype=dtype, device=device)

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def grid_anchors(self, grid_sizes: Sequence[Sequence[int]], strides: Sequence[Sequence[float]],
                     dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """Per level ``Tensor[H * W * A, 4]`` for the given grid sizes and (stride_h, stride_w)."""
        if not (len(grid_sizes) == len(strides) == len(self.cell_anchors)):
            _checks.fail("AnchorGenerator", f"got {len(grid_sizes)} feature maps for {len(self.cell_anchors)} levels "
                                            f"of sizes / aspect_ratios: there must be one feature map per level")
        out = []
        for (gh, gw), st, base in zip(grid_sizes, strides, self.cell_anchors):
            out.append(grid_anchors(base.to(dtype=dtype, device=device), (int(gh), int(gw)), st, self.offset,
                                    backend=self.backend))
        return out

    def forward(self, image_list, feature_maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        op = "AnchorGenerator"
        (ih, iw), n_images = _image_size_and_count(op, image_list)
        grid_sizes = tuple((int(f.shape[-2]), int(f.shape[-1])) for f in feature_maps)
        f0 = feature_maps[0]
        dtype = f0.dtype if f0.is_floating_point() else torch.float32
        # The op's arguments depend only on these: a detector calls forward with the same
        # shapes every time, and a 200k-anchor grid is written in ~40 us, so the Python work
        # around it (strides, base anchors cast to the maps' dtype and device) is cached in
        # eager mode. cell_anchors, strides and offset are public attributes: a change, in
        # place or not, makes a new key. (A compiled graph does this work once anyway.)
        if torch.compiler.is_compiling():
            args = self._op_args(op, (ih, iw), grid_sizes, dtype, f0.device)
        else:
            key = (ih, iw, grid_sizes, dtype, f0.device, self.offset, repr(self.strides),
                   tuple((id(b), b._version) for b in self.cell_anchors))
            args = self._forward_args.get(key)
            if args is None:
                args = self._op_args(op, (ih, iw), grid_sizes, dtype, f0.device)
                if len(self._forward_args) >= 16:
                    self._forward_args.clear()
                self._forward_args[key] = args
        # one op writes every level into one output (no per-level tensors, no cat)
        out = _backend.dispatch("multilevel_grid_anchors", self.backend, f0.device, *args)
        # one tensor per image, as torchvision (which concatenates per image)
        return [out] + [out.clone() for _ in range(n_images - 1)]

    def _op_args(self, op: str, image_size: tuple[int, int], grid_sizes, dtype: torch.dtype, device) -> tuple:
        """multilevel_grid_anchors' arguments after base_anchors' checks: (bases, heights,
        widths, stride_h, stride_w, offset)."""
        ih, iw = image_size
        if len(grid_sizes) != len(self.cell_anchors):
            _checks.fail(op, f"got {len(grid_sizes)} feature maps for {len(self.cell_anchors)} levels of sizes / "
                             f"aspect_ratios: there must be one feature map per level")
        if self.strides is not None:
            strides = self.strides
        else:
            strides = []
            for lvl, (gh, gw) in enumerate(grid_sizes):
                if gh <= 0 or gw <= 0 or gh > ih or gw > iw:
                    _checks.fail(op, f"feature map {lvl} ({gh}x{gw}) must be non-empty and no larger than the "
                                     f"image ({ih}x{iw})")
                strides.append((float(ih // gh), float(iw // gw)))
        bases = [b.to(dtype=dtype, device=device) for b in self.cell_anchors]
        return (bases, [g[0] for g in grid_sizes], [g[1] for g in grid_sizes], [float(st[0]) for st in strides],
                [float(st[1]) for st in strides], self.offset)

    def extra_repr(self) -> str:
        return (f"sizes={self.sizes}, aspect_ratios={self.aspect_ratios}, convention={self.convention!r}, "
                f"offset={self.offset}")


class DefaultBoxGenerator(nn.Module):
    """SSD default boxes (priors), torchvision's ``DefaultBoxGenerator``.

    Scales from ``min_ratio`` / ``max_ratio`` (linear over the levels, then 1.0) unless ``scales``
    (one per level plus one) is given; per location two squares (s_k and sqrt(s_k s_{k+1})) and
    (w, h), (h, w) per extra ratio; centres ((i + 0.5) / f_k), or from ``steps`` in pixels;
    ``clip`` clamps the (w, h) pairs to [0, 1] before the xyxy conversion; scaled to the image.
    ``forward(image_list, feature_maps)`` -> list per image of ``Tensor[sum_k H_k W_k A_k, 4]`` (xyxy pixels).
    """

    def __init__(self, aspect_ratios: Sequence[Sequence[float]], min_ratio: float = 0.15, max_ratio: float = 0.9,
                 scales: Sequence[float] | None = None, steps: Sequence[float] | None = None, clip: bool = True):
        super().__init__()
        op = "DefaultBoxGenerator"
        n = len(aspect_ratios)
        if steps is not None:
            if len(steps) != n:
                _checks.fail(op, f"aspect_ratios and steps must have the same length, got {n} and {len(steps)}")
            if not all(math.isfinite(float(s)) and float(s) > 0 for s in steps):
                _checks.fail(op, f"steps must be finite numbers > 0, got {list(steps)!r}")
        for ars in aspect_ratios:
            if not all(math.isfinite(float(a)) and float(a) > 0 for a in ars):
                _checks.fail(op, f"aspect_ratios must be finite numbers > 0, got {list(ars)!r}")
        if scales is None:
            if not (0 < min_ratio <= max_ratio):
                _checks.fail(op, f"min_ratio and max_ratio must satisfy 0 < min_ratio <= max_ratio, got "
                                 f"{min_ratio!r}, {max_ratio!r}")
            if n > 1:
                self.scales = [min_ratio + (max_ratio - min_ratio) * k / (n - 1.0) for k in range(n)] + [1.0]
            else:
                self.scales = [min_ratio, max_ratio]
        else:
            if len(scales) != n + 1 or not all(math.isfinite(float(s)) and float(s) > 0 for s in scales):
                _checks.fail(op, f"scales must be {n + 1} finite numbers > 0 (one per level plus one), got "
                                 f"{list(scales)!r}")
            self.scales = [float(s) for s in scales]
        self.aspect_ratios = [list(a) for a in aspect_ratios]
        self.steps = None if steps is None else list(steps)
        self.clip = clip
        self._wh_pairs = []
        for k in range(n):
            s_k = self.scales[k]
            s_prime = math.sqrt(self.scales[k] * self.scales[k + 1])
            pairs = [[s_k, s_k], [s_prime, s_prime]]
            for ar in self.aspect_ratios[k]:
                sq = math.sqrt(ar)
                pairs.extend([[s_k * sq, s_k / sq], [s_k / sq, s_k * sq]])
            self._wh_pairs.append(torch.as_tensor(pairs, dtype=torch.float32))

    def num_anchors_per_location(self) -> list[int]:
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    def _grid_default_boxes(self, grid_sizes, image_size, dtype=torch.float32) -> torch.Tensor:
        """``Tensor[sum_k H_k W_k A_k, 4]`` of normalised (cx, cy, w, h)."""
        boxes = []
        for k, (fh, fw) in enumerate(grid_sizes):
            if self.steps is not None:
                x_f, y_f = image_size[1] / self.steps[k], image_size[0] / self.steps[k]
            else:
                y_f, x_f = fh, fw
            sx = ((torch.arange(0, fw) + 0.5) / x_f).to(dtype)
            sy = ((torch.arange(0, fh) + 0.5) / y_f).to(dtype)
            shift_y, shift_x = torch.meshgrid(sy, sx, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            wh = self._wh_pairs[k]
            shifts = torch.stack((shift_x, shift_y) * len(wh), dim=-1).reshape(-1, 2)
            if self.clip:
                wh = wh.clamp(min=0, max=1)
            boxes.append(torch.cat((shifts, wh.to(dtype).repeat(fh * fw, 1)), dim=1))
        return torch.cat(boxes, dim=0)

    def forward(self, image_list, feature_maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        op = "DefaultBoxGenerator"
        (ih, iw), n_images = _image_size_and_count(op, image_list)
        grid_sizes = [tuple(int(s) for s in f.shape[-2:]) for f in feature_maps]
        if len(grid_sizes) != len(self._wh_pairs):
            _checks.fail(op, f"got {len(grid_sizes)} feature maps for {len(self._wh_pairs)} levels of aspect_ratios")
        f0 = feature_maps[0]
        dtype = f0.dtype if f0.is_floating_point() else torch.float32
        d = self._grid_default_boxes(grid_sizes, (ih, iw), dtype).to(f0.device)
        xy = torch.tensor([iw, ih], device=d.device)
        out = torch.cat([(d[:, :2] - 0.5 * d[:, 2:]) * xy, (d[:, :2] + 0.5 * d[:, 2:]) * xy], -1)
        return [out] + [out.clone() for _ in range(n_images - 1)]

    def extra_repr(self) -> str:
        return f"aspect_ratios={self.aspect_ratios}, clip={self.clip}, scales={self.scales}, steps={self.steps}"
