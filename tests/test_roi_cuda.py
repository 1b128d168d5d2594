"""CUDA kernels of the RoI ops (csrc/cuda/roi_align.cu, roi_pool.cu).

Without a GPU only the source checks run: every RoI schema of csrc/ops.cpp has a CUDA kernel
registered, the kernels call the shared header math, and each backward has its deterministic
branch. With a GPU (tests marked `cuda`): parity with the float64 reference over dtype x layout
x (aligned, sampling_ratio, pool_mode), backward parity in the default (atomic) and the
deterministic mode, bitwise repeatability of the deterministic mode, its memory bound, and the
same errors as the CPU kernels.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import detseg
from detseg import reference as R

from tolerances import TOLERANCES, assert_bitwise

ROOT = Path(__file__).resolve().parents[1]
DEV = "cuda"  # the GPU tests' device (the tests' own logic can be dry-run on "cpu" against the CPU kernels)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _roi_schema_names() -> set[str]:
    """Op names of the RoI block of csrc/ops.cpp (from its header comment to the next block)."""
    text = (ROOT / "csrc" / "ops.cpp").read_text()
    start = text.index("// ---- RoI ops")
    nxt = text.find("// ----", start + 1)
    block = text[start:] if nxt < 0 else text[start:nxt]
    return set(re.findall(r'm\.def\("(\w+)\(', block))


def _cuda_impls() -> dict[str, str]:
    """op name -> .cu file, from every TORCH_LIBRARY_IMPL(detseg, CUDA, m) block of csrc/cuda."""
    out = {}
    for path in sorted((ROOT / "csrc" / "cuda").glob("*.cu")):
        text = path.read_text()
        for m in re.finditer(r"TORCH_LIBRARY_IMPL\(\s*detseg\s*,\s*CUDA\s*,\s*\w+\s*\)\s*\{(.*?)\n\}", text, re.S):
            for name in re.findall(r'\.impl\(\s*"(\w+)"', m.group(1)):
                assert name not in out, f"{name} registered for CUDA twice ({out[name]}, {path.name})"
                out[name] = path.name
    return out


# ---------------------------------------------------------------- source checks (no GPU needed)

def test_every_roi_schema_has_a_cuda_kernel():
    names = _roi_schema_names()
    assert names == {"roi_align", "_roi_align_backward", "roi_pool", "_roi_pool_backward", "ps_roi_align",
                     "_ps_roi_align_backward", "ps_roi_pool", "_ps_roi_pool_backward"}
    impls = _cuda_impls()
    missing = sorted(names - impls.keys())
    assert not missing, f"RoI ops without a CUDA kernel: {missing}"


def test_cuda_kernels_call_the_header_math():
    align = (ROOT / "csrc/cuda/roi_align.cu").read_text()
    pool = (ROOT / "csrc/cuda/roi_pool.cu").read_text()
    common = (ROOT / "csrc/cuda/roi_common.cuh").read_text()
    for fn in ("roi_align_geom<", "roi_sample_pos(", "axis_sample(", "bilinear(", "bilinear_value(", "max_takes(",
               "ps_input_channel("):
        assert fn in align, fn
    for fn in ("roi_pool_geom<", "roi_pool_bin(", "pool_takes(", "ps_input_channel("):
        assert fn in pool, fn
    # batch indices are checked with the CPU kernels' words (checks.h)
    assert "checks::roi_batch_indices(" in common
    # one runner (roi_common.cuh) reads the deterministic flag for every backward
    assert "deterministicAlgorithms()" in common
    for src in (align, pool):
        assert "roi_backward_cuda(" in src and "l.deterministic" in src
        assert "roi_gather(" in src
    # the deterministic path has no atomics (the gather kernel and the arithmetic it calls)
    gather = common[common.index("// ---------------------------------------------------------------- deterministic"):]
    gather += (ROOT / "csrc/cuda/roi_gather.h").read_text()
    assert "atomic" not in gather.replace("atomics", "")
    assert "align_gather_roi(" in align and "pool_gather_roi(" in pool


def test_header_math_is_device_ready():
    """Every function of the RoI headers (and of the gather arithmetic) is DETSEG_HOST_DEVICE
    and calls no std:: math."""
    for path in ("include/detseg/roi_align.h", "include/detseg/roi_pool.h", "cuda/roi_gather.h"):
        name = path
        text = (ROOT / "csrc" / path).read_text()
        code = re.sub(r"//[^\n]*", "", text)
        # a function definition at namespace scope: `<type> name(...) {`
        for m in re.finditer(r"\n((?:template <[^>]*>\s*\n)?)([^\n;{}#]*?\b(\w+)\([^;{}]*\)\s*\{)", code):
            head = m.group(2)
            if head.lstrip().startswith(("struct", "if", "for", "while", "return")):
                continue
            assert "DETSEG_HOST_DEVICE" in head, f"{name}: {head.strip()[:80]}"
        no_cuda = re.sub(r"#if defined\(__CUDA_ARCH__\).*?#endif", "", code, flags=re.S)
        assert "std::" not in re.sub(r"#else.*?#endif", "", no_cuda, flags=re.S), name


def test_gather_backward_arithmetic_matches_cpu_scatter_bitwise(tmp_path):
    """The deterministic CUDA backward's per-element arithmetic (csrc/cuda/roi_gather.h, host/
    device) against the scatter in the CPU kernels' order, bit for bit, on the host: random and
    degenerate RoIs (inverted, sub-pixel, huge, far, NaN / inf), every op and mode, float and
    double, including infinite gradients (so zero-weight terms must be visited too)."""
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path / "roi_gather_check"
    # -ffp-contract=off: the CUDA build runs with --fmad=false; no FMA fusion here either.
    subprocess.run([cxx, "-std=c++20", "-O1", "-ffp-contract=off", f"-I{ROOT / 'csrc' / 'include'}",
                    f"-I{ROOT / 'csrc'}", str(ROOT / "tests" / "roi_gather_check.cpp"), "-o", str(exe)],
                   check=True, capture_output=True, timeout=300)
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.startswith("ok "), res.stdout + res.stderr
    assert int(res.stdout.split()[1]) > 50_000  # elements compared


# ---------------------------------------------------------------- GPU tests

def close(actual, expected, what="value"):
    rtol, atol = TOLERANCES[actual.dtype][what]
    torch.testing.assert_close(actual.detach().cpu().double(), expected.detach().cpu().double(), rtol=rtol, atol=atol,
                               equal_nan=True)


def make_rois(k, n, img_h, img_w, seed, outside=True):
    """k RoIs in image coordinates (sizes log-uniform), a few outside, degenerate or inverted."""
    g = torch.Generator().manual_seed(seed)
    size = torch.exp(torch.empty(k, 2).uniform_(0.0, math.log(max(img_h, img_w)), generator=g))
    cx, cy = torch.rand(k, generator=g) * img_w, torch.rand(k, generator=g) * img_h
    x1, y1 = cx - size[:, 0] / 2, cy - size[:, 1] / 2
    boxes = torch.stack([x1, y1, x1 + size[:, 0], y1 + size[:, 1]], 1)
    if outside and k >= 6:
        boxes[1] = torch.tensor([-40.0, -30.0, -20.0, -5.0])
        boxes[2] = torch.tensor([3.0, 4.0, 3.0, 4.0])
        boxes[3] = torch.tensor([img_w - 2.0, 1.0, img_w + 9.0, img_h + 3.0])
        boxes[4] = torch.tensor([5.0, 6.0, 2.0, 1.0])
        boxes[5] = torch.tensor([0.3, 0.2, 0.6, 0.4])  # smaller than a bin's pixel
    b = torch.randint(0, n, (k, 1), generator=g).float()
    return torch.cat([b, boxes], 1)


def make_input(n, c, h, w, dtype, layout, seed=0):
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


def _fmt(layout):
    return torch.channels_last if layout == "channels_last" else torch.contiguous_format


class deterministic:
    """torch.use_deterministic_algorithms(flag) for the duration of a block."""

    def __init__(self, flag=True):
        self.flag = flag

    def __enter__(self):
        self.before = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(self.flag)

    def __exit__(self, *exc):
        torch.use_deterministic_algorithms(self.before)


def _align_grad(x, rois, g, out_size, sr, aligned, mode):
    xc = x.detach().requires_grad_()
    out = detseg.roi_align(xc, rois, out_size, 0.25, sr, aligned, pool_mode=mode, backend="cpp")
    return out, torch.autograd.grad(out, xc, g)[0]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 2])
@pytest.mark.parametrize("pool_mode", ["avg", "max"])
def test_roi_align_cuda_matrix(dtype, layout, aligned, sampling_ratio, pool_mode):
    x = make_input(2, 5, 11, 13, dtype, layout, seed=1)
    rois = make_rois(17, 2, 44, 52, seed=2)
    g = torch.randn(17, 5, 3, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    xo = x.double().requires_grad_()
    oracle = R.roi_align(xo, rois.double(), 0.25, 3, 4, sampling_ratio, aligned, pool_mode)
    (go,) = torch.autograd.grad(oracle, xo, g)
    xd, rd = x.to(DEV), rois.to(DEV)
    gd = g.to(dtype).to(DEV).contiguous(memory_format=_fmt(layout))
    for det in (False, True):
        with deterministic(det):
            out, gx = _align_grad(xd, rd, gd, (3, 4), sampling_ratio, aligned, pool_mode)
        assert out.dtype == dtype and out.shape == (17, 5, 3, 4) and out.device.type == DEV
        assert gx.dtype == dtype and gx.shape == x.shape
        if layout == "channels_last":
            assert out.is_contiguous(memory_format=torch.channels_last)
            assert gx.is_contiguous(memory_format=torch.channels_last)
        close(out, oracle)
        close(gx, go, "grad")
    # the CPU kernel agrees as well (same header math, same sample order)
    close(out.cpu(), detseg.roi_align(x, rois, (3, 4), 0.25, sampling_ratio, aligned, pool_mode=pool_mode,
                                      backend="cpp"))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_roi_pool_cuda_matrix(dtype, layout):
    x = make_input(2, 5, 11, 13, dtype, layout, seed=4)
    rois = make_rois(17, 2, 44, 52, seed=5)
    g = torch.randn(17, 5, 3, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    out, arg = torch.ops.detseg.roi_pool(x.to(DEV), rois.to(DEV), 0.25, 3, 4)
    oracle, oarg = R.roi_pool(x.double(), rois.double(), 0.25, 3, 4)
    torch.testing.assert_close(out.cpu().double(), oracle, rtol=0, atol=0)
    cpu_out, cpu_arg = torch.ops.detseg.roi_pool(x, rois, 0.25, 3, 4)
    assert torch.equal(arg.cpu(), cpu_arg)  # same scan order, same tie rule
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)
    xo = x.double().requires_grad_()
    (go,) = torch.autograd.grad(R.roi_pool(xo, rois.double(), 0.25, 3, 4)[0], xo, g)
    for det in (False, True):
        with deterministic(det):
            xc = x.to(DEV).requires_grad_()
            gx = torch.autograd.grad(detseg.roi_pool(xc, rois.to(DEV), (3, 4), 0.25, backend="cpp"), xc,
                                     g.to(dtype).to(DEV).contiguous(memory_format=_fmt(layout)))[0]
        if dtype in (torch.float32, torch.float64):  # half ties may route to another equal pixel
            close(gx, go, "grad")
        assert gx.dtype == dtype and gx.shape == x.shape


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", ["ps_roi_align_-1", "ps_roi_align_2", "ps_roi_pool"])
def test_ps_cuda_matrix(dtype, op):
    x = make_input(2, 12, 11, 13, dtype, "contiguous", seed=7)
    rois = make_rois(17, 2, 44, 52, seed=8)
    g = torch.randn(17, 2, 2, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    xo = x.double().requires_grad_()
    if op == "ps_roi_pool":
        fd = lambda t: detseg.ps_roi_pool(t, rois.to(DEV), (2, 3), 0.25, backend="cpp")  # noqa: E731
        oracle, omap = R.ps_roi_pool(xo, rois.double(), 0.25, 2, 3)
        _, dmap = torch.ops.detseg.ps_roi_pool(x.to(DEV), rois.to(DEV), 0.25, 2, 3)
    else:
        sr = int(op.rsplit("_", 1)[1])
        fd = lambda t: detseg.ps_roi_align(t, rois.to(DEV), (2, 3), 0.25, sr, backend="cpp")  # noqa: E731
        oracle, omap = R.ps_roi_align(xo, rois.double(), 0.25, 2, 3, sr)
        _, dmap = torch.ops.detseg.ps_roi_align(x.to(DEV), rois.to(DEV), 0.25, 2, 3, sr)
    assert torch.equal(dmap.cpu(), omap)
    (go,) = torch.autograd.grad(oracle, xo, g)
    for det in (False, True):
        with deterministic(det):
            xc = x.to(DEV).requires_grad_()
            out = fd(xc)
            (gx,) = torch.autograd.grad(out, xc, g.to(dtype).to(DEV))
        close(out, oracle)
        close(gx, go, "grad")


def _backward_twice(fn):
    with deterministic(True):
        a, b = fn(), fn()
    assert_bitwise(a, b)
    return a


@pytest.mark.cuda
@pytest.mark.parametrize("op", ["avg", "max", "pool", "ps_align", "ps_pool"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_deterministic_backward_is_bitwise_repeatable(op, layout):
    """Many RoIs per pixel (the case where atomics reorder); the gather fixes the order."""
    if op.startswith("ps") and layout == "channels_last":
        pytest.skip("the position-sensitive ops are NCHW")
    c = 4 * 49 if op.startswith("ps") else 24
    x = make_input(2, c, 20, 23, torch.float32, layout, seed=8).to(DEV)
    rois = make_rois(300, 2, 80, 92, seed=10).to(DEV)
    g = torch.randn(300, c // 49 if op.startswith("ps") else c, 7, 7, generator=torch.Generator().manual_seed(3))
    g = g.to(DEV).contiguous(memory_format=_fmt(layout))

    def grad():
        xc = x.detach().requires_grad_()
        if op == "pool":
            out = detseg.roi_pool(xc, rois, 7, 0.25)
        elif op == "ps_align":
            out = detseg.ps_roi_align(xc, rois, 7, 0.25, -1)
        elif op == "ps_pool":
            out = detseg.ps_roi_pool(xc, rois, 7, 0.25)
        else:
            out = detseg.roi_align(xc, rois, 7, 0.25, -1, True, pool_mode=op)
        return torch.autograd.grad(out, xc, g)[0]

    gd = _backward_twice(grad)
    with deterministic(False):
        close(gd, grad(), "grad")  # the atomic path: same sum, another order


@pytest.mark.cuda
@pytest.mark.parametrize("op", ["avg", "max", "pool", "ps_align", "ps_pool"])
def test_deterministic_backward_matches_cpu_bits_float64(op):
    """float64: the gather adds the CPU kernel's terms in the CPU kernel's order with the same
    expressions (nvcc --fmad=false; the CPU double loops are scalar), so the bits agree."""
    c = 2 * 9 if op.startswith("ps") else 6
    x = make_input(2, c, 17, 19, torch.float64, "contiguous", seed=11)
    rois = make_rois(40, 2, 68, 76, seed=12).double()
    g = torch.randn(40, 2 if op.startswith("ps") else c, 3, 3, generator=torch.Generator().manual_seed(13),
                    dtype=torch.float64)

    def grad(dev):
        xc = x.to(dev).requires_grad_()
        r = rois.to(dev)
        if op == "pool":
            out = detseg.roi_pool(xc, r, 3, 0.25, backend="cpp")
        elif op == "ps_align":
            out = detseg.ps_roi_align(xc, r, 3, 0.25, -1, backend="cpp")
        elif op == "ps_pool":
            out = detseg.ps_roi_pool(xc, r, 3, 0.25, backend="cpp")
        else:
            out = detseg.roi_align(xc, r, 3, 0.25, -1, False, pool_mode=op, backend="cpp")
        return torch.autograd.grad(out, xc, g.to(dev))[0]

    with deterministic(True):
        assert_bitwise(grad(DEV).cpu(), grad("cpu"))


@pytest.mark.cuda
def test_deterministic_backward_memory_is_bounded():
    """Many RoIs on a small map: K x C x H x W float32 would be 1 GiB; the gather needs the
    gradient (N x C x H x W) and O(K) more."""
    k, c, h, w = 4096, 16, 64, 64
    x = torch.randn(2, c, h, w, device=DEV)
    rois = make_rois(k, 2, 256, 256, seed=1, outside=False).to(DEV)
    g = torch.randn(k, c, 7, 7, device=DEV)
    for op in ("_roi_align_backward",):
        with deterministic(True):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            out = getattr(torch.ops.detseg, op)(g, rois, 0.25, 7, 7, 2, c, h, w, 2, True, "max", x)
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
        assert out.shape == x.shape
        assert peak < 64 * 2**20, f"{op}: {peak / 2**20:.0f} MiB"


@pytest.mark.cuda
def test_cuda_nonfinite_and_empty():
    x = torch.randn(1, 3, 8, 8, device=DEV, requires_grad=True)
    rois = torch.tensor([[0, math.nan, 1, 4, 4], [0, 1, math.inf, 4, 4], [0, -math.inf, 1, 4, 4],
                         [0, 1, 1, 4, math.nan], [0, 1, 1, 4, 4]], device=DEV)
    for det in (False, True):
        with deterministic(det):
            for sr in (-1, 2):
                for aligned in (False, True):
                    for mode in ("avg", "max"):
                        out = detseg.roi_align(x, rois, 2, 1.0, sr, aligned, pool_mode=mode, backend="cpp")
                        assert torch.isfinite(out).all() and out[:4].abs().sum() == 0
                        (g,) = torch.autograd.grad(out[:4].sum(), x)
                        assert g.abs().sum() == 0
    out = detseg.roi_pool(x, rois, 2, backend="cpp")
    assert out[:4].abs().sum() == 0 and out[4].abs().sum() > 0
    empty = torch.zeros(0, 5, device=DEV)
    assert detseg.roi_align(x, empty, 2, backend="cpp").shape == (0, 3, 2, 2)
    assert detseg.roi_pool(x, empty, 2, backend="cpp").shape == (0, 3, 2, 2)
    z = torch.zeros(1, 3, 0, 5, device=DEV)
    assert detseg.roi_align(z, rois[4:], 2, backend="cpp").abs().sum() == 0


@pytest.mark.cuda
def test_cuda_errors_match_cpu():
    x = torch.randn(2, 4, 6, 6, device=DEV)
    with pytest.raises(ValueError, match=r"detseg\.roi_align: rois\[:, 0\] must hold integer batch indices"):
        detseg.roi_align(x, torch.tensor([[2.0, 0, 0, 2, 2]], device=DEV), 2, backend="cpp")
    with pytest.raises(ValueError, match=r"detseg\.roi_pool: rois\[:, 0\] must hold integer batch indices"):
        detseg.roi_pool(x, torch.tensor([[0.5, 0, 0, 2, 2]], device=DEV), 2, backend="cpp")
    with pytest.raises(ValueError, match=r"detseg\.ps_roi_pool: rois\[:, 0\] must hold integer batch indices"):
        detseg.ps_roi_pool(x, torch.tensor([[-1.0, 0, 0, 2, 2]], device=DEV), 2, backend="cpp")
    rois = torch.tensor([[0.0, 0, 0, 4, 4]], device=DEV)
    g = torch.ones(1, 4, 2, 2, device=DEV)
    bad = torch.full((1, 4, 2, 2), 36, dtype=torch.int64, device=DEV)
    with pytest.raises(ValueError, match=r"detseg\._roi_pool_backward: argmax must hold -1 or plane indices"):
        torch.ops.detseg._roi_pool_backward(g, rois, bad, 1.0, 2, 2, 2, 4, 6, 6)
    if DEV == "cuda":  # the gather visits only the bins holding a pixel: an argmax elsewhere is refused
        stray = torch.full((1, 4, 2, 2), 35, dtype=torch.int64, device=DEV)  # pixel (5, 5), outside bin (0, 0)
        with deterministic(True), pytest.raises(ValueError, match=r"a pixel of its own bin"):
            torch.ops.detseg._roi_pool_backward(g, rois, stray, 1.0, 2, 2, 2, 4, 6, 6)
        torch.ops.detseg._roi_pool_backward(g, rois, stray, 1.0, 2, 2, 2, 4, 6, 6)  # the atomic path accepts it
    with pytest.raises(ValueError, match=r"detseg\._roi_align_backward: input must be given for pool_mode 'max'"):
        torch.ops.detseg._roi_align_backward(g, rois, 1.0, 2, 2, 2, 4, 6, 6, -1, True, "max", None)
