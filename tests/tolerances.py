"""THE tolerance table of the suite, keyed by the dtype of the tensor under test.

The oracle is detseg.reference evaluated in float64 on the same (already rounded) inputs, so
a tolerance only has to cover the rounding of the computation and of the output:
  - float32 outputs (also those of float16/bfloat16 inputs, which are computed in float32):
    a few float32 ulps of values in [-2, 1] with coordinates up to ~1e3;
  - float16 / bfloat16 outputs (the losses keep the input dtype): half an ulp of the output;
  - float64: different evaluation orders (fused or vectorised code) only.
"grad" entries cover gradients, whose magnitude scales like 1 / box size.
Measured worst cases (tests/_data.random_boxes, 300 x 257): float32 value 6e-7, float16
loss 5e-4 absolute, bfloat16 loss 4e-3 absolute.
"""

from __future__ import annotations

import torch

TOLERANCES: dict[torch.dtype, dict[str, tuple[float, float]]] = {
    #                  (rtol,  atol)
    torch.float64: {"value": (1e-12, 1e-12), "grad": (1e-9, 1e-11)},
    torch.float32: {"value": (1e-5, 5e-6), "grad": (1e-4, 2e-6)},
    torch.float16: {"value": (2e-3, 2e-3), "grad": (2e-3, 2e-3)},
    torch.bfloat16: {"value": (1.6e-2, 1.6e-2), "grad": (1.6e-2, 1.6e-2)},
}


def tol(dtype: torch.dtype, what: str = "value") -> dict[str, float]:
    """kwargs for torch.testing.assert_close; integer dtypes must match exactly."""
    if not dtype.is_floating_point:
        return {"rtol": 0.0, "atol": 0.0}
    rtol, atol = TOLERANCES[dtype][what]
    return {"rtol": rtol, "atol": atol}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str = "value", **kw) -> None:
    """Compares `actual` (any backend, any device) with a float64 CPU oracle, tolerance by
    actual's dtype; NaN must meet NaN; shapes must match exactly."""
    assert isinstance(actual, torch.Tensor), type(actual)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    a = actual.detach().cpu()
    e = expected.detach().cpu()
    if a.is_floating_point():
        a, e = a.double(), e.double()
    torch.testing.assert_close(a, e.to(a.dtype), equal_nan=True, check_dtype=False, **{**tol(actual.dtype, what), **kw})


def assert_bitwise(a: torch.Tensor, b: torch.Tensor) -> None:
    """Same dtype, shape and bits (NaN payloads aside: NaN must meet NaN)."""
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    if a.is_floating_point():
        nan_a, nan_b = torch.isnan(a), torch.isnan(b)
        assert torch.equal(nan_a, nan_b), "NaN positions differ"
        a = torch.where(nan_a, torch.zeros_like(a), a)
        b = torch.where(nan_b, torch.zeros_like(b), b)
        # view as integers: equal floats compare equal for -0.0 vs 0.0, bits do not
        ib = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
        a, b = a.contiguous().view(ib), b.contiguous().view(ib)
    assert torch.equal(a, b), f"{int((a != b).sum())} elements differ"
