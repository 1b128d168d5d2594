"""RoI ops, torchvision.ops-compatible, plus keyword-only ``backend=`` (and ``pool_mode=`` on
roi_align, mmcv's max-over-samples convention).

Differences from torchvision, all on inputs where torchvision crashes or returns garbage:
a batch index that is out of range or not an integer raises; a RoI with a NaN / inf
coordinate outputs 0 (and gets no gradient); boxes may have a floating dtype other than
input's (they are read in float32, float64 for float64 input); float16 / bfloat16 are
supported on CPU (accumulated in float32); roi_pool's argmax is int64 and follows
torch.argmax on NaN (NaN wins) where torchvision's strict '>' skips it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import _backend
from . import _checks

__all__ = ["roi_align", "roi_pool", "ps_roi_align", "ps_roi_pool", "RoIAlign", "RoIPool", "PSRoIAlign", "PSRoIPool",
           "MultiScaleRoIAlign"]


def _pair(op: str, output_size) -> tuple[int, int]:
    if isinstance(output_size, int):
        return output_size, output_size
    try:
        h, w = output_size
        return int(h), int(w)
    except (TypeError, ValueError):
        _checks.fail(op, f"output_size must be an int or a pair (height, width), got {output_size!r}")


def _to_rois(op: str, boxes, input: torch.Tensor) -> torch.Tensor:
    """Tensor[K, 5] as is, or a list of Tensor[L_i, 4] -> Tensor[sum L_i, 5] with batch index i."""
    if isinstance(boxes, torch.Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            _checks.fail(op, f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got shape {list(boxes.shape)}")
        rois = boxes
    elif isinstance(boxes, (list, tuple)):
        parts = []
        for i, b in enumerate(boxes):
            if not isinstance(b, torch.Tensor) or b.dim() != 2 or b.shape[1] != 4:
                got = list(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
                _checks.fail(op, f"boxes[{i}] must be a Tensor[L, 4], got {got}")
            parts.append(torch.cat([torch.full_like(b[:, :1], i), b], dim=1))
        if not parts:
            return input.new_zeros((0, 5), dtype=torch.float64 if input.dtype == torch.float64 else torch.float32)
        rois = torch.cat(parts, dim=0)
    else:
        _checks.fail(op, f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}",
                     TypeError)
    if not rois.is_floating_point():
        rois = rois.to(torch.float64 if input.dtype == torch.float64 else torch.float32)
    return rois


def _common_args(op: str, input: torch.Tensor, boxes, output_size) -> tuple[torch.Tensor, int, int]:
    """The checks and normalisation every RoI op starts with: (rois Tensor[K, 5], oh, ow)."""
    _checks.tensor(op, "input", input)
    rois = _to_rois(op, boxes, input)
    ph, pw = _pair(op, output_size)
    return rois, ph, pw


def roi_align(input: torch.Tensor, boxes, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False, *, pool_mode: str = "avg", backend: str = "auto") -> torch.Tensor:
    """RoIAlign (Mask R-CNN). ``input Tensor[N, C, H, W]``, ``boxes Tensor[K, 5]`` (batch index,
    x1, y1, x2, y2) or a list of ``Tensor[L_i, 4]`` -> ``Tensor[K, C, oh, ow]`` in input's dtype
    (channels-last when input is).

    spatial_scale maps box to feature coordinates; sampling_ratio <= 0 samples
    ceil(roi_size / output_size) points per bin and axis; aligned shifts by half a pixel
    (ONNX 'half_pixel'). pool_mode 'avg' averages the bilinear samples of a bin (torchvision),
    'max' takes their maximum (mmcv).
    """
    op = "roi_align"
    rois, ph, pw = _common_args(op, input, boxes, output_size)
    return _backend.dispatch(op, backend, input.device, input, rois, float(spatial_scale), ph, pw,
                             int(sampling_ratio), bool(aligned), pool_mode)


def roi_pool(input: torch.Tensor, boxes, output_size, spatial_scale: float = 1.0, *,
             backend: str = "auto") -> torch.Tensor:
    """RoIPool (Fast R-CNN): max over quantised bins. ``input Tensor[N, C, H, W]``, boxes as in
    :func:`roi_align` -> ``Tensor[K, C, oh, ow]``; an empty bin gives 0."""
    op = "roi_pool"
    rois, ph, pw = _common_args(op, input, boxes, output_size)
    out, _ = _backend.dispatch(op, backend, input.device, input, rois, float(spatial_scale), ph, pw)
    return out


def ps_roi_align(input: torch.Tensor, boxes, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1, *,
                 backend: str = "auto") -> torch.Tensor:
    """Position-sensitive RoIAlign (R-FCN). ``input Tensor[N, C, H, W]`` with C a multiple of
    oh * ow, boxes as in :func:`roi_align` -> ``Tensor[K, C / (oh * ow), oh, ow]``: output channel c
    of bin (i, j) averages the bilinear samples of input channel (c * oh + i) * ow + j, with
    the half-pixel (aligned) geometry, as torchvision."""
    op = "ps_roi_align"
    rois, ph, pw = _common_args(op, input, boxes, output_size)
    out, _ = _backend.dispatch(op, backend, input.device, input, rois, float(spatial_scale), ph, pw,
                               int(sampling_ratio))
    return out


def ps_roi_pool(input: torch.Tensor, boxes, output_size, spatial_scale: float = 1.0, *,
                backend: str = "auto") -> torch.Tensor:
    """Position-sensitive RoIPool (R-FCN): as :func:`ps_roi_align` but each output is the mean of
    a quantised bin (corners rounded, RoI extent end - start as torchvision); an empty bin gives 0."""
    op = "ps_roi_pool"
    rois, ph, pw = _common_args(op, input, boxes, output_size)
    out, _ = _backend.dispatch(op, backend, input.device, input, rois, float(spatial_scale), ph, pw)
    return out


class _RoIModule(nn.Module):
    """The fields every single-level RoI module has (output_size, spatial_scale, backend) and
    their repr; subclasses add their own and append them to extra_repr."""

    def __init__(self, output_size, spatial_scale: float, *, backend: str = "auto"):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.backend = backend

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


class RoIAlign(_RoIModule):
    """Module form of :func:`roi_align` (torchvision.ops.RoIAlign)."""

    def __init__(self, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool = False, *,
                 pool_mode: str = "avg", backend: str = "auto"):
        super().__init__(output_size, spatial_scale, backend=backend)
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.pool_mode = pool_mode

    def forward(self, input: torch.Tensor, rois) -> torch.Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned,
                         pool_mode=self.pool_mode, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, sampling_ratio={self.sampling_ratio}, aligned={self.aligned}, "
                f"pool_mode={self.pool_mode!r}")


class RoIPool(_RoIModule):
    """Module form of :func:`roi_pool` (torchvision.ops.RoIPool)."""

    def forward(self, input: torch.Tensor, rois) -> torch.Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale, backend=self.backend)


class PSRoIAlign(_RoIModule):
    """Module form of :func:`ps_roi_align` (torchvision.ops.PSRoIAlign)."""

    def __init__(self, output_size, spatial_scale: float, sampling_ratio: int, *, backend: str = "auto"):
        super().__init__(output_size, spatial_scale, backend=backend)
        self.sampling_ratio = sampling_ratio

    def forward(self, input: torch.Tensor, rois) -> torch.Tensor:
        return ps_roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                            backend=self.backend)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sampling_ratio={self.sampling_ratio}"


class PSRoIPool(_RoIModule):
    """Module form of :func:`ps_roi_pool` (torchvision.ops.PSRoIPool)."""

    def forward(self, input: torch.Tensor, rois) -> torch.Tensor:
        return ps_roi_pool(input, rois, self.output_size, self.spatial_scale, backend=self.backend)


def _infer_scale(feature: torch.Tensor, original_size: tuple[int, int]) -> float:
    # Power of two nearest to feature / image size (torchvision's rule; height decides).
    approx = float(feature.shape[-2]) / float(original_size[0])
    return 2.0 ** round(math.log2(approx))


def fpn_levels(boxes: torch.Tensor, k_min: int, k_max: int, canonical_scale: float = 224.0,
               canonical_level: int = 4, eps: float = 1e-6, eps_in_log: bool = False) -> torch.Tensor:
    """FPN level of each box ``Tensor[K, 4]`` (Feature Pyramid Networks, eq. 1), minus k_min:
    floor(k0 + log2(sqrt(area) / s0) + eps) clamped to [k_min, k_max] (torchvision), or with
    eps_in_log floor(k0 + log2(sqrt(area) / s0 + eps)) (detectron2, eps 1e-8)."""
    b = boxes.to(torch.float64 if boxes.dtype == torch.float64 else torch.float32)
    size = torch.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    if eps_in_log:
        lvl = torch.floor(canonical_level + torch.log2(size / canonical_scale + eps))
    else:
        lvl = torch.floor(canonical_level + torch.log2(size / canonical_scale) + eps)
    return lvl.clamp(min=k_min, max=k_max).to(torch.int64) - k_min


class MultiScaleRoIAlign(nn.Module):
    """RoIAlign over a feature pyramid (torchvision.ops.MultiScaleRoIAlign): each box is pooled
    from the level its size selects; scales are inferred from feature / image sizes.

    forward(x: dict[str, Tensor[N, C, H_l, W_l]], boxes: list[Tensor[L_i, 4]],
    image_shapes: list[(h, w)]) -> Tensor[sum L_i, C, oh, ow]. aligned defaults to False as in
    torchvision; ``eps_in_log=True`` (with eps=1e-8) is detectron2's level rule.
    """

    def __init__(self, featmap_names: list[str], output_size, sampling_ratio: int, *, canonical_scale: int = 224,
                 canonical_level: int = 4, aligned: bool = False, eps: float = 1e-6, eps_in_log: bool = False,
                 backend: str = "auto"):
        super().__init__()
        self.featmap_names = list(featmap_names)
        self.output_size = output_size
        self.sampling_ratio = sampling_ratio
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level
        self.aligned = aligned
        self.eps = eps
        self.eps_in_log = eps_in_log
        self.backend = backend

    def forward(self, x: dict, boxes: list, image_shapes: list) -> torch.Tensor:
        op = "MultiScaleRoIAlign"
        feats = [x[k] for k in self.featmap_names]
        if not feats:
            _checks.fail(op, "featmap_names must name at least one feature map")
        size = (max(int(s[0]) for s in image_shapes), max(int(s[1]) for s in image_shapes))
        scales = [_infer_scale(f, size) for f in feats]
        rois = _to_rois(op, boxes, feats[0])

        def pool(feat, r, scale):
            return roi_align(feat, r, self.output_size, scale, self.sampling_ratio, self.aligned,
                             backend=self.backend)

        if len(feats) == 1:
            return pool(feats[0], rois, scales[0])
        k_min, k_max = int(-math.log2(scales[0])), int(-math.log2(scales[-1]))
        levels = fpn_levels(rois[:, 1:], k_min, k_max, self.canonical_scale, self.canonical_level, self.eps,
                            self.eps_in_log)
        ph, pw = _pair(op, self.output_size)
        out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1], ph, pw))
        for level, (feat, scale) in enumerate(zip(feats, scales)):
            idx = torch.where(levels == level)[0]
            out = out.index_put((idx,), pool(feat, rois[idx], scale).to(out.dtype))
        return out

    def extra_repr(self) -> str:
        return (f"featmap_names={self.featmap_names}, output_size={self.output_size}, "
                f"sampling_ratio={self.sampling_ratio}")
