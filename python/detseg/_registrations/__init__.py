"""Autograd, fake (meta) and autocast registrations of torch.ops.detseg.*, done from Python
(DESIGN.md §1). Nothing is registered when the compiled library is absent."""

from .. import _C

if _C is not None:
    from . import boxes  # noqa: F401
    from . import roi  # noqa: F401
    from . import anchors  # noqa: F401
    from . import masks  # noqa: F401
    from . import postprocess  # noqa: F401
    from . import conv  # noqa: F401
