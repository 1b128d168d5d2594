"""Drop-ins for torch.nn modules on detseg's kernels."""

from .conv import ConvTranspose2d, MaxUnpool2d  # noqa: F401
