"""detseg: detection and segmentation operators for PyTorch.

Four backends behind one torchvision.ops-compatible API: C++ (CPU) and CUDA kernels
registered as ``torch.ops.detseg.*``, Triton kernels, and a pure-PyTorch reference.
"""

import torch  # noqa: F401  -- must load before _C: _C.so has no RPATH to libtorch

try:
    from . import _C  # noqa: F401  -- registers torch.ops.detseg.* and its kernels
    _LIB_ERROR = None
except ImportError as exc:  # a source tree without a build: the reference still works
    _C = None
    _LIB_ERROR = exc

from . import _registrations  # noqa: E402,F401
from . import ops, reference  # noqa: E402,F401
from ._backend import available_backends, get_backend, use_backend  # noqa: E402
from .ops import *  # noqa: E402,F401,F403

__version__ = "0.1.0"


def build_info() -> dict:
    """What this build of detseg contains: version, the CPU ISA variant in use, OpenMP, CUDA."""
    if _C is None:
        return {"version": __version__, "compiled": False, "error": str(_LIB_ERROR)}
    info = dict(_C.build_info())
    info["compiled"] = True
    info["backends"] = available_backends()
    return info


def cpu_cache_bytes() -> int:
    """Bytes of freed large CPU outputs detseg keeps for reuse (0 without the compiled extension).

    Outputs of 8 MiB and more of the transposed convolution come from a pool: a block freed by its
    tensor is handed to the next output of the same size, which then pays no page faults. The pool
    keeps at most ``DETSEG_CPU_CACHE_MB`` MiB (read at start-up; default 1024, 0 keeps nothing).
    """
    return int(_C.cpu_cache_bytes()) if _C is not None else 0


def cpu_empty_cache() -> None:
    """Frees the CPU output blocks kept for reuse (see :func:`cpu_cache_bytes`)."""
    if _C is not None:
        _C.cpu_empty_cache()
