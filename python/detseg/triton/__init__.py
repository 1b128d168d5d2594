"""Triton kernels (CUDA tensors; CPU tensors under TRITON_INTERPRET=1, set before import).
Functions carry the internal op names and signatures of csrc/ops.cpp, so that
detseg._backend dispatches `getattr(detseg.triton, op)(*args)`."""

import triton  # noqa: F401  -- ImportError here marks the backend unavailable

from .boxes import box_area, box_convert, clip_boxes_to_image, remove_small_boxes  # noqa: F401
from .iou import _box_iou_loss_backward, _box_iou_matrix_backward, box_iou_loss, box_iou_matrix  # noqa: F401
from .nms import batched_nms, nms  # noqa: F401
from .box_coder import (  # noqa: F401
    _decode_boxes_backward,
    decode_boxes,
    encode_boxes,
    linear_decode_boxes,
    linear_encode_boxes,
)
from .anchors import grid_anchors, multilevel_grid_anchors, yolo_decode  # noqa: F401
from .roi_align import _ps_roi_align_backward, _roi_align_backward, ps_roi_align, roi_align  # noqa: F401
from .roi_pool import _ps_roi_pool_backward, _roi_pool_backward, ps_roi_pool, roi_pool  # noqa: F401
from .masks import confusion_matrix, mask_iou, masks_to_boxes, paste_masks_in_image  # noqa: F401,E402
from .postprocess import matrix_nms  # noqa: F401
from .conv import _conv_transpose2d_backward, _max_unpool2d_backward, conv_transpose2d, max_unpool2d  # noqa: F401,E402
from .multiclass_nms import multiclass_nms  # noqa: F401,E402
from .nms_variants import diou_nms, soft_nms  # noqa: F401,E402
