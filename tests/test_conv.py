"""Transposed convolution and max unpooling (issue 5): every backend against the float64
reference (itself a tap scatter, independent of ATen) and against ATen, the CPU kernel's
paths against its general path, gradients, opcheck, compile, the nn drop-ins, errors and
thread-count determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import _backends as B
import detseg
import detseg.nn
from tolerances import assert_bitwise, assert_close

BACKENDS = ["cpp", "reference"]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]

# (N, C_in, H, W, C_out/groups, groups, kernel, stride, padding, output_padding, dilation)
CONFIGS = [
    (2, 4, 5, 7, 3, 1, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),   # 3x3 s2 decoder, output_padding
    (2, 6, 5, 7, 2, 3, (3, 2), (2, 3), (1, 0), (1, 2), (1, 1)),   # grouped, anisotropic
    (1, 3, 6, 5, 2, 1, (3, 3), (1, 1), (0, 2), (0, 0), (2, 2)),   # stride 1, dilated
    (2, 4, 4, 5, 3, 1, (2, 2), (2, 2), (0, 0), (0, 0), (1, 1)),   # k2 s2 (U-Net)
    (1, 4, 3, 5, 3, 2, (2, 3), (3, 3), (1, 1), (2, 1), (1, 1)),   # k < s, output_padding
    (1, 2, 3, 3, 2, 1, (20, 20), (8, 8), (4, 4), (0, 0), (1, 1)),  # FCN-like large kernel
    (1, 3, 4, 3, 2, 1, (2, 3), (3, 2), (0, 1), (1, 1), (2, 3)),   # dilation > stride, output_padding < dilation
    (3, 1, 1, 1, 1, 1, (1, 1), (1, 1), (0, 0), (0, 0), (1, 1)),   # 1x1 everything
    (1, 5, 7, 2, 5, 5, (4, 4), (2, 2), (1, 1), (0, 1), (1, 1)),   # depthwise
]
IDS = [f"cfg{i}" for i in range(len(CONFIGS))]


def make(cfg, dtype=torch.float64, layout="nchw", bias=True, seed=0):
    n, cin, h, w, cog, g, k, s, p, op, d = cfg
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=gen, dtype=torch.float64)
    wt = torch.randn(cin, cog, *k, generator=gen, dtype=torch.float64) / math.sqrt(cin // g * k[0] * k[1])
    b = torch.randn(cog * g, generator=gen, dtype=torch.float64) if bias else None
    x, wt = x.to(dtype), wt.to(dtype)
    b = b.to(dtype) if b is not None else None
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = x.repeat(1, 1, 1, 2)[..., ::2]
    return x, wt, b, dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)


def args(kw):
    return (list(kw["stride"]), list(kw["padding"]), list(kw["output_padding"]), kw["groups"], list(kw["dilation"]))


def oracle(x, wt, b, kw):
    """The float64 reference on the (already rounded) inputs."""
    return detseg.reference.conv_transpose2d(x.double(), wt.double(), None if b is None else b.double(), *args(kw))


# ---------------------------------------------------------------- parity

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_forward_matches_reference_and_aten(cfg, dtype, backend):
    B.require(backend)
    for layout in ("nchw", "channels_last", "strided"):
        x, wt, b, kw = make(cfg, dtype, layout, bias=layout != "strided")
        out = detseg.ops.conv_transpose2d(x, wt, b, **kw, backend=backend)
        assert out.dtype == dtype
        if layout == "channels_last" and out.shape[1] > 1 and out.shape[2] * out.shape[3] > 1:
            assert out.is_contiguous(memory_format=torch.channels_last)
        expected = oracle(x, wt, b, kw)
        assert_close(out, expected)
        if dtype in (torch.float32, torch.float64):
            aten = F.conv_transpose2d(x.double(), wt.double(), None if b is None else b.double(), **kw)
            assert_close(out, aten)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unbatched_zero_batch_and_nan(backend):
    B.require(backend)
    x, wt, b, kw = make(CONFIGS[0], torch.float32)
    un = detseg.ops.conv_transpose2d(x[0], wt, b, **kw, backend=backend)
    assert_close(un, F.conv_transpose2d(x[0].double(), wt.double(), b.double(), **kw))
    empty = detseg.ops.conv_transpose2d(x[:0], wt, b, **kw, backend=backend)
    assert empty.shape == (0, 3, 10, 14)
    xe = x[:0].clone().requires_grad_()
    we = wt.clone().requires_grad_()
    detseg.ops.conv_transpose2d(xe, we, None, **kw, backend=backend).sum().backward()
    assert xe.grad.shape == xe.shape and torch.equal(we.grad, torch.zeros_like(wt))
    # A NaN reaches exactly the outputs its pixel scatters to (ATen's pattern), an inf likewise.
    xn = x.clone()
    xn[0, 1, 2, 3] = float("nan")
    xn[1, 0, 4, 6] = float("inf")
    out = detseg.ops.conv_transpose2d(xn, wt, b, **kw, backend=backend)
    ref = F.conv_transpose2d(xn.double(), wt.double(), b.double(), **kw)
    assert torch.equal(out.isnan(), ref.isnan()) and out.isnan().any()
    assert_close(out.nan_to_num(0.0, 0.0, 0.0), ref.nan_to_num(0.0, 0.0, 0.0))


# ---------------------------------------------------------------- the C++ paths

def _paths(cfg):
    _, _, _, _, _, _, k, s, _, _, d = cfg
    out = ["general", "channels_last"]
    if all((k[a] - 1) * d[a] < s[a] for a in range(2)):
        out.append("non_overlapping")
    if d[1] == 1:
        out.append("large_kernel")
    if d == (1, 1):
        out += ["phase", "phase_direct"]
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_each_path_equals_general(cfg, dtype):
    B.require("cpp")
    x, wt, b, kw = make(cfg, dtype)
    general = torch.ops.detseg._conv_transpose2d_path(x, wt, b, *args(kw), "general")
    for path in _paths(cfg):
        out = torch.ops.detseg._conv_transpose2d_path(x, wt, b, *args(kw), path)
        # (The general path's GEMMs are blocked by output channels, so even one-tap outputs may
        # differ from the non-overlapping path's in the last bit: BLAS kernels differ by shape.)
        assert_close(out, general.double())


def test_path_hook_errors():
    B.require("cpp")
    x, wt, b, kw = make(CONFIGS[0], torch.float32)
    with pytest.raises(ValueError, match="path must be one of"):
        torch.ops.detseg._conv_transpose2d_path(x, wt, b, *args(kw), "fast")
    with pytest.raises(ValueError, match=r"non_overlapping path needs \(k - 1\) \* dilation < stride"):
        torch.ops.detseg._conv_transpose2d_path(x, wt, b, *args(kw), "non_overlapping")


def test_workload_shapes_pick_their_paths():
    """The issue's shapes (scaled down) through the automatic choice equal the general path."""
    B.require("cpp")
    gen = torch.Generator().manual_seed(1)
    for (n, cin, h, w, cout, k, s, p, op) in [(2, 32, 9, 8, 16, 2, 2, 0, 0), (1, 21, 4, 4, 21, 64, 32, 16, 0),
                                              (2, 16, 9, 10, 8, 3, 2, 1, 1)]:
        x = torch.randn(n, cin, h, w, generator=gen)
        wt = torch.randn(cin, cout, k, k, generator=gen) / math.sqrt(cin * k * k)
        a = ([s, s], [p, p], [op, op], 1, [1, 1])
        auto = torch.ops.detseg.conv_transpose2d(x, wt, None, *a)
        assert_close(auto, torch.ops.detseg._conv_transpose2d_path(x.double(), wt.double(), None, *a, "general"))
        assert_close(auto, F.conv_transpose2d(x.double(), wt.double(), None, s, p, op))


# ---------------------------------------------------------------- gradients

# Small copies of the grid's geometries (gradcheck perturbs every input element).
GRAD_CONFIGS = [(1, 2, 3, 4, 2, 1, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
                (2, 4, 2, 3, 1, 2, (3, 2), (2, 3), (1, 0), (1, 2), (1, 1)),
                (1, 2, 3, 3, 1, 1, (2, 3), (3, 2), (0, 1), (1, 1), (2, 3)),
                (1, 2, 2, 2, 1, 1, (6, 6), (3, 3), (1, 1), (0, 0), (1, 1))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cfg", GRAD_CONFIGS, ids=[f"g{i}" for i in range(len(GRAD_CONFIGS))])
def test_gradcheck(cfg, backend):
    B.require(backend)
    x, wt, b, kw = make(cfg, torch.float64)
    x, wt, b = (t.requires_grad_() for t in (x, wt, b))
    fn = lambda x, wt, b: detseg.ops.conv_transpose2d(x, wt, b, **kw, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, wt, b), fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_backward_matches_aten(cfg, layout, dtype):
    B.require("cpp")
    x, wt, b, kw = make(cfg, dtype, layout)
    x, wt, b = (t.requires_grad_() for t in (x, wt, b))
    out = detseg.ops.conv_transpose2d(x, wt, b, **kw, backend="cpp")
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(5)).to(dtype)
    got = torch.autograd.grad(out, (x, wt, b), g)
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, wt, b))
    want = torch.autograd.grad(F.conv_transpose2d(xd, wd, bd, **kw), (xd, wd, bd), g.double())
    for a, e in zip(got, want):
        assert a.dtype == dtype
        assert_close(a, e, "grad", **({"atol": 2e-5, "rtol": 1e-4} if dtype == torch.float32 else {}))
    if layout == "channels_last" and x.shape[1] > 1 and x.shape[2] * x.shape[3] > 1:
        assert got[0].is_contiguous(memory_format=torch.channels_last)
        # ATen's layouts: channels-last input, channels-last grad_input and grad_weight
        for a, e in zip(got, want):
            assert a.stride() == e.stride()
    # the reference's backward op, masks included
    ref = detseg.reference._conv_transpose2d_backward(g.double(), xd.detach(), wd.detach(), *args(kw),
                                                      [True, False, True])
    assert ref[1].numel() == 0
    assert_close(ref[0], want[0])
    assert_close(ref[2], want[2])


# ---------------------------------------------------------------- opcheck / compile / modules

def test_opcheck():
    B.require("cpp")
    for cfg, layout in ((CONFIGS[0], "nchw"), (CONFIGS[1], "channels_last"), (CONFIGS[5], "nchw")):
        x, wt, b, kw = make(cfg, torch.float32, layout)
        torch.library.opcheck(torch.ops.detseg.conv_transpose2d.default, (x, wt, b, *args(kw)))
        torch.library.opcheck(torch.ops.detseg.conv_transpose2d.default, (x, wt, None, *args(kw)))
        out = torch.ops.detseg.conv_transpose2d(x, wt, b, *args(kw))
        torch.library.opcheck(torch.ops.detseg._conv_transpose2d_backward.default,
                              (torch.randn_like(out), x, wt, *args(kw), [True, True, True]))
        torch.library.opcheck(torch.ops.detseg._conv_transpose2d_backward.default,
                              (torch.randn_like(out), x, wt, *args(kw), [False, True, False]))
    y, idx = F.max_pool2d(torch.randn(2, 3, 8, 9), 2, return_indices=True)
    torch.library.opcheck(torch.ops.detseg.max_unpool2d.default, (y, idx, [8, 9]))
    torch.library.opcheck(torch.ops.detseg._max_unpool2d_backward.default, (torch.randn(2, 3, 8, 9), idx, [8, 9]))


def _fake_and_real(fn, *tensors):
    from torch._subclasses.fake_tensor import FakeTensorMode

    real = fn(*tensors)
    with FakeTensorMode() as mode:
        fake = fn(*(mode.from_tensor(t) for t in tensors))
    real, fake = (r if isinstance(r, tuple) else (r,) for r in (real, fake))
    return [t.stride() for t in real], [t.stride() for t in fake]


@pytest.mark.parametrize("batch", [0, 2])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_fake_strides_equal_real(layout, batch):
    """opcheck does not compare the strides of empty outputs: every path's and the backward's
    fake output strides against the real kernel's, empty channels-last batches included."""
    B.require("cpp")
    x, wt, b, kw = make(CONFIGS[0], torch.float32)
    x = x[:batch].contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x[:batch]
    a = args(kw)
    for path in _paths(CONFIGS[0]):
        real, fake = _fake_and_real(lambda x, w, b: torch.ops.detseg._conv_transpose2d_path(x, w, b, *a, path), x, wt, b)
        assert real == fake, path
    real, fake = _fake_and_real(lambda x, w, b: torch.ops.detseg.conv_transpose2d(x, w, b, *a), x, wt, b)
    assert real == fake
    out = torch.ops.detseg.conv_transpose2d(x, wt, b, *a)
    for grad in (torch.randn_like(out), torch.randn_like(out).contiguous(memory_format=torch.channels_last)):
        real, fake = _fake_and_real(
            lambda g, x, w: torch.ops.detseg._conv_transpose2d_backward(g, x, w, *a, [True, True, True]), grad, x, wt)
        assert real == fake
    torch.library.opcheck(torch.ops.detseg.conv_transpose2d.default, (x, wt, b, *a))


def test_compile_fullgraph():
    B.require("cpp")
    x, wt, b, kw = make(CONFIGS[0], torch.float32)
    fn = torch.compile(lambda x, wt, b: detseg.ops.conv_transpose2d(x, wt, b, **kw).relu(), fullgraph=True,
                       backend="aot_eager")
    assert_close(fn(x, wt, b), F.conv_transpose2d(x.double(), wt.double(), b.double(), **kw).relu())
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    fn2 = torch.compile(lambda y, i: detseg.ops.max_unpool2d(y, i, 2, output_size=x.shape[-2:]), fullgraph=True,
                        backend="aot_eager")
    assert torch.equal(fn2(y, idx), F.max_unpool2d(y, idx, 2, output_size=x.shape[-2:]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_transpose_module_loads_torch_state_dict(backend):
    B.require(backend)
    torch.manual_seed(0)
    ref = torch.nn.ConvTranspose2d(6, 4, (3, 2), stride=2, padding=(1, 0), groups=2, dilation=(1, 2))
    mine = detseg.nn.ConvTranspose2d(6, 4, (3, 2), stride=2, padding=(1, 0), groups=2, dilation=(1, 2),
                                     backend=backend)
    mine.load_state_dict(ref.state_dict())
    assert list(mine.state_dict()) == list(ref.state_dict()) == ["weight", "bias"]
    x = torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        assert_close(mine(x), ref(x).double())
        for size in ([10, 16], [2, 4, 9, 15]):  # output_size picks output_padding as torch does
            assert_close(mine(x, output_size=size), ref(x, output_size=size).double())
        with pytest.raises(ValueError):
            ref(x, output_size=[13, 13])
        with pytest.raises(ValueError):
            mine(x, output_size=[13, 13])
    nobias = detseg.nn.ConvTranspose2d(6, 4, 2, stride=2, bias=False)
    assert nobias.bias is None and nobias(x).shape == (2, 4, 10, 14)


# ---------------------------------------------------------------- errors

ERRORS = [
    (dict(stride=(0, 1)), ValueError, r"stride must be positive, got \[0, 1\]"),
    (dict(padding=(-1, 0)), ValueError, r"padding must be non-negative, got \[-1, 0\]"),
    (dict(dilation=(1, 0)), ValueError, r"dilation must be positive"),
    (dict(output_padding=(2, 0)), ValueError, r"output_padding must be non-negative and smaller than stride or "
                                              r"dilation on each axis, got output_padding \[2, 0\]"),
    (dict(groups=0), ValueError, r"groups must be positive, got 0"),
    (dict(groups=3), ValueError, r"groups must divide the input channels 4, got groups = 3"),
    (dict(padding=(9, 9)), ValueError, r"the output size \(-6, -2\) computed from input \[5, 7\].* must be positive"),
    (dict(weight=(5, 3, 3, 3)), ValueError, r"weight.size\(0\) must equal the input channels 4"),
    (dict(weight=(4, 3, 3)), ValueError, r"weight must be a Tensor\[C_in, C_out / groups, kH, kW\]"),
    (dict(input=(4, 5, 7, 2)), ValueError, r"input must be a Tensor\[N, C_in, H, W\]"),
    (dict(bias=(4,)), ValueError, r"bias must be a Tensor\[C_out\] with C_out = weight.size\(1\) \* groups = 3"),
    (dict(dtype_w=torch.float64), TypeError, r"weight must have the dtype of input \(float32\), got float64"),
    (dict(int_input=True), TypeError, r"input must be a floating-point tensor"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad,exc,match", ERRORS, ids=[f"err{i}" for i in range(len(ERRORS))])
def test_bad_arguments(bad, exc, match, backend):
    B.require(backend)
    x = torch.randn(2, *bad.get("input", (4, 5, 7)))
    if bad.get("int_input"):
        x = x.to(torch.int64)
    wt = torch.randn(*bad.get("weight", (4, 3, 3, 3)), dtype=bad.get("dtype_w", torch.float32))
    b = torch.randn(*bad["bias"]) if "bias" in bad else None
    kw = dict(stride=(2, 2), padding=(1, 1), output_padding=(1, 1), groups=1, dilation=(1, 1))
    kw.update({k: v for k, v in bad.items() if k in kw})
    with pytest.raises(exc, match="detseg.conv_transpose2d: " + match):
        detseg.ops.conv_transpose2d(x, wt, b, **kw, backend=backend)


# ---------------------------------------------------------------- determinism

@pytest.mark.parametrize("path", ["general", "non_overlapping", "large_kernel", "phase", "phase_direct",
                                  "channels_last"])
def test_thread_count_determinism(path):
    B.require("cpp")
    cfg = {"general": (3, 16, 17, 13, 8, 2, (3, 3), (2, 2), (1, 1), (1, 0), (1, 1)),
           "non_overlapping": (3, 16, 17, 13, 8, 1, (2, 2), (2, 2), (0, 0), (0, 0), (1, 1)),
           "large_kernel": (2, 6, 5, 6, 3, 1, (32, 32), (16, 16), (8, 8), (0, 0), (1, 1)),
           "phase": (2, 6, 5, 6, 3, 1, (32, 32), (16, 16), (8, 8), (0, 0), (1, 1)),
           "phase_direct": (2, 6, 5, 6, 3, 1, (32, 32), (16, 16), (8, 8), (0, 0), (1, 1)),
           "channels_last": (3, 16, 17, 13, 8, 2, (3, 3), (2, 2), (1, 1), (1, 0), (1, 1))}[path]
    x, wt, b, kw = make(cfg, torch.float32, "channels_last" if path == "channels_last" else "nchw")

    def run():
        out = torch.ops.detseg._conv_transpose2d_path(x, wt, b, *args(kw), path)
        g = torch.ops.detseg._conv_transpose2d_backward(torch.cos(out), x, wt, *args(kw), [True, True, True])
        return (out, *g)

    for a, c in zip(B.at_threads(1, run), B.at_threads(2, run)):
        assert_bitwise(a, c)


@pytest.mark.parametrize("isa", ["default", "avx2"])
def test_general_path_per_isa(isa):
    # the general path's stride-2 scatter-add and the backward's stride-2 gather are vector code
    # compiled per ISA; force the others (widths 21 and 6: full vectors plus tails, tails only)
    B.require("cpp")
    code = (
        "import torch, detseg, torch.nn.functional as F\n"
        "g = torch.Generator().manual_seed(0)\n"
        "for w in (21, 6):\n"
        "    x = torch.randn(2, 5, 7, w, generator=g); wt = torch.randn(5, 3, 3, 3, generator=g)\n"
        "    b = torch.randn(3, generator=g)\n"
        "    a = ([2, 2], [1, 1], [1, 1], 1, [1, 1])\n"
        "    got = torch.ops.detseg._conv_transpose2d_path(x, wt, b, *a, 'general')\n"
        "    want = F.conv_transpose2d(x.double(), wt.double(), b.double(), 2, 1, 1)\n"
        "    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)\n"
        "    gy = torch.randn(got.shape, generator=g)\n"
        "    gin, gw, _ = torch.ops.detseg._conv_transpose2d_backward(gy, x, wt, *a, [True, True, False])\n"
        "    xd, wd = x.double().requires_grad_(), wt.double().requires_grad_()\n"
        "    ein, ew = torch.autograd.grad(F.conv_transpose2d(xd, wd, None, 2, 1, 1), (xd, wd), gy.double())\n"
        "    torch.testing.assert_close(gin.double(), ein, rtol=1e-5, atol=1e-5)\n"
        "    torch.testing.assert_close(gw.double(), ew, rtol=1e-5, atol=1e-4)\n"
        "print(detseg.build_info()['cpu_isa'])\n")
    assert B.run_at_isa(isa, code).strip() == isa.upper()


# ---------------------------------------------------------------- max_unpool2d

UNPOOL_BACKENDS = BACKENDS + (["triton"] if B.TRITON_ON_CPU or (B.HAS_CUDA and B.HAS_TRITON) else [])


@pytest.mark.parametrize("backend", UNPOOL_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def test_max_unpool2d_matches_torch(dtype, backend):
    B.require(backend)
    gen = torch.Generator().manual_seed(2)
    for shape, k, s, p, size in [((2, 3, 8, 8), 2, None, 0, None), ((2, 3, 8, 9), 2, None, 0, (8, 9)),
                                 ((1, 2, 7, 7), 3, 2, 1, None),
                                 ((2, 3, 9, 11), 2, 2, 0, (9, 11)), ((3, 5, 6), 2, None, 0, None)]:
        x = torch.randn(*shape, generator=gen).to(dtype)
        y, idx = F.max_pool2d(x.float(), k, s, p, return_indices=True)
        y = y.to(dtype).requires_grad_()
        out = detseg.ops.max_unpool2d(y, idx, k, s, p, size, backend=backend)
        want = F.max_unpool2d(y.detach().float(), idx, k, s, p, size)
        assert out.dtype == dtype and torch.equal(out.float(), want)
        g = torch.randn(out.shape, generator=gen).to(dtype)
        (gy,) = torch.autograd.grad(out, y, g)
        yf = y.detach().float().requires_grad_()
        (want_g,) = torch.autograd.grad(F.max_unpool2d(yf, idx, k, s, p, size), yf, g.float())
        assert torch.equal(gy.float(), want_g)
    # empty batch; duplicates: the later input (row-major) wins
    e = detseg.ops.max_unpool2d(torch.zeros(0, 2, 3, 3, dtype=dtype), torch.zeros(0, 2, 3, 3, dtype=torch.int64),
                                2, backend=backend)
    assert e.shape == (0, 2, 6, 6)
    v = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]).to(dtype)
    i = torch.tensor([[[[5, 5], [0, 5]]]])
    out = detseg.ops.max_unpool2d(v, i, 2, backend=backend)
    assert out.flatten()[5] == 4 and out.flatten()[0] == 3 and int((out != 0).sum()) == 2


@pytest.mark.parametrize("backend", UNPOOL_BACKENDS)
def test_max_unpool2d_errors(backend):
    B.require(backend)
    y, idx = F.max_pool2d(torch.randn(1, 2, 4, 4), 2, return_indices=True)
    with pytest.raises(ValueError, match=r"detseg.max_unpool2d: indices must hold positions in \[0, output_size\[0\]"
                                         r" \* output_size\[1\] = 16\), got 99"):
        detseg.ops.max_unpool2d(y, idx.clone().fill_(99), 2, backend=backend)
    with pytest.raises(TypeError, match="detseg.max_unpool2d: indices must be an int64 tensor"):
        detseg.ops.max_unpool2d(y, idx.int(), 2, backend=backend)
    with pytest.raises(ValueError, match="detseg.max_unpool2d: indices must have the shape of input"):
        detseg.ops.max_unpool2d(y, idx[:, :1], 2, backend=backend)
    with pytest.raises(ValueError, match="detseg.max_unpool2d: output_size must be within one stride"):
        detseg.ops.max_unpool2d(y, idx, 2, output_size=(9, 4), backend=backend)


def test_max_unpool_module():
    B.require("cpp")
    pool = torch.nn.MaxPool2d(2, return_indices=True)
    x = torch.randn(2, 3, 9, 8)
    y, idx = pool(x)
    assert torch.equal(detseg.nn.MaxUnpool2d(2)(y, idx, output_size=x.shape), torch.nn.MaxUnpool2d(2)(y, idx,
                                                                                                   output_size=x.shape))


# ---------------------------------------------------------------- bilinear weight

def _fcn_upsample_filt(size):
    """FCN's surgery.upsample_filt, restated with numpy."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 32])
def test_bilinear_upsampling_weight(factor):
    w = detseg.ops.bilinear_upsampling_weight(3, factor, dtype=torch.float64)
    k = 2 * factor - factor % 2
    assert w.shape == (3, 3, k, k)
    for i in range(3):
        for j in range(3):
            want = torch.from_numpy(_fcn_upsample_filt(k)) if i == j else torch.zeros(k, k, dtype=torch.float64)
            assert torch.allclose(w[i, j], want, rtol=0, atol=1e-15)
    # No checkerboard: a constant image upsamples to the same constant away from the border.
    x = torch.full((1, 3, 6, 6), 2.5, dtype=torch.float64)
    pad = math.ceil((factor - 1) / 2)
    out = detseg.ops.conv_transpose2d(x, w, stride=factor, padding=pad)
    assert out.shape[-1] == 6 * factor
    inner = out[..., k:-k, k:-k]
    assert torch.allclose(inner, torch.full_like(inner, 2.5), atol=1e-12)


# ---------------------------------------------------------------- Triton (interpreted on the CPU: small cases)

@pytest.mark.skipif(not B.TRITON_ON_CPU and not B.HAS_CUDA, reason="triton is not available")
@pytest.mark.parametrize("cfg", [CONFIGS[i] for i in (0, 1, 6)], ids=[IDS[i] for i in (0, 1, 6)])
def test_triton_forward_backward(cfg):
    device = "cuda" if B.HAS_CUDA else "cpu"
    for dtype in (torch.float32, torch.float64):
        x, wt, b, kw = make(cfg, dtype, "channels_last" if dtype == torch.float32 else "nchw")
        x, wt, b = (t.to(device).requires_grad_() for t in (x, wt, b))
        out = detseg.ops.conv_transpose2d(x, wt, b, **kw, backend="triton")
        assert_close(out, oracle(x.detach().cpu(), wt.detach().cpu(), b.detach().cpu(), kw))
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=dtype).to(device)
        got = torch.autograd.grad(out, (x, wt, b), g)
        xd, wd, bd = (t.detach().cpu().double().requires_grad_() for t in (x, wt, b))
        want = torch.autograd.grad(F.conv_transpose2d(xd, wd, bd, **kw), (xd, wd, bd), g.cpu().double())
        for a, e in zip(got, want):
            assert_close(a, e, "grad", **({"atol": 2e-5, "rtol": 1e-4} if dtype == torch.float32 else {}))


# ---------------------------------------------------------------- own GEMM (decoder speed-up)
# The float32 forward's GEMMs run on csrc/cpu/vec/conv_gemm_vec (AVX-512, 12 x 32 tiles) when the
# build has it; DETSEG_CONV_OWN_GEMM=0 routes them to BLAS (what other ISAs use). Shapes with
# row counts off the 12-row panels, column counts off the 32-column panels (< 16, 16..32),
# several input bands per image (rows finished across band boundaries) and wide output rows
# (the register row kernel's interior steps).
OWN_GEMM_CONFIGS = [
    (8, 24, 20, 70, 64, 1, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),  # decoder-like, 4 bands of rows
    (3, 17, 9, 11, 5, 1, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),    # M = 45, N = 99
    (2, 13, 7, 5, 7, 1, (2, 2), (2, 2), (0, 0), (0, 0), (1, 1)),     # non-overlapping, M = 28, N = 35
    (1, 9, 4, 3, 11, 1, (3, 3), (2, 2), (0, 0), (1, 1), (1, 1)),     # N = 12 (< 16)
]


@pytest.mark.parametrize("cfg", OWN_GEMM_CONFIGS, ids=[f"g{i}" for i in range(len(OWN_GEMM_CONFIGS))])
def test_own_gemm_and_blas_fallback_agree(cfg, monkeypatch):
    B.require("cpp")
    x, wt, b, kw = make(cfg, torch.float32)
    paths = ["general"] + (["non_overlapping"] if "non_overlapping" in _paths(cfg) else [])
    expected = oracle(x, wt, b, kw)
    for path in paths:
        own = torch.ops.detseg._conv_transpose2d_path(x, wt, b, *args(kw), path)
        monkeypatch.setenv("DETSEG_CONV_OWN_GEMM", "0")
        blas = torch.ops.detseg._conv_transpose2d_path(x, wt, b, *args(kw), path)
        blas_2 = B.at_threads(2, lambda: torch.ops.detseg._conv_transpose2d_path(x, wt, b, *args(kw), path))
        monkeypatch.delenv("DETSEG_CONV_OWN_GEMM")
        own_2 = B.at_threads(2, lambda: torch.ops.detseg._conv_transpose2d_path(x, wt, b, *args(kw), path))
        assert_close(own, expected)
        assert_close(blas, expected)
        assert_bitwise(own, own_2)
        assert_bitwise(blas, blas_2)


@pytest.mark.parametrize("cfg", OWN_GEMM_CONFIGS[1:], ids=[f"g{i}" for i in range(1, len(OWN_GEMM_CONFIGS))])
def test_own_gemm_backward_and_blas_fallback_agree(cfg, monkeypatch):
    """grad_input's products (NCHW) run on the same kernel, the weight block packed per thread."""
    B.require("cpp")
    x, wt, b, kw = make(cfg, torch.float32)
    gen = torch.Generator().manual_seed(3)
    gy = torch.randn(F.conv_transpose2d(x, wt, b, **kw).shape, generator=gen)

    def grads():
        return torch.ops.detseg._conv_transpose2d_backward(gy, x, wt, *args(kw), [True, True, True])

    own, own_2 = grads(), B.at_threads(2, grads)
    monkeypatch.setenv("DETSEG_CONV_OWN_GEMM", "0")
    blas = grads()
    xd, wd, bd = (t.double().requires_grad_() for t in (x, wt, b))
    want = torch.autograd.grad(F.conv_transpose2d(xd, wd, bd, **kw), (xd, wd, bd), gy.double())
    for o, o2, f, w in zip(own, own_2, blas, want):
        assert_close(o, w, "grad")
        assert_close(f, w, "grad")
        assert_bitwise(o, o2)


def test_own_gemm_large_values_and_nan():
    """Inf / NaN in the input reach exactly the outputs they touch, as with ATen."""
    B.require("cpp")
    x, wt, b, kw = make(OWN_GEMM_CONFIGS[1], torch.float32)
    x[1, 3, 4, 5] = float("nan")
    x[2, 0, 0, 0] = float("inf")
    out = torch.ops.detseg._conv_transpose2d_path(x, wt, b, *args(kw), "general")
    want = F.conv_transpose2d(x.double(), wt.double(), b.double(), kw["stride"], kw["padding"], kw["output_padding"])
    assert torch.equal(out.isnan(), want.isnan())
    finite = want.isfinite()
    assert torch.equal(out.isfinite(), finite)
    assert_close(out[finite], want[finite])
