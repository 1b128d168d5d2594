"""COCO detection evaluation with exactly pycocotools' protocol (``COCOeval`` evaluate +
accumulate + summarize), for ``bbox`` and ``segm``.

``coco_evaluate(gt, results, iou_type)`` takes the ground truth as a COCO dict or a JSON path
and the results as a list of detection dicts (or a JSON path), and returns a
:class:`COCOEvalResult` whose ``precision [T, R, K, A, M]``, ``recall [T, K, A, M]``,
``scores [T, R, K, A, M]`` and ``stats`` (the 12 summary numbers) equal pycocotools' bit for
bit. The matching and accumulation run in C++ (``torch.ops.detseg.coco_evaluate``, math in
csrc/include/detseg/coco.h); ``backend="reference"`` runs the pure-Python twin
(``detseg.reference.coco``). The lists of dicts are read into arrays by one C++ pass
(``detseg._C.coco_columns`` / ``coco_rle_runs``, csrc/coco_ingest.cpp) when their values are
plain ints / floats / lists / RLE strings, and by the Python parser below otherwise; both give
the same arrays, and the Python parser gives every error message (``load_coco_arrays(...,
fast=False)`` runs it alone).

pycocotools behaviour kept on purpose (documented, tested):

- ``ignore`` of a GT annotation is replaced by its ``iscrowd`` (a missing ``iscrowd`` reads as 0;
  pycocotools raises a KeyError there). Area ranges use the annotation's ``area`` field.
- Results: image ids unknown to the ground truth raise ValueError (pycocotools asserts);
  category ids unknown to it are dropped silently. When the first result has a non-empty
  ``bbox`` every result's area is its box area ``w * h`` (even for ``segm``); otherwise the area
  and box come from the RLE. NaN scores rank after every other score (numpy's sort order).
- A match to a ground truth whose annotation ``id`` is 0 counts as no match (pycocotools tests
  ``dtMatches != 0``). Duplicate GT annotation ids raise ValueError (pycocotools silently
  evaluates the last annotation of that id in place of the others).
- The two known quirks of ``summarize`` (``pycocotools_quirks=True``, the default): ``stats[0]``
  averages over ``maxDets == 100`` literally, whatever ``maxDets`` holds (cocodataset/cocoapi#558),
  and ``stats[1]`` / ``stats[2]`` look up IoU 0.5 / 0.75 by float equality in ``iouThrs``
  (#409). With ``pycocotools_quirks=False`` stats[0] uses ``maxDets[-1]`` and the lookup is
  ``np.isclose``. With fewer than three ``maxDets`` pycocotools' summarize fails; here the
  last one stands in for the missing ones.
- Segmentation accepts compressed RLE (bytes or str counts), uncompressed RLE (list counts)
  and, for ground truth, polygons (rasterised as pycocotools' ``frPyObjects`` + ``merge``).
"""

from __future__ import annotations

import gc
import json
import os
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any, Sequence

import numpy as np
import torch

from .. import _C, _backend

__all__ = ["COCOParams", "COCOEvalResult", "coco_evaluate", "load_coco_arrays", "summarize"]

_CPU = torch.device("cpu")


@dataclass
class COCOParams:
    """pycocotools ``Params`` for bbox / segm (same names, same defaults)."""

    iouThrs: np.ndarray = field(default_factory=lambda: np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1,
                                                                     endpoint=True))
    recThrs: np.ndarray = field(default_factory=lambda: np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1,
                                                                     endpoint=True))
    maxDets: list = field(default_factory=lambda: [1, 10, 100])
    areaRng: list = field(default_factory=lambda: [[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2],
                                                   [96 ** 2, 1e5 ** 2]])
    areaRngLbl: list = field(default_factory=lambda: ["all", "small", "medium", "large"])
    useCats: int = 1
    imgIds: list | None = None
    catIds: list | None = None

    _ALIASES = {"iou_thrs": "iouThrs", "rec_thrs": "recThrs", "max_dets": "maxDets", "area_rng": "areaRng",
                "area_rng_lbl": "areaRngLbl", "use_cats": "useCats", "img_ids": "imgIds", "cat_ids": "catIds"}

    @classmethod
    def from_kwargs(cls, **kw) -> "COCOParams":
        p = cls()
        for k, v in kw.items():
            name = cls._ALIASES.get(k, k)
            if name not in cls.__dataclass_fields__ or name.startswith("_"):
                raise TypeError(f"detseg.coco_evaluate: unknown parameter {k!r} (known: "
                                f"{', '.join(n for n in cls.__dataclass_fields__ if not n.startswith('_'))})")
            if v is not None:
                setattr(p, name, v)
        p.iouThrs = np.asarray(p.iouThrs, dtype=np.float64).reshape(-1)
        p.recThrs = np.asarray(p.recThrs, dtype=np.float64).reshape(-1)
        p.maxDets = sorted(int(m) for m in p.maxDets)  # pycocotools sorts them in evaluate()
        p.areaRng = [[float(a), float(b)] for a, b in p.areaRng]
        if len(p.areaRngLbl) != len(p.areaRng):
            p.areaRngLbl = list(p.areaRngLbl) + [f"range{i}" for i in range(len(p.areaRngLbl), len(p.areaRng))]
        if not p.maxDets or p.maxDets[0] < 0:
            raise ValueError(f"detseg.coco_evaluate: maxDets must be a non-empty list of counts >= 0, got {p.maxDets}")
        return p


def _fail(msg: str, exc=ValueError):
    raise exc(f"detseg.coco_evaluate: {msg}")


def _load_json(obj, what: str):
    if isinstance(obj, (str, os.PathLike)):
        try:
            with open(obj) as f:
                return json.load(f)
        except json.JSONDecodeError as e:
            _fail(f"{what} file {os.fspath(obj)!r} is not valid JSON: {e}")
    return obj


def _ids_to_index(ids: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ids in the sorted table, and whether each id is there."""
    if len(table) == 0:
        return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
    lo, hi = int(table[0]), int(table[-1])
    if hi - lo <= 4 * len(table) + (1 << 16):
        # Dense ids (the usual case): a lookup table beats a binary search per id 10x.
        lut = np.full(hi - lo + 3, -1, dtype=np.int64)
        lut[table - lo + 1] = np.arange(len(table))
        pos = ids - (lo - 1)
        np.clip(pos, 0, hi - lo + 2, out=pos)
        idx = lut.take(pos)
        ok = idx >= 0
        return np.maximum(idx, 0, out=idx), ok
    idx = np.clip(np.searchsorted(table, ids), 0, len(table) - 1)
    return idx.astype(np.int64), table[idx] == ids


def _column(anns: list, key: str, dtype, what: str) -> np.ndarray:
    try:
        return np.fromiter(map(itemgetter(key), anns), dtype, len(anns))
    except KeyError:
        _fail(f"every {what} needs a {key!r} field")
    except (TypeError, ValueError) as e:
        _fail(f"{what} field {key!r} must hold numbers: {e}")


def _boxes(anns: list, what: str) -> np.ndarray:
    try:
        bbs = list(map(itemgetter("bbox"), anns))
    except KeyError:
        _fail(f"every {what} needs a 'bbox' field for bbox evaluation")
    # Every box has 4 numbers iff none has fewer and they add up to 4n (two C-level passes).
    if bbs and (min(map(len, bbs)) < 4 or sum(map(len, bbs)) != 4 * len(bbs)):
        i = next(i for i, b in enumerate(bbs) if len(b) != 4)
        _fail(f"{what} {i}: bbox must be [x, y, w, h], got {bbs[i]!r}")
    return np.fromiter(chain.from_iterable(bbs), np.float64, 4 * len(bbs)).reshape(-1, 4)


def _fast_columns(items, spec: tuple, fast: bool):
    """Several fields of a list of dicts in one C++ pass (csrc/coco_ingest.cpp): a tuple of
    arrays by kind ('i' int64, 'f' float64, 'b' bbox float64 [n, 4], 'c' truth of an optional
    field), or None where the Python parser below must read the input (anything but plain
    ints / floats / lists; it also gives the errors). Same arrays as that parser."""
    if not fast or _C is None:
        return None
    return _C.coco_columns(items, tuple(k for k, _ in spec), "".join(c for _, c in spec))


class _Runs(tuple):
    """(counts, offsets, sizes) of a batch of RLEs, with ``area`` (float64 [N]) when the
    decoder had it for free, else None."""

    area = None


def _compressed_runs(anns: list, fast: bool = True):
    """Fast path: every segmentation a compressed RLE with str (JSON) or bytes counts -> runs,
    or None."""
    runs = _C.coco_rle_runs(anns) if fast and _C is not None else None
    if runs is not None:  # the same three arrays as below, read and decoded in C++
        out = _Runs(torch.from_numpy(x) for x in runs[:3])
        out.area = runs[3]
        return out
    try:
        segs = [a["segmentation"] for a in anns]
        cnts = [s["counts"] for s in segs]
        sizes = torch.tensor([s["size"] for s in segs], dtype=torch.int64).reshape(-1, 2)
        kinds = set(map(type, cnts))
        if kinds <= {str}:
            data = "".join(cnts).encode("ascii")
        elif kinds <= {bytes}:
            data = b"".join(cnts)
        else:
            return None
    except (KeyError, TypeError, ValueError, UnicodeEncodeError):
        return None
    lens = np.fromiter(map(len, cnts), np.int64, len(cnts))
    off = torch.from_numpy(np.concatenate([[0], np.cumsum(lens)]).astype(np.int64))
    chars = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)
    counts, coff = _backend.dispatch("rle_string_to_counts", "auto", _CPU, chars, off)
    return counts, coff, sizes


def _segm_runs(anns: list, imgs: dict, what: str, allow_polygons: bool, fast: bool = True):
    from ..ops import rle as R

    runs = _compressed_runs(anns, fast)
    if runs is not None:
        return runs
    rles = []
    for i, a in enumerate(anns):
        s = a.get("segmentation")
        if isinstance(s, list):
            if not allow_polygons:
                _fail(f"{what} {i}: results must give 'segmentation' as RLE (as pycocotools' loadRes)")
            img = imgs.get(a["image_id"])
            if img is None or "height" not in img or "width" not in img:
                _fail(f"{what} {i}: polygon segmentation needs the image's height and width")
            rles.append(R.rle_from_polygons(s, int(img["height"]), int(img["width"])))
        elif isinstance(s, dict) and "counts" in s and "size" in s:
            rles.append(s)
        else:
            _fail(f"{what} {i}: 'segmentation' must be an RLE dict or polygons for segm evaluation, got "
                  f"{type(s).__name__}")
    return R.rles_to_runs(rles)


def load_coco_arrays(gt, results, iou_type: str = "bbox", params: COCOParams | None = None, *,
                     fast: bool = True) -> dict[str, Any]:
    """Parses COCO ground truth and results into the flat arrays of ``coco_evaluate``'s op.
    ``fast=False``: the Python parser alone (the definition the C++ fast paths are tested on)."""
    # The cyclic collector would walk every result dict again and again while the columns are
    # allocated (measured: a third of the parse time on 500k detections); nothing here makes cycles.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _load_coco_arrays(gt, results, iou_type, params, fast)
    finally:
        if enabled:
            gc.enable()


def _load_coco_arrays(gt, results, iou_type, params, fast):
    if iou_type not in ("bbox", "segm"):
        _fail(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    p = params or COCOParams()
    gt = _load_json(gt, "ground truth")
    results = _load_json(results, "results")
    if not isinstance(gt, dict) or "images" not in gt or "categories" not in gt:
        _fail("gt must be a COCO dict (or JSON path) with 'images', 'categories' and 'annotations'")
    if isinstance(results, dict) and "annotations" in results:
        results = results["annotations"]
    if not isinstance(results, (list, tuple)):
        _fail(f"results must be a list of detection dicts (or a JSON path), got {type(results).__name__}")
    img_ids = np.unique(np.asarray([im["id"] for im in gt["images"]], dtype=np.int64))
    cat_ids = np.unique(np.asarray([c["id"] for c in gt["categories"]], dtype=np.int64))
    if p.imgIds is not None:
        img_ids = np.unique(np.asarray(p.imgIds, dtype=np.int64))
    if p.catIds is not None:
        cat_ids = np.unique(np.asarray(p.catIds, dtype=np.int64))
    anns = gt.get("annotations", [])
    # Every field of every annotation in one C++ pass where the input is plain (then no
    # field can fail below but the uniqueness of ids), else the Python parser field by field.
    fg = _fast_columns(anns, (("id", "i"), ("image_id", "i"), ("category_id", "i"), ("area", "f"),
                              ("iscrowd", "c")) + ((("bbox", "b"),) if iou_type == "bbox" else ()), fast)
    gids = fg[0] if fg else _column(anns, "id", np.int64, "gt annotation")
    if len(np.unique(gids)) != len(gids):
        _fail("gt annotation ids must be unique (pycocotools would evaluate one annotation in place of another)")
    gimg, gok = _ids_to_index(fg[1] if fg else _column(anns, "image_id", np.int64, "gt annotation"), img_ids)
    gcat, cok = _ids_to_index(fg[2] if fg else _column(anns, "category_id", np.int64, "gt annotation"), cat_ids)
    keep = np.nonzero(gok & cok)[0]
    all_kept = len(keep) == len(anns)
    anns_k = anns if all_kept else [anns[i] for i in keep]
    if fg:
        garea, gcrowd = (fg[3], fg[4]) if all_kept else (fg[3][keep], fg[4][keep])
    else:
        garea = _column(anns_k, "area", np.float64, "gt annotation")
        gcrowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in anns_k), bool, len(anns_k))

    results = list(results)
    first = results[0] if results else None
    want_box = type(first) is dict and type(first.get("bbox")) in (list, tuple) and len(first["bbox"]) > 0
    fr = _fast_columns(results, (("image_id", "i"), ("category_id", "i"), ("score", "f"))
                       + ((("bbox", "b"),) if want_box else ()), fast)
    all_img_ids = np.unique(np.asarray([im["id"] for im in gt["images"]], dtype=np.int64))
    rimg_raw = fr[0] if fr else _column(results, "image_id", np.int64, "result")
    ridx, known = _ids_to_index(rimg_raw, all_img_ids)
    if not known.all():
        bad = np.unique(rimg_raw[~known])[:5].tolist()
        _fail(f"results refer to image ids not in the ground truth (pycocotools: 'Results do not correspond to "
              f"current coco set'), e.g. {bad}")
    rimg, iok = _ids_to_index(rimg_raw, img_ids) if p.imgIds is not None else (ridx, known)
    rcat, rcok = _ids_to_index(fr[1] if fr else _column(results, "category_id", np.int64, "result"), cat_ids)
    rscore = fr[2] if fr else _column(results, "score", np.float64, "result")
    rkeep = np.nonzero(iok & rcok)[0]
    has_bbox = bool(results) and "bbox" in results[0] and len(results[0]["bbox"]) > 0
    r_all_kept = len(rkeep) == len(results)
    res_k = results if r_all_kept else [results[i] for i in rkeep]

    out: dict[str, Any] = dict(num_images=len(img_ids), num_categories=len(cat_ids), img_ids=img_ids,
                               cat_ids=cat_ids)
    gsel = (lambda x: x) if all_kept else (lambda x: x[keep])  # no gather of 500k rows when nothing is dropped
    rsel = (lambda x: x) if r_all_kept else (lambda x: x[rkeep])
    out.update(gt_image=gsel(gimg), gt_category=gsel(gcat), gt_area=garea, gt_crowd=gcrowd, gt_ids=gsel(gids),
               dt_image=rsel(rimg), dt_category=rsel(rcat), dt_scores=rsel(rscore))
    if iou_type == "segm":
        imgs = {im["id"]: im for im in gt["images"]}
        out["gt_rle"] = _segm_runs(anns_k, imgs, "gt annotation", True, fast)
        out["dt_rle"] = _segm_runs(res_k, imgs, "result", False, fast)
    if iou_type != "bbox":
        out["gt_boxes"] = np.zeros((len(anns_k), 4))
    else:
        out["gt_boxes"] = (fg[5] if all_kept else fg[5][keep]) if fg else _boxes(anns_k, "gt annotation")
    if has_bbox:
        if fr and want_box:
            dbox = fr[3] if r_all_kept else fr[3][rkeep]
        else:
            dbox = _boxes(res_k, "result")
        out["dt_area"] = dbox[:, 2] * dbox[:, 3]
    else:
        if not res_k or "segmentation" not in res_k[0]:
            dbox = np.zeros((len(res_k), 4))
            out["dt_area"] = np.zeros(len(res_k))
            if res_k:
                _fail("results need a 'bbox' or a 'segmentation'")
        else:
            from ..ops import rle as R

            runs = out.get("dt_rle") or _segm_runs(res_k, {}, "result", False, fast)
            c, o, s = runs
            area = getattr(runs, "area", None)
            out["dt_area"] = area if area is not None else R._backend.dispatch("rle_area", "auto", _CPU, c,
                                                                               o).double().numpy()
            # segm: the op takes the boxes of its mask IoU from the RLEs itself.
            dbox = (np.zeros((len(res_k), 4)) if iou_type == "segm" else
                    R._backend.dispatch("rle_to_bbox", "auto", _CPU, c, o, s).numpy())
    out["dt_boxes"] = dbox
    return out


def _op_args(a: dict, p: COCOParams) -> tuple:
    t = torch.from_numpy
    rle = a.get("gt_rle"), a.get("dt_rle")
    gc, go, gs = rle[0] if rle[0] is not None else (None, None, None)
    dc, do, ds = rle[1] if rle[1] is not None else (None, None, None)
    return (t(np.ascontiguousarray(a["gt_image"])), t(np.ascontiguousarray(a["gt_category"])),
            t(np.ascontiguousarray(a["gt_boxes"], dtype=np.float64)), t(np.ascontiguousarray(a["gt_area"])),
            t(np.ascontiguousarray(a["gt_crowd"])), t(np.ascontiguousarray(a["gt_ids"])),
            t(np.ascontiguousarray(a["dt_image"])), t(np.ascontiguousarray(a["dt_category"])),
            t(np.ascontiguousarray(a["dt_boxes"], dtype=np.float64)), t(np.ascontiguousarray(a["dt_area"])),
            t(np.ascontiguousarray(a["dt_scores"])), gc, go, gs, dc, do, ds,
            t(p.iouThrs.copy()), t(p.recThrs.copy()), list(p.maxDets),
            t(np.asarray(p.areaRng, dtype=np.float64).reshape(-1, 2)), int(a["num_images"]),
            int(a["num_categories"]), bool(p.useCats))


def summarize(precision: np.ndarray, recall: np.ndarray, p: COCOParams, pycocotools_quirks: bool = True) -> np.ndarray:
    """The 12 numbers of pycocotools' ``summarize`` (same numpy reductions, same order)."""
    md = list(p.maxDets)

    def maxdet(i):
        return md[min(i, len(md) - 1)]

    def one(ap, iou_thr=None, area="all", max_dets=100):
        aind = [i for i, lbl in enumerate(p.areaRngLbl) if lbl == area]
        mind = [i for i, m in enumerate(md) if m == max_dets]
        s = precision if ap == 1 else recall
        if iou_thr is not None:
            t = np.where(iou_thr == p.iouThrs)[0] if pycocotools_quirks else np.where(np.isclose(iou_thr, p.iouThrs))[0]
            s = s[t[0]:t[0] + 1] if len(t) == 1 else s[t]
        # One area and one maxDets (the usual case): a view in place of pycocotools' fancy-index
        # copy; the same elements in the same order, so the same mean.
        if len(aind) == 1 and len(mind) == 1:
            s = s[..., aind[0], mind[0]]
        else:
            s = s[:, :, :, aind, mind] if ap == 1 else s[:, :, aind, mind]
        kept = s[s > -1]
        return -1.0 if len(kept) == 0 else float(np.mean(kept))

    stats = np.zeros((12,))
    stats[0] = one(1) if pycocotools_quirks else one(1, max_dets=md[-1])
    stats[1] = one(1, iou_thr=.5, max_dets=maxdet(2))
    stats[2] = one(1, iou_thr=.75, max_dets=maxdet(2))
    stats[3] = one(1, area="small", max_dets=maxdet(2))
    stats[4] = one(1, area="medium", max_dets=maxdet(2))
    stats[5] = one(1, area="large", max_dets=maxdet(2))
    stats[6] = one(0, max_dets=maxdet(0))
    stats[7] = one(0, max_dets=maxdet(1))
    stats[8] = one(0, max_dets=maxdet(2))
    stats[9] = one(0, area="small", max_dets=maxdet(2))
    stats[10] = one(0, area="medium", max_dets=maxdet(2))
    stats[11] = one(0, area="large", max_dets=maxdet(2))
    return stats


_LINES = [("Average Precision", "(AP)", None, "all", 2, 0), ("Average Precision", "(AP)", .5, "all", 2, 1),
          ("Average Precision", "(AP)", .75, "all", 2, 2), ("Average Precision", "(AP)", None, "small", 2, 3),
          ("Average Precision", "(AP)", None, "medium", 2, 4), ("Average Precision", "(AP)", None, "large", 2, 5),
          ("Average Recall", "(AR)", None, "all", 0, 6), ("Average Recall", "(AR)", None, "all", 1, 7),
          ("Average Recall", "(AR)", None, "all", 2, 8), ("Average Recall", "(AR)", None, "small", 2, 9),
          ("Average Recall", "(AR)", None, "medium", 2, 10), ("Average Recall", "(AR)", None, "large", 2, 11)]


@dataclass
class COCOEvalResult:
    """precision ``[T, R, K, A, M]``, recall ``[T, K, A, M]``, scores ``[T, R, K, A, M]`` (float64,
    -1 where undefined), stats ``[12]``, the params and the category ids of axis K."""

    stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    params: COCOParams
    cat_ids: np.ndarray
    iou_type: str = "bbox"

    def per_class_ap(self, area: str = "all", max_dets: int | None = None) -> dict[int, float]:
        """AP over IoU thresholds and recall points per category id (-1: no ground truth)."""
        a = self.params.areaRngLbl.index(area)
        m = self.params.maxDets.index(max_dets) if max_dets is not None else len(self.params.maxDets) - 1
        out = {}
        for k, cid in enumerate(self.cat_ids.tolist() if self.params.useCats else [-1]):
            s = self.precision[:, :, k, a, m]
            out[cid] = float(np.mean(s[s > -1])) if (s > -1).any() else -1.0
        return out

    def summary(self) -> str:
        """The 12 lines pycocotools' ``summarize`` prints."""
        md = self.params.maxDets
        lines = []
        for title, kind, thr, area, mi, si in _LINES:
            iou = f"{self.params.iouThrs[0]:0.2f}:{self.params.iouThrs[-1]:0.2f}" if thr is None else f"{thr:0.2f}"
            mdet = 100 if si == 0 else md[min(mi, len(md) - 1)]
            lines.append(f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={mdet:>3d} ] = "
                         f"{self.stats[si]:0.3f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def coco_evaluate(gt, results, iou_type: str = "bbox", *, backend: str = "auto", pycocotools_quirks: bool = True,
                  **params) -> COCOEvalResult:
    """COCO mAP of ``results`` against ``gt`` (dicts / lists or JSON paths), pycocotools' protocol.

    ``params``: ``iouThrs``, ``recThrs``, ``maxDets``, ``areaRng``, ``areaRngLbl``, ``useCats``,
    ``imgIds``, ``catIds`` (or their snake_case names). ``backend``: "auto" / "cpp" (C++) or
    "reference" (pure Python). See the module docstring for the pycocotools behaviour kept.
    """
    p = COCOParams.from_kwargs(**params)
    arrays = load_coco_arrays(gt, results, iou_type, p)
    precision, recall, scores = _backend.dispatch("coco_evaluate", backend, _CPU, *_op_args(arrays, p))
    precision, recall, scores = precision.numpy(), recall.numpy(), scores.numpy()
    stats = summarize(precision, recall, p, pycocotools_quirks)
    return COCOEvalResult(stats, precision, recall, scores, p, arrays["cat_ids"], iou_type)
