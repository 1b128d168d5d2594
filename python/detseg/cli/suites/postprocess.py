"""Benchmarks of detection post-processing (multiclass_nms) and soft-NMS.

Workloads:
  - multiclass_nms/retinanet/deltas: a RetinaNet head's raw output for B = 8 images of
    800 x 800 (5 FPN levels, 9 anchors per location: 120 087 anchors), 80 classes: deltas,
    logits (sigmoid inside), anchors; threshold 0.05, top 1000 per level, IoU 0.5, 100 per
    image. Peer: the composition of the separate steps (detseg.reference.postprocess.compose
    with the compiled batched_nms / clip_boxes_to_image and torch.exp).
  - multiclass_nms/retinanet/decoded: the same images as decoded, clipped boxes and sigmoid
    probabilities (no top-k): what OpenVINO's MulticlassNms / NonMaxSuppression take.
  - soft_nms/n=5000: 5000 clustered detector boxes (integer coordinates, so that OpenCV's
    integer Rect sees the same boxes), gaussian, sigma 0.5, OpenCV's convention.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import providers as P
from ..providers import Context, Prepared, Provider, Unavailable, impl, kept, register
from ..workloads import Workload, detector_boxes
from ..workloads import register as register_workload

BATCH, CLASSES, SIDE = 8, 80, 800
STRIDES = (8, 16, 32, 64, 128)
RETINA = dict(score_threshold=0.05, level_top_k=1000, iou_threshold=0.5, max_detections=100)


def retinanet_anchors() -> tuple[torch.Tensor, list[int]]:
    """Anchors of RetinaNet's FPN on a SIDE x SIDE image: per level (stride s, size 4 s) three
    scales x three aspect ratios per location, location-major as torchvision orders them."""
    out, sizes = [], []
    for s in STRIDES:
        n = -(-SIDE // s)
        c = (np.arange(n) + 0.5) * s
        cy, cx = np.meshgrid(c, c, indexing="ij")
        base = []
        for scale in (1.0, 2 ** (1 / 3), 2 ** (2 / 3)):
            for ratio in (0.5, 1.0, 2.0):
                w = 4 * s * scale / np.sqrt(ratio)
                h = 4 * s * scale * np.sqrt(ratio)
                base.append((-w / 2, -h / 2, w / 2, h / 2))
        base = np.asarray(base)
        ctr = np.stack([cx, cy, cx, cy], axis=-1).reshape(-1, 1, 4)
        out.append((ctr + base[None]).reshape(-1, 4))
        sizes.append(out[-1].shape[0])
    return torch.from_numpy(np.concatenate(out).astype(np.float32)), sizes


def _retinanet_raw(rng: np.random.Generator) -> dict:
    """Deltas ~ N(0, 0.1); logits of a trained head: background ~ N(-6, 1.2) (about 0.5% of the
    pairs pass 0.05), and 40 objects per image whose overlapping anchors (IoU > 0.4) score
    their class higher."""
    import detseg

    anchors, sizes = retinanet_anchors()
    n = anchors.shape[0]
    logits = rng.standard_normal((BATCH, n, CLASSES), dtype=np.float32)
    logits *= 1.2
    logits -= 6.0
    for b in range(BATCH):
        objects, _, cls = detector_boxes(rng, 40, num_objects=40, num_classes=CLASSES, background=0.0)
        objects = objects * (SIDE / 1000.0)
        iou = detseg.ops.box_iou(anchors, objects, backend="cpp")
        best, who = iou.max(1)
        pos = torch.where(best > 0.4)[0].numpy()
        logits[b, pos, cls[who[pos]].numpy()] = rng.normal(1.0, 1.5, size=pos.shape[0]).astype(np.float32)
    deltas = torch.from_numpy(rng.normal(0.0, 0.1, size=(BATCH, n, 4)).astype(np.float32))
    return {"deltas": deltas, "logits": torch.from_numpy(logits), "anchors": anchors, "level_sizes": sizes,
            "image_size": (SIDE, SIDE)}


def _deltas_inputs(rng):
    d = _retinanet_raw(rng)
    d["options"] = dict(anchors=d["anchors"], image_size=d["image_size"], level_sizes=d["level_sizes"],
                        score_activation="sigmoid", **RETINA)
    d["boxes"], d["scores"] = d.pop("deltas"), d.pop("logits")
    return d


def _decoded_inputs(rng):
    import detseg
    from detseg.reference.postprocess import decode

    d = _retinanet_raw(rng)
    flat = d["deltas"].reshape(-1, 4)
    anchors = d["anchors"].repeat(BATCH, 1)
    boxes = decode(flat, anchors, (1.0, 1.0, 1.0, 1.0), detseg.ops.postprocess.BBOX_XFORM_CLIP, exp=torch.exp)
    boxes = detseg.ops.clip_boxes_to_image(boxes, (SIDE, SIDE)).reshape(BATCH, -1, 4).contiguous()
    opts = {k: v for k, v in RETINA.items() if k != "level_top_k"}
    return {"boxes": boxes, "scores": torch.sigmoid(d["logits"]), "options": opts}


_PARAMS = {"B": BATCH, "anchors": 120087, "classes": CLASSES, "score_threshold": 0.05, "iou": 0.5, "K": 100}
register_workload(Workload(
    "multiclass_nms/retinanet/deltas", "multiclass_nms", _deltas_inputs, _PARAMS | {"level_top_k": 1000},
    description="RetinaNet head output: decode + clip + sigmoid + threshold + top 1000 per level + class-aware NMS"))
register_workload(Workload(
    "multiclass_nms/retinanet/decoded", "multiclass_nms", _decoded_inputs, _PARAMS,
    description="decoded, clipped boxes and probabilities: threshold + class-aware NMS + top 100 per image"))


def _soft_inputs(rng):
    boxes, scores, _ = detector_boxes(rng, 5000)
    return {"boxes": boxes.round(), "scores": scores, "iou_threshold": 0.3, "sigma": 0.5, "min_score": 0.001,
            "method": "gaussian", "convention": "opencv"}


register_workload(Workload(
    "soft_nms/n=5000/gaussian", "soft_nms", _soft_inputs, {"n": 5000, "sigma": 0.5, "min_score": 0.001},
    description="5000 clustered detector boxes (~50 objects), integer coordinates, gaussian soft-NMS"))


# ------------------------------------------------------------------ canonical results

def detections(num, classes, indices, superset: bool = False) -> dict:
    """Canonical multiclass result: per image, the set of (class, anchor index) detections."""
    num = np.asarray(num).reshape(-1)
    c, i = np.asarray(classes), np.asarray(indices)
    return {"sets": [frozenset(zip(c[b, :num[b]].tolist(), i[b, :num[b]].tolist())) for b in range(len(num))],
            "superset": superset}


def _mc_agreement(res, ref) -> tuple[bool | None, str]:
    mine, theirs = res["sets"], ref["sets"]
    if len(mine) != len(theirs):
        return False, f"{len(mine)} images, detseg.reference {len(theirs)}"
    if res["superset"]:
        ok = all(t <= m for m, t in zip(mine, theirs))
        return ok, ("contains" if ok else "misses some of") + " detseg.reference's detections (per-class output)"
    diff = sum(len(m ^ t) for m, t in zip(mine, theirs))
    total = sum(len(t) for t in theirs)
    return diff == 0, f"{total} detections, {diff} differ from detseg.reference"


def _mc_result(out):
    return detections(out[0], out[3], out[4])


P.detseg_op("multiclass_nms", ("boxes", "scores"), result=_mc_result, agreement=_mc_agreement)
P.detseg_op("soft_nms", ("boxes", "scores", "iou_threshold", "sigma", "min_score", "method", "convention"),
            result=lambda out: kept(out[0].numpy()))


def _detseg_mc(backend: str):
    def prepare(inputs: dict, ctx: Context, op: str) -> Prepared:
        import detseg

        if backend in ("triton", "cuda"):
            raise Unavailable("multiclass_nms: Triton / CUDA rows are not wired into this CPU bench yet")
        boxes, scores, opts = inputs["boxes"], inputs["scores"], inputs["options"]
        return Prepared(lambda: detseg.ops.multiclass_nms(boxes, scores, backend=backend, **opts), _mc_result)
    return prepare


for _b in P.DETSEG_BACKENDS:
    P.PROVIDERS[f"detseg-{_b}"].impls["multiclass_nms"] = _detseg_mc(_b)


# ------------------------------------------------------------------ the composition of separate ops

register(Provider(
    "composition", "peer", lambda: torch.__version__,
    "decode -> clip -> threshold -> top-k -> batched NMS per image as separate calls "
    "(detseg.reference.postprocess.compose with the compiled batched_nms and clip_boxes_to_image, torch.sigmoid, "
    "torch.exp), "
    "torch.set_num_threads(threads)"))


def _torch_activation(scores: torch.Tensor, act: str) -> torch.Tensor:
    if act == "sigmoid":
        return torch.sigmoid(scores)
    return torch.softmax(scores, dim=-1) if act == "softmax" else scores


@impl("composition", "multiclass_nms")
def _composition(inputs: dict, ctx: Context, op: str) -> Prepared:
    import detseg
    from detseg.ops.postprocess import BBOX_XFORM_CLIP
    from detseg.reference.postprocess import compose

    o = dict(inputs["options"])
    args = (inputs["boxes"], inputs["scores"], o.pop("anchors", None), (1.0, 1.0, 1.0, 1.0), BBOX_XFORM_CLIP,
            o.pop("image_size", ()), o["score_threshold"], o.pop("level_sizes", ()), o.pop("level_top_k", -1),
            -1, o["iou_threshold"], o["max_detections"], False, -1, o.pop("score_activation", "none"))

    def run():
        return compose(*args, nms_fn=torch.ops.detseg.batched_nms, clip_fn=torch.ops.detseg.clip_boxes_to_image,
                       exp=torch.exp, activation=_torch_activation)

    del detseg
    return Prepared(run, _mc_result)


# ------------------------------------------------------------------ OpenVINO

register(Provider(
    "openvino-nms", "peer", P._openvino_probe,
    "OpenVINO opset13 NonMaxSuppression on the decoded boxes [B, N, 4] and scores [B, C, N] (transposed "
    "outside), max_output_boxes_per_class = K, score_threshold, CPU plugin as the openvino row; its output "
    "is per class: the merge into the top K per image is not included (a lower bound on that pipeline)"))


def _ov_compile(node, params, ctx):
    import openvino as ov

    model = ov.Model([o for o in node.outputs()], params, "postprocess")
    compiled = ov.Core().compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": ctx.threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    return compiled.create_infer_request()


def _ov_arrays(inputs: dict):
    if "anchors" in inputs["options"]:
        raise Unavailable("takes decoded boxes (see multiclass_nms/retinanet/decoded)")
    boxes = inputs["boxes"].numpy()
    scores = np.ascontiguousarray(inputs["scores"].numpy().transpose(0, 2, 1))
    return boxes, scores, inputs["options"]


@impl("openvino", "multiclass_nms")
def _openvino_mc(inputs: dict, ctx: Context, op: str) -> Prepared:
    import openvino.opset9 as ops

    boxes, scores, o = _ov_arrays(inputs)
    b, n, _ = boxes.shape
    p_boxes = ops.parameter(list(boxes.shape), np.float32, name="boxes")
    p_scores = ops.parameter(list(scores.shape), np.float32, name="scores")
    node = ops.multiclass_nms(p_boxes, p_scores, sort_result_type="score", sort_result_across_batch=False,
                              output_type="i64", iou_threshold=o["iou_threshold"],
                              score_threshold=o["score_threshold"], nms_top_k=-1, keep_top_k=o["max_detections"],
                              background_class=-1, nms_eta=1.0, normalized=True)
    request = _ov_compile(node, [p_boxes, p_scores], ctx)
    feed = {0: boxes, 1: scores}

    def run():
        r = request.infer(feed, share_inputs=True)
        return r[0], r[1], r[2]

    def result(out):
        sel, idx, num = (np.asarray(x) for x in out)
        k = int(o["max_detections"])
        classes = np.full((b, k), -1, np.int64)
        index = np.full((b, k), -1, np.int64)
        start = 0
        for i in range(b):
            m = int(num[i])
            classes[i, :m] = sel[start:start + m, 0].astype(np.int64)
            index[i, :m] = idx[start:start + m, 0] - i * n
            start += m
        return detections(num, classes, index)

    return Prepared(run, result)


@impl("openvino-nms", "multiclass_nms")
def _openvino_nms(inputs: dict, ctx: Context, op: str) -> Prepared:
    import openvino.opset13 as ops

    boxes, scores, o = _ov_arrays(inputs)
    b = boxes.shape[0]
    p_boxes = ops.parameter(list(boxes.shape), np.float32, name="boxes")
    p_scores = ops.parameter(list(scores.shape), np.float32, name="scores")
    node = ops.non_max_suppression(
        p_boxes, p_scores, ops.constant(np.array([o["max_detections"]], dtype=np.int64)),
        ops.constant(np.array([o["iou_threshold"]], dtype=np.float32)),
        ops.constant(np.array([o["score_threshold"]], dtype=np.float32)),
        box_encoding="corner", sort_result_descending=False, output_type="i64")
    request = _ov_compile(node, [p_boxes, p_scores], ctx)
    feed = {0: boxes, 1: scores}

    def run():
        return request.infer(feed, share_inputs=True)[0]

    def result(sel):
        sel = np.asarray(sel)
        sel = sel[sel[:, 0] >= 0]
        return {"sets": [frozenset(zip(sel[sel[:, 0] == i, 1].tolist(), sel[sel[:, 0] == i, 2].tolist()))
                         for i in range(b)], "superset": True}

    return Prepared(run, result)


# ------------------------------------------------------------------ soft-NMS peers

@impl("opencv", "soft_nms")
def _opencv_soft(inputs: dict, ctx: Context, op: str) -> Prepared:
    import cv2

    if inputs["convention"] != "opencv":
        raise Unavailable("OpenCV implements the 'opencv' convention only")
    cv2.setNumThreads(ctx.threads)
    b = inputs["boxes"].numpy()
    xywh = np.ascontiguousarray(np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1).astype(np.int32))
    scores = inputs["scores"].numpy().copy()
    method = 1 if inputs["method"] == "linear" else 2

    def run():
        return cv2.dnn.softNMSBoxes(xywh, scores, float(inputs["min_score"]), float(inputs["iou_threshold"]),
                                    top_k=0, sigma=float(inputs["sigma"]), method=method)

    return Prepared(run, lambda out: kept(out[1]))


@impl("ensemble-boxes", "soft_nms")
def _ensemble_soft(inputs: dict, ctx: Context, op: str) -> Prepared:
    import ensemble_boxes

    if inputs["convention"] != "opencv":
        raise Unavailable("ensemble-boxes decays iff IoU > threshold: the 'opencv' convention only")
    boxes = (inputs["boxes"].numpy() / np.float32(1000.0)).astype(np.float32)
    scores = inputs["scores"].numpy().copy()
    labels = np.zeros(boxes.shape[0], np.int64)
    method = 1 if inputs["method"] == "linear" else 2
    where = {(*row.tolist(), s): i for i, (row, s) in enumerate(zip(boxes, scores.tolist()))}

    def run():
        return ensemble_boxes.soft_nms([boxes], [scores], [labels], method=method,
                                       iou_thr=float(inputs["iou_threshold"]), sigma=float(inputs["sigma"]),
                                       thresh=float(inputs["min_score"]))

    def result(out):
        kb, ks, _ = out  # its scores are the original ones, so the lookup works
        return kept([where[(*row.tolist(), s)] for row, s in zip(np.asarray(kb, np.float32), ks.tolist())])

    return Prepared(run, result)
