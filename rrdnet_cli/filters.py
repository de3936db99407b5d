"""Image filters: box, Gaussian and guided (edge-aware) smoothing, as pure tensor functions.

Every function takes and returns ``(B, C, H, W)`` floating tensors and keeps no state. They are the
package's own because the library that offered them loads all of itself (augmentation, geometry,
feature matching, ...) on import: an eighth of a second of every command, for four filters of a
few lines each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _window(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1:
        raise ValueError(f"window {height}x{width}: both sides must be at least 1")
    return height, width


def box_blur(x: torch.Tensor, size: int | tuple[int, int], border: str = "reflect") -> torch.Tensor:
    """The mean of each ``size`` window (an int or ``(height, width)``) of ``x`` ``(B, C, H, W)``,
    same shape, the border extended by ``border`` (``"reflect"``, ``"replicate"`` or
    ``"constant"``, zeros). An even side's window reaches one pixel further down or right.

    Two one-dimensional passes, each a sum of the window's shifted copies: the cost does not grow
    with the area of the window, only with its sides. (Average pooling, or a convolution with equal
    taps, gives the same means to float rounding but ran four to ten times slower on the CPU.)
    """
    height, width = _window(size)
    if width > 1:
        x = _window_mean(F.pad(x, ((width - 1) // 2, width // 2, 0, 0), mode=border), width, -1)
    if height > 1:
        x = _window_mean(F.pad(x, (0, 0, (height - 1) // 2, height // 2), mode=border), height, -2)
    return x


def _window_mean(padded: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """The mean of every ``size`` consecutive values of ``padded`` along ``dim`` (``size`` >= 2): that
    axis ``size − 1`` shorter. A new tensor."""
    length = padded.shape[dim] - size + 1
    total = padded.narrow(dim, 0, length) + padded.narrow(dim, 1, length)
    for offset in range(2, size):
        total += padded.narrow(dim, offset, length)
    return total.mul_(1.0 / size)


def gaussian_kernel(size: int, sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The normalised one-dimensional Gaussian of ``size`` taps (odd) and standard deviation
    ``sigma``, centred on the middle tap: ``(size,)``."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"Gaussian of {size} taps: the size must be odd and positive")
    if not sigma > 0:
        raise ValueError(f"Gaussian of sigma {sigma}: sigma must be greater than 0")
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    taps = torch.exp(-(offsets**2) / (2.0 * sigma * sigma))
    return (taps / taps.sum()).to(dtype)


def gaussian_blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` convolved, channel by channel, with the ``size`` x ``size`` Gaussian
    of standard deviation ``sigma`` (the outer product of ``gaussian_kernel``), zero padding:
    the same shape."""
    taps = gaussian_kernel(size, sigma, x.dtype).to(x.device)
    channels = x.shape[1]
    kernel = torch.outer(taps, taps).expand(channels, 1, size, size)
    return F.conv2d(x, kernel, padding=size // 2, groups=channels)


def _subsampled_indices(length: int, factor: int, device: torch.device) -> torch.Tensor:
    """The pixels an axis of ``length`` keeps when subsampled ``factor`` times: ``max(length //
    factor, 1)`` of them, each the pixel that a bilinear upsampling (``align_corners=False``) back
    to ``length`` puts nearest to its place, shifted by the ``(factor - 1) / 2`` of plain striding,
    so a ``length`` that is a multiple of ``factor`` keeps every ``factor``-th pixel from the first,
    and any other keeps the same phase along the whole axis. ``(max(length // factor, 1),)``."""
    kept = max(length // factor, 1)
    index = torch.arange(kept, device=device)
    return ((2 * index + 1) * length + kept * (1 - factor)).div(2 * kept, rounding_mode="floor").clamp(0, length - 1)


def guided_filter(
    guide: torch.Tensor, x: torch.Tensor, size: int, eps: float, subsample: int = 1, border: str = "reflect"
) -> torch.Tensor:
    """The guided filter (He, Sun and Tang, 2010) of ``x`` ``(B, C, H, W)`` by the one-channel
    ``guide`` ``(B, 1, H, W)``: in each ``size`` window ``x`` is fitted as ``a · guide + b``, so the
    result is smooth where the guide is flat and follows the guide's edges (a step much larger
    than ``sqrt(eps)``). The same shape as ``x``.

    ``subsample`` > 1 is the fast guided filter (He and Sun, 2015): the coefficients are fitted on
    a copy that many times smaller (every ``subsample``-th pixel, with a window to match) and
    upsampled bilinearly; only the final ``a · guide + b`` runs at full size. Windows and their
    borders are ``box_blur``'s.
    """
    if subsample < 1:
        raise ValueError(f"subsample {subsample}: must be at least 1")
    height, width = guide.shape[-2:]
    small_guide, small_x, window = guide, x, size
    if subsample > 1:
        rows = _subsampled_indices(height, subsample, guide.device)
        columns = _subsampled_indices(width, subsample, guide.device)
        small_guide = guide.index_select(-2, rows).index_select(-1, columns)
        small_x = small_guide if x is guide else x.index_select(-2, rows).index_select(-1, columns)
        window = (size - 1) // subsample + 1
    mean_guide = box_blur(small_guide, window, border)
    variance = box_blur(small_guide.square(), window, border) - mean_guide.square()
    if x is guide:
        mean_x, covariance = mean_guide, variance
    else:
        mean_x = box_blur(small_x, window, border)
        covariance = box_blur(small_guide * small_x, window, border) - mean_guide * mean_x
    slope = covariance / (variance + eps)
    offset = mean_x - slope * mean_guide
    mean_slope = box_blur(slope, window, border)
    mean_offset = box_blur(offset, window, border)
    if subsample > 1:
        mean_slope = F.interpolate(mean_slope, size=(height, width), mode="bilinear", align_corners=False)
        mean_offset = F.interpolate(mean_offset, size=(height, width), mode="bilinear", align_corners=False)
    # In place on the slope's map, a temporary of this function: the same operations, with one
    # full-size temporary fewer (48 MB a channel on a 12 MP photo).
    return mean_slope.mul_(guide).add_(mean_offset)
