"""Seeded COCO-like ground truth and results for the evaluation tests and benchmarks, and a
pycocotools runner (the oracle) on in-memory dicts."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np


def _ellipse(h: int, w: int, box, rng) -> np.ndarray:
    x, y, bw, bh = box
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = x + bw / 2, y + bh / 2
    m = ((xx + 0.5 - cx) / max(bw / 2, 0.5)) ** 2 + ((yy + 0.5 - cy) / max(bh / 2, 0.5)) ** 2 <= 1.0
    if rng.random() < 0.3:  # a hole: more runs per column
        m &= ((xx + 0.5 - cx) / max(bw / 5, 0.5)) ** 2 + ((yy + 0.5 - cy) / max(bh / 5, 0.5)) ** 2 > 1.0
    return m


def _encode(mask: np.ndarray) -> dict:
    from pycocotools import mask as mu

    r = mu.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode("ascii")}


def make_coco(seed: int = 0, n_images: int = 24, n_cats: int = 5, segm: bool = False, size=(30, 90),
              max_gt: int = 9, max_dt: int = 40, crowd_frac: float = 0.1, empty_frac: float = 0.15,
              score_decimals: int = 2, many_dets_images: int = 2, many_dets: int = 130, float_boxes: bool = True):
    """-> (gt dict, results list). Images with no GT, crowd regions, ties in scores (rounded),
    some images with more detections than maxDets, boxes of all three COCO area ranges when
    ``size`` allows, non-contiguous image and category ids."""
    rng = np.random.default_rng(seed)
    img_ids = sorted(rng.choice(10 * n_images + 10, n_images, replace=False).tolist())
    cat_ids = sorted(rng.choice(10 * n_cats + 10, n_cats, replace=False).tolist())
    images, anns, results = [], [], []
    for n, iid in enumerate(img_ids):
        h, w = (int(v) for v in rng.integers(size[0], size[1] + 1, 2))
        images.append({"id": iid, "height": h, "width": w, "file_name": f"{iid}.jpg"})
        gts = [] if rng.random() < empty_frac else range(int(rng.integers(0, max_gt + 1)))
        boxes = []
        for _ in gts:
            bw, bh = rng.uniform(2, w * 0.9), rng.uniform(2, h * 0.9)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            box = [x, y, bw, bh] if float_boxes else [float(int(x)), float(int(y)), float(int(bw)), float(int(bh))]
            crowd = int(rng.random() < crowd_frac)
            cat = int(rng.choice(cat_ids))
            ann = {"id": len(anns) + 1, "image_id": iid, "category_id": cat, "bbox": box, "iscrowd": crowd}
            if segm:
                mask = _ellipse(h, w, box, rng)
                ann["segmentation"] = _encode(mask)
                ann["area"] = float(mask.sum())
            else:
                ann["area"] = float(box[2] * box[3]) * float(rng.uniform(0.5, 1.0))
            anns.append(ann)
            boxes.append((box, cat))
        nd = many_dets if n < many_dets_images else int(rng.integers(0, max_dt + 1))
        for _ in range(nd):
            if boxes and rng.random() < 0.6:
                (x, y, bw, bh), cat = boxes[int(rng.integers(len(boxes)))]
                j = rng.normal(0, 0.06, 4) * [bw, bh, bw, bh]
                x, y = x + j[0], y + j[1]
                bw, bh = max(1.0, bw + j[2]), max(1.0, bh + j[3])
                if rng.random() < 0.2:
                    cat = int(rng.choice(cat_ids))
            else:
                bw, bh = rng.uniform(2, w * 0.8), rng.uniform(2, h * 0.8)
                x, y, cat = rng.uniform(0, w - bw), rng.uniform(0, h - bh), int(rng.choice(cat_ids))
            box = [float(x), float(y), float(bw), float(bh)]
            det = {"image_id": iid, "category_id": cat, "bbox": box,
                   "score": float(np.round(rng.random(), score_decimals))}
            if segm:
                det["segmentation"] = _encode(_ellipse(h, w, box, rng))
            results.append(det)
    rng.shuffle(results)
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"c{c}", "supercategory": "x"} for c in cat_ids]}
    return gt, results


def pycocotools_eval(gt: dict, results: list, iou_type: str = "bbox", summarize: bool = True, **params):
    """pycocotools' COCOeval on deep copies (loadRes mutates): -> COCOeval after summarize."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        dt = coco.loadRes(copy.deepcopy(results)) if results else COCO()
        if not results:
            dt.dataset = {"images": copy.deepcopy(gt["images"]), "categories": copy.deepcopy(gt["categories"]),
                          "annotations": []}
            dt.createIndex()
        ev = COCOeval(coco, dt, iou_type)
        for k, v in params.items():
            setattr(ev.params, k, v)
        ev.evaluate()
        ev.accumulate()
        if summarize:
            ev.summarize()
    return ev
