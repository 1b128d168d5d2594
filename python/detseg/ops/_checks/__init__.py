"""Argument checks of each op for the Python side (public API, Triton, reference, fake
kernels), one module per op family; the C++ kernels check with the same words in csrc/checks/."""

from .common import *  # noqa: F401,F403
from .roi import *  # noqa: F401,F403
from .anchors import *  # noqa: F401,F403
from .masks import *  # noqa: F401,F403
from .postprocess import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
