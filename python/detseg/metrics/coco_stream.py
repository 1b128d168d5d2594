"""Streaming COCO mAP over tensors (torchmetrics' ``MeanAveragePrecision`` interface), PASCAL VOC
AP (11-point and all-point), AP at one IoU threshold and precision-recall curves, all on the
pycocotools-exact evaluator of :mod:`detseg.metrics.coco`."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .. import _backend
from .coco import COCOEvalResult, COCOParams, _op_args, coco_evaluate, load_coco_arrays, summarize

__all__ = ["MeanAveragePrecision", "voc_ap", "average_precision_at", "pr_curve", "plot_pr_curves"]

_CPU = torch.device("cpu")
_FORMATS = ("xyxy", "xywh", "cxcywh")


def _to_xywh(boxes: torch.Tensor, fmt: str) -> np.ndarray:
    b = torch.as_tensor(boxes).detach().to("cpu", torch.float64).reshape(-1, 4)
    if fmt == "xyxy":
        b = torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], 1)
    elif fmt == "cxcywh":
        b = torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, 2:]], 1)
    return b.numpy()


class MeanAveragePrecision:
    """Accumulates per-image predictions and targets, evaluates with pycocotools' protocol.

    ``update(preds, target)``: lists (one entry per image) of dicts. preds: ``boxes Tensor[N, 4]``
    (``box_format``), ``scores Tensor[N]``, ``labels Tensor[N]``, and for ``iou_type="segm"``
    ``masks`` (bool ``Tensor[N, H, W]`` or a list of RLE dicts). target: ``boxes``, ``labels``,
    optional ``iscrowd``, ``area`` (default: box area, mask area for segm), ``masks``, ``image_id``.
    Images are numbered in update order unless ``image_id`` is given; with torch.distributed
    initialised, ``compute()`` gathers every rank's state (gloo works): a dataset split into
    contiguous blocks per rank, or carrying ``image_id``, gives the numbers of one process.
    """

    def __init__(self, box_format: str = "xyxy", iou_type: str = "bbox", iou_thresholds=None,
                 rec_thresholds=None, max_detection_thresholds=None, class_metrics: bool = False,
                 backend: str = "auto", sync: bool = True):
        if box_format not in _FORMATS:
            raise ValueError(f"detseg.MeanAveragePrecision: box_format must be one of {_FORMATS}, got {box_format!r}")
        if iou_type not in ("bbox", "segm"):
            raise ValueError(f"detseg.MeanAveragePrecision: iou_type must be 'bbox' or 'segm', got {iou_type!r}")
        self.box_format, self.iou_type, self.class_metrics, self.backend, self.sync = (
            box_format, iou_type, class_metrics, backend, sync)
        self.params = COCOParams.from_kwargs(iouThrs=iou_thresholds, recThrs=rec_thresholds,
                                             maxDets=max_detection_thresholds)
        self.reset()

    def reset(self) -> None:
        self._gt: list[dict[str, Any]] = []
        self._dt: list[dict[str, Any]] = []

    def _masks(self, m) -> dict:
        from ..ops import rle as R

        if isinstance(m, (list, tuple)):
            c, o, s = R.rles_to_runs(list(m))
        else:
            m = torch.as_tensor(m).detach().cpu()
            m = m if m.dtype in (torch.bool, torch.uint8) else m.bool()
            c, o = R.rle_encode_runs(m)
            s = torch.tensor([[m.shape[-2], m.shape[-1]]] * m.shape[0], dtype=torch.int64).reshape(-1, 2)
        return {"counts": c.numpy(), "offsets": o.numpy(), "sizes": s.numpy()}

    def update(self, preds: Sequence[dict], target: Sequence[dict]) -> None:
        if len(preds) != len(target):
            raise ValueError(f"detseg.MeanAveragePrecision.update: preds and target must hold one dict per image, "
                             f"got {len(preds)} and {len(target)}")
        for p, t in zip(preds, target):
            img = int(t["image_id"]) if "image_id" in t else None
            gb = _to_xywh(t["boxes"], self.box_format) if "boxes" in t else np.zeros((0, 4))
            gl = torch.as_tensor(t["labels"]).reshape(-1).cpu().numpy().astype(np.int64)
            g: dict[str, Any] = {"image": img, "boxes": gb, "labels": gl,
                                 "crowd": torch.as_tensor(t.get("iscrowd", torch.zeros(len(gl)))).reshape(-1)
                                 .cpu().numpy().astype(bool)}
            if self.iou_type == "segm":
                g["rle"] = self._masks(t["masks"])
            if "area" in t:
                g["area"] = torch.as_tensor(t["area"]).reshape(-1).cpu().numpy().astype(np.float64)
            elif self.iou_type == "segm":
                r = g["rle"]
                g["area"] = np.array([r["counts"][r["offsets"][i] + 1:r["offsets"][i + 1]:2].sum()
                                      for i in range(len(gl))], dtype=np.float64)
            else:
                g["area"] = gb[:, 2] * gb[:, 3]
            db = _to_xywh(p["boxes"], self.box_format) if "boxes" in p else None
            d: dict[str, Any] = {"image": img, "scores": torch.as_tensor(p["scores"]).reshape(-1).cpu().double().numpy(),
                                 "labels": torch.as_tensor(p["labels"]).reshape(-1).cpu().numpy().astype(np.int64)}
            if self.iou_type == "segm":
                d["rle"] = self._masks(p["masks"])
                d["boxes"] = db if db is not None else np.zeros((len(d["labels"]), 4))
            else:
                d["boxes"] = db
            self._gt.append(g)
            self._dt.append(d)

    def _gathered(self) -> tuple[list, list]:
        import torch.distributed as dist

        if not (self.sync and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self._gt, self._dt
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (self._gt, self._dt))
        # Ranks in order: contiguous blocks per rank keep the global image order.
        return [g for gp, _ in parts for g in gp], [d for _, dp in parts for d in dp]

    def _arrays(self, gts: list, dts: list) -> tuple[dict, np.ndarray, np.ndarray]:
        given = [g["image"] is not None for g in gts]
        if any(given) and not all(given):
            raise ValueError("detseg.MeanAveragePrecision: give image_id in every target or in none")
        # Without ids, images are numbered in (gathered) update order.
        for i, (g, d) in enumerate(zip(gts, dts)):
            if not given[i]:
                g, d = dict(g, image=i), dict(d, image=i)
                gts[i], dts[i] = g, d
        images = np.array([g["image"] for g in gts], dtype=np.int64)
        img_ids = np.unique(images)
        if len(img_ids) != len(images):
            raise ValueError("detseg.MeanAveragePrecision: an image_id was updated twice")
        labels = [g["labels"] for g in gts] + [d["labels"] for d in dts]
        cat_ids = np.unique(np.concatenate(labels)) if labels else np.zeros(0, np.int64)
        # In update order: image order is by id (sorted), within an image the update's order.
        gi = np.concatenate([np.full(len(g["labels"]), np.searchsorted(img_ids, g["image"])) for g in gts] or [[]])
        di = np.concatenate([np.full(len(d["labels"]), np.searchsorted(img_ids, d["image"])) for d in dts] or [[]])
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
        gl, dl = cat([g["labels"] for g in gts]).astype(np.int64), cat([d["labels"] for d in dts]).astype(np.int64)
        a: dict[str, Any] = dict(
            num_images=len(img_ids), num_categories=len(cat_ids), img_ids=img_ids, cat_ids=cat_ids,
            gt_image=gi.astype(np.int64), gt_category=np.searchsorted(cat_ids, gl).astype(np.int64),
            gt_boxes=cat([g["boxes"] for g in gts]).reshape(-1, 4), gt_area=cat([g["area"] for g in gts]),
            gt_crowd=cat([g["crowd"] for g in gts]).astype(bool), gt_ids=np.arange(1, len(gl) + 1, dtype=np.int64),
            dt_image=di.astype(np.int64), dt_category=np.searchsorted(cat_ids, dl).astype(np.int64),
            dt_scores=cat([d["scores"] for d in dts]).astype(np.float64))
        if self.iou_type == "segm":
            for key, src in (("gt_rle", gts), ("dt_rle", dts)):
                counts = [s["rle"]["counts"] for s in src]
                lens = [np.diff(s["rle"]["offsets"]) for s in src]
                off = np.concatenate([[0], np.cumsum(cat(lens))]).astype(np.int64)
                a[key] = (torch.from_numpy(cat(counts).astype(np.int64)), torch.from_numpy(off),
                          torch.from_numpy(cat([s["rle"]["sizes"] for s in src]).reshape(-1, 2).astype(np.int64)))
            c, o, _ = a["dt_rle"]
            a["dt_area"] = _backend.dispatch("rle_area", "auto", _CPU, c, o).double().numpy()
            a["dt_boxes"] = cat([d["boxes"] for d in dts]).reshape(-1, 4)
        else:
            a["dt_boxes"] = cat([d["boxes"] for d in dts]).reshape(-1, 4)
            a["dt_area"] = a["dt_boxes"][:, 2] * a["dt_boxes"][:, 3]
        return a, img_ids, cat_ids

    def evaluate(self) -> COCOEvalResult:
        gts, dts = self._gathered()
        a, _, cat_ids = self._arrays(list(gts), list(dts))
        p = self.params
        prec, rec, sc = (x.numpy() for x in _backend.dispatch("coco_evaluate", self.backend, _CPU, *_op_args(a, p)))
        return COCOEvalResult(summarize(prec, rec, p), prec, rec, sc, p, cat_ids, self.iou_type)

    def compute(self) -> dict[str, torch.Tensor]:
        """torchmetrics' keys: map, map_50, map_75, map_small/medium/large, mar_1/10/100 (the
        maxDets values), mar_small/medium/large, classes, and with ``class_metrics`` map_per_class,
        mar_100_per_class."""
        r = self.evaluate()
        s = torch.tensor(r.stats, dtype=torch.float32)
        md = r.params.maxDets
        out = {"map": s[0], "map_50": s[1], "map_75": s[2], "map_small": s[3], "map_medium": s[4],
               "map_large": s[5], f"mar_{md[0]}": s[6], f"mar_{md[min(1, len(md) - 1)]}": s[7],
               f"mar_{md[min(2, len(md) - 1)]}": s[8], "mar_small": s[9], "mar_medium": s[10], "mar_large": s[11],
               "classes": torch.as_tensor(r.cat_ids, dtype=torch.int32)}
        if self.class_metrics:
            out["map_per_class"] = torch.tensor(list(r.per_class_ap().values()), dtype=torch.float32)
            rc = r.recall[:, :, 0, -1]
            out[f"mar_{md[-1]}_per_class"] = torch.tensor(
                [float(np.mean(c[c > -1])) if (c > -1).any() else -1.0 for c in rc.T], dtype=torch.float32)
        return out


def pr_curve(result: COCOEvalResult, iou_threshold: float = 0.5, area: str = "all", max_dets: int | None = None,
             cat_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(recall thresholds ``[R]``, precision ``[R]``) of one category (or the mean over categories
    with ground truth) at one IoU threshold: the interpolated curve pycocotools samples."""
    p = result.params
    t = int(np.argmin(np.abs(p.iouThrs - iou_threshold)))
    a = p.areaRngLbl.index(area)
    m = p.maxDets.index(max_dets) if max_dets is not None else len(p.maxDets) - 1
    prec = result.precision[t, :, :, a, m]
    if cat_id is not None:
        return p.recThrs.copy(), prec[:, list(result.cat_ids).index(cat_id)].copy()
    valid = (prec > -1).all(0)
    return p.recThrs.copy(), (prec[:, valid].mean(1) if valid.any() else np.full(len(p.recThrs), -1.0))


def plot_pr_curves(result: COCOEvalResult, iou_thresholds=(0.5, 0.75), ax=None, **kw):
    """Plots :func:`pr_curve` for each IoU threshold (matplotlib, imported here); returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    for t in iou_thresholds:
        r, pr = pr_curve(result, t, **kw)
        ax.plot(r, pr, label=f"IoU={t:.2f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend()
    return ax


def average_precision_at(gt, results, iou_threshold: float = 0.5, iou_type: str = "bbox", **params) -> float:
    """COCO AP (101-point) at a single IoU threshold, all areas, the largest maxDets."""
    r = coco_evaluate(gt, results, iou_type, iouThrs=[iou_threshold], **params)
    s = r.precision[0, :, :, 0, -1]
    return float(np.mean(s[s > -1])) if (s > -1).any() else -1.0


def voc_ap(gt, results, iou_threshold: float = 0.5, iou_type: str = "bbox", use_07_metric: bool = False,
           **params) -> dict:
    """PASCAL VOC AP per category (and their mean, ``"mAP"``) on COCO's matching at one IoU
    threshold. ``use_07_metric``: 11-point (max precision at recall >= 0, 0.1, ..., 1), else
    all-point (area under the precision envelope, VOC2010+). Exact: the curve is sampled at
    every attainable recall j / n_gt of each category, where the envelope steps."""
    p = COCOParams.from_kwargs(iouThrs=[iou_threshold], areaRng=[[0, 1e5 ** 2]], areaRngLbl=["all"], **params)
    p.maxDets = [p.maxDets[-1]]
    a = load_coco_arrays(gt, results, iou_type, p)
    keep = ~a["gt_crowd"]
    npig = np.bincount(a["gt_category"][keep], minlength=a["num_categories"]) if a["num_categories"] else []
    if use_07_metric:
        p.recThrs = np.linspace(0, 1, 11)
    else:
        grid = {j / n for n in set(int(x) for x in npig if x > 0) for j in range(1, n + 1)}
        p.recThrs = np.array(sorted(grid), dtype=np.float64)
    prec, _, _ = (x.numpy() for x in _backend.dispatch("coco_evaluate", "auto", _CPU, *_op_args(a, p)))
    out = {}
    for k, cid in enumerate(a["cat_ids"].tolist()):
        q = prec[0, :, k, 0, 0]
        if npig[k] == 0 or (q < 0).all():
            out[cid] = -1.0
            continue
        if use_07_metric:
            out[cid] = float(np.sum(q) / 11.0)
        else:
            n = int(npig[k])
            idx = np.searchsorted(p.recThrs, [j / n for j in range(1, n + 1)])
            out[cid] = float(np.sum(q[idx]) / n)
    vals = [v for v in out.values() if v >= 0]
    out["mAP"] = float(np.mean(vals)) if vals else -1.0
    return out
