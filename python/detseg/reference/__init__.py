"""Pure-PyTorch twins of every detseg op: the test oracle, the fallback when the compiled
library is missing, and the deterministic path on any device. Functions carry the internal
op names and signatures of csrc/ops.cpp."""

from .boxes import (  # noqa: F401
    batched_nms,
    box_area,
    box_convert,
    box_iou_loss,
    box_iou_matrix,
    clip_boxes_to_image,
    nms,
    nms_threshold,
    remove_small_boxes,
)
from .roi import ps_roi_align, ps_roi_pool, roi_align, roi_pool  # noqa: F401,E402
from .rle import (  # noqa: F401,E402
    rle_area,
    rle_counts_to_string,
    rle_decode,
    rle_encode,
    rle_encode_string,
    rle_iou,
    rle_string_to_counts,
    rle_to_bbox,
)
from .coco import coco_evaluate  # noqa: F401,E402
