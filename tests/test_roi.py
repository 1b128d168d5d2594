"""roi_align / roi_pool / ps_*: the DESIGN.md §5 matrix on the C++ CPU kernels and the
reference, and on the Triton kernels (interpreted here: small problems, tests named test_triton_*
plus the backend-parametrised API tests).

Oracle: detseg.reference in float64 on the same (already rounded) inputs. External oracles:
onnxruntime RoiAlign (opset 16) and MaxRoiPool.
"""

from __future__ import annotations

import importlib
import math

import pytest
import torch

import detseg
from detseg import reference as R

import _backends
from tolerances import TOLERANCES

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# Backends of the small API-level tests; Triton runs on the CPU only in the interpreter.
HAS_TRITON = "triton" in _backends.CPU_BACKENDS
BACKENDS = ["cpp", "reference"] + (["triton"] if HAS_TRITON else [])
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="Triton runs on the CPU only under TRITON_INTERPRET=1")


def close(actual, expected, what="value"):
    """actual (any backend) against the float64 oracle, tolerance from tests/tolerances.py by actual's dtype."""
    rtol, atol = TOLERANCES[actual.dtype][what]
    torch.testing.assert_close(actual.detach().double(), expected.detach().double(), rtol=rtol, atol=atol,
                               equal_nan=True)


def bitwise(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    ib = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
    assert torch.equal(a.contiguous().view(ib), b.contiguous().view(ib))


def make_rois(k, n, img_h, img_w, seed, dtype=torch.float32, outside=True):
    """k RoIs in image coordinates, sizes log-uniform; a few far outside or degenerate."""
    g = torch.Generator().manual_seed(seed)
    size = torch.exp(torch.empty(k, 2).uniform_(math.log(1.0), math.log(max(img_h, img_w)), generator=g))
    cx = torch.rand(k, generator=g) * img_w
    cy = torch.rand(k, generator=g) * img_h
    x1, y1 = cx - size[:, 0] / 2, cy - size[:, 1] / 2
    boxes = torch.stack([x1, y1, x1 + size[:, 0], y1 + size[:, 1]], 1)
    if outside and k >= 5:
        boxes[1] = torch.tensor([-40.0, -30.0, -20.0, -5.0])       # wholly outside
        boxes[2] = torch.tensor([3.0, 4.0, 3.0, 4.0])              # zero size
        boxes[3] = torch.tensor([img_w - 2.0, 1.0, img_w + 9.0, img_h + 3.0])  # straddles the edge
        boxes[4] = torch.tensor([5.0, 6.0, 2.0, 1.0])              # inverted
    b = torch.randint(0, n, (k, 1), generator=g).float()
    return torch.cat([b, boxes], 1).to(dtype)


def make_input(n, c, h, w, dtype, layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


def _fmt(layout):
    return torch.channels_last if layout == "channels_last" else torch.contiguous_format


# ---------------------------------------------------------------- parity matrix

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("k", [0, 1, 13])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 2])
@pytest.mark.parametrize("pool_mode", ["avg", "max"])
def test_roi_align_forward_matrix(dtype, layout, k, aligned, sampling_ratio, pool_mode):
    x = make_input(2, 5, 11, 13, dtype, layout, seed=k)
    rois = make_rois(k, 2, 44, 52, seed=k + 1)
    out = detseg.roi_align(x, rois, (3, 5), 0.25, sampling_ratio, aligned, pool_mode=pool_mode, backend="cpp")
    assert out.dtype == dtype and out.shape == (k, 5, 3, 5)
    if layout == "channels_last" and k > 1:
        assert out.is_contiguous(memory_format=torch.channels_last)
    oracle = R.roi_align(x.double(), rois.double(), 0.25, 3, 5, sampling_ratio, aligned, pool_mode)
    close(out, oracle)
    if dtype in (torch.float32, torch.float64):
        ref = detseg.roi_align(x, rois, (3, 5), 0.25, sampling_ratio, aligned, pool_mode=pool_mode,
                               backend="reference")
        assert ref.dtype == dtype
        close(ref, oracle)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("k", [0, 1, 13])
def test_roi_pool_forward_matrix(dtype, layout, k):
    x = make_input(2, 5, 11, 13, dtype, layout, seed=k)
    rois = make_rois(k, 2, 44, 52, seed=k + 7)
    out, arg = torch.ops.detseg.roi_pool(x, rois, 0.25, 3, 4)
    oracle, oarg = R.roi_pool(x.double(), rois.double(), 0.25, 3, 4)
    assert out.dtype == dtype and arg.dtype == torch.int64 and out.shape == (k, 5, 3, 4)
    close(out, oracle)  # the max is an input value: exact in every dtype
    torch.testing.assert_close(out.double(), oracle, rtol=0, atol=0)
    if dtype != torch.bfloat16 and dtype != torch.float16:  # half ties may pick another equal pixel
        assert torch.equal(arg, oarg)
    ref, rarg = R.roi_pool(x, rois, 0.25, 3, 4)
    torch.testing.assert_close(ref, out, rtol=0, atol=0)
    assert torch.equal(rarg, arg)
    assert torch.equal(detseg.roi_pool(x, rois, (3, 4), 0.25), out)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("pool_mode", ["avg", "max"])
def test_roi_align_backward_matrix(dtype, layout, aligned, pool_mode):
    x = make_input(2, 4, 9, 10, dtype, layout, seed=3)
    rois = make_rois(11, 2, 36, 40, seed=5)
    g = torch.randn(11, 4, 2, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    xc = x.detach().requires_grad_()
    out = detseg.roi_align(xc, rois, (2, 3), 0.25, -1, aligned, pool_mode=pool_mode, backend="cpp")
    (gx,) = torch.autograd.grad(out, xc, g.to(dtype).contiguous(memory_format=_fmt(layout)))
    assert gx.dtype == dtype and gx.shape == x.shape
    xo = x.detach().double().requires_grad_()
    oo = R.roi_align(xo, rois.double(), 0.25, 2, 3, -1, aligned, pool_mode)
    (go,) = torch.autograd.grad(oo, xo, g)
    close(gx, go, "grad")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_roi_pool_backward_matrix(layout):
    x = make_input(2, 4, 9, 10, torch.float32, layout, seed=4)
    rois = make_rois(11, 2, 36, 40, seed=6)
    g = torch.randn(11, 4, 3, 2, generator=torch.Generator().manual_seed(2))
    xc = x.detach().requires_grad_()
    (gx,) = torch.autograd.grad(detseg.roi_pool(xc, rois, (3, 2), 0.25), xc, g.contiguous(memory_format=_fmt(layout)))
    xr = x.detach().requires_grad_()
    (gr,) = torch.autograd.grad(detseg.roi_pool(xr, rois, (3, 2), 0.25, backend="reference"), xr, g)
    close(gx, gr, "grad")


# ---------------------------------------------------------------- hand-computed grids

PLANE = torch.arange(16.0).reshape(1, 1, 4, 4)  # value = 4 y + x


@pytest.mark.parametrize("backend", BACKENDS)
def test_roi_align_hand_grids(backend):
    box = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])

    def f(**kw):
        return detseg.roi_align(PLANE, box, 2, 1.0, 2, backend=backend, **kw)[0, 0]

    # aligned=False: samples at 0.5, 1.5 | 2.5, 3.5; x = 3.5 sits past the last column -> 3.
    torch.testing.assert_close(f(aligned=False), torch.tensor([[5.0, 6.75], [12.0, 13.75]]))
    # aligned=True: half-pixel shift puts the samples on integer pixels 0, 1 | 2, 3.
    torch.testing.assert_close(f(aligned=True), torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    torch.testing.assert_close(f(aligned=False, pool_mode="max"), torch.tensor([[7.5, 9.0], [13.5, 15.0]]))
    torch.testing.assert_close(f(aligned=True, pool_mode="max"), torch.tensor([[5.0, 7.0], [13.0, 15.0]]))
    # One bin x in [-4, 0], y in [0, 2], 2x2 samples: x = -3 is outside [-1, W] (0, but counted),
    # x = -1 clamps to 0: (0 + 0 + v(0.5, 0) + v(1.5, 0)) / 4 = (2 + 6) / 4.
    out = detseg.roi_align(PLANE, torch.tensor([[0.0, -4.0, 0.0, 0.0, 2.0]]), 1, 1.0, 2, backend=backend)
    torch.testing.assert_close(out.flatten(), torch.tensor([2.0]))
    # Adaptive: a 4-pixel RoI in 2 bins takes ceil(4 / 2) = 2 samples per axis.
    torch.testing.assert_close(detseg.roi_align(PLANE, box, 2, 1.0, -1, backend=backend)[0, 0], f(aligned=False))


@pytest.mark.parametrize("backend", BACKENDS)
def test_roi_pool_hand_grid(backend):
    # round(0) .. round(4): 5 pixels in 2 bins of 2.5: [0, 3) and [2, 5) clipped to [2, 4).
    rp = _backends.internal("roi_pool", backend)
    out, arg = rp(PLANE, torch.tensor([[0.0, 0, 0, 4, 4]]), 1.0, 2, 2)
    torch.testing.assert_close(out[0, 0], torch.tensor([[10.0, 11.0], [14.0, 15.0]]))
    assert arg[0, 0].tolist() == [[10, 11], [14, 15]]
    out, arg = rp(PLANE, torch.tensor([[0.0, 10, 10, 12, 12]]), 1.0, 2, 2)
    assert out.abs().sum() == 0 and (arg == -1).all()  # empty bins -> 0, argmax -1
    # half away from zero: 0.5 -> 1, 1.5 -> 2 (torch.round would give 0 and 2)
    out, arg = rp(PLANE, torch.tensor([[0.0, 0.5, 0.5, 0.5, 0.5]]), 1.0, 1, 1)
    assert arg.item() == 5 and out.item() == 5.0


# ---------------------------------------------------------------- gradcheck

@pytest.mark.parametrize("backend", ["cpp", "reference"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("pool_mode", ["avg", "max"])
def test_roi_align_gradcheck(backend, aligned, sampling_ratio, pool_mode):
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    if backend == "cpp" and aligned:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    rois = torch.tensor([[0, 1, 1.5, 7, 6], [1, -3, 2, 12, 10], [1, 2, 2, 2.2, 2.1], [0, math.nan, 1, 3, 3],
                         [0, 1, 1, 1, 1]], dtype=torch.float64)
    f = lambda t: detseg.roi_align(t, rois, (3, 2), 0.5, sampling_ratio, aligned, pool_mode=pool_mode,  # noqa: E731
                                   backend=backend)
    assert torch.autograd.gradcheck(f, (x,))


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_roi_pool_gradcheck(backend):
    # Distinct values keep every bin's argmax away from ties (finite differences move it).
    x = torch.randperm(2 * 2 * 5 * 6, generator=torch.Generator().manual_seed(0)).double().reshape(2, 2, 5, 6)
    x.requires_grad_()
    rois = torch.tensor([[0, 1, 1.5, 7, 6], [1, -3, 2, 12, 10], [0, math.inf, 1, 3, 3]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: detseg.roi_pool(t, rois, (3, 2), 0.5, backend=backend), (x,))


# ---------------------------------------------------------------- determinism

@pytest.mark.parametrize("op", ["avg", "max", "pool"])
def test_backward_bitwise_any_thread_count_and_layout(op):
    rois = make_rois(60, 2, 80, 92, seed=10)
    g = torch.randn(60, 24, 7, 7, generator=torch.Generator().manual_seed(3))

    def grad(layout):
        # The incoming gradient in the output's layout, so the channels-last kernel runs.
        xc = make_input(2, 24, 20, 23, torch.float32, layout, seed=8).requires_grad_()
        if op == "pool":
            out = detseg.roi_pool(xc, rois, 7, 0.25)
        else:
            out = detseg.roi_align(xc, rois, 7, 0.25, -1, True, pool_mode=op)
        gx = torch.autograd.grad(out, xc, g.contiguous(memory_format=torch.channels_last)
                                 if layout == "channels_last" else g)[0]
        assert gx.is_contiguous(memory_format=torch.channels_last if layout == "channels_last"
                                else torch.contiguous_format)
        return gx

    before = torch.get_num_threads()
    grads = {}
    try:
        for layout in ("contiguous", "channels_last"):
            torch.set_num_threads(1)
            g1 = grad(layout)
            torch.set_num_threads(2)
            g2 = grad(layout)
            bitwise(g1, g2)
            grads[layout] = g1
    finally:
        torch.set_num_threads(before)
    # Each gradient element gets its contributions in the same order in both layouts.
    bitwise(grads["contiguous"], grads["channels_last"].contiguous())


# ---------------------------------------------------------------- bad and degenerate input

@pytest.mark.parametrize("backend", BACKENDS)
def test_nonfinite_rois_give_zero(backend):
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    rois = torch.tensor([[0, math.nan, 1, 4, 4], [0, 1, math.inf, 4, 4], [0, -math.inf, 1, 4, 4],
                         [0, 1, 1, 4, math.nan], [0, 1, 1, 4, 4]])
    for sr in (-1, 2):
        for aligned in (False, True):
            for mode in ("avg", "max"):
                out = detseg.roi_align(x, rois, 2, 1.0, sr, aligned, pool_mode=mode, backend=backend)
                assert torch.isfinite(out).all() and out[:4].abs().sum() == 0
                (g,) = torch.autograd.grad(out[:4].sum(), x)
                assert g.abs().sum() == 0
    out = detseg.roi_pool(x, rois, 2, backend=backend)
    assert out[:4].abs().sum() == 0 and out[4].abs().sum() > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_far_outside_and_huge_rois(backend):
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64)
    rois = torch.tensor([[0, 1e6, 1e6, 1e6 + 10, 1e6 + 10], [0, -1e7, -1e7, -1e7 + 5, 5.0],
                         [0, -1e12, -1e12, 1e12, 1e12], [0, 1e30, 0, 2e30, 3]], dtype=torch.float64)
    out, arg = _backends.internal("roi_pool", backend)(x, rois, 1.0, 2, 2)
    oracle, oarg = R.roi_pool(x, rois, 1.0, 2, 2)
    torch.testing.assert_close(out, oracle)
    assert torch.equal(arg, oarg)
    assert out[0].abs().sum() == 0 and out[3].abs().sum() == 0
    out = detseg.roi_align(x, rois[:2], 2, 1.0, 2, True, backend=backend)
    assert out.abs().sum() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_rois_and_list_form(backend):
    x = torch.randn(2, 3, 8, 9)
    for boxes in (torch.zeros(0, 5), [torch.zeros(0, 4), torch.zeros(0, 4)], []):
        out = detseg.roi_align(x, boxes, (2, 3), backend=backend)
        assert out.shape == (0, 3, 2, 3) and out.dtype == x.dtype
        assert detseg.roi_pool(x, boxes, (2, 3), backend=backend).shape == (0, 3, 2, 3)
    boxes = [torch.tensor([[1.0, 1, 5, 6]]), torch.tensor([[0.0, 0, 3, 3], [2, 2, 8, 7]])]
    rois = torch.tensor([[0, 1.0, 1, 5, 6], [1, 0, 0, 3, 3], [1, 2, 2, 8, 7]])
    torch.testing.assert_close(detseg.roi_align(x, boxes, 2, backend=backend), detseg.roi_align(x, rois, 2))
    torch.testing.assert_close(detseg.roi_pool(x, boxes, 2, backend=backend), detseg.roi_pool(x, rois, 2))
    # empty feature map: every sample is outside
    e = torch.randn(1, 3, 0, 5)
    assert detseg.roi_align(e, torch.tensor([[0.0, 0, 0, 2, 2]]), 2, backend=backend).abs().sum() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_arguments(backend):
    x = torch.randn(2, 3, 8, 8)
    ra = lambda *a, **k: detseg.roi_align(*a, backend=backend, **k)  # noqa: E731
    rp = lambda *a, **k: detseg.roi_pool(*a, backend=backend, **k)  # noqa: E731
    bidx = r"detseg\.roi_(align|pool): rois\[:, 0\] must hold integer batch indices in \[0, 2\)"
    for b in (2.0, -1.0, 0.5, math.nan, math.inf):
        rois = torch.tensor([[0.0, 1, 1, 4, 4], [b, 1, 1, 4, 4]])
        with pytest.raises(ValueError, match=bidx):
            ra(x, rois, 2)
        with pytest.raises(ValueError, match=bidx):
            rp(x, rois, 2)
    with pytest.raises(ValueError, match=r"detseg\.roi_align: boxes must be a Tensor\[K, 5\]"):
        ra(x, torch.zeros(3, 4), 2)
    with pytest.raises(ValueError, match=r"detseg\.roi_align: boxes\[1\] must be a Tensor\[L, 4\]"):
        ra(x, [torch.zeros(1, 4), torch.zeros(1, 5)], 2)
    with pytest.raises(ValueError, match=r"detseg\.roi_align: input must be a Tensor\[N, C, H, W\]"):
        ra(x[0], torch.zeros(1, 5), 2)
    with pytest.raises(TypeError, match=r"detseg\.roi_align: input must be a floating-point tensor"):
        ra(x.int(), torch.zeros(1, 5), 2)
    with pytest.raises(ValueError, match=r"detseg\.roi_align: pool_mode must be 'avg' or 'max', got 'mean'"):
        ra(x, torch.zeros(1, 5), 2, pool_mode="mean")
    with pytest.raises(ValueError, match=r"detseg\.roi_pool: output_size must be positive"):
        rp(x, torch.zeros(1, 5), (0, 2))
    with pytest.raises(ValueError, match=r"detseg\.roi_align: spatial_scale must be a finite number > 0"):
        ra(x, torch.zeros(1, 5), 2, math.nan)


# ---------------------------------------------------------------- Triton
# Interpreted on the CPU (each program instance and op costs): 7 RoIs (rows 1-4 of make_rois
# are degenerate: outside, zero-size, straddling, inverted) on a 2 x 3 x 9 x 10 map.

def _triton_case(dtype, layout, c=3, seed=0):
    x = make_input(2, c, 9, 10, dtype, layout, seed=seed)
    return x, make_rois(7, 2, 36, 40, seed=seed + 1)


def _grad_of(shape, dtype, layout, seed=0):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)
    return g.contiguous(memory_format=_fmt(layout))


def _oracle_grad(fn, x, g):
    xo = x.detach().double().requires_grad_()
    return torch.autograd.grad(fn(xo), xo, g.double())[0]


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("pool_mode", ["avg", "max"])
def test_triton_roi_align(dtype, layout, aligned, sampling_ratio, pool_mode):
    x, rois = _triton_case(dtype, layout, seed=sampling_ratio + 3)
    xt = x.detach().requires_grad_()
    out = detseg.roi_align(xt, rois, (2, 3), 0.25, sampling_ratio, aligned, pool_mode=pool_mode, backend="triton")
    assert out.dtype == dtype and out.shape == (7, 3, 2, 3)
    assert out.is_contiguous(memory_format=_fmt(layout))
    ref = lambda t: R.roi_align(t, rois.double(), 0.25, 2, 3, sampling_ratio, aligned, pool_mode)  # noqa: E731
    close(out, ref(x.double()))
    g = _grad_of(out.shape, dtype, layout, seed=7)
    (gx,) = torch.autograd.grad(out, xt, g)
    assert gx.dtype == dtype and gx.is_contiguous(memory_format=_fmt(layout))
    close(gx, _oracle_grad(ref, x, g), "grad")


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_triton_roi_pool(dtype, layout):
    x, rois = _triton_case(dtype, layout, seed=5)
    xt = x.detach().requires_grad_()
    out, arg = _backends.internal("roi_pool", "triton")(xt, rois, 0.25, 3, 2)
    oracle, oarg = R.roi_pool(x.double(), rois.double(), 0.25, 3, 2)
    assert out.dtype == dtype and arg.dtype == torch.int64 and out.shape == (7, 3, 3, 2)
    assert out.is_contiguous(memory_format=_fmt(layout)) and arg.is_contiguous(memory_format=_fmt(layout))
    torch.testing.assert_close(out.double(), oracle, rtol=0, atol=0)  # a max is an input value
    if dtype not in (torch.float16, torch.bfloat16):  # half ties may pick another equal pixel
        assert torch.equal(arg, oarg)
    assert torch.equal(arg, torch.ops.detseg.roi_pool(x, rois, 0.25, 3, 2)[1])
    g = _grad_of(out.shape, dtype, layout, seed=3)
    (gx,) = torch.autograd.grad(out, xt, g)
    assert gx.dtype == dtype and gx.is_contiguous(memory_format=_fmt(layout))
    close(gx, _oracle_grad(lambda t: R.roi_pool(t, rois.double(), 0.25, 3, 2)[0], x, g), "grad")


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", ["ps_roi_align_-1", "ps_roi_align_2", "ps_roi_pool"])
def test_triton_ps_ops(dtype, op):
    layout = "channels_last" if dtype in (torch.float32, torch.bfloat16) else "contiguous"
    x, rois = _triton_case(dtype, layout, c=12, seed=2)
    xt = x.detach().requires_grad_()
    if op == "ps_roi_pool":
        args = (0.25, 2, 3)
    else:
        args = (0.25, 2, 3, int(op.rsplit("_", 1)[1]))
    name = op.rsplit("_", 1)[0] if op != "ps_roi_pool" else op
    out, mapping = _backends.internal(name, "triton")(xt, rois, *args)
    oracle, omap = getattr(R, name)(x.double(), rois.double(), *args)
    assert out.dtype == dtype and out.shape == (7, 2, 2, 3) and out.is_contiguous()
    assert torch.equal(mapping, omap)
    close(out, oracle)
    g = _grad_of(out.shape, dtype, "contiguous", seed=4)
    (gx,) = torch.autograd.grad(out, xt, g)
    assert gx.dtype == dtype and gx.shape == x.shape
    close(gx, _oracle_grad(lambda t: getattr(R, name)(t, rois.double(), *args)[0], x, g), "grad")


@needs_triton
def test_triton_strided_input():
    # Any strides are read as such (no copy): a channel- and column-sliced view gives the bits of
    # its contiguous copy.
    big = make_input(2, 6, 9, 12, torch.float32, "contiguous", seed=9)
    x = big[:, ::2, :, 1:11]
    rois = make_rois(7, 2, 36, 40, seed=3)
    for fn in (lambda t: detseg.roi_align(t, rois, (2, 3), 0.25, -1, True, backend="triton"),
               lambda t: detseg.roi_pool(t, rois, (2, 3), 0.25, backend="triton")):
        bitwise(fn(x), fn(x.contiguous()))


def _triton_grads(op, layout, dtype=torch.float32):
    """Input gradient of one op on the Triton backend (whatever backward path is active)."""
    x, rois = _triton_case(dtype, layout, c=12 if op.startswith("ps") else 3, seed=6)
    x.requires_grad_()
    if op in ("avg", "max"):
        out = detseg.roi_align(x, rois, (2, 3), 0.25, -1, True, pool_mode=op, backend="triton")
    elif op == "pool":
        out = detseg.roi_pool(x, rois, (2, 3), 0.25, backend="triton")
    elif op == "ps_align":
        out = detseg.ps_roi_align(x, rois, (2, 3), 0.25, -1, backend="triton")
    else:
        out = detseg.ps_roi_pool(x, rois, (2, 3), 0.25, backend="triton")
    g = _grad_of(out.shape, dtype, layout if op in ("avg", "max", "pool") else "contiguous", seed=1)
    return torch.autograd.grad(out, x, g)[0]


@needs_triton
@pytest.mark.parametrize("op", ["avg", "max", "pool", "ps_align", "ps_pool"])
def test_triton_deterministic_backward(op, monkeypatch):
    # The gather path (the interpreter's, and CUDA's under use_deterministic_algorithms): the
    # same bits on every run and in both layouts; the atomic scatter agrees within rounding.
    troi = importlib.import_module("detseg.triton._roi")

    a = _triton_grads(op, "contiguous")
    bitwise(a, _triton_grads(op, "contiguous"))
    bitwise(a, _triton_grads(op, "channels_last").contiguous())
    monkeypatch.setattr(troi, "FORCE_ATOMICS", True)
    close(_triton_grads(op, "channels_last"), a.double(), "grad")
    close(a, _triton_grads(op, "contiguous", torch.float64), "grad")


@needs_triton
def test_triton_backward_path_rule(monkeypatch):
    troi = importlib.import_module("detseg.triton._roi")

    t = torch.zeros(1)
    assert not troi.use_atomics(t)  # the interpreter always gathers
    monkeypatch.setattr(troi, "interpreted", lambda _: False)  # as on a GPU
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        assert troi.use_atomics(t)
        torch.use_deterministic_algorithms(True)
        assert not troi.use_atomics(t)
    finally:
        torch.use_deterministic_algorithms(before)


@needs_triton
def test_triton_backward_ops_match_cpp():
    # The internal backward ops called directly (channels-last grad, max mode with its input),
    # against the C++ kernels; and the argmax check of _roi_pool_backward.
    x, rois = _triton_case(torch.float32, "channels_last", seed=8)
    g = _grad_of((7, 3, 2, 3), torch.float32, "channels_last", seed=2)
    for mode in ("avg", "max"):
        args = (g, rois, 0.25, 2, 3, 2, 3, 9, 10, 2, False, mode, x)
        gt = _backends.internal("_roi_align_backward", "triton")(*args)
        assert gt.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(gt, torch.ops.detseg._roi_align_backward(*args), **_tol("grad"))
    _, arg = torch.ops.detseg.roi_pool(x, rois, 0.25, 2, 3)
    pool_bwd = _backends.internal("_roi_pool_backward", "triton")
    torch.testing.assert_close(pool_bwd(g, rois, arg, 0.25, 2, 3, 2, 3, 9, 10),
                               torch.ops.detseg._roi_pool_backward(g, rois, arg, 0.25, 2, 3, 2, 3, 9, 10))
    # A non-finite incoming gradient reaches exactly the pixels its samples touch, as in the scatter.
    gbad = g.clone()
    gbad[0, 1, 1, 2] = math.inf
    gbad[3, 0, 0, 0] = math.nan
    for mode in ("avg", "max"):
        args = (gbad, rois, 0.25, 2, 3, 2, 3, 9, 10, -1, True, mode, x)
        gt = _backends.internal("_roi_align_backward", "triton")(*args)
        gc = torch.ops.detseg._roi_align_backward(*args)
        assert torch.equal(torch.isfinite(gt), torch.isfinite(gc)) and not torch.isfinite(gc).all()
        fin = torch.isfinite(gc)
        torch.testing.assert_close(gt[fin], gc[fin], **_tol("grad"))
    with pytest.raises(ValueError, match=r"detseg\._roi_pool_backward: argmax must hold -1 or plane indices in "
                                         r"\[0, 90\), got 90"):
        pool_bwd(g, rois, torch.full_like(arg, 90), 0.25, 2, 3, 2, 3, 9, 10)
    with pytest.raises(ValueError, match=r"detseg\._roi_align_backward: input must be given for pool_mode 'max'"):
        _backends.internal("_roi_align_backward", "triton")(g, rois, 0.25, 2, 3, 2, 3, 9, 10, 2, False, "max")


def _tol(what):
    rtol, atol = TOLERANCES[torch.float32][what]
    return {"rtol": rtol, "atol": atol}


@needs_triton
@pytest.mark.parametrize("op", ["avg", "max", "pool", "ps_align", "ps_pool"])
def test_triton_gradcheck(op):
    # fast_mode: one random projection, a few interpreted launches instead of one per element.
    c = 4 if op.startswith("ps") else 2
    x = torch.randn(2, c, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    if op == "pool":  # distinct values keep each bin's argmax away from ties
        x = torch.randperm(x.numel(), generator=torch.Generator().manual_seed(0)).double().reshape(x.shape)
    x.requires_grad_()
    rois = torch.tensor([[0, 1, 1.5, 7, 6], [1, -3, 2, 12, 10], [1, 2, 2, 2.2, 2.1], [0, math.nan, 1, 3, 3]],
                        dtype=torch.float64)
    fns = {"avg": lambda t: detseg.roi_align(t, rois, (3, 2), 0.5, -1, True, backend="triton"),
           "max": lambda t: detseg.roi_align(t, rois, (3, 2), 0.5, 2, False, pool_mode="max", backend="triton"),
           "pool": lambda t: detseg.roi_pool(t, rois, (3, 2), 0.5, backend="triton"),
           "ps_align": lambda t: detseg.ps_roi_align(t, rois, (2, 2), 0.5, -1, backend="triton"),
           "ps_pool": lambda t: detseg.ps_roi_pool(t, rois, (2, 2), 0.5, backend="triton")}
    assert torch.autograd.gradcheck(fns[op], (x,), fast_mode=True)


_SM90_SCRIPT = """
import sys
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, compile
import detseg.triton
A, P = sys.modules["detseg.triton.roi_align"], sys.modules["detseg.triton.roi_pool"]
ptr = {"x_ptr": "*bf16", "out_ptr": "*bf16", "g_ptr": "*bf16", "r_ptr": "*fp32", "scale_ptr": "*fp32",
       "arg_ptr": "*i64", "a_ptr": "*i64", "order_ptr": "*i64", "seg_ptr": "*i64", "buf_ptr": "*fp32"}
fwd, gat = dict(CT=tl.float32, PB=64, BK=1, BC=32), dict(CT=tl.float32, PB=64, RB=1, TH=8, TW=8, BC=2)
atm = fwd
cases = [(A._align_fwd_kernel, dict(ALIGNED=True, MAX=True, PS=False, STORE_ARG=True, **fwd)),
         (A._align_fwd_kernel, dict(ALIGNED=True, MAX=False, PS=True, STORE_ARG=False, **fwd)),
         (A._align_bwd_gather_kernel, dict(ALIGNED=False, MAX=False, PS=False, **gat)),
         (A._align_bwd_gather_kernel, dict(ALIGNED=False, MAX=True, PS=False, **gat)),
         (A._align_bwd_gather_kernel, dict(ALIGNED=True, MAX=False, PS=True, **gat)),
         (A._align_bwd_atomic_kernel, dict(ALIGNED=False, MAX=False, PS=False, **atm)),
         (A._align_bwd_atomic_kernel, dict(ALIGNED=False, MAX=True, PS=False, **atm)),
         (P._pool_fwd_kernel, dict(PS=False, **fwd)), (P._pool_fwd_kernel, dict(PS=True, **fwd)),
         (P._pool_bwd_gather_kernel, dict(PS=False, **gat)), (P._pool_bwd_gather_kernel, dict(PS=True, **gat)),
         (P._pool_bwd_atomic_kernel, dict(PS=True, **atm))]
for fn, consts in cases:
    sig = {n: "constexpr" if n in consts else ptr.get(n, "i32") for n in fn.arg_names}
    compile(ASTSource(fn=fn, signature=sig, constexprs=consts), target=GPUTarget("cuda", 90, 32),
            options={"enable_fp_fusion": False})
print("compiled", len(cases))
"""


@needs_triton
def test_triton_kernels_compile_for_sm90():
    # No GPU here: the interpreter runs the kernels as Python, so the typing and lowering rules
    # of compiled Triton are checked by compiling every kernel variant for sm_90 (cached by
    # Triton across runs; about 1 s each on a cold cache).
    import subprocess
    import sys

    pytest.importorskip("triton.backends.nvidia")
    env = _backends.subprocess_env()
    env.pop("TRITON_INTERPRET", None)
    res = subprocess.run([sys.executable, "-c", _SM90_SCRIPT], env=env, capture_output=True, text=True)
    assert res.returncode == 0 and "compiled 12" in res.stdout, res.stderr[-3000:]


# ---------------------------------------------------------------- dtypes, autocast, modules

def test_half_boxes_keep_precision_and_autocast():
    x = torch.randn(1, 4, 30, 40)
    rois = torch.tensor([[0, 101.3, 57.7, 150.9, 99.1]])
    ref = detseg.roi_align(x.double(), rois.double(), 7, 0.25, 2, True)
    out = detseg.roi_align(x.bfloat16(), rois, 7, 0.25, 2, True)  # float32 boxes with bf16 features
    assert out.dtype == torch.bfloat16
    close(out, ref)
    conv = torch.nn.Conv2d(4, 4, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        out = detseg.roi_align(y, rois, 7, 0.25, 2, True)
    assert out.dtype == torch.bfloat16
    close(out, detseg.roi_align(y.double(), rois.double(), 7, 0.25, 2, True))


def test_modules():
    x = torch.randn(1, 2, 8, 8)
    boxes = [torch.tensor([[0.0, 0, 6, 5]])]
    m = detseg.RoIAlign((2, 2), 0.5, 2, aligned=True)
    torch.testing.assert_close(m(x, boxes), detseg.roi_align(x, boxes, 2, 0.5, 2, True))
    assert "aligned=True" in repr(m)
    torch.testing.assert_close(detseg.RoIPool(2, 0.5)(x, boxes), detseg.roi_pool(x, boxes, 2, 0.5))


# ---------------------------------------------------------------- opcheck / compile

@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_opcheck(layout):
    x = make_input(2, 3, 7, 8, torch.float32, layout, seed=2).requires_grad_()
    rois = make_rois(6, 2, 28, 32, seed=4)
    for mode in ("avg", "max"):
        torch.library.opcheck(torch.ops.detseg.roi_align.default, (x, rois, 0.25, 2, 3, -1, True, mode))
    torch.library.opcheck(torch.ops.detseg.roi_pool.default, (x, rois, 0.25, 2, 3))
    g = torch.randn(6, 3, 2, 3)
    torch.library.opcheck(torch.ops.detseg._roi_align_backward.default,
                          (g, rois, 0.25, 2, 3, 2, 3, 7, 8, 2, False, "max", x.detach()))
    _, arg = torch.ops.detseg.roi_pool(x.detach(), rois, 0.25, 2, 3)
    torch.library.opcheck(torch.ops.detseg._roi_pool_backward.default, (g, rois, arg, 0.25, 2, 3, 2, 3, 7, 8))


def test_compile_fullgraph():
    x = torch.randn(2, 3, 9, 10, requires_grad=True)
    rois = make_rois(7, 2, 36, 40, seed=1)

    def f(x, rois):
        return (detseg.roi_align(x, rois, 3, 0.25, 2, True).sum()
                + detseg.roi_align(x, rois, 2, 0.25, -1, False, pool_mode="max").sum()
                + detseg.roi_pool(x, rois, 2, 0.25).sum()
                + detseg.ps_roi_align(x[:, :2], rois, (2, 1), 0.25, 2).sum()
                + detseg.ps_roi_pool(x[:, :2], rois, (1, 2), 0.25).sum())

    cf = torch.compile(f, fullgraph=True, backend="aot_eager")
    y = cf(x, rois)
    (g,) = torch.autograd.grad(y, x)
    y0 = f(x, rois)
    (g0,) = torch.autograd.grad(y0, x)
    torch.testing.assert_close(y, y0)
    torch.testing.assert_close(g, g0)


# ---------------------------------------------------------------- onnxruntime oracles

def _ort_run(node, inputs: dict, opset: int, out_shape):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    def vi(name, arr):
        et = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}[str(arr.dtype)]
        return helper.make_tensor_value_info(name, et, list(arr.shape))

    graph = helper.make_graph([node], "g", [vi(k, v) for k, v in inputs.items()],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, inputs)[0])


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_onnxruntime_roialign(aligned, sampling_ratio):
    from onnx import helper

    x = make_input(2, 4, 13, 17, torch.float32, "contiguous", seed=5)
    rois = make_rois(23, 2, 52, 68, seed=11, outside=False)
    node = helper.make_node("RoiAlign", ["x", "rois", "batch_indices"], ["y"], mode="avg", output_height=3,
                            output_width=4, sampling_ratio=sampling_ratio, spatial_scale=0.25,
                            coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel")
    ort = _ort_run(node, {"x": x.numpy(), "rois": rois[:, 1:].contiguous().numpy(),
                          "batch_indices": rois[:, 0].long().numpy()}, 16, [23, 4, 3, 4])
    out = detseg.roi_align(x, rois, (3, 4), 0.25, sampling_ratio, aligned)
    torch.testing.assert_close(out, ort, rtol=1e-5, atol=1e-5)


def test_onnxruntime_maxroipool():
    from onnx import helper

    x = make_input(2, 4, 13, 17, torch.float32, "contiguous", seed=6)
    rois = make_rois(23, 2, 52, 68, seed=12)  # with RoIs outside the map and inverted ones
    node = helper.make_node("MaxRoiPool", ["x", "rois"], ["y"], pooled_shape=[3, 4], spatial_scale=0.25)
    ort = _ort_run(node, {"x": x.numpy(), "rois": rois.numpy()}, 16, [23, 4, 3, 4])
    torch.testing.assert_close(detseg.roi_pool(x, rois, (3, 4), 0.25), ort, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["avg", "max", "pool"])
def test_nchw_and_channels_last_loops_agree_bitwise(mode):
    # Few RoIs on a large map run the NCHW loop on NCHW input; channels-last input always runs
    # the channel-inner loop. Both apply the same per-element operation order.
    x = make_input(1, 6, 40, 50, torch.float32, "contiguous", seed=1)
    rois = torch.tensor([[0, 3.2, 4.1, 30.5, 22.7], [0, -5.0, 10.0, 12.0, 60.0], [0, 40.0, 2.0, 41.0, 3.0]])

    def run(t):
        if mode == "pool":
            return torch.ops.detseg.roi_pool(t, rois, 0.5, 5, 4)[0]
        return torch.ops.detseg.roi_align(t, rois, 0.5, 5, 4, -1, False, mode)

    xcl = x.contiguous(memory_format=torch.channels_last)
    bitwise(run(x), run(xcl).contiguous())
    g = torch.randn(3, 6, 5, 4, generator=torch.Generator().manual_seed(4))
    grads = []
    for t, gg in ((x, g), (xcl, g.contiguous(memory_format=torch.channels_last))):
        t = t.detach().requires_grad_()
        grads.append(torch.autograd.grad(run(t), t, gg)[0])
    bitwise(grads[0], grads[1].contiguous())
    xo = x.detach().double().requires_grad_()
    if mode == "pool":
        oo = R.roi_pool(xo, rois.double(), 0.5, 5, 4)[0]
    else:
        oo = R.roi_align(xo, rois.double(), 0.5, 5, 4, -1, False, mode)
    close(grads[0], torch.autograd.grad(oo, xo, g.double())[0], "grad")


# ---------------------------------------------------------------- position-sensitive ops

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("k", [0, 1, 13])
@pytest.mark.parametrize("op", ["ps_roi_align_-1", "ps_roi_align_0", "ps_roi_align_2", "ps_roi_pool"])
def test_ps_forward_matrix(dtype, layout, k, op):
    x = make_input(2, 12, 11, 13, dtype, layout, seed=k)
    rois = make_rois(k, 2, 44, 52, seed=k + 3)
    if op == "ps_roi_pool":
        out, mapping = torch.ops.detseg.ps_roi_pool(x, rois, 0.25, 2, 3)
        oracle, omap = R.ps_roi_pool(x.double(), rois.double(), 0.25, 2, 3)
        pub = detseg.ps_roi_pool(x, rois, (2, 3), 0.25)
    else:
        sr = int(op.rsplit("_", 1)[1])
        out, mapping = torch.ops.detseg.ps_roi_align(x, rois, 0.25, 2, 3, sr)
        oracle, omap = R.ps_roi_align(x.double(), rois.double(), 0.25, 2, 3, sr)
        pub = detseg.ps_roi_align(x, rois, (2, 3), 0.25, sr)
    assert out.shape == (k, 2, 2, 3) and out.dtype == dtype and mapping.dtype == torch.int64
    assert torch.equal(mapping, omap)
    close(out, oracle)
    assert torch.equal(pub, out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ps_hand_values(backend):
    # One output channel, one bin: ps_roi_align samples at -0.5 + (0.5, 1.5) * 4 / 2 = 0.5, 2.5
    # (half-pixel geometry); ps_roi_pool averages the 4 x 4 pixels (extent end - start = 4).
    box = torch.tensor([[0.0, 0, 0, 4, 4]])
    a = detseg.ps_roi_align(PLANE, box, 1, 1.0, 2, backend=backend)
    torch.testing.assert_close(a.flatten(), torch.tensor([7.5]))
    p = detseg.ps_roi_pool(PLANE, box, 1, 1.0, backend=backend)
    torch.testing.assert_close(p.flatten(), torch.tensor([7.5]))
    # 2 x 2 bins over 4 channels: bin (i, j) reads channel 2 i + j; channel c holds PLANE + 100 c.
    x = torch.cat([PLANE + 100 * c for c in range(4)], 1)
    p = detseg.ps_roi_pool(x, box, 2, 1.0, backend=backend)[0, 0]
    torch.testing.assert_close(p, torch.tensor([[2.5, 104.5], [210.5, 312.5]]))


@pytest.mark.parametrize("backend", ["cpp", "reference"])
@pytest.mark.parametrize("op", ["align", "pool"])
def test_ps_gradcheck(backend, op):
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    rois = torch.tensor([[0, 1, 1.5, 7, 6], [1, -3, 2, 12, 10], [1, 2, 2, 2.2, 2.1], [0, math.nan, 1, 3, 3]],
                        dtype=torch.float64)
    if op == "align":
        f = lambda t: detseg.ps_roi_align(t, rois, (2, 2), 0.5, -1, backend=backend)  # noqa: E731
    else:
        f = lambda t: detseg.ps_roi_pool(t, rois, (2, 2), 0.5, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,))


@pytest.mark.parametrize("op", ["align", "pool"])
def test_ps_backward_bitwise_any_thread_count(op):
    x = make_input(2, 4 * 49, 20, 23, torch.float32, "contiguous", seed=8)
    rois = make_rois(50, 2, 80, 92, seed=10)
    g = torch.randn(50, 4, 7, 7, generator=torch.Generator().manual_seed(3))

    def grad():
        xc = x.detach().requires_grad_()
        f = detseg.ps_roi_align if op == "align" else detseg.ps_roi_pool
        return torch.autograd.grad(f(xc, rois, 7, 0.25), xc, g)[0]

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        g1 = grad()
        torch.set_num_threads(2)
        g2 = grad()
    finally:
        torch.set_num_threads(before)
    bitwise(g1, g2)
    xr = x.detach().double().requires_grad_()
    fr = R.ps_roi_align if op == "align" else R.ps_roi_pool
    args = (0.25, 7, 7, -1) if op == "align" else (0.25, 7, 7)
    (gr,) = torch.autograd.grad(fr(xr, rois.double(), *args)[0], xr, g.double())
    close(g1, gr, "grad")


@pytest.mark.parametrize("backend", BACKENDS)
def test_ps_bad_arguments(backend):
    x = torch.randn(2, 6, 8, 8)
    with pytest.raises(ValueError, match=r"detseg\.ps_roi_align: input channels must be a multiple of "
                                         r"output_size\[0\] \* output_size\[1\] = 4, got 6"):
        detseg.ps_roi_align(x, torch.zeros(1, 5), 2, backend=backend)
    with pytest.raises(ValueError, match=r"detseg\.ps_roi_pool: rois\[:, 0\] must hold integer batch indices"):
        detseg.ps_roi_pool(x, torch.tensor([[3.0, 0, 0, 2, 2]]), (2, 3), backend=backend)
    assert detseg.ps_roi_pool(x, [torch.zeros(0, 4)], (2, 3), backend=backend).shape == (0, 1, 2, 3)


def test_ps_opcheck_and_modules():
    x = make_input(2, 8, 7, 8, torch.float32, "contiguous", seed=2).requires_grad_()
    rois = make_rois(6, 2, 28, 32, seed=4)
    torch.library.opcheck(torch.ops.detseg.ps_roi_align.default, (x, rois, 0.25, 2, 2, -1))
    torch.library.opcheck(torch.ops.detseg.ps_roi_pool.default, (x, rois, 0.25, 2, 2))
    g = torch.randn(6, 2, 2, 2)
    _, m = torch.ops.detseg.ps_roi_pool(x.detach(), rois, 0.25, 2, 2)
    torch.library.opcheck(torch.ops.detseg._ps_roi_align_backward.default, (g, rois, m, 0.25, 2, 2, 2, 2, 8, 7, 8))
    torch.library.opcheck(torch.ops.detseg._ps_roi_pool_backward.default, (g, rois, m, 0.25, 2, 2, 2, 8, 7, 8))
    torch.testing.assert_close(detseg.PSRoIAlign(2, 0.25, 2)(x, rois), detseg.ps_roi_align(x, rois, 2, 0.25, 2))
    torch.testing.assert_close(detseg.PSRoIPool(2, 0.25)(x, rois), detseg.ps_roi_pool(x, rois, 2, 0.25))


# ---------------------------------------------------------------- MultiScaleRoIAlign

def test_multiscale_roi_align():
    from detseg.ops.roi import fpn_levels

    g = torch.Generator().manual_seed(0)
    x = {"p2": torch.randn(2, 3, 32, 40, generator=g), "p3": torch.randn(2, 3, 16, 20, generator=g),
         "p4": torch.randn(2, 3, 8, 10, generator=g), "skip": torch.randn(2, 3, 4, 5, generator=g)}
    boxes = [torch.tensor([[0.0, 0, 20, 20], [5, 5, 120, 100]]), torch.tensor([[10.0, 10, 70, 70], [0, 0, 3, 3]])]
    m = detseg.MultiScaleRoIAlign(["p2", "p3", "p4"], 3, 2, canonical_scale=56, canonical_level=3)
    out = m(x, boxes, [(128, 160), (120, 150)])
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)])
    lv = fpn_levels(rois[:, 1:], 2, 4, 56, 3)
    # sqrt(area) 20 -> floor(3 + log2(20 / 56)) = 1 -> clamped to 2; 107.2 -> 3; 60 -> 3; 3 -> 2
    assert lv.tolist() == [0, 1, 1, 0]
    feats = [x["p2"], x["p3"], x["p4"]]
    for i in range(4):
        lvl = int(lv[i])
        exp = detseg.roi_align(feats[lvl], rois[i:i + 1], 3, 2.0 ** -(lvl + 2), 2)
        torch.testing.assert_close(out[i:i + 1], exp)
    # Just below a level boundary (sqrt(area) = 2 * 56 * (1 - 1e-7)): torchvision's eps outside
    # the log lifts the box to level 4, detectron2's eps inside the log keeps it at level 3.
    side = 112.0 * (1 - 1e-7)
    b = torch.tensor([[0.0, 0.0, side, side]], dtype=torch.float64)
    assert fpn_levels(b, 2, 5, 56, 3).item() == 2
    assert fpn_levels(b, 2, 5, 56, 3, eps=1e-8, eps_in_log=True).item() == 1
    assert detseg.MultiScaleRoIAlign(["p2"], 2, 2)(x, boxes, [(128, 160)]).shape == (4, 3, 2, 2)


# ---------------------------------------------------------------- per-ISA builds

_ISA_SCRIPT = """
import sys, torch, numpy as np, detseg
x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 37, 20, 23))).float()
r = np.random.default_rng(2)
xy = r.uniform(-10, 90, (60, 2)); wh = r.uniform(1, 60, (60, 2))
rois = torch.from_numpy(np.concatenate([r.integers(0, 2, (60, 1)), xy, xy + wh], 1)).float()
g = torch.from_numpy(np.random.default_rng(3).standard_normal((60, 37, 7, 7))).float()
out = {}
for name, t in (("nchw", x), ("cl", x.contiguous(memory_format=torch.channels_last))):
    t = t.clone().requires_grad_()
    y = detseg.roi_align(t, rois, 7, 0.25, -1, True)
    fmt = torch.channels_last if name == "cl" else torch.contiguous_format
    out[name] = (y.detach().contiguous(), torch.autograd.grad(y, t, g.contiguous(memory_format=fmt))[0].contiguous())
torch.save(out, sys.argv[1])
"""


def test_isa_builds_agree_bitwise(tmp_path):
    import _backends

    isas = _backends.isas_here()
    if len(isas) < 2:
        pytest.skip("one ISA only")
    results = _backends.outputs_at_isas(_ISA_SCRIPT, tmp_path, "roi_align", isas)
    for other in results[1:]:
        for key in results[0]:
            for a, b in zip(results[0][key], other[key]):
                bitwise(a, b)
