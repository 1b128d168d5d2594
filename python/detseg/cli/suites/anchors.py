"""Benchmarks of anchors and box coding (issue 4): the anchors of an 800 x 1088 image over 5 FPN
levels x 3 ratios (~217k anchors), decode of 200k deltas, a YOLO grid decode. Peers: plain
PyTorch (torchvision's formulas) and the output-write floor, ``torch.empty(out).fill_(1)``
(registered as a peer, so "best peer" reads as "vs the floor" where it wins: the target is
within 2x of it)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..providers import (DETSEG_ARGS, DETSEG_BACKENDS, PROVIDERS, Context, Prepared, Provider, _as_tensor,
                         detseg_op, impl, register)
from ..workloads import Workload, anchor_boxes
from ..workloads import register as register_workload

FPN_STRIDES = (4, 8, 16, 32, 64)
FPN_SIZES = ((32,), (64,), (128,), (256,), (512,))
RATIOS = (0.5, 1.0, 2.0)
CLIP = math.log(1000.0 / 16)


# ------------------------------------------------------------------ workloads

def _fpn_inputs(height: int, width: int):
    def make(rng):
        feats = [torch.zeros(1, 1, math.ceil(height / s), math.ceil(width / s)) for s in FPN_STRIDES]
        return {"images": torch.zeros(1, 3, height, width), "feature_maps": feats,
                "out_rows": sum(f.shape[-2] * f.shape[-1] * len(RATIOS) for f in feats)}
    return make


def _decode_inputs(n: int):
    def make(rng):
        return {"rel_codes": torch.from_numpy(rng.normal(0.0, 1.0, size=(n, 4)).astype(np.float32)),
                "boxes": anchor_boxes(rng, n), "weights": (1.0, 1.0, 1.0, 1.0), "bbox_xform_clip": CLIP}
    return make


def _yolo_inputs(batch: int, grid: int, classes: int):
    def make(rng):
        pred = rng.normal(0.0, 1.0, size=(batch, grid, grid, 3 * 5 + classes)).astype(np.float32)
        return {"pred": torch.from_numpy(pred), "anchors": torch.tensor([[116.0, 90.0], [156.0, 198.0],
                                                                         [373.0, 326.0]]),
                "stride": 416 // grid}
    return make


register_workload(Workload(
    "grid_anchors/800x1088/fpn5x3", "grid_anchors", _fpn_inputs(800, 1088), {"height": 800, "width": 1088},
    description="AnchorGenerator(sizes 32..512, ratios 0.5/1/2) over P2..P6 of an 800x1088 image (217k anchors)"))
register_workload(Workload(
    "decode_boxes/n=200000", "decode_boxes", _decode_inputs(200_000), {"n": 200_000},
    description="BoxCoder((1, 1, 1, 1)).decode_single of 200k deltas against 200k anchors"))
register_workload(Workload(
    "yolo_decode/8x52x52x3/80cls", "yolo_decode", _yolo_inputs(8, 52, 80), {"batch": 8, "grid": 52, "classes": 80},
    modes=("full",), description="YOLOv3 head at stride 8 (52x52 cells, 3 anchors, 80 classes), 8 images"))


# ------------------------------------------------------------------ detseg providers

def _anchors_prepare(backend: str):
    """AnchorGenerator.forward on one detseg backend (the module is built outside the timing)."""
    device = "cuda" if backend in ("triton", "cuda") else "cpu"
    api_backend = "cpp" if backend == "cuda" else backend

    def prepare(inputs: dict, ctx: Context, op: str) -> Prepared:
        import detseg

        gen = detseg.AnchorGenerator(FPN_SIZES, (RATIOS,) * len(FPN_SIZES), backend=api_backend)
        images = inputs["images"].to(device)
        feats = [f.to(device) for f in inputs["feature_maps"]]

        def run():
            out = gen(images, feats)[0]
            if device == "cuda":
                torch.cuda.synchronize()
            return out

        return Prepared(run, _as_tensor)

    return prepare


def _boxes_agree(result: torch.Tensor, ref: torch.Tensor) -> tuple[bool | None, str]:
    """Decoded corners are differences (centre -+ half size) of values up to |x1| + |x2|: an ulp
    of exp moves a near-zero corner by an ulp of the box's largest coordinate. Tolerance per
    box row: 1e-5 of its largest |coordinate| (+ 1e-5)."""
    if result.shape != ref.shape:
        return False, f"shape {list(result.shape)} != reference {list(ref.shape)}"
    r, e = result.double(), ref.double()
    rows = e.reshape(-1, 4 if e.shape[-1] % 4 == 0 else e.shape[-1])
    scale = rows.abs().nan_to_num(nan=0.0).amax(dim=1, keepdim=True).expand_as(rows).reshape(e.shape)
    d = (r - e).abs().nan_to_num(nan=0.0)
    nan_ok = bool(torch.equal(r.isnan(), e.isnan()))
    ok = nan_ok and bool((d <= 1e-5 * scale + 1e-5).all())
    err = float((d / (scale + 1e-30)).max()) if d.numel() else 0.0
    return ok, f"max |diff| {err:.2g} of the box's largest coordinate vs detseg.reference"


DETSEG_ARGS["grid_anchors"] = ("images", "feature_maps")
for _b in DETSEG_BACKENDS:
    PROVIDERS[f"detseg-{_b}"].impls["grid_anchors"] = _anchors_prepare(_b)
detseg_op("decode_boxes", ("rel_codes", "boxes", "weights", "bbox_xform_clip"), agreement=_boxes_agree)
detseg_op("yolo_decode", ("pred", "anchors", "stride"), agreement=_boxes_agree)


# ------------------------------------------------------------------ plain PyTorch (torchvision's formulas)

def _torch_anchors(images: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
    """torchvision's AnchorGenerator: rounded cell anchors, int shifts, broadcast add, cat."""
    ih, iw = images.shape[-2:]
    out = []
    for size, f in zip(FPN_SIZES, feats):
        s = torch.as_tensor(size, dtype=torch.float32)
        r = torch.as_tensor(RATIOS, dtype=torch.float32)
        hr = torch.sqrt(r)
        ws = ((1 / hr)[:, None] * s[None, :]).view(-1)
        hs = (hr[:, None] * s[None, :]).view(-1)
        base = (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()
        gh, gw = f.shape[-2:]
        sx = torch.arange(0, gw, dtype=torch.int32) * (iw // gw)
        sy = torch.arange(0, gh, dtype=torch.int32) * (ih // gh)
        yy, xx = torch.meshgrid(sy, sx, indexing="ij")
        xx, yy = xx.reshape(-1), yy.reshape(-1)
        shifts = torch.stack((xx, yy, xx, yy), dim=1)
        out.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
    return torch.cat(out)


def _torch_decode(rel_codes, boxes, weights, clip):
    """torchvision's BoxCoder.decode_single."""
    boxes = boxes.to(rel_codes.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = rel_codes[:, 0::4] / wx
    dy = rel_codes[:, 1::4] / wy
    dw = torch.clamp(rel_codes[:, 2::4] / ww, max=clip)
    dh = torch.clamp(rel_codes[:, 3::4] / wh, max=clip)
    pcx = dx * widths[:, None] + ctr_x[:, None]
    pcy = dy * heights[:, None] + ctr_y[:, None]
    pw = torch.exp(dw) * widths[:, None]
    ph = torch.exp(dh) * heights[:, None]
    cw, ch = 0.5 * pw, 0.5 * ph
    return torch.stack((pcx - cw, pcy - ch, pcx + cw, pcy + ch), dim=2).flatten(1)


def _torch_yolo(pred, anchors, stride):
    n, h, w, _ = pred.shape
    t = pred[..., :15].reshape(n, h, w, 3, 5)
    xs = torch.arange(w, dtype=pred.dtype).view(1, 1, w, 1)
    ys = torch.arange(h, dtype=pred.dtype).view(1, h, 1, 1)
    cx = (torch.sigmoid(t[..., 0]) + xs) * stride
    cy = (torch.sigmoid(t[..., 1]) + ys) * stride
    hw = 0.5 * (anchors[:, 0] * torch.exp(t[..., 2]))
    hh = 0.5 * (anchors[:, 1] * torch.exp(t[..., 3]))
    return torch.stack((cx - hw, cy - hh, cx + hw, cy + hh, torch.sigmoid(t[..., 4])), dim=-1)


@impl("torch", "grid_anchors")
def _torch_anchors_prepare(inputs: dict, ctx: Context, op: str) -> Prepared:
    images, feats = inputs["images"], inputs["feature_maps"]
    return Prepared(lambda: _torch_anchors(images, feats), _as_tensor)


@impl("torch", "decode_boxes")
def _torch_decode_prepare(inputs: dict, ctx: Context, op: str) -> Prepared:
    a = (inputs["rel_codes"], inputs["boxes"], inputs["weights"], inputs["bbox_xform_clip"])
    return Prepared(lambda: _torch_decode(*a), _as_tensor)


@impl("torch", "yolo_decode")
def _torch_yolo_prepare(inputs: dict, ctx: Context, op: str) -> Prepared:
    a = (inputs["pred"], inputs["anchors"], inputs["stride"])
    return Prepared(lambda: _torch_yolo(*a), _as_tensor)


# ------------------------------------------------------------------ the output-write floor

register(Provider(
    "write-floor", "floor", lambda: torch.__version__,
    "not an implementation: torch.empty(<the op's output shape>).fill_(1), the cost of writing the "
    "output once (fresh allocation included); shown beside the peers, never counted as one"))


def _out_shape(inputs: dict, op: str) -> tuple[int, ...]:
    if op == "grid_anchors":
        return (inputs["out_rows"], 4)
    if op == "decode_boxes":
        return tuple(inputs["rel_codes"].shape)
    n, h, w, _ = inputs["pred"].shape
    return (n, h, w, inputs["anchors"].shape[0], 5)


@impl("write-floor", "grid_anchors", "decode_boxes", "yolo_decode")
def _floor_prepare(inputs: dict, ctx: Context, op: str) -> Prepared:
    shape = _out_shape(inputs, op)
    return Prepared(lambda: torch.empty(shape).fill_(1), None)
