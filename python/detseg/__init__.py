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
