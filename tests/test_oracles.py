"""detseg against external implementations: ONNX Runtime's NonMaxSuppression, OpenCV's
cv2.dnn.NMSBoxes, and the IoU family written independently in numpy.

The NMS peers are compared where their conventions coincide with detseg's:
  - distinct scores: ORT keeps candidates in a max-heap on the score alone, so its order
    among equal scores is unspecified (detseg: stable, input order);
  - positive-area boxes: ORT never lets a zero-area box suppress (detseg: IoU 0 suppresses
    nothing either, but two identical zero-area boxes are NaN in detseg, and in OpenCV
    (Aa + Ab) <= eps counts as full overlap and suppresses);
  - no pair IoU within 1e-4 of the threshold: ORT compares in float32 with its own operation
    order and OpenCV takes overlap = 1.f - float(1 - inter / union) (jaccardDistance), so
    their decisions at the exact boundary need not match detseg's double(iou_f32) > thr;
  - OpenCV: integer-valued boxes given as [x, y, w, h] (areas exact for its integer Rect),
    score_threshold 0 with positive scores (its filter is strict >), eta = 1 (no adaptive
    threshold), top_k = 0 (no truncation).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import _backends as B
import _data as D
import detseg
from tolerances import assert_close

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

ORACLE_TARGETS = B.targets()


def _far_from_threshold(boxes: torch.Tensor, thr: float, margin: float = 1e-4) -> bool:
    iou = detseg.reference.box_iou_matrix(boxes.double(), boxes.double(), "iou", 0.0)
    return bool(((iou - thr).abs() > margin).all())


def _inputs(n: int, seed: int, thr: float, integer: bool = False):
    """Positive-area boxes, distinct scores, no pair IoU near thr (re-drawn until so)."""
    for attempt in range(50):
        s = seed * 100 + attempt
        boxes = D.integer_boxes(n, s, scale=60, max_wh=30) if integer else D.clustered_boxes(n, s, clusters=6, jitter=5)
        if _far_from_threshold(boxes, thr):
            return boxes.float(), D.distinct_scores(n, s).float()
    raise AssertionError("could not draw inputs away from the threshold")


# ---------------------------------------------------------------- ONNX Runtime

def _ort_session():
    from onnx import TensorProto, helper

    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou_thr"], ["selected"],
                            center_point_box=0)
    graph = helper.make_graph(
        [node], "nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, None, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, None]),
         helper.make_tensor_value_info("max_out", TensorProto.INT64, [1]),
         helper.make_tensor_value_info("iou_thr", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def ort_nms():
    sess = _ort_session()

    def run(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> list[int]:
        sel = sess.run(None, {"boxes": boxes.float().numpy()[None], "scores": scores.float().numpy()[None, None],
                              "max_out": np.array([len(scores)], dtype=np.int64),
                              "iou_thr": np.array([thr], dtype=np.float32)})[0]
        assert (sel[:, 0] == 0).all() and (sel[:, 1] == 0).all()
        return sel[:, 2].tolist()

    return run


def _skip_large_interpreted(target, n: int):
    if B.interpreted(*target) and n > 33:
        pytest.skip("interpreted Triton: small inputs only")


def _nms_equals(target, boxes: torch.Tensor, scores: torch.Tensor, thr: float, theirs: list[int]):
    """detseg.nms on `target` keeps a peer's indices, order included."""
    backend, device = target
    keep = detseg.nms(boxes.to(device), scores.to(device), thr, backend=backend).cpu().tolist()
    assert set(keep) == set(theirs)
    assert keep == theirs
    n = boxes.shape[0]
    if n >= 257:  # the comparison must include suppressions to mean anything
        assert len(keep) < n


@pytest.mark.parametrize("target", ORACLE_TARGETS)
@pytest.mark.parametrize("n", [1, 7, 33, 257])
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_vs_onnxruntime(target, n, thr, ort_nms):
    _skip_large_interpreted(target, n)
    boxes, scores = _inputs(n, n, thr)
    _nms_equals(target, boxes, scores, thr, ort_nms(boxes, scores, thr))  # ORT selects in score order too


@pytest.mark.parametrize("target", ORACLE_TARGETS)
def test_nms_vs_onnxruntime_xyxy_any_corner_order(target, ort_nms):
    # center_point_box=0 takes any diagonal corner pair; detseg's xyxy is one of them
    backend, device = target
    boxes, scores = _inputs(40, 3, 0.5)
    flipped = boxes[:, [2, 3, 0, 1]]  # (x2, y2, x1, y1): the same boxes for ORT
    keep = detseg.nms(boxes.to(device), scores.to(device), 0.5, backend=backend).cpu().tolist()
    assert keep == ort_nms(flipped, scores, 0.5)


# ---------------------------------------------------------------- OpenCV

def _cv2_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> list[int]:
    xywh = detseg.reference.box_convert(boxes.double(), "xyxy", "xywh").round().long().tolist()
    idx = cv2.dnn.NMSBoxes(xywh, scores.tolist(), 0.0, thr, eta=1.0, top_k=0)
    return np.asarray(idx).reshape(-1).tolist()


@pytest.mark.parametrize("target", ORACLE_TARGETS)
@pytest.mark.parametrize("n", [1, 7, 33, 257])
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_vs_opencv(target, n, thr):
    _skip_large_interpreted(target, n)
    boxes, scores = _inputs(n, n + 7, thr, integer=True)
    # both sort scores descending (stable) and keep that order
    _nms_equals(target, boxes, scores, thr, _cv2_nms(boxes, scores, thr))


@pytest.mark.parametrize("target", ORACLE_TARGETS)
def test_batched_nms_vs_per_class_onnxruntime(target, ort_nms):
    backend, device = target
    boxes, scores = _inputs(120, 9, 0.5)
    idxs = torch.randint(0, 4, (120,), generator=D.gen(2))
    keep = detseg.batched_nms(boxes.to(device), scores.to(device), idxs.to(device), 0.5, backend=backend).cpu()
    theirs = []
    for c in range(4):
        m = torch.where(idxs == c)[0]
        theirs += m[ort_nms(boxes[m], scores[m], 0.5)].tolist()
    assert sorted(keep.tolist()) == sorted(theirs)


# ---------------------------------------------------------------- IoU family in numpy

def np_iou_family(a: np.ndarray, b: np.ndarray, kind: str, eps: float = 1e-7) -> np.ndarray:
    """Written from the papers' definitions (and torchvision's conventions: no eps in IoU/GIoU,
    eps in the DIoU diagonal, CIoU alpha = v / (1 - iou + v + eps)), float64."""
    a, b = a[:, None, :], b[None, :, :]
    wa, ha = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1]
    wb, hb = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = wa * ha + wb * hb - inter
    iou = inter / union
    if kind == "iou":
        return iou
    cw = np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0])
    ch = np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])
    if kind == "giou":
        return iou - (cw * ch - union) / (cw * ch)
    rho2 = ((a[..., 0] + a[..., 2]) / 2 - (b[..., 0] + b[..., 2]) / 2) ** 2 + \
           ((a[..., 1] + a[..., 3]) / 2 - (b[..., 1] + b[..., 3]) / 2) ** 2
    diou = iou - rho2 / (cw ** 2 + ch ** 2 + eps)
    if kind == "diou":
        return diou
    v = 4 / math.pi ** 2 * (np.arctan(wa / ha) - np.arctan(wb / hb)) ** 2
    return diou - v / (1 - iou + v + eps) * v


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
@pytest.mark.parametrize("target", ORACLE_TARGETS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_iou_family_vs_numpy(kind, target, dtype):
    backend, device = target
    a = D.clustered_boxes(45, 1, clusters=5, jitter=8).to(dtype)
    b = D.random_boxes(31, 2, scale=150, max_wh=60).to(dtype)
    fn = {"iou": detseg.box_iou, "giou": detseg.generalized_box_iou, "diou": detseg.distance_box_iou,
          "ciou": detseg.complete_box_iou}[kind]
    out = fn(a.to(device), b.to(device), backend=backend)
    assert_close(out, torch.from_numpy(np_iou_family(a.double().numpy(), b.double().numpy(), kind)))


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
@pytest.mark.parametrize("target", ORACLE_TARGETS)
def test_iou_losses_vs_numpy(kind, target):
    # on overlapping pairs the loss form (eps in the IoU denominator, intersection masked)
    # differs from the matrix form by O(eps / union) only
    backend, device = target
    a = D.clustered_boxes(64, 3, clusters=4, jitter=4)
    b = a + (torch.rand(64, 4, generator=D.gen(4), dtype=torch.float64) - 0.5) * 4
    fn = {"giou": detseg.generalized_box_iou_loss, "diou": detseg.distance_box_iou_loss,
          "ciou": detseg.complete_box_iou_loss}[kind]
    out = fn(a.to(device), b.to(device), backend=backend)
    want = 1 - np.diagonal(np_iou_family(a.numpy(), b.numpy(), kind))
    assert_close(out, torch.from_numpy(want.copy()), rtol=1e-6, atol=1e-8)
