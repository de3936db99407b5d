"""Removing the photo's own noise where the rendering raised the light.

RRDNet's noise map N takes out the noise the fit can tell from texture, but much of the sensor
noise stays in ``I − N``, and the rendering multiplies it by each pixel's gain ``g(x)``. So the
signal ``D = clamp(I − N, 0, 1)`` is denoised in the input domain, where sensor noise is nearly
uniform, with a strength set by the noise level estimated from ``D`` itself; the rendering then
blends the denoised copy in by ``w(x) = clamp(1 − 1/g(x), 0, 1)``: nothing where a pixel was not
brightened, and where it was brightened g times, enough that the noise left is back at the original
photo's level. Where the gain exceeds ``HIGH_GAIN`` (the nearly black areas of a night scene) the
blend moves on to a copy denoised ``HIGH_GAIN_FACTOR`` times harder, all of it from twice that gain.

The denoiser is a wavelet shrinkage (BayesShrink, Haar, on a luminance/opponent-colour basis, over
PyWavelets), cycle-spun over two shifts, in overlapping tiles (``tiling.tiles``) so that memory
stays bounded whatever the photo's size: non-local means scored a little higher on the synthetic
pairs at several times the cost.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from . import tiling
from .errors import UsageError

# Strength of denoise "auto": the wavelet threshold is this multiple of the estimated noise level
# (the best of 1, 1.5 and 2 on the synthetic pairs: benchmarks/results/quality.json).
AUTO_STRENGTH = 1.5
# Tiles of this side (plus OVERLAP on each side, discarded) bound the denoiser's memory.
TILE_SIZE = 1024
# Wider than the support of the coarsest wavelet level (2^WAVELET_LEVELS pixels of the Haar
# wavelet), so a tile's kept centre does not see the tile's edge.
OVERLAP = 32
# A fixed number of decomposition levels (fewer only for an image too small for them): a count
# that followed each tile's size would make a tile's result depend on where the image was cut.
WAVELET_LEVELS = 4
# Cycle spinning (Coifman and Donoho, 1995): a decimated wavelet transform is not shift-invariant, so
# its shrinkage leaves blocks on the Haar grid; the mean over a diagonal shift removes them at half
# the cost of the whole 2 x 2 grid.
SHIFTS = ((0, 0), (1, 1))
# Above this per-pixel gain the blend moves to the copy denoised HIGH_GAIN_FACTOR times harder
# (all of it from twice the gain): the noise a night scene's black areas keep at the configured
# strength stays plain once brightened that much (benchmarks/results/quality.json).
HIGH_GAIN = 8.0
HIGH_GAIN_FACTOR = 4.0


def strength_of(setting: float | str) -> Optional[float]:
    """The config's ``denoise`` (``"auto"``, ``"off"`` or a positive number) as a strength, or
    ``None`` for off."""
    if setting == "off":
        return None
    if setting == "auto":
        return AUTO_STRENGTH
    if isinstance(setting, str) or not setting > 0:
        raise UsageError(f"denoise {setting!r}: expected 'auto', 'off' or a number greater than 0")
    return float(setting)


def blend_weight(gain: torch.Tensor) -> torch.Tensor:
    """``clamp(1 − 1/gain, 0, 1)``: how much of the denoised signal a pixel brightened ``gain``
    times takes; any shape (the rendering's ``(1, 1, H, W)``)."""
    return (1.0 - gain.reciprocal()).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Denoised:
    """The signal denoised at the configured strength (``gentle``) and ``HIGH_GAIN_FACTOR`` times
    harder (``strong``), both ``(1, 3, H, W)``; indexing cuts both alike (``x[..., ::2, ::2]``)."""

    gentle: torch.Tensor
    strong: torch.Tensor

    def __getitem__(self, index) -> Denoised:
        return Denoised(self.gentle[index], self.strong[index])

    def blend(self, signal: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """``signal`` ``(1, 3, H, W)`` with the denoised copies blended in by the per-pixel ``gain``
        ``(1, 1, H, W)``: ``blend_weight(gain)`` of a copy that moves from ``gentle`` to ``strong``
        as the gain goes from ``HIGH_GAIN`` to twice it."""
        toward_strong = (gain / HIGH_GAIN - 1.0).clamp(0.0, 1.0)
        cleaned = torch.lerp(self.gentle, self.strong, toward_strong)
        return torch.lerp(signal, cleaned, blend_weight(gain))


# An orthonormal luminance/opponent-colour basis: shrinking luminance and colour apart keeps edges
# in colour where a grey edge is, and, being orthonormal, leaves white noise's level unchanged.
OPPONENT = np.array(
    [[1 / np.sqrt(3)] * 3, [1 / np.sqrt(2), 0.0, -1 / np.sqrt(2)], [1 / np.sqrt(6), -2 / np.sqrt(6), 1 / np.sqrt(6)]],
    dtype=np.float32,
)
# The median absolute deviation of Gaussian noise is this fraction of its standard deviation.
MAD_TO_SIGMA = 0.6744897501960817


def noise_level(signal: np.ndarray) -> float:
    """The standard deviation of ``signal``'s ``(H, W, 3)`` Gaussian noise, averaged over channels:
    the median absolute deviation of the finest diagonal wavelet coefficients (Daubechies 2), robust
    to the image's own edges; 0 for a signal without any."""
    import pywt

    levels = []
    for channel in np.moveaxis(np.asarray(signal, dtype=np.float32), -1, 0):
        diagonal = pywt.dwt2(channel, "db2")[1][2]
        # Exact zeros are flat, clipped or saturated areas, not noise.
        diagonal = diagonal[diagonal != 0]
        levels.append(float(np.median(np.abs(diagonal))) / MAD_TO_SIGMA if diagonal.size else 0.0)
    return float(np.mean(levels))


def wavelet_levels(height: int, width: int) -> int:
    """``WAVELET_LEVELS``, or fewer for a window too small for them (a level needs at least two
    coefficients along each side)."""
    import pywt

    return max(0, min(WAVELET_LEVELS, pywt.dwt_max_level(min(height, width), "haar")))


def bayes_shrink(tile: np.ndarray, sigma: float, levels: int) -> np.ndarray:
    """``tile`` ``(H, W, 3)`` with each wavelet sub-band of each opponent channel soft-thresholded at
    BayesShrink's ``sigma² / sqrt(max(variance − sigma², eps))`` (Chang, Yu and Vetterli, 2000):
    Haar wavelet, ``levels`` levels. Returns float32."""
    import pywt

    if levels == 0:
        return tile.astype(np.float32, copy=True)
    variance = sigma * sigma
    eps = np.finfo(np.float32).eps
    opponent = tile @ OPPONENT.T
    cleaned = np.empty_like(opponent)
    for channel in range(3):
        coefficients = pywt.wavedec2(opponent[..., channel], "haar", level=levels)
        shrunk = [coefficients[0]]
        for bands in coefficients[1:]:
            shrunk.append(
                tuple(
                    pywt.threshold(band, variance / np.sqrt(max(float(np.mean(band * band)) - variance, eps)), "soft")
                    for band in bands
                )
            )
        cleaned[..., channel] = pywt.waverec2(shrunk, "haar")[: tile.shape[0], : tile.shape[1]]
    return cleaned @ OPPONENT


def _shrunk_at(tile: np.ndarray, sigma: float, shift: tuple[int, int], levels: int) -> np.ndarray:
    """``tile`` ``(H, W, 3)`` shifted by ``shift``, shrunk and shifted back."""
    shrunk = bayes_shrink(np.roll(tile, shift, axis=(0, 1)), sigma, levels)
    return np.roll(shrunk, tuple(-step for step in shift), axis=(0, 1))


def denoise_image(
    signal: np.ndarray, strength: float, tile_size: int = TILE_SIZE, threads: Optional[int] = None
) -> np.ndarray:
    """``signal`` ``(H, W, 3)`` float in [0, 1], denoised: ``(H, W, 3)`` float32 in [0, 1].

    The threshold is ``strength`` times the noise level estimated on the whole signal; processed
    in tiles of ``tile_size`` overlapping by ``OVERLAP``, each the mean of its shrinkages at
    ``SHIFTS``. Those (tile, shift) pieces run on ``threads`` threads (default: torch's intra-op
    thread count, which ``--threads`` and the workers set), a few at a time so that memory stays
    bounded; the wavelet code releases the GIL, and the result does not depend on the count. A
    signal with no measurable noise is returned unchanged.
    """
    signal = np.asarray(signal, dtype=np.float32)
    return _shrunk(signal, strength * noise_level(signal), tile_size, threads)


def _shrunk(signal: np.ndarray, sigma: float, tile_size: int, threads: Optional[int]) -> np.ndarray:
    """``denoise_image`` at the threshold ``sigma``; ``signal`` float32."""
    if not sigma > 0:
        return signal.copy()
    height, width = signal.shape[:2]
    # One level count for every tile (the smallest window's), so a tile's result does not depend on
    # where the image was cut.
    windows = list(tiling.tiles(height, width, tile_size, OVERLAP))
    levels = min(wavelet_levels(w.window_bottom - w.window_top, w.window_right - w.window_left) for w in windows)
    pieces = [(window, shift) for window in windows for shift in SHIFTS]

    def shrink(piece: tuple[tiling.Tile, tuple[int, int]]) -> np.ndarray:
        window, shift = piece
        outer = signal[window.window_top : window.window_bottom, window.window_left : window.window_right]
        return _shrunk_at(outer, sigma, shift, levels)

    result = np.empty_like(signal)
    sums: dict[tiling.Tile, list[np.ndarray]] = {}
    workers = max(1, min(threads or torch.get_num_threads(), len(pieces)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(pieces), workers):
            batch = pieces[start : start + workers]
            for (window, _), shrunk in zip(batch, pool.map(shrink, batch)):
                sums.setdefault(window, []).append(shrunk)
                if len(sums[window]) < len(SHIFTS):
                    continue
                # Added in SHIFTS order whatever the thread count, so the result is the same.
                cleaned = np.sum(np.stack(sums.pop(window)), axis=0) / len(SHIFTS)
                result[window.top : window.bottom, window.left : window.right] = cleaned[
                    window.top - window.window_top : window.bottom - window.window_top,
                    window.left - window.window_left : window.right - window.window_left,
                ]
    return np.clip(result, 0.0, 1.0)


def signal_array(image: torch.Tensor, noise: torch.Tensor) -> np.ndarray:
    """``clamp(I − N, 0, 1)`` as an ``(H, W, 3)`` float32 array; ``image``, ``noise`` ``(1, 3, H, W)``."""
    with torch.no_grad():
        signal = (image - noise).clamp(0.0, 1.0)[0].permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(signal, dtype=np.float32)


def denoise_signal(
    image: torch.Tensor, noise: torch.Tensor, strength: float, level: Optional[float] = None
) -> Denoised:
    """``clamp(I − N, 0, 1)`` denoised at ``strength`` and ``HIGH_GAIN_FACTOR`` times it (one noise
    estimate for both: ``level``, or ``noise_level`` of the signal when not given); ``image``,
    ``noise`` and the copies ``(1, 3, H, W)`` float32 on the CPU."""
    signal = signal_array(image, noise)
    if level is None:
        level = noise_level(signal)

    def copy_at(factor: float) -> torch.Tensor:
        cleaned = _shrunk(signal, factor * strength * level, TILE_SIZE, None)
        return torch.from_numpy(np.ascontiguousarray(cleaned.transpose(2, 0, 1)))[None]

    return Denoised(copy_at(1.0), copy_at(HIGH_GAIN_FACTOR))
