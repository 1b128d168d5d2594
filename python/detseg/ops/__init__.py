"""The public functional API (torchvision.ops signatures plus keyword-only ``backend=``)."""

from .boxes import *  # noqa: F401,F403
from .boxes import __all__ as _boxes_all
from .nms import *  # noqa: F401,F403
from .nms import __all__ as _nms_all

from .roi import *  # noqa: F401,F403
from .roi import __all__ as _roi_all

__all__ = [*_boxes_all, *_nms_all, *_roi_all]

from .rle import *  # noqa: F401,F403,E402
from .rle import __all__ as _rle_all  # noqa: E402

__all__ += _rle_all
