"""Suite-wide setup: backend targets, the `cuda` mark, hypothesis profile.

tests/_backends.py (imported first, below) sets TRITON_INTERPRET=1 when there is no GPU,
before detseg is imported anywhere.
"""

from __future__ import annotations

import pytest
import torch

import _backends  # noqa: F401  -- must precede every `import detseg`

try:
    from hypothesis import HealthCheck, settings

    # Derandomised so a run is reproducible; the seeded examples still vary by test.
    settings.register_profile("detseg", derandomize=True, deadline=None, max_examples=60,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("detseg")
except ImportError:  # pragma: no cover
    pass


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (auto-skipped without one)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _require_cpp(request):
    """A test parametrised on the cpp backend fails (not skips) when the compiled library is missing."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    for v in params.values():
        if v == "cpp" or (isinstance(v, tuple) and v and v[0] == "cpp"):
            _backends.require("cpp")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_sessionstart(session):
    # Notes every Triton launch for tests/test_zz_triton_sm90.py (compiled for sm_90 there).
    import _triton_launches

    _triton_launches.install()
