"""multiclass_nms: the fused kernels (C++ CPU, Triton; CUDA on a GPU) equal the composition of
the separate steps (detseg.reference.postprocess) to the bit, on every input form and option;
fixed-size outputs trace, compile and export; ONNX Runtime's NonMaxSuppression agrees on the
class-aware per-image selection.

The composition's exp is the backend's own: the C library's for the CPU kernel (and the
reference), tl.exp for Triton (detseg.triton.multiclass_nms.exp), torch.exp on CUDA for the
CUDA kernel (both are CUDA's expf / exp). Where no exp is evaluated (boxes, activation "none")
every backend equals the CPU kernel bitwise."""

from __future__ import annotations

import importlib
import inspect
import math
import re

import numpy as np
import pytest
import torch

import _backends as B
import _data as D
import detseg
from detseg.reference import postprocess as RP
from tolerances import assert_bitwise, assert_close

pytestmark = pytest.mark.usefixtures("_cpp")


@pytest.fixture
def _cpp():
    B.require("cpp")


def _anchors(n: int, seed: int, dtype) -> torch.Tensor:
    return D.random_boxes(n, seed, scale=300.0, min_wh=4.0, max_wh=80.0).to(dtype)


def _inputs(b: int, n: int, c: int, seed: int, dtype, form: str):
    """(boxes or deltas, scores logits, anchors or None) for one input form."""
    g = D.gen(seed)
    scores = torch.randn(b, n, c, generator=g, dtype=torch.float64).to(dtype)
    per_class = form.endswith("per_class")
    if form.startswith("deltas"):
        shape = (b, n, c, 4) if per_class else (b, n, 4)
        deltas = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.4).to(dtype)
        anchors = _anchors(n, seed + 1, dtype)
        if form.startswith("deltas_batched"):
            anchors = torch.stack([_anchors(n, seed + 2 + i, dtype) for i in range(b)])
        return deltas, scores, anchors
    base = torch.stack([_anchors(n, seed + 3 + i, dtype) for i in range(b)])
    if per_class:
        jitter = torch.randn(b, n, c, 4, generator=g, dtype=torch.float64).to(dtype) * 3
        base = base[:, :, None, :] + jitter
    return base, scores, None


def _run(backend, boxes, scores, anchors, **kw):
    return detseg.ops.multiclass_nms(boxes, scores, anchors=anchors, backend=backend, **kw)


def _same(a, b):
    for x, y in zip(a, b):
        assert_bitwise(x, y)


# The fused kernels testable here; Triton runs in the interpreter (small problems).
FUSED = ["cpp"] + (["triton"] if B.TRITON_ON_CPU else [])


def _triton_exp():
    return importlib.import_module("detseg.triton.multiclass_nms").exp


def _schema_args(boxes, scores, anchors, **kw) -> tuple:
    """The op's positional arguments (csrc/ops.cpp order) for the public keyword arguments `kw`,
    defaults from detseg.ops.multiclass_nms."""
    sig = inspect.signature(detseg.ops.multiclass_nms).parameters
    a = {k: p.default for k, p in sig.items() if p.kind == p.KEYWORD_ONLY}
    a.update(kw)
    return (boxes, scores, anchors, [float(w) for w in a["weights"]], float(a["bbox_xform_clip"]),
            [int(v) for v in (a["image_size"] or ())], float(a["score_threshold"]),
            [int(v) for v in (a["level_sizes"] or ())], int(a["level_top_k"]), int(a["pre_nms_top_k"]),
            float(a["iou_threshold"]), int(a["max_detections"]), bool(a["class_agnostic"]),
            int(a["background_class"]), str(a["score_activation"]))


def _uses_exp(anchors, kw) -> bool:
    return anchors is not None or kw.get("score_activation", "none") != "none"


def _want(backend, boxes, scores, anchors, **kw):
    """The oracle of `backend`: the reference composition evaluated with the backend's exp."""
    if backend == "triton" and _uses_exp(anchors, kw):
        exp = _triton_exp()
        return RP.compose(*_schema_args(boxes, scores, anchors, **kw), exp=exp,
                          activation=lambda s, act: RP.activate(s, act, exp=exp))
    return _run("reference", boxes, scores, anchors, **kw)


def _check(backend, boxes, scores, anchors, **kw):
    """Runs `backend`, asserts it equals its oracle (and the CPU kernel where no exp is
    evaluated) bitwise, returns its result."""
    got = _run(backend, boxes, scores, anchors, **kw)
    _same(got, _want(backend, boxes, scores, anchors, **kw))
    if backend != "cpp" and not _uses_exp(anchors, kw):
        _same(got, _run("cpp", boxes, scores, anchors, **kw))
    return got


FORMS = ["boxes", "boxes_per_class", "deltas", "deltas_per_class", "deltas_batched", "deltas_batched_per_class"]
OPTIONS = [
    dict(score_threshold=0.5, iou_threshold=0.5, max_detections=20),
    dict(score_threshold=0.2, iou_threshold=0.3, max_detections=50, score_activation="sigmoid",
         level_sizes=[40, 25, 8], level_top_k=15, pre_nms_top_k=30, image_size=(200, 260)),
    dict(score_threshold=0.05, iou_threshold=0.6, max_detections=200, score_activation="softmax", background_class=0,
         class_agnostic=True),
    dict(score_threshold=-math.inf, iou_threshold=0.0, max_detections=7, pre_nms_top_k=0),
    dict(score_threshold=0.0, iou_threshold=1.0, max_detections=300, score_activation="sigmoid", level_top_k=3,
         level_sizes=[0, 73], weights=(10.0, 10.0, 5.0, 5.0), bbox_xform_clip=1.0, image_size=(120, 90)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("opt", range(len(OPTIONS)))
@pytest.mark.parametrize("backend", FUSED)
def test_fused_equals_reference_composition(backend, dtype, form, opt):
    if B.interpreted(backend, "cpu") and dtype == torch.float64 and form not in ("boxes", "deltas_batched_per_class"):
        pytest.skip("the interpreter is slow: float64 on two forms for Triton")
    kw = OPTIONS[opt]
    c = 1 if opt == 3 else 5
    boxes, scores, anchors = _inputs(3, 73, c, 10 * opt + len(form), dtype, form)
    got = _check(backend, boxes, scores, anchors, **kw)
    if backend != "cpp":
        # Where exp differs in its last bit the results may too; on these inputs no decision
        # moves (selection exact, values within the float tolerance).
        cpu = _run("cpp", boxes, scores, anchors, **kw)
        for i in (0, 3, 4):
            assert_bitwise(got[i], cpu[i])
        assert_close(got.boxes, cpu.boxes)
        assert_close(got.scores, cpu.scores)
    assert got.boxes.dtype == dtype and got.classes.dtype == torch.int64
    num = got.num_detections
    k = kw["max_detections"]
    for b in range(3):
        m = int(num[b])
        assert (got.classes[b, m:] == -1).all() and (got.indices[b, m:] == -1).all()
        assert (got.scores[b, m:] == 0).all() and (got.boxes[b, m:] == 0).all()
        s = got.scores[b, :m]
        assert (s[1:] <= s[:-1]).all()  # score descending
        assert m <= k
    if opt == 2:
        assert not (got.classes == 0).any()  # background class never reported


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_class", [False, True])
def test_fused_equals_composition_of_compiled_ops_larger(dtype, per_class):
    # The same composition with the compiled batched_nms / clip: a larger problem, many ties
    # removed by a continuous score distribution, many suppressions.
    form = "deltas_per_class" if per_class else "deltas"
    boxes, scores, anchors = _inputs(2, 1500, 12, 7, dtype, form)
    kw = dict(weights=[1.0, 1.0, 1.0, 1.0], bbox_xform_clip=RP_CLIP, image_size=[400, 500], score_threshold=0.3,
              level_sizes=[1000, 400, 100], level_top_k=300, pre_nms_top_k=700, iou_threshold=0.5,
              max_detections=100, class_agnostic=False, background_class=-1, score_activation="sigmoid")
    got = torch.ops.detseg.multiclass_nms(boxes, scores, anchors, *kw.values())
    want = RP.compose(boxes, scores, anchors, *kw.values(), nms_fn=torch.ops.detseg.batched_nms,
                      clip_fn=torch.ops.detseg.clip_boxes_to_image)
    _same(got, want)
    assert (got[0] == 100).all()


RP_CLIP = math.log(1000.0 / 16)


def test_ties_order_by_anchor_then_class():
    # Every score equal: the output is (anchor, class) ascending, boxes far apart (no suppression).
    n, c = 6, 3
    boxes = torch.stack([torch.tensor([10.0 * i, 0, 10.0 * i + 5, 5]) for i in range(n)])[None]
    scores = torch.full((1, n, c), 0.7)
    scores[0, 2, 1] = -0.0  # -0.0 ties with +0.0 (torch.sort's order, the C++ keys')
    scores[0, 4, 0] = 0.0
    scores[0, 1, 2] = 0.0
    for backend in ["reference", *FUSED]:
        r = _run(backend, boxes, scores, None, score_threshold=-0.5, max_detections=n * c)
        assert r.num_detections.item() == n * c
        flat = [f for f in range(n * c) if f not in (7, 12, 5)] + [5, 7, 12]
        assert r.indices[0].tolist() == [f // c for f in flat]
        assert r.classes[0].tolist() == [f % c for f in flat]
        assert torch.equal(r.scores[0, -3:].view(torch.int32), torch.tensor([0.0, -0.0, 0.0]).view(torch.int32))


def test_threshold_is_strict_and_nan_scores_are_dropped():
    boxes = torch.stack([torch.tensor([10.0 * i, 0, 10.0 * i + 5, 5]) for i in range(5)])[None]
    scores = torch.tensor([[[0.5], [float("nan")], [0.6], [0.5000001], [float("inf")]]])
    for backend in ["reference", *FUSED]:
        r = _run(backend, boxes, scores, None, score_threshold=0.5, max_detections=10)
        assert r.num_detections.item() == 3
        assert r.indices[0, :3].tolist() == [4, 2, 3]
    # sigmoid of NaN is NaN: dropped as well
    for backend in FUSED:
        r = _run(backend, boxes, scores, None, score_threshold=0.5, max_detections=10, score_activation="sigmoid")
        assert 1 not in r.indices[0].tolist() and r.num_detections.item() == 4


def test_empty_images_k_larger_than_candidates_and_degenerate_sizes():
    boxes, scores, anchors = _inputs(4, 50, 3, 5, torch.float32, "deltas")
    scores[1] = -10.0  # no candidate in image 1
    scores[3, :, :] = -10.0
    scores[3, 7, 2] = 10.0  # exactly one in image 3
    for backend in ["reference", *FUSED]:
        r = _run(backend, boxes, scores, anchors, score_threshold=0.5, max_detections=500)
        assert r.num_detections[1] == 0 and r.num_detections[3] == 1
        assert r.indices[3, 0] == 7 and r.classes[3, 0] == 2
        assert r.boxes.shape == (4, 500, 4)
    for backend in FUSED:
        _check(backend, boxes, scores, anchors, max_detections=500)
        # no candidate anywhere, and none after a top-k of 0
        _check(backend, boxes, scores, anchors, score_threshold=math.inf)
        _check(backend, boxes, scores, anchors, level_top_k=0, level_sizes=[20, 30])
        for b, n, c, k in [(0, 5, 3, 4), (2, 0, 3, 4), (2, 5, 0, 4), (2, 5, 3, 0)]:
            bx = torch.zeros(b, n, 4)
            sc = torch.rand(b, n, c)
            r = _check(backend, bx, sc, None, max_detections=k)
            assert r.boxes.shape == (b, k, 4) and r.num_detections.shape == (b,)


@pytest.mark.parametrize("backend", FUSED)
def test_per_class_boxes_equal_to_expanded_shared_boxes(backend):
    boxes, scores, _ = _inputs(2, 60, 4, 3, torch.float32, "boxes")
    expanded = boxes[:, :, None, :].expand(2, 60, 4, 4)  # non-contiguous (stride 0)
    a = _run(backend, boxes, scores, None, score_threshold=0.1)
    b = _run(backend, expanded, scores, None, score_threshold=0.1)
    _same(a, b)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("form", ["deltas_batched_per_class", "deltas", "boxes_per_class"])
def test_non_contiguous_inputs(backend, form):
    boxes, scores, anchors = _inputs(2, 41, 3, 17, torch.float32, form)
    kw = dict(score_threshold=0.3, score_activation="sigmoid", image_size=(250, 300), max_detections=25)
    want = _run(backend, boxes, scores, anchors, **kw)
    # every tensor a strided view: a column slice of a wider buffer, a transposed copy
    wide = torch.zeros(*boxes.shape[:-1], 7)
    wide[..., 1:5] = boxes
    sc = scores.transpose(1, 2).contiguous().transpose(1, 2)
    an = None
    if anchors is not None:
        an = torch.zeros(*anchors.shape[:-1], 9)[..., 2:6]
        an.copy_(anchors)
    got = _run(backend, wide[..., 1:5], sc, an, **kw)
    _same(got, want)
    assert int(got.num_detections.sum()) > 0


@pytest.mark.parametrize("backend", FUSED)
def test_class_agnostic_equals_nms_over_candidates(backend):
    boxes, scores, _ = _inputs(1, 80, 4, 11, torch.float64, "boxes")
    r = _run(backend, boxes, scores, None, score_threshold=0.2, class_agnostic=True, max_detections=1000)
    flat = scores[0].reshape(-1)
    idx = torch.where(flat > 0.2)[0]
    cand = boxes[0, idx // 4]
    keep = detseg.ops.nms(cand, flat[idx], 0.5)
    m = int(r.num_detections[0])
    assert r.indices[0, :m].tolist() == (idx[keep] // 4).tolist()
    assert r.classes[0, :m].tolist() == (idx[keep] % 4).tolist()


@pytest.mark.parametrize("backend", FUSED)
def test_half_inputs_compute_in_float32(backend):
    boxes, scores, anchors = _inputs(2, 40, 3, 2, torch.float32, "deltas")
    h = _run(backend, boxes.half(), scores.half(), anchors.half(), score_threshold=0.3)
    f = _run(backend, boxes.half().float(), scores.half().float(), anchors.half().float(), score_threshold=0.3)
    assert h.boxes.dtype == torch.float16 and h.scores.dtype == torch.float16
    assert torch.equal(h.indices, f.indices) and torch.equal(h.boxes, f.boxes.half())


def test_thread_count_does_not_change_the_result():
    boxes, scores, anchors = _inputs(6, 2000, 10, 4, torch.float32, "deltas")
    run = lambda: _run("cpp", boxes, scores, anchors, score_threshold=0.5, score_activation="sigmoid",  # noqa: E731
                       max_detections=100)
    _same(B.at_threads(1, run), B.at_threads(2, run))


# ---------------------------------------------------------------- ONNX Runtime oracle

def test_class_aware_selection_vs_onnxruntime():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou", "score"], ["selected"])
    graph = helper.make_graph(
        [node], "nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [None, None, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, None, None]),
         helper.make_tensor_value_info("max_out", TensorProto.INT64, [1]),
         helper.make_tensor_value_info("iou", TensorProto.FLOAT, [1]),
         helper.make_tensor_value_info("score", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    thr, sthr = 0.5, 0.3
    b, n, c = 3, 300, 4
    for attempt in range(20):
        boxes = torch.stack([D.clustered_boxes(n, 40 + 3 * attempt + i, clusters=6, jitter=5)
                             for i in range(b)]).float()
        iou = torch.stack([detseg.reference.box_iou_matrix(x.double(), x.double(), "iou", 0.0) for x in boxes])
        if bool(((iou - thr).abs() > 1e-4).all()):
            break
    scores = torch.rand(b, n, c, generator=D.gen(8))
    sel = sess.run(None, {"boxes": boxes.numpy(), "scores": scores.permute(0, 2, 1).contiguous().numpy(),
                          "max_out": np.array([n], dtype=np.int64), "iou": np.array([thr], dtype=np.float32),
                          "score": np.array([sthr], dtype=np.float32)})[0]
    r = _run("cpp", boxes, scores, None, score_threshold=sthr, iou_threshold=thr, max_detections=n * c)
    for i in range(b):
        m = int(r.num_detections[i])
        ours = set(zip(r.classes[i, :m].tolist(), r.indices[i, :m].tolist()))
        theirs = {(int(cc), int(nn)) for bb, cc, nn in sel.tolist() if bb == i}
        assert ours == theirs
        assert len(ours) < int((scores[i] > sthr).sum())  # suppressions happened


# ---------------------------------------------------------------- errors

def _ok():
    boxes, scores, anchors = _inputs(2, 10, 3, 1, torch.float32, "deltas")
    return boxes, scores, anchors


@pytest.mark.parametrize("backend", ["reference", *FUSED])
@pytest.mark.parametrize("mutate,exc,match", [
    (lambda a: a.update(scores=a["scores"][0]), ValueError, r"scores must be a Tensor\[B, N, C\]"),
    (lambda a: a.update(boxes=a["boxes"][:, :5]), ValueError, r"boxes \(deltas\) must be a Tensor\[B, N, 4\]"),
    (lambda a: a.update(anchors=a["anchors"][:3]), ValueError, r"anchors must be a Tensor\[N, 4\]"),
    (lambda a: a.update(weights=(1.0, 0.0, 1.0, 1.0)), ValueError, r"weights must be 4 finite numbers > 0"),
    (lambda a: a.update(image_size=(10,)), ValueError, r"image_size must be empty"),
    (lambda a: a.update(level_sizes=[3, 3]), ValueError, r"level_sizes must be counts >= 0 summing to N = 10"),
    (lambda a: a.update(level_top_k=-2), ValueError, r"level_top_k must be >= 0 or -1"),
    (lambda a: a.update(iou_threshold=1.5), ValueError, r"iou_threshold must be a number in \[0, 1\]"),
    (lambda a: a.update(max_detections=-1), ValueError, r"max_detections must be >= 0"),
    (lambda a: a.update(background_class=3), ValueError, r"background_class must be -1 \(none\) or a class"),
    (lambda a: a.update(score_activation="relu"), ValueError, r"score_activation must be one of"),
    (lambda a: a.update(score_threshold=float("nan")), ValueError, r"score_threshold must be a number"),
])
def test_bad_input(backend, mutate, exc, match):
    boxes, scores, anchors = _ok()
    a = dict(boxes=boxes, scores=scores, anchors=anchors)
    mutate(a)
    kw = {k: v for k, v in a.items() if k not in ("boxes", "scores")}
    with pytest.raises(exc, match="detseg.multiclass_nms: " + match):
        detseg.ops.multiclass_nms(a["boxes"], a["scores"], backend=backend, **kw)


def test_bad_dtype_at_the_op():
    boxes, scores, anchors = _ok()
    with pytest.raises(TypeError, match=r"detseg.multiclass_nms: boxes must have the dtype of scores"):
        torch.ops.detseg.multiclass_nms(boxes.double(), scores, anchors, [1.0] * 4, 4.0, [], 0.0, [], -1, -1, 0.5,
                                        10, False, -1, "none")
    with pytest.raises(TypeError, match=r"detseg.multiclass_nms: scores must be float32 or float64"):
        torch.ops.detseg.multiclass_nms(boxes.half(), scores.half(), None, [1.0] * 4, 4.0, [], 0.0, [], -1, -1, 0.5,
                                        10, False, -1, "none")


# ---------------------------------------------------------------- registration contract

def _op_args():
    boxes, scores, anchors = _inputs(2, 30, 3, 9, torch.float32, "deltas")
    return (boxes, scores, anchors, [1.0, 1.0, 1.0, 1.0], RP_CLIP, [100, 120], 0.2, [20, 10], 8, 12, 0.5, 10, False,
            -1, "sigmoid")


def test_opcheck():
    torch.library.opcheck(torch.ops.detseg.multiclass_nms.default, _op_args())
    a = list(_op_args())
    a[2] = None
    a[0] = a[0] + 50
    torch.library.opcheck(torch.ops.detseg.multiclass_nms.default, tuple(a))


class _Head(torch.nn.Module):
    def forward(self, deltas, scores, anchors):
        r = detseg.ops.multiclass_nms(deltas, scores, anchors=anchors, image_size=(100, 120), score_threshold=0.2,
                                      level_sizes=(20, 10), level_top_k=8, max_detections=10,
                                      score_activation="sigmoid")
        return r.num_detections, r.boxes, r.scores, r.classes, r.indices


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
def test_compile_fullgraph_trace_and_export():
    args = _op_args()[:3]
    want = _Head()(*args)
    compiled = torch.compile(_Head(), fullgraph=True, backend="eager")
    _same(compiled(*args), want)
    traced = torch.jit.trace(_Head(), args, check_trace=False)
    _same(traced(*args), want)
    ep = torch.export.export(_Head(), args)
    _same(ep.module()(*args), want)
    assert any("multiclass_nms" in str(n.target) for n in ep.graph.nodes)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("thr", [0.3, 0.05, 0.999, 0.0, -0.5, 1.0, 1e-30])
@pytest.mark.parametrize("backend", FUSED)
def test_sigmoid_screen_at_the_threshold_boundary(backend, dtype, thr):
    if B.interpreted(backend, "cpu") and thr not in (0.3, 1e-30):
        pytest.skip("the interpreter is slow: two thresholds suffice for Triton (it screens nothing)")
    # The kernel screens raw logits before evaluating the sigmoid: logits within a few hundred
    # ulps of the boundary must get the reference's decision.
    p = min(max(thr, 1e-6), 1 - 1e-6)
    x0 = torch.tensor(math.log(p) - math.log1p(-p), dtype=dtype)
    xs = [x0]
    up, down = x0.clone(), x0.clone()
    for _ in range(300):
        up = torch.nextafter(up, torch.tensor(math.inf, dtype=dtype))
        down = torch.nextafter(down, torch.tensor(-math.inf, dtype=dtype))
        xs += [up, down]
    xs += [torch.tensor(v, dtype=dtype) for v in (-100.0, 100.0, -math.inf, math.inf, math.nan)]
    scores = torch.stack(xs).reshape(1, -1, 1)
    boxes = torch.arange(scores.shape[1], dtype=dtype)[None, :, None] * 10 + torch.tensor([0, 0, 5, 5], dtype=dtype)
    kw = dict(score_threshold=thr, score_activation="sigmoid", max_detections=scores.shape[1])
    _check(backend, boxes, scores, None, **kw)


@pytest.mark.parametrize("backend", FUSED)
def test_softmax_rows_with_nan_and_inf(backend):
    scores = torch.randn(2, 6, 4, generator=D.gen(3))
    scores[0, 1, 2] = float("nan")  # the whole row becomes NaN: dropped
    scores[0, 3, 0] = float("inf")  # inf - inf = NaN: dropped as well
    scores[1, 2, :] = -math.inf
    boxes = torch.arange(6.0)[None, :, None].expand(2, 6, 1) * 10 + torch.tensor([0.0, 0, 5, 5])
    kw = dict(score_threshold=0.0, score_activation="softmax", max_detections=30)
    r = _check(backend, boxes, scores, None, **kw)
    got = set(zip(r.indices[0, :int(r.num_detections[0])].tolist()))
    assert (1,) not in got and (3,) not in got and (0,) in got


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("form", ["boxes_per_class", "deltas"])
def test_nan_and_inf_coordinates(backend, form):
    # A NaN coordinate neither suppresses nor is suppressed (detseg/nms.h); huge deltas with no
    # xform clip decode to infinite sides; the clip to the image passes NaN through.
    boxes, scores, anchors = _inputs(2, 30, 3, 29, torch.float32, form)
    boxes = boxes.clone()
    boxes[0, 3, ..., 1] = float("nan")
    boxes[1, 5, ..., 2] = float("inf") if anchors is None else 200.0
    boxes[1, 6, ..., 0] = -float("inf") if anchors is None else float("nan")
    for clip in (None, (150, 160)):
        kw = dict(score_threshold=0.0, max_detections=60, iou_threshold=0.3, image_size=clip,
                  bbox_xform_clip=math.inf, score_activation="sigmoid")
        r = _check(backend, boxes, scores, anchors, **kw)
        assert not torch.isfinite(r.boxes).all()


@pytest.mark.parametrize("k", [1, 40, 600])
def test_prefix_rounds_reach_every_candidate(k):
    # Few boxes survive NMS among 5000 candidates: the kernel's NMS prefix must grow (1024 ->
    # 4096 -> 5000) and still give the composition's answer.
    n = 2500
    boxes = torch.stack([D.clustered_boxes(n, 30 + i, clusters=12, jitter=3) for i in range(2)]).float()
    scores = torch.rand(2, n, 2, generator=D.gen(4))
    kw = [[1.0] * 4, RP_CLIP, [], -math.inf, [], -1, -1, 0.3, k, False, -1, "none"]
    got = torch.ops.detseg.multiclass_nms(boxes, scores, None, *kw)
    want = RP.compose(boxes, scores, None, *kw, nms_fn=torch.ops.detseg.batched_nms)
    _same(got, want)
    assert int(got[0].min()) < 600  # the whole candidate list was needed


@pytest.mark.parametrize("act,thr", [("softmax", 0.2), ("softmax", 0.9), ("sigmoid", 0.9), ("softmax", 1.0)])
@pytest.mark.parametrize("backend", FUSED)
def test_screened_activation_many_classes(backend, act, thr):
    if B.interpreted(backend, "cpu") and act == "sigmoid":
        pytest.skip("the interpreter is slow: ~5000 candidates survive the sigmoid threshold")
    # Most rows / scores are screened out before the activation is evaluated.
    boxes, scores, anchors = _inputs(2, 300, 40, 21, torch.float32, "deltas")
    scores = scores * 3
    kw = dict(score_threshold=thr, score_activation=act, max_detections=100, background_class=3)
    got = _check(backend, boxes, scores, anchors, **kw)
    assert (int(got.num_detections.sum()) > 0) == (thr < 1.0)


@pytest.mark.skipif(not B.TRITON_ON_CPU, reason="Triton interpreter not enabled")
def test_triton_nms_split_into_image_chunks(monkeypatch):
    # The suppression bitmask is sized by the candidates of one NMS call: large batches are
    # split into calls of a few images (here one image per call); the answer must not move.
    mod = importlib.import_module("detseg.triton.multiclass_nms")
    boxes, scores, anchors = _inputs(3, 50, 4, 23, torch.float32, "deltas_per_class")
    kw = dict(score_threshold=0.1, score_activation="sigmoid", iou_threshold=0.4, max_detections=40)
    whole = _run("triton", boxes, scores, anchors, **kw)
    monkeypatch.setattr(mod, "_NMS_CHUNK", 1)
    _same(_run("triton", boxes, scores, anchors, **kw), whole)
    assert (whole.num_detections == 40).all()


# ---------------------------------------------------------------- CUDA kernel (GPU CI only)

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_kernel_equals_composition():
    # csrc/cuda/multiclass_nms.cu: the composition on the GPU with the GPU's exp (torch.exp on
    # CUDA and detseg::dexp in device code are both CUDA's expf / exp); exp-free paths equal
    # the CPU kernel bitwise. One test (a skipped copy per case would flood CPU-only reports).
    for dtype in (torch.float32, torch.float64):
        for form in FORMS:
            for opt in range(len(OPTIONS)):
                _cuda_case(dtype, form, opt)


def _cuda_case(dtype, form, opt):
    kw = OPTIONS[opt]
    c = 1 if opt == 3 else 5
    boxes, scores, anchors = _inputs(3, 73, c, 10 * opt + len(form), dtype, form)
    cu = [None if t is None else t.cuda() for t in (boxes, scores, anchors)]
    assert torch._C._dispatch_has_kernel_for_dispatch_key("detseg::multiclass_nms", "CUDA")
    got = _run("cpp", *cu, **kw)
    want = RP.compose(*_schema_args(*cu, **kw), exp=torch.exp,
                      activation=lambda s, act: RP.activate(s, act, exp=torch.exp))
    _same([t.cpu() for t in got], [t.cpu() for t in want])
    cpu = _run("cpp", boxes, scores, anchors, **kw)
    if not _uses_exp(anchors, kw):
        _same([t.cpu() for t in got], cpu)
    for i in (0, 3, 4):
        assert_bitwise(got[i].cpu(), cpu[i])
    assert_close(got.boxes, cpu.boxes)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_kernel_edge_cases_and_compile():
    boxes, scores, anchors = _inputs(4, 50, 3, 5, torch.float32, "deltas")
    scores[1] = -10.0
    scores[3, 7, 2] = float("nan")
    cu = [t.cuda() for t in (boxes, scores, anchors)]
    for kw in (dict(max_detections=500), dict(score_threshold=math.inf), dict(level_top_k=0, level_sizes=[20, 30]),
               dict(score_activation="softmax", background_class=1, class_agnostic=True, pre_nms_top_k=9)):
        got = _run("cpp", *cu, **kw)
        want = RP.compose(*_schema_args(*cu, **kw), exp=torch.exp,
                          activation=lambda s, act: RP.activate(s, act, exp=torch.exp))
        _same([t.cpu() for t in got], [t.cpu() for t in want])
    for b, n, c, k in [(0, 5, 3, 4), (2, 0, 3, 4), (2, 5, 0, 4), (2, 5, 3, 0)]:
        r = _run("cpp", torch.zeros(b, n, 4, device="cuda"), torch.rand(b, n, c, device="cuda"), None,
                 max_detections=k)
        assert r.boxes.shape == (b, k, 4) and r.boxes.is_cuda
    args = tuple(t.cuda() if isinstance(t, torch.Tensor) else t for t in _op_args())
    torch.library.opcheck(torch.ops.detseg.multiclass_nms.default, args)
    with B.fresh_dynamo():
        compiled = torch.compile(_Head(), fullgraph=True, backend="eager")
        _same([t.cpu() for t in compiled(*args[:3])], [t.cpu() for t in _Head()(*args[:3])])


def test_cuda_kernel_source_uses_the_shared_pieces():
    # No GPU needed: csrc/cuda/multiclass_nms.cu is the op's CUDA kernel, computes with the
    # header math the CPU kernel calls, reuses cuda/nms.cu's bitmask NMS (no second copy), and
    # has no atomics (deterministic without a deterministic-mode branch).
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    src = (root / "csrc/cuda/multiclass_nms.cu").read_text()
    assert 'm.impl("multiclass_nms", &detseg::cuda::multiclass_nms_cuda)' in src
    assert "TORCH_LIBRARY_IMPL(detseg, CUDA, m)" in src
    for fn in ("CandidateBox<", "softmax_row(", "sigmoid(", "nms_threshold_f32(", "grouped_nms_keep(",
               "multiclass_nms_begin(", "/*stable=*/true"):
        assert fn in src, fn
    # the argument checks, padded outputs, decode and clip shared with the CPU kernel
    host = (root / "csrc/multiclass_nms_host.h").read_text()
    assert "decode_box(" in host and "checks::multiclass_nms(" in host
    cpu = (root / "csrc/cpu/multiclass_nms.cpp").read_text()
    assert "CandidateBox<" in cpu and "multiclass_nms_begin(" in cpu
    assert not re.search(r"\batomic[A-Z]\w*\(", src) and "nms_mask_kernel" not in src
    assert "grouped_nms_keep(" in (root / "csrc/cuda/nms.cu").read_text()
