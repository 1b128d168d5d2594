"""Canonical seeded benchmark workloads, shared by `detseg bench` and benchmarks/bench_*.py.

A workload is one call of one op on fixed inputs. Inputs are generated once, from a seed
derived from the workload's name, and handed to every provider in the same process, so all
providers see bit-identical data. Later op families register more workloads with
``register(Workload(...))``; providers register implementations per op (providers.py).
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Callable

import numpy as np
import torch

IMAGE_SIZE = 1000.0


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark case. ``make(rng)`` returns the inputs as a dict of CPU tensors / scalars."""

    name: str                      # unique, "/"-separated: "<op>/<size>/<params>"
    op: str                        # key into the provider implementations (providers.IMPLS)
    make: Callable[[np.random.Generator], dict[str, Any]]
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    modes: tuple[str, ...] = ("quick", "full")   # the run modes that include this workload
    description: str = ""

    @property
    def seed(self) -> int:
        # Stable across processes and Python versions (unlike hash()).
        return zlib.crc32(self.name.encode())

    def inputs(self) -> dict[str, Any]:
        return self.make(np.random.default_rng(self.seed))


REGISTRY: dict[str, Workload] = {}


def register_unique(table: dict, what: str, item):
    """Adds `item` to `table` under its name; a name registered twice is an error."""
    if item.name in table:
        raise ValueError(f"detseg bench: {what} {item.name!r} is registered twice")
    table[item.name] = item
    return item


def register(w: Workload) -> Workload:
    return register_unique(REGISTRY, "workload", w)


def select(mode: str = "full", filters: list[str] | None = None) -> list[Workload]:
    """Workloads of `mode` ("quick" or "full") whose name contains any of `filters` (a filter
    starting with ^ must match the start of the name)."""
    def match(name: str, f: str) -> bool:
        return name.startswith(f[1:]) if f.startswith("^") else f in name

    out = [w for w in REGISTRY.values() if mode in w.modes]
    if filters:
        out = [w for w in out if any(match(w.name, f) for f in filters)]
    return out


_cache: dict[str, dict[str, Any]] = {}


def inputs_of(w: Workload) -> dict[str, Any]:
    """The workload's inputs, generated once per process (identical for every provider)."""
    if w.name not in _cache:
        _cache[w.name] = w.inputs()
    return _cache[w.name]


def clear_cache() -> None:
    _cache.clear()


# ------------------------------------------------------------------ generators

def detector_boxes(rng: np.random.Generator, n: int, num_objects: int = 50, num_classes: int = 1,
                   background: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a detector hands to NMS: `n` xyxy boxes ``Tensor[n, 4]`` (float32) in a 1000x1000
    image, clustered around `num_objects` objects of 20..300 px, scores ``Tensor[n]`` and class
    ids ``Tensor[n]`` (int64).

    Each copy of an object is jittered by a noise level r in [0, 1): coordinates move by
    ~0.15 * r * the object's size and the score falls as exp(-3 r), so the best-scoring copies
    are the tightest, as in a real detector. A fraction `background` are scattered false
    positives with low scores. Copies keep their object's class 85% of the time.
    Boxes are clipped to the image and at least 1 px wide (every peer accepts them as given).
    """
    side = np.exp(rng.uniform(np.log(20.0), np.log(300.0), size=(num_objects, 2)))
    centre = rng.uniform(0.0, IMAGE_SIZE, size=(num_objects, 2))
    objects = np.concatenate([centre - side / 2, centre + side / 2], axis=1)
    confidence = rng.uniform(0.5, 1.0, size=num_objects)
    obj_class = rng.integers(0, num_classes, size=num_objects)

    n_bg = int(round(n * background))
    n_fg = n - n_bg
    owner = rng.integers(0, num_objects, size=n_fg)
    r = rng.uniform(0.0, 1.0, size=n_fg)
    size = np.concatenate([side[owner], side[owner]], axis=1)
    fg = objects[owner] + rng.normal(0.0, 1.0, size=(n_fg, 4)) * 0.15 * r[:, None] * size
    fg_score = confidence[owner] * np.exp(-3.0 * r) * rng.uniform(0.9, 1.0, size=n_fg)
    fg_class = np.where(rng.uniform(size=n_fg) < 0.85, obj_class[owner], rng.integers(0, num_classes, size=n_fg))

    bg_side = np.exp(rng.uniform(np.log(20.0), np.log(300.0), size=(n_bg, 2)))
    bg_centre = rng.uniform(0.0, IMAGE_SIZE, size=(n_bg, 2))
    bg = np.concatenate([bg_centre - bg_side / 2, bg_centre + bg_side / 2], axis=1)
    bg_score = rng.uniform(0.01, 0.2, size=n_bg)
    bg_class = rng.integers(0, num_classes, size=n_bg)

    boxes = np.concatenate([fg, bg])
    scores = np.concatenate([fg_score, bg_score])
    classes = np.concatenate([fg_class, bg_class])
    perm = rng.permutation(n)  # detectors emit in anchor order, not grouped by object
    boxes, scores, classes = boxes[perm], scores[perm], classes[perm]

    x1 = np.minimum(boxes[:, 0], boxes[:, 2]).clip(0.0, IMAGE_SIZE - 1.0)
    y1 = np.minimum(boxes[:, 1], boxes[:, 3]).clip(0.0, IMAGE_SIZE - 1.0)
    x2 = np.maximum(np.maximum(boxes[:, 0], boxes[:, 2]).clip(0.0, IMAGE_SIZE), x1 + 1.0)
    y2 = np.maximum(np.maximum(boxes[:, 1], boxes[:, 3]).clip(0.0, IMAGE_SIZE), y1 + 1.0)
    xyxy = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
    return (torch.from_numpy(xyxy), torch.from_numpy(scores.astype(np.float32)),
            torch.from_numpy(classes.astype(np.int64)))


def anchor_boxes(rng: np.random.Generator, n: int) -> torch.Tensor:
    """`n` anchor-like xyxy boxes ``Tensor[n, 4]``: random centres in the image, sides from the
    usual pyramid of sizes 32..512 and aspect ratios 1:2, 1:1, 2:1 (not clipped, as anchors)."""
    centre = rng.uniform(0.0, IMAGE_SIZE, size=(n, 2))
    size = rng.choice([32.0, 64.0, 128.0, 256.0, 512.0], size=n)
    ratio = rng.choice([0.5, 1.0, 2.0], size=n)
    w = size * np.sqrt(ratio)
    h = size / np.sqrt(ratio)
    xyxy = np.stack([centre[:, 0] - w / 2, centre[:, 1] - h / 2, centre[:, 0] + w / 2, centre[:, 1] + h / 2], axis=1)
    return torch.from_numpy(xyxy.astype(np.float32))


# ------------------------------------------------------------------ the box family

def _nms_inputs(n: int, iou: float):
    def make(rng):
        boxes, scores, _ = detector_boxes(rng, n)
        return {"boxes": boxes, "scores": scores, "iou_threshold": iou}
    return make


def _batched_inputs(n: int, classes: int, iou: float):
    def make(rng):
        boxes, scores, idxs = detector_boxes(rng, n, num_objects=50, num_classes=classes)
        return {"boxes": boxes, "scores": scores, "idxs": idxs, "num_classes": classes, "iou_threshold": iou}
    return make


def _matrix_inputs(n: int, m: int, anchors: bool):
    def make(rng):
        if anchors:
            boxes1 = anchor_boxes(rng, n)
        else:
            boxes1 = detector_boxes(rng, n)[0]
        boxes2 = detector_boxes(rng, m, background=0.0 if anchors else 0.1)[0]
        return {"boxes1": boxes1, "boxes2": boxes2}
    return make


for _n in (1000, 5000, 20000):
    for _iou in (0.5, 0.7):
        register(Workload(
            f"nms/n={_n}/iou={_iou}", "nms", _nms_inputs(_n, _iou), {"n": _n, "iou_threshold": _iou},
            modes=("quick", "full") if _iou == 0.5 else ("full",),
            description=f"{_n} clustered detector boxes (~50 objects), IoU > {_iou} suppresses"))

register(Workload(
    "batched_nms/n=10000/classes=80/iou=0.5", "batched_nms", _batched_inputs(10000, 80, 0.5),
    {"n": 10000, "classes": 80, "iou_threshold": 0.5},
    description="10k clustered boxes over 80 classes, class-aware"))

register(Workload("box_iou/1000x1000", "box_iou", _matrix_inputs(1000, 1000, False), {"n": 1000, "m": 1000}))
register(Workload("box_iou/5000x5000", "box_iou", _matrix_inputs(5000, 5000, False), {"n": 5000, "m": 5000}))
register(Workload("box_iou/120000x20", "box_iou", _matrix_inputs(120000, 20, True), {"n": 120000, "m": 20},
                  description="anchors vs ground truth"))
for _op in ("generalized_box_iou", "distance_box_iou", "complete_box_iou"):
    register(Workload(f"{_op}/5000x5000", _op, _matrix_inputs(5000, 5000, False), {"n": 5000, "m": 5000},
                      modes=("full",)))
    register(Workload(f"{_op}/1000x1000", _op, _matrix_inputs(1000, 1000, False), {"n": 1000, "m": 1000},
                      modes=("quick",)))

# The floor: the cheapest way to produce a fresh 5000x5000 float32 tensor (page faults of a
# new 100 MB allocation plus one write pass). box_iou 5000x5000 aims at >= half its speed.
register(Workload("floor/fill/5000x5000", "fill", lambda rng: {"shape": (5000, 5000)}, {"n": 5000, "m": 5000},
                  description="torch.empty(5000, 5000).fill_(1)"))


# ------------------------------------------------------------------ the RoI family

def detector_rois(rng: np.random.Generator, k: int, height: float, width: float, batch: int) -> torch.Tensor:
    """What a two-stage detector's head receives: `k` RoIs ``Tensor[k, 5]`` (batch index, x1, y1,
    x2, y2; float32) in a `height` x `width` image, sides log-uniform in 16..512 px, centres
    uniform, clipped to the image, batch index uniform in [0, batch)."""
    side = np.exp(rng.uniform(np.log(16.0), np.log(512.0), size=(k, 2)))
    centre = rng.uniform(0.0, 1.0, size=(k, 2)) * np.array([width, height])
    x1, y1 = (centre - side / 2).clip(0.0, None).T
    x2 = np.minimum(centre[:, 0] + side[:, 0] / 2, width)
    y2 = np.minimum(centre[:, 1] + side[:, 1] / 2, height)
    idx = rng.integers(0, batch, size=k).astype(np.float64)
    return torch.from_numpy(np.stack([idx, x1, y1, x2, y2], axis=1).astype(np.float32))


def _roi_inputs(features: tuple[int, int, int, int], k: int, scale: float, out: int, sampling: int | None):
    def make(rng):
        n, c, h, w = features
        feats = torch.from_numpy(rng.standard_normal(features, dtype=np.float32))
        rois = detector_rois(rng, k, h / scale, w / scale, n)
        d = {"input": feats, "boxes": rois, "output_size": (out, out), "spatial_scale": scale}
        if sampling is not None:  # roi_align only; aligned=True (the half-pixel convention of Detectron2)
            d.update(sampling_ratio=sampling, aligned=True)
        return d
    return make


# Box head of a Mask R-CNN FPN at 800x1088 (P2 level, stride 4) and its mask head (stride 8).
_BOX_HEAD = ((2, 256, 200, 272), 1000, 0.25, 7)
_MASK_HEAD = ((2, 256, 100, 136), 500, 0.125, 14)
for _s in (2, -1):
    register(Workload(
        f"roi_align/box_head/sampling={_s}", "roi_align", _roi_inputs(*_BOX_HEAD, _s),
        {"features": "2x256x200x272", "rois": 1000, "output": 7, "sampling_ratio": _s, "aligned": True},
        modes=("quick", "full") if _s == 2 else ("full",),
        description="1000 RoIs of 16..512 px, spatial_scale 1/4, 7x7" + (", adaptive sampling" if _s < 0 else "")))
register(Workload(
    "roi_align/mask_head/sampling=2", "roi_align", _roi_inputs(*_MASK_HEAD, 2),
    {"features": "2x256x100x136", "rois": 500, "output": 14, "sampling_ratio": 2, "aligned": True},
    modes=("full",), description="500 RoIs of 16..512 px, spatial_scale 1/8, 14x14"))
register(Workload(
    "roi_pool/box_head", "roi_pool", _roi_inputs(*_BOX_HEAD, None),
    {"features": "2x256x200x272", "rois": 1000, "output": 7},
    description="1000 RoIs of 16..512 px, spatial_scale 1/4, 7x7 max"))
