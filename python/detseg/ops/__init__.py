"""The public functional API (torchvision.ops signatures plus keyword-only ``backend=``)."""

from .boxes import *  # noqa: F401,F403
from .boxes import __all__ as _boxes_all
from .nms import *  # noqa: F401,F403
from .nms import __all__ as _nms_all
from .roi import *  # noqa: F401,F403
from .roi import __all__ as _roi_all
from .box_coder import *  # noqa: F401,F403
from .box_coder import __all__ as _box_coder_all
from .anchors import *  # noqa: F401,F403
from .anchors import __all__ as _anchors_all
from .matcher import *  # noqa: F401,F403
from .matcher import __all__ as _matcher_all
from .postprocess import *  # noqa: F401,F403
from .postprocess import __all__ as _postprocess_all
from .masks import *  # noqa: F401,F403
from .masks import __all__ as _masks_all

from .rle import *  # noqa: F401,F403
from .rle import __all__ as _rle_all
from .conv import *  # noqa: F401,F403
from .conv import __all__ as _conv_all

__all__ = [*_boxes_all, *_nms_all, *_roi_all, *_box_coder_all, *_anchors_all, *_matcher_all, *_postprocess_all,
           *_masks_all, *_rle_all, *_conv_all]
