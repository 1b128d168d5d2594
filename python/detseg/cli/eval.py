"""`detseg eval GT.json RESULTS.json`: COCO evaluation with pycocotools' exact protocol, printed
as pycocotools' 12-line summary (``--json`` writes the stats and the per-class AP).

The ground truth is a COCO instances file; the results a list of detections
``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` (``"segmentation"`` as RLE for
``--iou-type segm``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

HELP = "COCO mAP of a results file against a ground-truth file (pycocotools-exact)"

# Above this many results a progress bar shows the stages (tqdm, when installed).
_PROGRESS_MIN = 100_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("gt", help="COCO ground-truth JSON (images, categories, annotations)")
    p.add_argument("results", help="results JSON: a list of detection dicts")
    p.add_argument("--iou-type", choices=("bbox", "segm"), default="bbox")
    p.add_argument("--max-dets", default=None, metavar="N,N,N", help="maxDets (default 1,10,100)")
    p.add_argument("--no-cats", action="store_true", help="useCats=0: ignore categories when matching")
    p.add_argument("--per-class", action="store_true", help="also print the AP of every category")
    p.add_argument("--json", default=None, metavar="PATH", help="write stats and per-class AP to PATH")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


class _Stages:
    def __init__(self, enabled: bool, total: int):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc="detseg eval", unit="stage", file=sys.stderr)
            except ImportError:
                pass

    def step(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(name)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .. import _backend
    from ..metrics.coco import COCOEvalResult, COCOParams, _load_json, _op_args, load_coco_arrays, summarize

    params = {}
    if args.max_dets:
        params["maxDets"] = [int(v) for v in args.max_dets.split(",")]
    if args.no_cats:
        params["useCats"] = 0
    try:
        t0 = time.perf_counter()
        gt = _load_json(args.gt, "ground truth")
        results = _load_json(args.results, "results")
        big = isinstance(results, list) and len(results) >= _PROGRESS_MIN
        stages = _Stages(big and not args.no_progress, 3)
        stages.step("parsed JSON")
        p = COCOParams.from_kwargs(**params)
        arrays = load_coco_arrays(gt, results, args.iou_type, p)
        stages.step("loaded annotations")
        prec, rec, sc = (x.numpy() for x in _backend.dispatch("coco_evaluate", "auto", torch.device("cpu"),
                                                              *_op_args(arrays, p)))
        stages.step("evaluated")
        stages.close()
    except (OSError, ValueError, TypeError) as exc:
        print(f"detseg eval: {exc}", file=sys.stderr)
        return 2
    r = COCOEvalResult(summarize(prec, rec, p), prec, rec, sc, p, arrays["cat_ids"], args.iou_type)
    print(f"Evaluate annotation type *{args.iou_type}* ({len(arrays['dt_scores'])} detections, "
          f"{arrays['num_images']} images, {time.perf_counter() - t0:.2f} s)")
    print(r.summary())
    per = r.per_class_ap()
    if args.per_class:
        names = {c["id"]: c.get("name", str(c["id"])) for c in gt.get("categories", [])}
        for cid, ap in per.items():
            print(f"  {names.get(cid, cid)!s:>24}: {ap:0.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"stats": np.asarray(r.stats).tolist(), "per_class_ap": {str(k): v for k, v in per.items()}},
                      f, indent=1)
    return 0
