"""Benchmark providers: detseg's backends and every installed peer library.

A provider has, per op, a *prepare* function ``prepare(inputs, ctx) -> Prepared``. Everything a
provider needs before the call (importing, building and compiling a model, creating a session,
converting the inputs to its own format, normalising coordinates, moving data to a GPU) happens
in prepare, outside the timed region; ``Prepared.run()`` is the one timed call, and
``Prepared.result`` turns its output into a canonical form (outside the timing) so that every
provider can be checked against detseg.reference. Later op families add entries to a
provider's ``impls`` (or new providers) and matching workloads in workloads.py.

Canonical results: NMS-like ops -> sorted np.int64 array of kept input indices; matrix and RoI
ops -> a float CPU tensor.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Any, Callable

import numpy as np
import torch

from .workloads import register_unique


class Unavailable(Exception):
    """A provider (or one of its ops) cannot run here; the message says why."""


@dataclasses.dataclass
class Context:
    threads: int
    device: str = "cpu"


@dataclasses.dataclass
class Prepared:
    run: Callable[[], Any]
    result: Callable[[Any], Any] | None = None


@dataclasses.dataclass
class Provider:
    name: str
    group: str                                  # "detseg" or "peer" (ratios are to the best peer)
    probe: Callable[[], str]                    # -> version string; raises Unavailable / ImportError
    note: str                                   # what the timed region contains (table footnote)
    # op -> prepare(inputs, ctx, op) -> Prepared
    impls: dict[str, Callable[[dict, Context, str], Prepared]] = dataclasses.field(default_factory=dict)

    def version(self) -> str:
        return self.probe()


PROVIDERS: dict[str, Provider] = {}


def register(p: Provider) -> Provider:
    return register_unique(PROVIDERS, "provider", p)


def impl(provider: str, *ops: str):
    """Decorator: registers `fn` as `provider`'s prepare function for each op in `ops`."""
    def deco(fn):
        for op in ops:
            PROVIDERS[provider].impls[op] = fn
        return fn
    return deco


def probe(p: Provider) -> tuple[bool, str]:
    """(True, version) when `p` can run here, else (False, reason)."""
    try:
        return True, p.version()
    except Unavailable as exc:
        return False, str(exc)
    except ImportError as exc:
        return False, f"not installed ({exc})"
    except Exception as exc:  # a broken install must not stop the run
        return False, f"{type(exc).__name__}: {exc}"


def _version(module: str, dist: str | None = None) -> str:
    mod = importlib.import_module(module)
    if hasattr(mod, "__version__"):
        return str(mod.__version__)
    try:
        from importlib.metadata import version

        return version(dist or module)
    except Exception:
        return "?"


def kept(indices) -> np.ndarray:
    """Canonical NMS result: the kept input indices, sorted."""
    return np.sort(np.asarray(indices, dtype=np.int64).reshape(-1))


def _as_tensor(x) -> torch.Tensor:
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


IOU_OPS = ("box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou")
NMS_OPS = ("nms", "batched_nms")


# =================================================================== detseg

def _detseg_probe(backend: str) -> Callable[[], str]:
    def probe_fn() -> str:
        import detseg

        if backend == "cpp" and getattr(detseg, "_C", None) is None:
            raise Unavailable(f"detseg._C is not built ({detseg._LIB_ERROR})")
        if backend in ("triton", "cuda"):
            if not torch.cuda.is_available():
                raise Unavailable("no CUDA GPU" + (" (Triton-interpreter timings on the CPU would mean nothing)"
                                                   if backend == "triton" else ""))
            if backend == "triton":
                importlib.import_module("triton")
            elif not detseg.build_info().get("cuda"):
                raise Unavailable("this detseg build has no CUDA kernels")
        return detseg.__version__
    return probe_fn


# The positional arguments of each detseg.ops.<op> call (torchvision.ops order), by input key.
# A new op reaches every detseg provider with one detseg_op(...) line and its workloads.
DETSEG_ARGS: dict[str, tuple[str, ...]] = {}
DETSEG_BACKENDS = ("cpp", "reference", "triton", "cuda")


def _detseg_prepare(backend: str):
    device = "cuda" if backend in ("triton", "cuda") else "cpu"
    api_backend = "cpp" if backend == "cuda" else backend

    def prepare(inputs: dict, ctx: Context, op: str) -> Prepared:
        import detseg

        fn = getattr(detseg.ops, op)
        args = [inputs[k].to(device) if isinstance(inputs[k], torch.Tensor) else inputs[k] for k in DETSEG_ARGS[op]]

        def call():
            return fn(*args, backend=api_backend)

        if device == "cuda":
            def run():
                out = call()
                torch.cuda.synchronize()
                return out
        else:
            run = call
        return Prepared(run, RESULTS.get(op, kept if op in NMS_OPS else _as_tensor))

    return prepare


for _backend, _note in (
        ("cpp", "detseg.ops.<op>(..., backend='cpp'): argument checks, dispatch, C++ kernel, output allocation"),
        ("reference", "detseg.ops.<op>(..., backend='reference'): the pure-PyTorch twin"),
        ("triton", "detseg.ops.<op>(..., backend='triton') on CUDA tensors, synchronised"),
        ("cuda", "detseg.ops.<op>(..., backend='cpp') on CUDA tensors (CUDA kernel), synchronised")):
    register(Provider(f"detseg-{_backend}", "detseg", _detseg_probe(_backend), _note))


# Per-op hooks of the op families registered from detseg/cli/suites/<family>.py:
# RESULTS[op](raw output) -> comparable value; AGREEMENT[op](result, reference) -> (ok, account).
RESULTS: dict[str, Callable[[Any], Any]] = {}
AGREEMENT: dict[str, Callable[[Any, Any], tuple[bool | None, str]]] = {}


def detseg_op(op: str, arg_keys: tuple[str, ...], result: Callable[[Any], Any] | None = None,
              agreement: Callable[[Any, Any], tuple[bool | None, str]] | None = None) -> None:
    """Benchmarks detseg.ops.<op>(*[inputs[k] for k in arg_keys], backend=...) on every detseg backend.

    `result` turns the op's output into what the agreement check compares (default: the tensor
    on the CPU); `agreement(result, reference_result)` replaces the default tensor comparison."""
    DETSEG_ARGS[op] = arg_keys
    if result is not None:
        RESULTS[op] = result
    if agreement is not None:
        AGREEMENT[op] = agreement
    for backend in DETSEG_BACKENDS:
        PROVIDERS[f"detseg-{backend}"].impls[op] = _detseg_prepare(backend)


detseg_op("nms", ("boxes", "scores", "iou_threshold"))
detseg_op("batched_nms", ("boxes", "scores", "idxs", "iou_threshold"))
for _op in IOU_OPS:
    detseg_op(_op, ("boxes1", "boxes2"))


# =================================================================== OpenVINO

def _openvino_probe() -> str:
    import openvino

    return openvino.get_version() if hasattr(openvino, "get_version") else _version("openvino")


register(Provider(
    "openvino", "peer", _openvino_probe,
    "compiled_model request.infer (CPU plugin, INFERENCE_NUM_THREADS=threads, LATENCY hint, "
    "inputs shared zero-copy); model build and compile are outside. RoI ops: opset9 ROIAlign "
    "(aligned_mode 'half_pixel_for_nn', which matches aligned=True) / opset2 ROIPooling, "
    "INFERENCE_PRECISION_HINT f32, rois split into boxes and batch indices outside. Its "
    "ROIPooling rounds the RoI end differently from torchvision's RoIPool: on roi_pool/box_head "
    "~2% of the RoIs get different maxima, mostly in the last bin row/column, hence its '!'"))


def _nms_scores_matrix(scores: np.ndarray, idxs: np.ndarray | None, num_classes: int) -> np.ndarray:
    """scores [1, C, N] for the ONNX/OpenVINO NonMaxSuppression layout. Class-aware: each box's
    score sits in its own class row and -1 (< score_threshold 0) elsewhere, so every box is a
    candidate in exactly one class, and NMS per class row is class-aware NMS."""
    if idxs is None:
        return scores.reshape(1, 1, -1).copy()
    m = np.full((1, num_classes, scores.shape[0]), -1.0, dtype=np.float32)
    m[0, idxs, np.arange(scores.shape[0])] = scores
    return m


def _nms_arrays(inputs: dict, op: str):
    boxes = inputs["boxes"].numpy()
    scores = inputs["scores"].numpy()
    idxs = inputs["idxs"].numpy() if op == "batched_nms" else None
    classes = int(inputs.get("num_classes", 1)) if op == "batched_nms" else 1
    return boxes, scores, idxs, classes


@impl("openvino", *NMS_OPS)
def _openvino_nms(inputs: dict, ctx: Context, op: str) -> Prepared:
    import openvino as ov
    import openvino.opset13 as ops

    boxes, scores, idxs, classes = _nms_arrays(inputs, op)
    n = boxes.shape[0]
    p_boxes = ops.parameter([1, n, 4], np.float32, name="boxes")
    p_scores = ops.parameter([1, classes, n], np.float32, name="scores")
    node = ops.non_max_suppression(
        p_boxes, p_scores,
        ops.constant(np.array([n], dtype=np.int64)),
        ops.constant(np.array([inputs["iou_threshold"]], dtype=np.float32)),
        ops.constant(np.array([0.0], dtype=np.float32)),
        box_encoding="corner", sort_result_descending=False, output_type="i64")
    model = ov.Model([node.output(0)], [p_boxes, p_scores], "nms")
    compiled = ov.Core().compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": ctx.threads, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    feed = {0: boxes.reshape(1, n, 4).copy(), 1: _nms_scores_matrix(scores, idxs, classes)}

    def run():
        return request.infer(feed, share_inputs=True)[0]

    def result(sel):
        sel = np.asarray(sel)
        return kept(np.unique(sel[sel[:, 0] >= 0, 2]))

    return Prepared(run, result)


# =================================================================== onnxruntime

def _ort_probe() -> str:
    importlib.import_module("onnx")
    return _version("onnxruntime")


register(Provider(
    "onnxruntime", "peer", _ort_probe,
    "InferenceSession.run of a one-node NonMaxSuppression / RoiAlign (opset 16, half_pixel) / "
    "MaxRoiPool model (CPUExecutionProvider, intra_op_num_threads=threads, no spin-waiting); model "
    "build, session creation and splitting rois into boxes and batch indices are outside"))


@impl("onnxruntime", *NMS_OPS)
def _ort_nms(inputs: dict, ctx: Context, op: str) -> Prepared:
    import onnx
    import onnx.helper as oh

    boxes, scores, idxs, classes = _nms_arrays(inputs, op)
    n = boxes.shape[0]
    graph = oh.make_graph(
        [oh.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou", "score_thr"], ["selected"],
                      center_point_box=0)],
        "nms",
        [oh.make_tensor_value_info("boxes", onnx.TensorProto.FLOAT, [1, n, 4]),
         oh.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [1, classes, n])],
        [oh.make_tensor_value_info("selected", onnx.TensorProto.INT64, [None, 3])],
        initializer=[
            oh.make_tensor("max_out", onnx.TensorProto.INT64, [1], [n]),
            oh.make_tensor("iou", onnx.TensorProto.FLOAT, [1], [float(inputs["iou_threshold"])]),
            oh.make_tensor("score_thr", onnx.TensorProto.FLOAT, [1], [0.0])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 9)
    sess = _ort_session(model, ctx)
    feed = {"boxes": boxes.reshape(1, n, 4).copy(), "scores": _nms_scores_matrix(scores, idxs, classes)}

    def run():
        return sess.run(None, feed)[0]

    return Prepared(run, lambda sel: kept(np.unique(np.asarray(sel)[:, 2])))


# =================================================================== OpenCV

register(Provider(
    "opencv", "peer", lambda: _version("cv2"),
    "cv2.dnn.NMSBoxes / NMSBoxesBatched on a float64 xywh numpy array (converted outside) and "
    "float32 scores, score_threshold 0 (every box passes); includes the binding's conversion "
    "of the array to std::vector<Rect2d>"))


@impl("opencv", *NMS_OPS)
def _opencv_nms(inputs: dict, ctx: Context, op: str) -> Prepared:
    import cv2

    cv2.setNumThreads(ctx.threads)
    b = inputs["boxes"].numpy().astype(np.float64)
    xywh = np.ascontiguousarray(np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1))
    scores = inputs["scores"].numpy().copy()
    thr = float(inputs["iou_threshold"])
    if op == "nms":
        def run():
            return cv2.dnn.NMSBoxes(xywh, scores, 0.0, thr)
    else:
        ids = inputs["idxs"].numpy().astype(np.int32)

        def run():
            return cv2.dnn.NMSBoxesBatched(xywh, scores, ids, 0.0, thr)
    return Prepared(run, kept)


# =================================================================== ensemble-boxes

register(Provider(
    "ensemble-boxes", "peer", lambda: _version("ensemble_boxes", "ensemble-boxes"),
    "ensemble_boxes.nms (numba) on coordinates normalised to [0, 1] outside; includes its "
    "per-call concatenation, clipping and zero-area check, and the per-label loop"))


@impl("ensemble-boxes", *NMS_OPS)
def _ensemble_nms(inputs: dict, ctx: Context, op: str) -> Prepared:
    import ensemble_boxes

    boxes = (inputs["boxes"].numpy() / np.float32(1000.0)).astype(np.float32)
    scores = inputs["scores"].numpy().copy()
    labels = inputs["idxs"].numpy().copy() if op == "batched_nms" else np.zeros(boxes.shape[0], np.int64)
    thr = float(inputs["iou_threshold"])
    # It returns boxes, not indices: map them back (outside the timing) by exact values.
    where = {(*row.tolist(), s): i for i, (row, s) in enumerate(zip(boxes, scores.tolist()))}

    def run():
        return ensemble_boxes.nms([boxes], [scores], [labels], iou_thr=thr)

    def result(out):
        kb, ks, _ = out
        return kept([where[(*row.tolist(), s)] for row, s in zip(np.asarray(kb, np.float32), ks.tolist())])

    return Prepared(run, result)


# =================================================================== numpy

register(Provider(
    "numpy", "peer", lambda: _version("numpy"),
    "plain numpy: greedy NMS (stable sort, one vectorised IoU row per kept box; batched = a loop "
    "over classes), IoU matrices by broadcasting, on float32 arrays converted outside"))


def numpy_nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> np.ndarray:
    """Greedy NMS in numpy: ``boxes [N, 4]`` xyxy, ``scores [N]`` -> kept indices by score."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[order, k]) for k in range(4))
    area = (x2 - x1) * (y2 - y1)
    alive = np.arange(order.shape[0])
    keep = []
    while alive.size:
        i, rest = alive[0], alive[1:]
        keep.append(i)
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        alive = rest[inter / (area[i] + area[rest] - inter) <= thr]
    return order[np.asarray(keep, dtype=np.int64)]


def numpy_batched_nms(boxes, scores, idxs, thr) -> np.ndarray:
    out = []
    for c in np.unique(idxs):
        members = np.flatnonzero(idxs == c)
        out.append(members[numpy_nms(boxes[members], scores[members], thr)])
    k = np.concatenate(out)
    return k[np.argsort(-scores[k], kind="stable")]


def iou_family(xp, b1, b2, kind: str, eps: float = 1e-7):
    """IoU-family matrix ``[N, 4] x [M, 4] -> [N, M]`` by broadcasting, the way user code writes
    it; `xp` is numpy or torch (both spell these functions the same way)."""
    mx, mn = xp.maximum, xp.minimum
    a1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    a2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    lo = mx(b1[:, None, :2], b2[None, :, :2])
    hi = mn(b1[:, None, 2:], b2[None, :, 2:])
    wh = (hi - lo).clip(0, None) if xp is np else (hi - lo).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = a1[:, None] + a2[None, :] - inter
    iou = inter / union
    if kind == "iou":
        return iou
    elo = mn(b1[:, None, :2], b2[None, :, :2])
    ehi = mx(b1[:, None, 2:], b2[None, :, 2:])
    ewh = (ehi - elo).clip(0, None) if xp is np else (ehi - elo).clamp(min=0)
    if kind == "giou":
        enclose = ewh[..., 0] * ewh[..., 1]
        return iou - (enclose - union) / enclose
    diag = ewh[..., 0] ** 2 + ewh[..., 1] ** 2 + eps
    c1 = (b1[:, :2] + b1[:, 2:]) / 2
    c2 = (b2[:, :2] + b2[:, 2:]) / 2
    d = c1[:, None, :] - c2[None, :, :]
    diou = iou - (d[..., 0] ** 2 + d[..., 1] ** 2) / diag
    if kind == "diou":
        return diou
    at1 = xp.arctan((b1[:, 2] - b1[:, 0]) / (b1[:, 3] - b1[:, 1]))
    at2 = xp.arctan((b2[:, 2] - b2[:, 0]) / (b2[:, 3] - b2[:, 1]))
    v = (4 / math.pi ** 2) * (at1[:, None] - at2[None, :]) ** 2
    alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


_KIND = {"box_iou": "iou", "generalized_box_iou": "giou", "distance_box_iou": "diou", "complete_box_iou": "ciou"}


@impl("numpy", "nms")
def _numpy_nms(inputs: dict, ctx: Context, op: str) -> Prepared:
    boxes, scores = inputs["boxes"].numpy().copy(), inputs["scores"].numpy().copy()
    thr = np.float32(inputs["iou_threshold"])
    return Prepared(lambda: numpy_nms(boxes, scores, thr), kept)


@impl("numpy", "batched_nms")
def _numpy_batched(inputs: dict, ctx: Context, op: str) -> Prepared:
    boxes, scores, idxs = (inputs[k].numpy().copy() for k in ("boxes", "scores", "idxs"))
    thr = np.float32(inputs["iou_threshold"])
    return Prepared(lambda: numpy_batched_nms(boxes, scores, idxs, thr), kept)


def _matrix_prepare(xp_name: str):
    def prepare(inputs: dict, ctx: Context, op: str) -> Prepared:
        kind = _KIND[op]
        if xp_name == "numpy":
            b1, b2 = inputs["boxes1"].numpy().copy(), inputs["boxes2"].numpy().copy()
            return Prepared(lambda: iou_family(np, b1, b2, kind), _as_tensor)
        b1, b2 = inputs["boxes1"].clone(), inputs["boxes2"].clone()
        return Prepared(lambda: iou_family(torch, b1, b2, kind), _as_tensor)
    return prepare


for _op in IOU_OPS:
    PROVIDERS["numpy"].impls[_op] = _matrix_prepare("numpy")


# =================================================================== plain torch

register(Provider(
    "torch", "peer", lambda: torch.__version__,
    "plain PyTorch broadcasting formulas (torch.set_num_threads(threads)); the floor row is "
    "torch.empty(5000, 5000).fill_(1)"))

for _op in IOU_OPS:
    PROVIDERS["torch"].impls[_op] = _matrix_prepare("torch")


@impl("torch", "fill")
def _torch_fill(inputs: dict, ctx: Context, op: str) -> Prepared:
    shape = inputs["shape"]
    return Prepared(lambda: torch.empty(shape).fill_(1), None)


def _ort_session(model, ctx):
    """A CPU InferenceSession of `model` on ctx.threads intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = ctx.threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # Idle pool threads spinning between calls would steal a core from the provider timed next.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def tensor_agreement(r: torch.Tensor, e: torch.Tensor, atol: float = 1e-5) -> tuple[bool, str]:
    """Elementwise |r - e| <= atol + 1e-4 |e| with NaN meeting NaN; computed in place and in the
    result's precision, since these matrices run to 100 MB each."""
    if r.shape != e.shape:
        return False, f"shape {list(r.shape)} != reference {list(e.shape)}"
    if r.dtype == e.dtype and torch.equal(r, e):  # the usual case for detseg's backends; cheap
        return True, "bit-identical to detseg.reference"
    r = r.to(e.dtype) if r.dtype != e.dtype else r
    nan_ok = bool(torch.equal(r.isnan(), e.isnan()))
    d = torch.sub(r, e).abs_().nan_to_num_(nan=0.0)
    err = d.max().item() if d.numel() else 0.0
    ok = nan_ok and bool((d <= e.abs().nan_to_num_(nan=0.0).mul_(1e-4).add_(atol)).all())
    return ok, f"max |diff| {err:.2g} vs detseg.reference" + ("" if nan_ok else ", NaN pattern differs")


def agrees(op_result, ref, op: str | None = None) -> tuple[bool | None, str]:
    """(whether a canonical result matches detseg.reference's, a one-line account): the op's own
    AGREEMENT check where its family registered one, else exact kept indices (NMS) or
    tensor_agreement."""
    if ref is None or op_result is None:
        return None, "no reference"
    if op in AGREEMENT:
        return AGREEMENT[op](op_result, ref)
    if isinstance(ref, np.ndarray):
        same = np.array_equal(op_result, ref)
        if same:
            return True, f"same {len(ref)} kept boxes as detseg.reference"
        diff = len(np.setxor1d(op_result, ref))
        return False, f"keeps {len(op_result)} boxes, detseg.reference {len(ref)}; {diff} differ"
    return tensor_agreement(op_result, ref)


def oracle(op: str, inputs: dict):
    """detseg.reference's canonical result for the agreement check (None if the op has none)."""
    if op not in DETSEG_ARGS or op not in PROVIDERS["detseg-reference"].impls:
        return None
    prepared = PROVIDERS["detseg-reference"].impls[op](inputs, Context(threads=torch.get_num_threads()), op)
    return prepared.result(prepared.run())


# Op families beyond boxes register their workloads, detseg ops and peers in
# detseg/cli/suites/<family>.py (one file each); importing the package loads them all.
from . import suites  # noqa: E402,F401
