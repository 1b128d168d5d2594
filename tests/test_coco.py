"""COCO evaluation: exact parity with pycocotools (whole precision / recall / scores arrays and
the 12 stats, difference 0.0), faster-coco-eval and hotcoco as further oracles, bad inputs,
the streaming metric (and its torch.distributed sync), VOC AP."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os

import numpy as np
import pytest
import torch

import _backends as B
from _coco_data import make_coco, pycocotools_eval
from detseg.metrics import MeanAveragePrecision, coco_evaluate, voc_ap

pytest.importorskip("pycocotools")


def _assert_same(r, ev):
    for name in ("precision", "recall", "scores"):
        a, b = getattr(r, name), ev.eval[name]
        assert a.shape == b.shape, name
        assert np.array_equal(a, b), (name, np.abs(a - b).max())
    assert np.array_equal(r.stats, np.asarray(ev.stats)), (r.stats, ev.stats)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_pycocotools(iou_type, seed):
    gt, res = make_coco(seed, segm=iou_type == "segm")
    _assert_same(coco_evaluate(gt, res, iou_type), pycocotools_eval(gt, res, iou_type))


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_parity_reference_backend(iou_type):
    gt, res = make_coco(10, n_images=6 if iou_type == "segm" else 10, segm=iou_type == "segm", many_dets=110,
                        many_dets_images=1, max_dt=15)
    ev = pycocotools_eval(gt, res, iou_type)
    _assert_same(coco_evaluate(gt, res, iou_type, backend="reference"), ev)
    _assert_same(coco_evaluate(gt, res, iou_type, backend="cpp"), ev)


CUSTOM = [
    dict(iouThrs=np.array([0.3, 0.5, 0.75, 0.9])),
    dict(recThrs=np.linspace(0, 1, 21), maxDets=[1, 5, 20]),
    dict(maxDets=[3, 30, 300], areaRng=[[0, 1e10], [0, 200.0], [200.0, 900.0], [900.0, 1e10]]),
    dict(useCats=0),
    dict(useCats=0, maxDets=[2, 10, 50]),
]


@pytest.mark.parametrize("params", CUSTOM)
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_parity_custom_params(params, iou_type):
    gt, res = make_coco(4, segm=iou_type == "segm", n_images=16)
    _assert_same(coco_evaluate(gt, res, iou_type, **params), pycocotools_eval(gt, res, iou_type, **params))


def test_edge_cases_follow_pycocotools():
    gt, res = make_coco(5, n_images=12)
    gt["annotations"][0]["id"] = 0  # a match to annotation id 0 reads as no match
    res[0]["score"] = float("nan")
    res[1]["score"] = float("nan")  # NaN scores rank last
    for r in res[:3]:
        r["bbox"][2] = 0.0  # zero-size boxes
    res[3]["bbox"][3] = -2.0
    res.append(dict(res[4], category_id=10 ** 6))  # unknown category: dropped
    _assert_same(coco_evaluate(gt, res), pycocotools_eval(gt, res))


def test_empty_results_and_no_gt():
    gt, res = make_coco(6, n_images=8)
    _assert_same(coco_evaluate(gt, []), pycocotools_eval(gt, []))
    gt_empty = dict(gt, annotations=[])
    r = coco_evaluate(gt_empty, res)
    assert (r.precision == -1).all() and (r.stats == -1).all()


def test_segm_results_without_bbox_and_polygons():
    gt, res = make_coco(7, n_images=10, segm=True)
    for r in res:
        del r["bbox"]  # area and box come from the RLE
    for a in gt["annotations"][::3]:
        x, y, w, h = a["bbox"]
        a["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]  # polygons
    _assert_same(coco_evaluate(gt, res, "segm"), pycocotools_eval(gt, res, "segm"))


def test_json_paths_and_summary(tmp_path):
    gt, res = make_coco(8, n_images=10)
    gp, rp = tmp_path / "gt.json", tmp_path / "res.json"
    gp.write_text(json.dumps(gt))
    rp.write_text(json.dumps(res))
    r = coco_evaluate(str(gp), rp)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ev = pycocotools_eval(gt, res)
        ev.summarize()
    _assert_same(r, ev)
    assert r.summary().splitlines() == [ln for ln in buf.getvalue().splitlines() if "Average" in ln]
    per = r.per_class_ap()
    assert set(per) == {c["id"] for c in gt["categories"]}


def test_bad_inputs(tmp_path):
    gt, res = make_coco(9, n_images=6)
    with pytest.raises(ValueError, match="image ids not in the ground truth"):
        coco_evaluate(gt, res + [dict(res[0], image_id=-5)])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        coco_evaluate(gt, bad)
    with pytest.raises(ValueError, match="iou_type"):
        coco_evaluate(gt, res, "keypoints")
    with pytest.raises(ValueError, match="bbox must be"):
        coco_evaluate(gt, [dict(res[0], bbox=[1, 2, 3])])
    with pytest.raises(ValueError, match="'score'"):
        coco_evaluate(gt, [{k: v for k, v in res[0].items() if k != "score"}])
    with pytest.raises(TypeError, match="unknown parameter"):
        coco_evaluate(gt, res, iouThr=[0.5])
    dup = copy.deepcopy(gt)
    dup["annotations"][1]["id"] = dup["annotations"][0]["id"]
    with pytest.raises(ValueError, match="unique"):
        coco_evaluate(dup, res)


def _peer_bbox_stats(coco_cls, eval_cls, load_res: str, gt: dict, res: list) -> np.ndarray:
    """A pycocotools-like peer's 12 bbox stats, on deep copies (loading results mutates them)."""
    with contextlib.redirect_stdout(io.StringIO()):
        g = coco_cls(copy.deepcopy(gt))
        ev = eval_cls(g, getattr(g, load_res)(copy.deepcopy(res)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)[:12]


def test_faster_coco_eval_and_hotcoco_agree():
    gt, res = make_coco(11, n_images=20)
    r = coco_evaluate(gt, res)
    fce = pytest.importorskip("faster_coco_eval")
    np.testing.assert_array_equal(r.stats, _peer_bbox_stats(fce.COCO, fce.COCOeval_faster, "loadRes", gt, res))
    hotcoco = pytest.importorskip("hotcoco")
    np.testing.assert_allclose(r.stats, _peer_bbox_stats(hotcoco.COCO, hotcoco.COCOeval, "load_res", gt, res),
                               rtol=0, atol=1e-12)


def test_thread_count_determinism():
    gt, res = make_coco(12, n_images=30, n_cats=7)
    a, b = (B.at_threads(t, lambda: coco_evaluate(gt, res)) for t in (1, 2))
    assert np.array_equal(a.precision, b.precision) and np.array_equal(a.scores, b.scores)


# ---------------------------------------------------------------- streaming / distributed


def _to_tensors(gt, res, iou_type="bbox", lo=0, hi=None):
    from detseg.ops import rle_decode

    by_img = {im["id"]: ([], []) for im in gt["images"]}
    for a in gt["annotations"]:
        by_img[a["image_id"]][0].append(a)
    for d in res:
        by_img[d["image_id"]][1].append(d)
    preds, targets = [], []
    for iid in sorted(by_img)[lo:hi]:
        g, d = by_img[iid]
        xyxy = lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]  # noqa: E731
        t = {"boxes": torch.tensor([xyxy(a["bbox"]) for a in g], dtype=torch.float64).reshape(-1, 4),
             "labels": torch.tensor([a["category_id"] for a in g], dtype=torch.int64),
             "iscrowd": torch.tensor([a["iscrowd"] for a in g]), "area": torch.tensor([a["area"] for a in g]),
             "image_id": iid}
        p = {"scores": torch.tensor([x["score"] for x in d], dtype=torch.float64),
             "labels": torch.tensor([x["category_id"] for x in d], dtype=torch.int64)}
        if iou_type == "bbox":
            p["boxes"] = torch.tensor([xyxy(x["bbox"]) for x in d], dtype=torch.float64).reshape(-1, 4)
        if iou_type == "segm":
            t["masks"] = [a["segmentation"] for a in g]
            p["masks"] = rle_decode([x["segmentation"] for x in d]) if d else torch.zeros(0, 1, 1, dtype=torch.bool)
        preds.append(p)
        targets.append(t)
    return preds, targets


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_streaming_metric_matches(iou_type):
    gt, res = make_coco(13, n_images=12, segm=iou_type == "segm")
    for r in res:
        r.pop("bbox" if iou_type == "segm" else "segmentation", None)
    ev = pycocotools_eval(gt, res, iou_type)
    m = MeanAveragePrecision(iou_type=iou_type, class_metrics=True)
    preds, targets = _to_tensors(gt, res, iou_type)
    m.update(preds[:5], targets[:5])
    m.update(preds[5:], targets[5:])
    out = m.compute()
    assert np.array_equal(m.evaluate().precision, ev.eval["precision"])
    assert math.isclose(float(out["map"]), float(np.float32(ev.stats[0])))
    assert out["map_per_class"].shape == (len(gt["categories"]),)


def _dist_worker(rank, world, port, result_path):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        gt, res = make_coco(14, n_images=10)
        half = len(gt["images"]) // 2
        preds, targets = _to_tensors(gt, res, lo=rank * half, hi=(rank + 1) * half if rank == 0 else None)
        for t in targets:  # contiguous blocks, no ids: numbered in gathered order
            t.pop("image_id")
        m = MeanAveragePrecision()
        m.update(preds, targets)
        prec = m.evaluate().precision
        if rank == 0:
            np.save(result_path, prec)
    finally:
        dist.destroy_process_group()


def test_distributed_two_processes(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "prec.npy")
    mp.spawn(_dist_worker, args=(2, port, out), nprocs=2, join=True)
    gt, res = make_coco(14, n_images=10)
    assert np.array_equal(np.load(out), pycocotools_eval(gt, res).eval["precision"])


def _voc_bruteforce(ev, k, use_07):
    e = [x for x in ev.evalImgs if x is not None and x["category_id"] == ev.params.catIds[k] and x["aRng"] == [0, 1e10]]
    if not e:
        return -1.0
    sc = np.concatenate([x["dtScores"] for x in e])
    o = np.argsort(-sc, kind="mergesort")
    dtm = np.concatenate([x["dtMatches"][0] for x in e])[o]
    dtig = np.concatenate([x["dtIgnore"][0] for x in e])[o]
    npig = sum(int(np.count_nonzero(x["gtIgnore"] == 0)) for x in e)
    if npig == 0:
        return -1.0
    tp = np.cumsum((dtm != 0) & ~dtig.astype(bool))
    fp = np.cumsum((dtm == 0) & ~dtig.astype(bool))
    rec, prec = tp / npig, tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07:
        return float(np.mean([np.max(prec[rec >= t]) if (rec >= t).any() else 0 for t in np.linspace(0, 1, 11)]))
    mrec, mpre = np.concatenate([[0], rec, [1]]), np.concatenate([[0], prec, [0]])
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@pytest.mark.parametrize("use_07", [False, True])
def test_voc_ap(use_07):
    gt, res = make_coco(15, n_images=16)
    ev = pycocotools_eval(gt, res, summarize=False, iouThrs=np.array([0.5]), areaRng=[[0, 1e10]], areaRngLbl=["all"], maxDets=[100])
    got = voc_ap(gt, res, 0.5, use_07_metric=use_07)
    for k, cid in enumerate(ev.params.catIds):
        np.testing.assert_allclose(got[cid], _voc_bruteforce(ev, k, use_07), rtol=0, atol=1e-12)


def test_cli_eval(tmp_path, capsys):
    from detseg.cli.main import main

    gt, res = make_coco(16, n_images=10)
    gp, rp, out = tmp_path / "gt.json", tmp_path / "res.json", tmp_path / "out.json"
    gp.write_text(json.dumps(gt))
    rp.write_text(json.dumps(res))
    assert main(["eval", str(gp), str(rp), "--json", str(out)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "Average" in ln]
    ev = pycocotools_eval(gt, res)
    assert len(lines) == 12 and lines[0].endswith(f"{ev.stats[0]:0.3f}")
    assert json.loads(out.read_text())["stats"] == np.asarray(ev.stats).tolist()
    assert main(["eval", str(gp), str(tmp_path / "missing.json")]) == 2


# ---------------------------------------------------------------- C++ ingestion (coco_ingest.cpp)


def _same_arrays(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, tuple):  # RLE runs: (counts, offsets, sizes) tensors
            for u, v in zip(x, y):
                assert u.dtype == v.dtype and torch.equal(u, v), k
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape, (k, x.dtype, y.dtype, x.shape, y.shape)
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), k
        else:
            assert x == y, k


def _odd_values(gt: dict, res: list) -> None:
    """Every value type the Python parser accepts, mixed: bool / int / float / numpy scalars /
    tuples / NaN / unknown categories / missing iscrowd."""
    for i, a in enumerate(gt["annotations"]):
        if i % 5 == 0:
            a["bbox"] = tuple(int(v) for v in a["bbox"])
        if i % 7 == 1:
            a["area"] = np.float64(a["area"])
        if i % 4 == 2:
            a.pop("iscrowd")
        if i % 9 == 3:
            a["iscrowd"] = bool(a.get("iscrowd", 0))
    for i, r in enumerate(res):
        if i % 6 == 0:
            r["score"] = int(r["score"] > 0.5)
        if i % 11 == 1:
            r["score"] = float("nan")
        if i % 8 == 2 and "bbox" in r:
            r["bbox"] = [True, 2, np.float64(3.5), 4.0]
        if i % 13 == 4:
            r["score"] = np.float64(r["score"])

    res.append(dict(res[0], category_id=10 ** 6))


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("variant", ["plain", "odd", "fallback", "img_ids"])
def test_ingest_cpp_equals_python(iou_type, variant):
    from detseg import _C
    from detseg.metrics.coco import COCOParams, load_coco_arrays

    gt, res = make_coco(20, n_images=14, segm=iou_type == "segm")
    p = COCOParams()
    if variant != "plain":
        _odd_values(gt, res)
    if variant == "fallback":  # values the C++ pass declines: the Python parser reads them
        gt["annotations"][3]["image_id"] = np.int64(gt["annotations"][3]["image_id"])
        res[5]["category_id"] = np.int32(res[5]["category_id"])
        res[6]["score"] = np.float32(0.25)
        res[7]["score"] = None  # numpy reads it as NaN
        if "bbox" in res[8]:
            res[8]["bbox"] = [None, 1.0, 2.0, 3.0]
    elif iou_type == "bbox" and _C is not None:  # the C++ pass reads these
        assert _C.coco_columns(res, ("image_id", "category_id", "score", "bbox"), "iifb") is not None
        assert _C.coco_columns(gt["annotations"], ("id", "area", "iscrowd", "bbox"), "ifcb") is not None
    if variant == "plain" and iou_type == "segm":  # area and box from the RLEs
        for r in res[::2]:
            r.pop("bbox")
        res.sort(key=lambda r: "bbox" in r)
    if variant == "img_ids":
        p = COCOParams.from_kwargs(imgIds=[im["id"] for im in gt["images"][::2]], catIds=[c["id"] for c in
                                                                                        gt["categories"][1:]])
    _same_arrays(load_coco_arrays(gt, res, iou_type, p), load_coco_arrays(gt, res, iou_type, p, fast=False))
    if variant in ("plain", "odd"):
        r = coco_evaluate(gt, res, iou_type)
        if variant == "plain":
            _assert_same(r, pycocotools_eval(gt, res, iou_type))


def test_ingest_cpp_fast_path_taken_or_declined():
    from detseg import _C

    if _C is None:
        pytest.skip("no C++ extension")
    cols = _C.coco_columns([{"a": 1, "b": 2.5, "c": [1, 2, 3, 4]}, {"a": True, "b": 3, "c": (0.5, 1, 2, 3)}],
                           ("a", "b", "c", "d"), "ifbc")
    assert [x.dtype for x in cols] == [np.int64, np.float64, np.float64, np.bool_]
    assert cols[0].tolist() == [1, 1] and cols[1].tolist() == [2.5, 3.0] and not cols[3].any()
    assert cols[2].tolist() == [[1, 2, 3, 4], [0.5, 1, 2, 3]]
    for bad in ({"a": 1.5}, {"a": "3"}, {"a": np.int64(3)}, {"a": 2 ** 70}, {"b": 1}):
        assert _C.coco_columns([{"a": 1}, bad], ("a",), "i") is None, bad
    crowd = _C.coco_columns([{"c": 2 ** 70}, {"c": float("nan")}, {"c": 0.0}, {"c": False}, {}], ("c",), "c")[0]
    assert crowd.tolist() == [True, True, False, False, False]
    assert _C.coco_columns([{"c": np.int64(1)}], ("c",), "c") is None  # its truth is left to Python
    for box in ([1, 2, 3], [1, 2, 3, "4"], np.zeros(4), None):
        assert _C.coco_columns([{"c": box}], ("c",), "b") is None, box
    assert _C.coco_columns([[1]], ("a",), "i") is None and _C.coco_columns({"a": 1}, ("a",), "i") is None
    seg = lambda c, s=(2, 3): {"segmentation": {"counts": c, "size": list(s)}}  # noqa: E731
    # "52" = runs [5, 2]; "0;0" = [0, 11, 0]; b"3" = [3]
    counts, off, sizes, area = _C.coco_rle_runs([seg("52"), seg("0;0", (4, 5)), seg("")])
    assert counts.dtype == np.int64 and counts.tolist() == [5, 2, 0, 11, 0] and off.tolist() == [0, 2, 5, 5]
    assert sizes.tolist() == [[2, 3], [4, 5], [2, 3]] and area.dtype == np.float64 and area.tolist() == [2, 11, 0]
    assert _C.coco_rle_runs([seg(b"3")])[0].tolist() == [3]
    for bad in ([seg("ab"), seg(b"c")], [seg("é")], [seg("a", (2,))], [seg([1, 2])], [{"segmentation": [1.0]}]):
        assert _C.coco_rle_runs(bad) is None


@pytest.mark.parametrize("fast", [True, False])
def test_ingest_bad_input_messages(fast):
    """Malformed fields raise the Python parser's errors whether or not the C++ pass runs."""
    from detseg.metrics.coco import load_coco_arrays

    gt, res = make_coco(21, n_images=6)
    cases = [
        (dict(gt, annotations=[{k: v for k, v in a.items() if k != "area"} for a in gt["annotations"]]), res,
         "needs a 'area'"),
        (dict(gt, annotations=[dict(a, id=None) for a in gt["annotations"]]), res, "'id' must hold numbers"),
        (dict(gt, annotations=[dict(gt["annotations"][0], bbox=[1, 2])]), res, "bbox must be"),
        (gt, [dict(r, score="high") for r in res], "'score' must hold numbers"),
        (gt, [{k: v for k, v in r.items() if k != "category_id"} for r in res], "needs a 'category_id'"),
        (gt, [dict(r, image_id=[1]) for r in res], "'image_id' must hold numbers"),
        (gt, res[:3] + [{k: v for k, v in res[3].items() if k != "bbox"}], "needs a 'bbox'"),
        (gt, [dict(r, bbox=[1, 2, 3, "x"]) for r in res], "could not convert"),
    ]
    for g, r, match in cases:
        with pytest.raises((ValueError, TypeError), match=match):
            load_coco_arrays(g, r, "bbox", fast=fast)
