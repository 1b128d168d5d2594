"""Shared Triton helpers: the select-based min/max of csrc/include/detseg/host_device.h,
rounding that is exact in the interpreter too, an arctangent that runs everywhere, launch
settings."""

from __future__ import annotations

import os

import numpy as np
import torch
import triton
import triton.language as tl

# fp fusion off: a fused multiply-add rounds once where the C++/CUDA kernels
# (-ffp-contract=off, --fmad=false) round twice, and NMS decisions at the threshold must not
# depend on the backend. The interpreter ignores the option.
_OPTIONS = {"enable_fp_fusion": False}


def launch(kernel, grid, *args, **kwargs):
    """kernel[grid](*args, **kwargs) with the options above. Under the interpreter, numpy's
    warnings are silenced: masked-off lanes legitimately compute 0/0 there."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        with np.errstate(all="ignore"):
            return kernel[grid](*args, **kwargs, **_OPTIONS)
    return kernel[grid](*args, **kwargs, **_OPTIONS)


def interpreted(t: torch.Tensor) -> bool:
    """True when kernels on `t` run in the Triton interpreter (cost per program instance,
    so launchers pick large blocks there)."""
    return t.device.type == "cpu" or os.environ.get("TRITON_INTERPRET") == "1"


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other floating dtype is computed in float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(n), 1))))


def elementwise_block(t: torch.Tensor, n: int) -> int:
    return pow2(n, 16, 4096 if interpreted(t) else 256)


_TL = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32,
       torch.float64: tl.float64, torch.int8: tl.int8, torch.uint8: tl.uint8, torch.int16: tl.int16,
       torch.int32: tl.int32, torch.int64: tl.int64}


def tl_dtype(dt: torch.dtype):
    if dt not in _TL:
        raise TypeError(f"detseg.triton: unsupported dtype {dt}")
    return _TL[dt]


def rows4(boxes: torch.Tensor) -> torch.Tensor:
    """Tensor[..., 4] -> a Tensor[R, 4] view when one exists (strides go to the kernel),
    else a copy."""
    return boxes.reshape(-1, 4)


# ---------------------------------------------------------------- select semantics
# Mirrors of detseg::dmin / dmax / clamp_min0 (host_device.h): plain selects, so a NaN
# operand propagates exactly as in the C++ kernels.

@triton.jit
def dmin(a, b):
    return tl.where(a < b, a, b)


@triton.jit
def dmax(a, b):
    return tl.where(a > b, a, b)


@triton.jit
def clamp_min0(x):
    return tl.where(x < 0, 0.0, x)


@triton.jit
def fdiv(a, b):
    # IEEE-rounded division: Triton's `/` on float32 lowers to an approximate division on
    # NVIDIA GPUs, which would break bitwise agreement with the CUDA kernel.
    if a.dtype == tl.float64:
        return a / b
    else:
        return tl.math.div_rn(a, b)


@triton.jit
def route_max(g, a, b):
    """Gradient routing of torch.maximum (detseg::route_max): all to the winner, half each
    on a tie. Returns the contributions to a and to b."""
    half = g * 0.5
    ga = tl.where(a > b, g, tl.where(b > a, 0.0, half))
    gb = tl.where(b > a, g, tl.where(a > b, 0.0, half))
    return ga, gb


@triton.jit
def route_min(g, a, b):
    # detseg::route_min: the smaller operand wins, i.e. route_max's shares swapped.
    gb, ga = route_max(g, a, b)
    return ga, gb


# ---------------------------------------------------------------- rounding

@triton.jit
def _round_bf16(x):
    # Round-to-nearest-even float32 -> bfloat16, returned as float32. Written with integer
    # ops because the interpreter's float32 -> bfloat16 cast truncates.
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + (0x7FFF + ((bits >> 16) & 1))) & 0xFFFF0000
    return tl.where(x != x, x, bits.to(tl.float32, bitcast=True))


@triton.jit
def round_to(x, DT: tl.constexpr):
    """x (float32 or float64) rounded to the storage dtype DT and kept in x's dtype: one
    torch elementwise op on float16/bfloat16 computes in float32 and rounds (exactly the
    IEEE half/bfloat16 operation: float32 has more than 2p + 2 bits)."""
    if DT == tl.bfloat16:
        return _round_bf16(x)
    elif DT == tl.float16:
        return x.to(tl.float16).to(tl.float32)
    else:
        return x


@triton.jit
def store_as(ptr, x, mask):
    """Stores float32/float64 x into ptr's element type with round-to-nearest-even."""
    DT: tl.constexpr = ptr.dtype.element_ty
    if DT == tl.bfloat16:
        tl.store(ptr, _round_bf16(x).to(DT), mask=mask)
    else:
        tl.store(ptr, x.to(DT), mask=mask)


# ---------------------------------------------------------------- arctangent
# Triton has no portable atan (libdevice's is a stub under the interpreter). Argument
# reduction to |t| <= 2 - sqrt(3) (1/x above 1, then atan(x) = pi/6 + atan((sqrt3 x - 1) /
# (x + sqrt3))), then atan(t) = t + t s g(s), s = t^2, with g a Chebyshev fit computed for
# this file (mpmath.chebyfit of (atan(sqrt s)/sqrt s - 1)/s on [0, (2 - sqrt3)^2]):
# relative error below 2e-9 (float32, 4 terms) and 1e-18 (float64, 9 terms).

@triton.jit
def _atan_g32(s):
    p = 0.099072604769056461491
    p = p * s - 0.1423305663312559653
    p = p * s + 0.19999251524456541656
    p = p * s - 0.33333331657189892957
    return p


@triton.jit
def _atan_g64(s):
    p = tl.full(s.shape, -0.039578935915461960171, tl.float64)
    p = p * s + 0.057163298944428525134
    p = p * s - 0.066549450536776579928
    p = p * s + 0.076918196381987079155
    p = p * s - 0.090908970815922119353
    p = p * s + 0.11111110944516938184
    p = p * s - 0.14285714284553813648
    p = p * s + 0.19999999999996881959
    p = p * s - 0.33333333333333331952
    return p


@triton.jit
def atan(x):
    neg = x < 0
    a = tl.where(neg, -x, x)
    inv = a > 1.0
    a = tl.where(inv, fdiv(tl.full(a.shape, 1.0, a.dtype), a), a)
    red = a > 0.26794919243112270647
    a = tl.where(red, fdiv(a * 1.7320508075688772935 - 1.0, a + 1.7320508075688772935), a)
    s = a * a
    if x.dtype == tl.float64:
        g = _atan_g64(s)
    else:
        g = _atan_g32(s)
    r = a + a * (s * g)
    r = tl.where(red, r + 0.52359877559829887308, r)
    r = tl.where(inv, 1.5707963267948966192 - r, r)
    return tl.where(neg, -r, r)


# ---------------------------------------------------------------- stream compaction

@triton.jit
def compact_kernel(flag_ptr, src_ptr, out_ptr, count_ptr, n,
                   HAS_SRC: tl.constexpr, BLOCK: tl.constexpr):
    """One program: out[k] = src[q] (or q) for the k-th q with flag[q] != 0, in increasing
    q; count[0] = number written. Order-preserving, so no sort is needed afterwards."""
    base = tl.zeros([], tl.int64)
    offs0 = tl.arange(0, BLOCK)
    for start in range(0, n, BLOCK):
        offs = start + offs0
        m = offs < n
        f = (tl.load(flag_ptr + offs, mask=m, other=0) != 0).to(tl.int64)
        pos = base + tl.cumsum(f, 0) - f
        if HAS_SRC:
            val = tl.load(src_ptr + offs, mask=m, other=0).to(tl.int64)
        else:
            val = offs.to(tl.int64)
        tl.store(out_ptr + pos, val, mask=m & (f != 0))
        base += tl.sum(f, 0)
    tl.store(count_ptr, base)


def compact(flags: torch.Tensor, src: torch.Tensor | None) -> torch.Tensor:
    """int64 Tensor[K]: src[q] (or q) for the nonzero flags[q], in order. The one host sync
    is the count K."""
    n = flags.numel()
    out = torch.empty(n, dtype=torch.int64, device=flags.device)
    count = torch.empty(1, dtype=torch.int64, device=flags.device)
    block = pow2(n, 64, 4096 if interpreted(flags) else 1024)
    launch(compact_kernel, (1,), flags, src if src is not None else flags, out, count, n,
           HAS_SRC=src is not None, BLOCK=block)
    return out[: int(count.item())].clone()
