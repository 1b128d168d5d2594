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
from .box_coder import (  # noqa: F401,E402
    _decode_boxes_backward,
    decode_boxes,
    encode_boxes,
    linear_decode_boxes,
    linear_encode_boxes,
)
from .anchors import grid_anchors, multilevel_grid_anchors, yolo_decode  # noqa: F401,E402
from .masks import confusion_matrix, mask_iou, masks_to_boxes, paste_masks_in_image  # noqa: F401,E402
from .postprocess import multiclass_nms  # noqa: F401,E402
from .nms_variants import diou_nms, matrix_nms, soft_nms  # noqa: F401,E402
from .conv import (  # noqa: F401,E402
    _conv_transpose2d_backward,
    _conv_transpose2d_path,
    _max_unpool2d_backward,
    conv_transpose2d,
    max_unpool2d,
)
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
