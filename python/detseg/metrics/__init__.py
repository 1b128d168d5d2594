"""Metric objects and functional metrics (segmentation: detseg.metrics.segmentation and
detseg.metrics.functional)."""

from .functional import *  # noqa: F401,F403
from .segmentation import ConfusionMatrix, DiceScore, MeanIoU, SoftDice  # noqa: F401
from .coco import COCOEvalResult, COCOParams, coco_evaluate  # noqa: F401,E402
from .coco_stream import (  # noqa: F401,E402
    MeanAveragePrecision,
    average_precision_at,
    plot_pr_curves,
    pr_curve,
    voc_ap,
)
