"""Metric objects and functional metrics (segmentation: detseg.metrics.segmentation and
detseg.metrics.functional)."""

from .functional import *  # noqa: F401,F403
from .segmentation import ConfusionMatrix, DiceScore, MeanIoU, SoftDice  # noqa: F401
