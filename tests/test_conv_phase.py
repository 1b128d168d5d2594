"""The CPU kernel's phase_direct path of conv_transpose2d (issue 5, FCN-32s): register-tiled
sub-pixel rows (csrc/cpu/vec/conv_phase_vec.cpp) against the float64 reference and ATen, over
odd geometries (kernel not a multiple of the stride, strides that leave idle lanes, outputs
cropped on both edges, output_padding, groups, no bias, 1x1 inputs), per ISA, and its
thread-count determinism."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import _backends as B
import detseg
from tolerances import assert_bitwise, assert_close

# (N, C_in, H, W, C_out/groups, groups, kernel, stride, padding, output_padding)
CONFIGS = [
    (1, 3, 4, 4, 5, 1, (64, 64), (32, 32), (16, 16), (0, 0)),   # FCN-32s scaled: the weight's rows are B
    (2, 4, 3, 5, 3, 2, (48, 48), (16, 16), (8, 5), (0, 0)),     # three taps per block, groups
    (1, 3, 5, 4, 2, 1, (20, 21), (8, 16), (0, 3), (0, 0)),      # kernel not a multiple of the stride, padding 0 / odd
    (2, 2, 3, 3, 3, 1, (40, 33), (17, 16), (5, 0), (7, 15)),    # odd stride, output_padding
    (1, 2, 1, 1, 3, 1, (64, 64), (32, 32), (16, 16), (0, 0)),   # 1x1 input, cropped on both edges
    (1, 2, 2, 2, 2, 1, (5, 5), (8, 40), (1, 3), (3, 7)),        # kernel < stride (bias-only lanes), 3 panels
    (1, 3, 6, 31, 2, 1, (5, 4), (2, 2), (1, 2), (1, 1)),        # stride 2: 33 blocks (several tiles), idle lanes
    (1, 4, 2, 3, 2, 2, (34, 34), (17, 17), (12, 2), (0, 16)),   # one live lane in the second panel
]
IDS = [f"p{i}" for i in range(len(CONFIGS))]
LARGE = (1, 3, 16, 16, 21, 1, (64, 64), (32, 32), (16, 16), (0, 0))  # FCN-32s's 22 MB output, 3 channels in


def make(cfg, dtype=torch.float32, bias=True, seed=0):
    n, cin, h, w, cog, g, k, s, p, op = cfg
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=gen, dtype=torch.float64).to(dtype)
    wt = (torch.randn(cin, cog, *k, generator=gen, dtype=torch.float64) / math.sqrt(cin // g * 4)).to(dtype)
    b = torch.randn(cog * g, generator=gen, dtype=torch.float64).to(dtype) if bias else None
    return x, wt, b, (list(s), list(p), list(op), g, [1, 1])


def direct(x, wt, b, a):
    return torch.ops.detseg._conv_transpose2d_path(x, wt, b, *a, "phase_direct")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_phase_direct_matches_reference_and_aten(cfg, dtype):
    B.require("cpp")
    for bias in (True, False):
        x, wt, b, a = make(cfg, dtype, bias)
        out = direct(x, wt, b, a)
        assert out.dtype == dtype
        bd = None if b is None else b.double()
        assert_close(out, detseg.reference.conv_transpose2d(x.double(), wt.double(), bd, *a))
        if dtype != torch.bfloat16:
            s, p, op, g, _ = a
            assert_close(out, F.conv_transpose2d(x.double(), wt.double(), bd, s, p, op, g))
    # channels-last in, channels-last out
    x, wt, b, a = make(cfg, dtype)
    xc = x.contiguous(memory_format=torch.channels_last)
    out = direct(xc, wt, b, a)
    if out.shape[1] > 1 and x.shape[2] * x.shape[3] > 1:  # (a 1x1 input has both layouts)
        assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close(out, detseg.reference.conv_transpose2d(x.double(), wt.double(), b.double(), *a))


def test_fcn_shapes_choose_phase_direct():
    """float32 FCN-like shapes take phase_direct automatically (on AVX2 / AVX-512), float64
    keeps the phase GEMM."""
    B.require("cpp")
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("the scalar build keeps the phase GEMM")
    for cfg in (CONFIGS[0], CONFIGS[1]):
        x, wt, b, a = make(cfg)
        assert_bitwise(torch.ops.detseg.conv_transpose2d(x, wt, b, *a), direct(x, wt, b, a))
        x, wt, b = x.double(), wt.double(), b.double()
        assert_bitwise(torch.ops.detseg.conv_transpose2d(x, wt, b, *a),
                       torch.ops.detseg._conv_transpose2d_path(x, wt, b, *a, "phase"))


def test_phase_direct_nonfinite_input():
    """When kernel rows are whole multiples of the stride (no zero-padded lanes), a NaN or inf
    input reaches exactly the outputs ATen's scatter sends it to."""
    B.require("cpp")
    x, wt, b, a = make(CONFIGS[1])
    x[0, 1, 1, 2] = float("nan")
    x[1, 3, 0, 0] = float("inf")
    out = direct(x, wt, b, a)
    s, p, op, g, _ = a
    ref = F.conv_transpose2d(x.double(), wt.double(), b.double(), s, p, op, g)
    assert torch.equal(out.isnan(), ref.isnan()) and out.isnan().any()
    assert torch.equal(out.isinf(), ref.isinf())
    assert_close(out.nan_to_num(0.0, 0.0, 0.0), ref.nan_to_num(0.0, 0.0, 0.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_auto_nonfinite_weight_matches_aten(dtype):
    """The phase paths would multiply zero padding by an inf / NaN weight at the border; the
    automatic choice sees the non-finite weight and takes an exact path: the same outputs as
    ATen are NaN / inf, the others agree."""
    B.require("cpp")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=dtype)
    wt = torch.randn(3, 2, 64, 64, generator=g, dtype=dtype)
    wt[0, 0, 0, 0], wt[1, 1, 63, 63], wt[2, 0, 5, 40] = float("inf"), float("nan"), float("-inf")
    out = detseg.ops.conv_transpose2d(x, wt, stride=32, padding=16)
    ref = F.conv_transpose2d(x.double(), wt.double(), stride=32, padding=16)
    assert out.isnan().any() and out.isinf().any()
    assert torch.equal(out.isnan(), ref.isnan()) and torch.equal(out.isinf(), ref.isinf())
    assert_close(out.nan_to_num(0.0, 0.0, 0.0), ref.nan_to_num(0.0, 0.0, 0.0).to(dtype))
    # Finite operands still take the phase paths (the forced path gives the same bits).
    wt = wt.nan_to_num(0.0, 0.0, 0.0)
    forced = "phase_direct" if dtype == torch.float32 and torch.backends.cpu.get_cpu_capability() != "DEFAULT" else "phase"
    assert_bitwise(detseg.ops.conv_transpose2d(x, wt, stride=32, padding=16),
                   torch.ops.detseg._conv_transpose2d_path(x, wt, None, [32, 32], [16, 16], [0, 0], 1, [1, 1], forced))


def test_phase_direct_needs_dilation_one():
    B.require("cpp")
    x, wt, b, (s, p, op, g, _) = make(CONFIGS[2])
    with pytest.raises(ValueError, match=r"phase and phase_direct paths need dilation \(1, 1\)"):
        torch.ops.detseg._conv_transpose2d_path(x, wt, b, s, p, op, g, [1, 2], "phase_direct")


def test_phase_direct_thread_count_determinism():
    B.require("cpp")
    for cfg in (CONFIGS[1], CONFIGS[3], (2, 6, 5, 6, 3, 1, (64, 64), (32, 32), (16, 16), (0, 0))):
        x, wt, b, a = make(cfg)
        for xin in (x, x.contiguous(memory_format=torch.channels_last)):  # both task splits
            one, two = (B.at_threads(t, lambda: direct(xin, wt, b, a)) for t in (1, 2))
            assert_bitwise(one, two)
            assert_bitwise(one.contiguous(), direct(x, wt, b, a))


def test_phase_direct_large_output_streamed():
    """FCN-32s's 22 MB output (streamed, non-temporal stores) with few input channels: equal to
    ATen, to the channels-last rows and across thread counts."""
    B.require("cpp")
    x, wt, b, a = make(LARGE)
    one, two = (B.at_threads(t, lambda: direct(x, wt, b, a)) for t in (1, 2))
    assert one.shape == (1, 21, 512, 512)
    assert_bitwise(one, two)
    assert_close(one, F.conv_transpose2d(x.double(), wt.double(), b.double(), 32, 16))
    assert_bitwise(one, direct(x.contiguous(memory_format=torch.channels_last), wt, b, a).contiguous())


ISA_SCRIPT = """
import sys, torch, detseg
sys.path.insert(0, {tests!r})
from test_conv_phase import CONFIGS, LARGE, make, direct
out = {{"isa": detseg.build_info()["cpu_isa"]}}
for i, cfg in enumerate(CONFIGS + [LARGE]):
    x, wt, b, a = make(cfg)
    out[i] = direct(x, wt, b, a)
torch.save(out, sys.argv[1])
"""


def test_phase_direct_per_isa(tmp_path):
    """Each ISA's tiles (AVX-512: 12 x 2 zmm, AVX2: 6 x 2 ymm, DEFAULT: scalar), streamed stores
    included, against ATen in float64; AVX2 and AVX-512 run the same multiply-add chains, so
    their bits agree."""
    B.require("cpp")
    from pathlib import Path

    top = torch.backends.cpu.get_cpu_capability()
    isas = {"DEFAULT": ["default"], "AVX2": ["default", "avx2"]}.get(top, ["default", "avx2", "avx512"])
    tests = str(Path(__file__).resolve().parent)
    procs = {isa: subprocess.Popen([sys.executable, "-c", ISA_SCRIPT.format(tests=tests), str(tmp_path / isa)],
                                   env=B.subprocess_env(ATEN_CPU_CAPABILITY=isa), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for isa in isas}
    res = {}
    for isa, p in procs.items():
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        res[isa] = torch.load(tmp_path / isa)
        assert res[isa]["isa"] == isa.upper()
    for i, cfg in enumerate(CONFIGS + [LARGE]):
        x, wt, b, a = make(cfg)
        s, p, op, g, _ = a
        want = F.conv_transpose2d(x.double(), wt.double(), b.double(), s, p, op, g)
        for isa in isas:
            assert_close(res[isa][i], want)
        if "avx512" in res:
            assert_bitwise(res["avx2"][i], res["avx512"][i])
