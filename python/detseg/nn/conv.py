"""Drop-ins for torch.nn.ConvTranspose2d and torch.nn.MaxUnpool2d on detseg's kernels.

Subclasses: same constructor, parameter names, initialisation, repr and state dict as torch's
modules (a torch.nn.ConvTranspose2d state dict loads as is), plus a keyword-only ``backend=``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..ops import conv as F

__all__ = ["ConvTranspose2d", "MaxUnpool2d"]


class ConvTranspose2d(nn.ConvTranspose2d):
    """torch.nn.ConvTranspose2d running detseg.ops.conv_transpose2d. ``forward(input,
    output_size=None)``: output_size picks output_padding as torch does."""

    def __init__(self, *args, backend: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ValueError(f"detseg.nn.ConvTranspose2d: padding_mode must be 'zeros' (as torch), got "
                             f"{self.padding_mode!r}")
        self.backend = backend

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size, 2,
                                              self.dilation)
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                  self.groups, self.dilation, backend=self.backend)


class MaxUnpool2d(nn.MaxUnpool2d):
    """torch.nn.MaxUnpool2d running detseg.ops.max_unpool2d."""

    def __init__(self, kernel_size, stride=None, padding=0, *, backend: str | None = None):
        super().__init__(kernel_size, stride, padding)
        self.backend = backend

    def forward(self, input: torch.Tensor, indices: torch.Tensor, output_size: list[int] | None = None
                ) -> torch.Tensor:
        return F.max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding, output_size,
                              backend=self.backend)
