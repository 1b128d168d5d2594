"""Benchmark suite of the mask family: the pixel confusion matrix of label maps, dense mask IoU
and mask pasting. Peers: torch.bincount, torchmetrics, hotcoco, pycocotools; a "read-once"
floor (a plain sum of the same label maps: the cost of reading the inputs once)."""

from __future__ import annotations

import numpy as np
import torch

from ..providers import PROVIDERS, Context, Prepared, Provider, _as_tensor, _version, detseg_op, impl, register
from ..workloads import Workload, register as register_workload

# ------------------------------------------------------------------ inputs


def label_maps(rng: np.random.Generator, batch: int, size: int, classes: int, dtype: torch.dtype):
    """(pred, target) ``Tensor[batch, size, size]``: target = regions of 16 x 16 px cells with
    random classes (a segmentation's runs of one label), pred = target with 10% of the pixels
    replaced by random classes (a model's errors)."""
    cells = rng.integers(0, classes, size=(batch, size // 16, size // 16))
    target = np.repeat(np.repeat(cells, 16, axis=1), 16, axis=2)
    noise = rng.uniform(size=target.shape) < 0.1
    pred = np.where(noise, rng.integers(0, classes, size=target.shape), target)
    return torch.from_numpy(pred).to(dtype).contiguous(), torch.from_numpy(target).to(dtype).contiguous()


def instance_masks(rng: np.random.Generator, n_gt: int, per_gt: int, extra: int, size: int):
    """(predicted ``Tensor[n_gt * per_gt + extra, size, size]``, ground truth ``Tensor[n_gt, size, size]``)
    bool masks: ground truths are ellipses of 10..150 px radii; predictions are jittered copies
    of them (centre and radii moved by up to 15%) plus `extra` unrelated ones."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    def ellipses(centre, radii):
        out = np.empty((len(centre), size, size), dtype=bool)
        for i, ((cy, cx), (ry, rx)) in enumerate(zip(centre, radii)):
            out[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        return out

    radii = np.exp(rng.uniform(np.log(10.0), np.log(150.0), size=(n_gt, 2)))
    centre = rng.uniform(0, size, size=(n_gt, 2))
    gt = ellipses(centre, radii)
    owner = np.repeat(np.arange(n_gt), per_gt)
    jc = centre[owner] + rng.uniform(-0.15, 0.15, size=(len(owner), 2)) * radii[owner]
    jr = radii[owner] * rng.uniform(0.85, 1.15, size=(len(owner), 2))
    ec = rng.uniform(0, size, size=(extra, 2))
    er = np.exp(rng.uniform(np.log(10.0), np.log(150.0), size=(extra, 2)))
    pred = ellipses(np.concatenate([jc, ec]), np.concatenate([jr, er]))
    return torch.from_numpy(pred), torch.from_numpy(gt)


def _confusion_inputs(classes: int, dtype: torch.dtype):
    def make(rng):
        pred, target = label_maps(rng, 8, 512, classes, dtype)
        return {"pred": pred, "target": target, "num_classes": classes}
    return make


def _mask_iou_inputs(rng):
    pred, gt = instance_masks(rng, 50, 1, 50, 512)
    return {"masks1": pred, "masks2": gt}


def _paste_inputs(rng):
    from ..workloads import detector_boxes

    boxes = detector_boxes(rng, 100)[0] * torch.tensor([1.088, 0.8, 1.088, 0.8])
    logits = torch.from_numpy(rng.standard_normal((100, 7, 7)).astype(np.float32))
    masks = torch.nn.functional.interpolate(logits[:, None], size=(28, 28), mode="bilinear").sigmoid()
    return {"masks": masks.contiguous(), "boxes": boxes, "img_shape": (800, 1088)}


for _c in (21, 150):
    for _dt in (torch.int64, torch.uint8):
        _name = str(_dt).replace("torch.", "")
        register_workload(Workload(
            f"confusion_matrix/8x512x512/classes={_c}/{_name}", "confusion_matrix", _confusion_inputs(_c, _dt),
            {"shape": "8x512x512", "classes": _c, "dtype": _name},
            modes=("quick", "full") if _c == 21 else ("full",),
            description=f"{_c}-class {_name} label maps (16 px regions, 10% noisy predictions)"))
register_workload(Workload(
    "mask_iou/100x50/512x512", "mask_iou", _mask_iou_inputs, {"pred": 100, "gt": 50, "size": 512},
    description="100 predicted x 50 ground-truth bool masks (ellipses, 50 jittered copies + 50 others)"))
register_workload(Workload(
    "paste_masks_in_image/100x28x28/800x1088", "paste_masks_in_image", _paste_inputs,
    {"masks": "100x1x28x28", "image": "800x1088"},
    description="Mask R-CNN post-processing: 100 float 28x28 masks into an 800x1088 image (torchvision)"))

# ------------------------------------------------------------------ detseg


detseg_op("confusion_matrix", ("pred", "target", "num_classes"))
detseg_op("mask_iou", ("masks1", "masks2"))
# Pasting agrees with the reference to float32 rounding (different evaluation order).
detseg_op("paste_masks_in_image", ("masks", "boxes", "img_shape"))

# ------------------------------------------------------------------ peers


def _register_once(p: Provider) -> None:
    # Another family's suite may register the same peer library (pycocotools, hotcoco).
    if p.name not in PROVIDERS:
        register(p)


_register_once(Provider(
    "hotcoco", "peer", lambda: _version("hotcoco"),
    "hotcoco (Rust): metrics.pixel_confusion(target, pred, C) on numpy views of the tensors (its rows are "
    "ground truth, as detseg's); mask IoU = mask.encode of the (H, W, N) views + mask.iou, "
    "encoding included"))
_register_once(Provider(
    "pycocotools", "peer", lambda: _version("pycocotools"),
    "pycocotools.mask: IoU = encode (of the Fortran-order uint8 copy it requires, copy included) + iou"))
_register_once(Provider(
    "torchmetrics", "peer", lambda: _version("torchmetrics"),
    "torchmetrics.functional.classification.multiclass_confusion_matrix(pred, target, C) with its default "
    "argument validation"))
register(Provider(
    "read-once", "floor", lambda: torch.__version__,
    "the floor of the confusion matrix: pred.sum() + target.sum() (torch), reading each input once"))


@impl("torch", "confusion_matrix")
def _torch_confusion(inputs: dict, ctx: Context, op: str) -> Prepared:
    p, t, c = inputs["pred"], inputs["target"], int(inputs["num_classes"])

    def run():
        return torch.bincount(t.reshape(-1).long() * c + p.reshape(-1).long(), minlength=c * c).reshape(c, c)

    return Prepared(run, _as_tensor)


@impl("read-once", "confusion_matrix")
def _read_once(inputs: dict, ctx: Context, op: str) -> Prepared:
    p, t = inputs["pred"], inputs["target"]
    return Prepared(lambda: (p.sum(), t.sum()), None)


@impl("torchmetrics", "confusion_matrix")
def _torchmetrics_confusion(inputs: dict, ctx: Context, op: str) -> Prepared:
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    p, t, c = inputs["pred"], inputs["target"], int(inputs["num_classes"])
    return Prepared(lambda: multiclass_confusion_matrix(p, t, c), _as_tensor)


@impl("hotcoco", "confusion_matrix")
def _hotcoco_confusion(inputs: dict, ctx: Context, op: str) -> Prepared:
    from hotcoco import metrics

    p, t, c = inputs["pred"].numpy(), inputs["target"].numpy(), int(inputs["num_classes"])
    return Prepared(lambda: metrics.pixel_confusion(t, p, c),
                    lambda out: torch.from_numpy(np.asarray(out).astype(np.int64)))


@impl("hotcoco", "mask_iou")
def _hotcoco_mask_iou(inputs: dict, ctx: Context, op: str) -> Prepared:
    from hotcoco import mask

    m1, m2 = inputs["masks1"], inputs["masks2"]
    crowd = [0] * m2.shape[0]

    def run():
        dt = mask.encode(m1.numpy().transpose(1, 2, 0))
        gt = mask.encode(m2.numpy().transpose(1, 2, 0))
        return mask.iou(dt, gt, crowd)

    return Prepared(run, lambda out: torch.from_numpy(np.asarray(out, dtype=np.float64)))


@impl("pycocotools", "mask_iou")
def _pycocotools_mask_iou(inputs: dict, ctx: Context, op: str) -> Prepared:
    from pycocotools import mask

    m1, m2 = inputs["masks1"], inputs["masks2"]
    crowd = [0] * m2.shape[0]

    def run():
        dt = mask.encode(np.asfortranarray(m1.numpy().transpose(1, 2, 0).astype(np.uint8)))
        gt = mask.encode(np.asfortranarray(m2.numpy().transpose(1, 2, 0).astype(np.uint8)))
        return mask.iou(dt, gt, crowd)

    return Prepared(run, lambda out: torch.from_numpy(np.asarray(out, dtype=np.float64)))
