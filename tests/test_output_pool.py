"""The CPU output pool (csrc/cpu/output_pool.cpp): large outputs of the transposed convolution
come from blocks kept after their tensors die; reuse must not change results, storages stay
resizable, DETSEG_CPU_CACHE_MB bounds what is kept."""

from __future__ import annotations

import subprocess
import sys
import threading

import torch

import _backends as B
import detseg
from tolerances import assert_bitwise

def _big_conv(seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    # Output 2 x 64 x 128 x 128 float32 = 8 MiB: the pool's smallest size.
    return torch.randn(2, 32, 64, 64, generator=g), torch.randn(32, 64, 2, 2, generator=g)


def test_reused_block_gives_the_same_output():
    B.require("cpp")
    x, w = _big_conv()
    detseg.cpu_empty_cache()
    first = detseg.ops.conv_transpose2d(x, w, stride=2, backend="cpp")
    kept = first.clone()
    first.fill_(float("nan"))  # a reused block holds stale values: every output must be rewritten
    del first
    assert detseg.cpu_cache_bytes() >= 8 << 20
    second = detseg.ops.conv_transpose2d(x, w, stride=2, backend="cpp")
    assert detseg.cpu_cache_bytes() == 0  # the kept block was handed out again
    assert_bitwise(second, kept)


def test_pooled_storage_resizes_and_frees():
    B.require("cpp")
    x, w = _big_conv(1)
    out = detseg.ops.conv_transpose2d(x, w, stride=2, backend="cpp")
    ref = out.clone()
    out.resize_(4, 64, 128, 128)  # grows: a new block, the old values kept in front
    assert_bitwise(out[:2], ref)
    out.resize_(3)
    assert out.numel() == 3
    del out
    detseg.cpu_empty_cache()
    assert detseg.cpu_cache_bytes() == 0


def test_blocks_freed_on_another_thread():
    B.require("cpp")
    x, w = _big_conv(2)
    outs = [detseg.ops.conv_transpose2d(x, w, stride=2, backend="cpp") for _ in range(3)]
    t = threading.Thread(target=outs.clear)
    t.start()
    t.join()
    assert detseg.cpu_cache_bytes() >= 3 * (8 << 20)
    detseg.cpu_empty_cache()


def test_cache_cap_from_environment():
    B.require("cpp")
    code = ("import torch, detseg\n"
            "x, w = torch.randn(2, 32, 64, 64), torch.randn(32, 64, 2, 2)\n"
            "y = detseg.ops.conv_transpose2d(x, w, stride=2, backend='cpp'); del y\n"
            "print(detseg.cpu_cache_bytes())\n")
    for cap, expect in (("0", 0), ("16", 8 << 20), ("4", 0), ("abc", 0), ("-5", 0), ("99999999999999999999", 8 << 20)):
        r = subprocess.run([sys.executable, "-c", code], env=B.subprocess_env(DETSEG_CPU_CACHE_MB=cap),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert int(r.stdout.split()[-1]) == expect, (cap, r.stdout)
