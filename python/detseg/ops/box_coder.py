"""Box coding, torchvision-compatible: ``encode_boxes`` / ``decode_boxes`` and the
``BoxCoder`` / ``BoxLinearCoder`` classes (SEMANTICS.md c.10), plus keyword-only ``backend=``.

Naming trap kept from torchvision for drop-in use: ``BoxCoder.encode(reference_boxes,
proposals)`` encodes the TARGETS ``reference_boxes`` against the anchors ``proposals``,
while ``BoxLinearCoder.encode(reference_boxes, proposals)`` takes the ANCHORS first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .. import _backend
from . import _checks

__all__ = ["encode_boxes", "decode_boxes", "BoxCoder", "BoxLinearCoder"]

DEFAULT_CLIP = math.log(1000.0 / 16)


def _floating(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_floating_point() else t.float()


def _weights(op: str, weights) -> list[float]:
    if isinstance(weights, torch.Tensor):
        weights = weights.tolist()
    return list(_checks.coder_weights(op, weights))


def encode_boxes(reference_boxes: torch.Tensor, proposals: torch.Tensor, weights=(1.0, 1.0, 1.0, 1.0), *,
                 backend: str = "auto") -> torch.Tensor:
    """Deltas ``Tensor[N, 4]`` (wx dx / w_a, wy dy / h_a, ww log(w / w_a), wh log(h / h_a)) of the
    targets ``reference_boxes`` ``Tensor[N, 4]`` against the anchors ``proposals`` ``Tensor[N, 4]``
    (torchvision's argument order). Output in reference_boxes' dtype (float16/bfloat16 computed
    in float32). Zero-width anchors give inf/NaN, as torchvision. Not differentiable."""
    _checks.tensor("encode_boxes", "reference_boxes", reference_boxes)
    _checks.tensor("encode_boxes", "proposals", proposals)
    ref, prop = _floating(reference_boxes), _floating(proposals)
    if prop.dtype != ref.dtype and prop.is_floating_point():
        prop = prop.to(ref.dtype)
    w = _weights("encode_boxes", weights)
    return _backend.dispatch("encode_boxes", backend, ref.device, ref, prop, w)


def decode_boxes(rel_codes: torch.Tensor, boxes: torch.Tensor, weights=(1.0, 1.0, 1.0, 1.0),
                 bbox_xform_clip: float = DEFAULT_CLIP, *, backend: str = "auto") -> torch.Tensor:
    """Boxes ``Tensor[N, 4 * K]`` (xyxy) from deltas ``rel_codes`` ``Tensor[N, 4 * K]`` against the
    reference boxes ``Tensor[N, 4]``. dw, dh are divided by their weights and clamped ABOVE at
    ``bbox_xform_clip`` before exp (NaN passes through); boxes are cast to rel_codes' dtype first.
    Differentiable in both rel_codes and boxes."""
    _checks.tensor("decode_boxes", "rel_codes", rel_codes)
    _checks.tensor("decode_boxes", "boxes", boxes)
    w = _weights("decode_boxes", weights)
    clip = float(bbox_xform_clip)
    return _backend.dispatch("decode_boxes", backend, rel_codes.device, _floating(rel_codes), _floating(boxes),
                             w, clip)


class BoxCoder:
    """torchvision's ``BoxCoder``: encodes / decodes boxes as (dx, dy, dw, dh) deltas.

    Args:
        weights (Tuple[float, float, float, float]): (wx, wy, ww, wh): RPN / RetinaNet (1, 1, 1, 1),
            RoI heads / SSD (10, 10, 5, 5).
        bbox_xform_clip (float): upper clamp of dw, dh before exp, default log(1000 / 16).
        backend (str): detseg backend for the ops ("auto", "cpp", "triton", "reference").
    """

    def __init__(self, weights, bbox_xform_clip: float = DEFAULT_CLIP, *, backend: str = "auto") -> None:
        self.weights = tuple(_weights("BoxCoder", weights))
        self.bbox_xform_clip = float(bbox_xform_clip)
        self.backend = backend

    def __repr__(self) -> str:
        return f"BoxCoder(weights={self.weights}, bbox_xform_clip={self.bbox_xform_clip})"

    def encode(self, reference_boxes: Sequence[torch.Tensor], proposals: Sequence[torch.Tensor]):
        """Per-image lists of targets and anchors ``Tensor[N_i, 4]`` -> tuple of ``Tensor[N_i, 4]``."""
        boxes_per_image = [len(b) for b in reference_boxes]
        targets = self.encode_single(torch.cat(list(reference_boxes), dim=0), torch.cat(list(proposals), dim=0))
        return targets.split(boxes_per_image, 0)

    def encode_single(self, reference_boxes: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """Targets ``Tensor[N, 4]`` against anchors ``Tensor[N, 4]`` -> ``Tensor[N, 4]``."""
        return encode_boxes(reference_boxes, proposals, self.weights, backend=self.backend)

    def decode(self, rel_codes: torch.Tensor, boxes: Sequence[torch.Tensor]) -> torch.Tensor:
        """Deltas for the concatenated per-image reference boxes (``Tensor[sum N_i, ...]``) ->
        ``Tensor[sum N_i, K, 4]`` (left as decode_single's output when there are no boxes)."""
        if not isinstance(boxes, (list, tuple)):
            _checks.fail("BoxCoder.decode", f"boxes must be a list or tuple of Tensor[N_i, 4], got "
                                            f"{type(boxes).__name__}", TypeError)
        _checks.tensor("BoxCoder.decode", "rel_codes", rel_codes)
        box_sum = sum(int(b.size(0)) for b in boxes)
        concat = torch.cat(list(boxes), dim=0)
        if box_sum > 0:
            rel_codes = rel_codes.reshape(box_sum, -1)
        pred = self.decode_single(rel_codes, concat)
        if box_sum > 0:
            pred = pred.reshape(box_sum, -1, 4)
        return pred

    def decode_single(self, rel_codes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Deltas ``Tensor[N, 4 * K]`` against ``Tensor[N, 4]`` -> boxes ``Tensor[N, 4 * K]``."""
        return decode_boxes(rel_codes, boxes, self.weights, self.bbox_xform_clip, backend=self.backend)


def _flat_pair(op: str, a: torch.Tensor, an: str, b: torch.Tensor, bn: str):
    """Broadcasts two ``Tensor[..., 4]`` (torchvision's BoxLinearCoder works on any leading
    dims) and flattens them to ``Tensor[N, 4]``; returns them and the leading shape."""
    _checks.boxes_last4(op, an, a)
    _checks.boxes_last4(op, bn, b)
    try:
        shape = torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        _checks.fail(op, f"{an} {list(a.shape)} and {bn} {list(b.shape)} do not broadcast")
    return a.expand(shape).reshape(-1, 4), b.expand(shape).reshape(-1, 4), shape


class BoxLinearCoder:
    """torchvision's ``BoxLinearCoder`` (FCOS): (l, t, r, b) distances of the target's sides from
    the anchor's centre, divided by the anchor's (w, h, w, h) when ``normalize_by_size``.
    Works on ``Tensor[..., 4]`` (broadcast)."""

    def __init__(self, normalize_by_size: bool = True, *, backend: str = "auto") -> None:
        self.normalize_by_size = bool(normalize_by_size)
        self.backend = backend

    def __repr__(self) -> str:
        return f"BoxLinearCoder(normalize_by_size={self.normalize_by_size})"

    def encode(self, reference_boxes: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """Anchors ``reference_boxes`` and targets ``proposals`` ``Tensor[..., 4]`` -> ``Tensor[..., 4]``."""
        op = "linear_encode_boxes"
        r, p, shape = _flat_pair(op, _floating(reference_boxes), "reference_boxes", _floating(proposals), "proposals")
        if p.dtype != r.dtype:
            p = p.to(r.dtype)
        out = _backend.dispatch(op, self.backend, r.device, r, p, self.normalize_by_size)
        return out.reshape(shape)

    def decode(self, rel_codes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(l, t, r, b) ``Tensor[..., 4]`` against anchors ``Tensor[..., 4]`` -> xyxy ``Tensor[..., 4]``."""
        op = "linear_decode_boxes"
        d, b, shape = _flat_pair(op, _floating(rel_codes), "rel_codes", _floating(boxes), "boxes")
        out = _backend.dispatch(op, self.backend, d.device, d, b, self.normalize_by_size)
        return out.reshape(shape)

    # torchvision <= 0.13 names
    encode_single = encode
    decode_single = decode
