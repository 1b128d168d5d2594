"""Benchmarks of COCO evaluation (issue 7) and RLE encoding (issue 6): detseg against
pycocotools, faster-coco-eval and hotcoco, from the same in-memory COCO dicts / masks.

Every provider's timed region goes from the in-memory ground-truth dict and results list to
the 12 summary numbers (index building, results loading, evaluate, accumulate, summarize).
pycocotools and faster-coco-eval mutate what they load (loadRes adds area, id and a polygon
per box; COCOeval adds ignore flags and, for segm, replaces GT segmentations by RLEs), so each
gets its own deep copies, made outside the timing, and loads a shallow copy of each result per
call (its loadRes is not idempotent on segm results; the copy costs < 1% of its time);
detseg and hotcoco read the shared dicts. The result of each provider is its 12 stats (checked identical across
providers when the suite was written; there is no detseg.reference oracle at this size: the
pure-Python protocol takes minutes).
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import torch

from ..providers import PROVIDERS, Context, Prepared, Provider, _version, impl, register
from ..workloads import Workload, register as register_workload

EVAL_OP = "coco_eval"
RLE_OP = "rle_encode"


def _bbox_workload(n_images: int, n_cats: int = 80, gt_per: int = 7, dt_per: int = 100, segm_size=None):
    """COCO-like: Poisson(gt_per) GT boxes per image (2% crowd), dt_per detections per image
    (half jittered GT copies, half random), scores with ties (3 decimals)."""
    def make(rng: np.random.Generator):
        h, w = segm_size or (480, 640)
        images = [{"id": i + 1, "height": h, "width": w} for i in range(n_images)]
        cats = [{"id": c + 1, "name": str(c)} for c in range(n_cats)]
        anns, res = [], []
        masks_for = None
        if segm_size:
            from ...ops import rle_encode

            def masks_for(boxes):
                m = torch.zeros(len(boxes), h, w, dtype=torch.bool)
                for i, (x, y, bw, bh) in enumerate(boxes):
                    m[i, int(y):int(y + bh) + 1, int(x):int(x + bw) + 1] = True
                return [dict(r, counts=r["counts"].decode()) for r in rle_encode(m)] if len(boxes) else []
        for i in range(n_images):
            g = int(rng.poisson(gt_per))
            xy = rng.uniform(0, [w - 20, h - 20], (g, 2))
            wh = np.minimum(rng.uniform(4, 200, (g, 2)), [w, h] - xy)
            cs = rng.integers(1, n_cats + 1, g)
            gboxes = [[float(v) for v in (*xy[j], *wh[j])] for j in range(g)]
            gm = masks_for(gboxes) if masks_for else None
            for j in range(g):
                a = {"id": len(anns) + 1, "image_id": i + 1, "category_id": int(cs[j]), "bbox": gboxes[j],
                     "iscrowd": int(rng.random() < 0.02)}
                if gm:
                    from ...ops import rle_area

                    a["segmentation"] = gm[j]
                    a["area"] = float(rle_area(gm[j])[0])
                else:
                    a["area"] = gboxes[j][2] * gboxes[j][3]
                anns.append(a)
            src = rng.integers(0, max(g, 1), dt_per)
            jit = rng.normal(0, 0.1, (dt_per, 4))
            sc = np.round(rng.random(dt_per), 3)
            rnd = rng.random(dt_per) < 0.5
            dboxes, dcats = [], []
            for j in range(dt_per):
                if g and not rnd[j]:
                    k = src[j]
                    b = [xy[k, 0] + jit[j, 0] * wh[k, 0], xy[k, 1] + jit[j, 1] * wh[k, 1],
                         wh[k, 0] * (1 + jit[j, 2]), wh[k, 1] * (1 + jit[j, 3])]
                    c = int(cs[k])
                else:
                    b = [rng.uniform(0, w - 20), rng.uniform(0, h - 20), rng.uniform(4, 200), rng.uniform(4, 200)]
                    c = int(rng.integers(1, n_cats + 1))
                b = [max(0.0, float(b[0])), max(0.0, float(b[1])), abs(float(b[2])), abs(float(b[3]))]
                dboxes.append(b)
                dcats.append(c)
            dm = masks_for(dboxes) if masks_for else None
            for j in range(dt_per):
                d = {"image_id": i + 1, "category_id": dcats[j], "score": float(sc[j])}
                if dm:
                    d["segmentation"] = dm[j]
                else:
                    d["bbox"] = dboxes[j]
                res.append(d)
        return {"gt": {"images": images, "categories": cats, "annotations": anns}, "results": res,
                "iou_type": "segm" if segm_size else "bbox"}
    return make


for _n, _modes in ((500, ("quick", "full")), (5000, ("full",))):
    register_workload(Workload(f"coco_eval/bbox/{_n}img", EVAL_OP, _bbox_workload(_n), {"images": _n},
                               modes=_modes, description=f"{_n} images, 80 categories, ~7 GT and 100 dets/image"))
register_workload(Workload("coco_eval/segm/300img", EVAL_OP, _bbox_workload(300, gt_per=5, dt_per=20,
                                                                           segm_size=(240, 320)),
                           {"images": 300}, description="300 images 240x320, ~5 GT and 20 mask dets/image"))


def _rle_masks(order: str):
    def make(rng: np.random.Generator):
        n, h, w = 150, 512, 512
        m = np.zeros((n, h, w), bool)
        for i in range(n):  # a few overlapping rectangles and an ellipse per mask
            for _ in range(3):
                y, x = rng.integers(0, h - 16), rng.integers(0, w - 16)
                m[i, y:y + rng.integers(8, 200), x:x + rng.integers(8, 200)] ^= True
            cy, cx, r = rng.integers(64, h - 64), rng.integers(64, w - 64), rng.integers(10, 60)
            yy, xx = np.ogrid[:h, :w]
            m[i] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        fortran = np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8))  # pycocotools' input
        return {"fortran": fortran, "c_order": torch.from_numpy(m), "order": order}
    return make


register_workload(Workload("rle_encode/150x512x512/fortran", RLE_OP, _rle_masks("fortran"), {"order": "fortran"},
                           description="150 masks 512x512, column-major (pycocotools' layout), uint8"))
register_workload(Workload("rle_encode/150x512x512/c_order", RLE_OP, _rle_masks("c_order"), {"order": "c_order"},
                           description="150 masks 512x512, torch's [N, H, W] bool; pycocotools pays the "
                                       "asfortranarray copy, hotcoco reads the transposed view"))


def _stats(out) -> np.ndarray:
    return np.asarray(out, dtype=np.float64)[:12]


# ---------------------------------------------------------------- detseg

@impl("detseg-cpp", EVAL_OP)
def _detseg_eval(inputs: dict, ctx: Context, op: str) -> Prepared:
    from ...metrics import coco_evaluate

    gt, res, t = inputs["gt"], inputs["results"], inputs["iou_type"]
    return Prepared(lambda: coco_evaluate(gt, res, t, backend="cpp").stats, _stats)


@impl("detseg-cpp", RLE_OP)
def _detseg_rle(inputs: dict, ctx: Context, op: str) -> Prepared:
    from ...ops import rle_encode

    m = torch.from_numpy(inputs["fortran"]).permute(2, 0, 1) if inputs["order"] == "fortran" else inputs["c_order"]
    return Prepared(lambda: rle_encode(m, backend="cpp"), lambda out: [r["counts"] for r in out])


# ---------------------------------------------------------------- peers

def _register_peer(name: str, module: str, dist: str, note: str) -> None:
    if name not in PROVIDERS:
        register(Provider(name, "peer", lambda: _version(module, dist), note))


_register_peer("pycocotools", "pycocotools", "pycocotools",
               "COCO() + createIndex + loadRes + COCOeval evaluate/accumulate/summarize (stdout muted); mask.encode "
               "on [H, W, N] Fortran uint8")
_register_peer("faster-coco-eval", "faster_coco_eval", "faster-coco-eval",
               "COCO(dict) + loadRes + COCOeval_faster evaluate/accumulate/summarize")
_register_peer("hotcoco", "hotcoco", "hotcoco",
               "COCO(dict) + load_res + COCOeval evaluate/accumulate/summarize; mask.encode. Its Rust thread "
               "pool is not bound by --threads")


def _quiet(fn):
    def run():
        with contextlib.redirect_stdout(io.StringIO()):
            return fn()
    return run


def _evaluated(make_eval) -> Prepared:
    """The timed run of a pycocotools-like peer: make_eval() builds its COCOeval (loading the
    results is part of the timed region), then evaluate, accumulate, summarize."""

    def run():
        ev = make_eval()
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return ev.stats
    return Prepared(_quiet(run), _stats)


@impl("pycocotools", EVAL_OP)
def _pycocotools_eval(inputs: dict, ctx: Context, op: str) -> Prepared:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, res, t = copy.deepcopy(inputs["gt"]), copy.deepcopy(inputs["results"]), inputs["iou_type"]

    def make():
        g = COCO()
        g.dataset = gt
        g.createIndex()
        return COCOeval(g, g.loadRes([dict(d) for d in res]), t)
    return _evaluated(make)


@impl("faster-coco-eval", EVAL_OP)
def _fce_eval(inputs: dict, ctx: Context, op: str) -> Prepared:
    import faster_coco_eval as fce

    gt, res, t = copy.deepcopy(inputs["gt"]), copy.deepcopy(inputs["results"]), inputs["iou_type"]

    def make():
        g = fce.COCO(gt)
        return fce.COCOeval_faster(g, g.loadRes([dict(d) for d in res]), t)
    return _evaluated(make)


@impl("hotcoco", EVAL_OP)
def _hotcoco_eval(inputs: dict, ctx: Context, op: str) -> Prepared:
    import hotcoco

    gt, res, t = inputs["gt"], inputs["results"], inputs["iou_type"]

    def make():
        g = hotcoco.COCO(gt)
        return hotcoco.COCOeval(g, g.load_res(res), t)
    return _evaluated(make)


@impl("pycocotools", RLE_OP)
def _pycocotools_rle(inputs: dict, ctx: Context, op: str) -> Prepared:
    from pycocotools import mask as mu

    if inputs["order"] == "fortran":
        f = inputs["fortran"]
        return Prepared(lambda: mu.encode(f), lambda out: [r["counts"] for r in out])
    m = inputs["c_order"]
    return Prepared(lambda: mu.encode(np.asfortranarray(m.numpy().transpose(1, 2, 0)).view(np.uint8)),
                    lambda out: [r["counts"] for r in out])


@impl("hotcoco", RLE_OP)
def _hotcoco_rle(inputs: dict, ctx: Context, op: str) -> Prepared:
    import hotcoco.mask as hm

    arr = inputs["fortran"] if inputs["order"] == "fortran" else inputs["c_order"].numpy().transpose(1, 2, 0)
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)

    def counts(out):
        return [r["counts"] if isinstance(r["counts"], bytes) else str(r["counts"]).encode() for r in out]
    return Prepared(lambda: hm.encode(arr), counts)


