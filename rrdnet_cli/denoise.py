"""Removing the photo's own noise where the rendering raised the light.

RRDNet's noise map N takes out the noise the fit can tell from texture, but much of the sensor
noise stays in ``I − N``, and the rendering multiplies it by the per-pixel gain
``g(x)``, ``L(x)^(gamma − 1)`` times the exposure's own gain (``light.exposure_gain``): by 5-10
in the dark areas of a dark photo. So the signal
``D = clamp(I − N, 0, 1)`` is denoised in the input domain, where sensor noise is nearly uniform
across the image, with a strength set by the noise level estimated from ``D`` itself; the rendering
then blends the denoised copy in by ``w(x) = clamp(1 − 1/g(x), 0, 1)``: nothing where a pixel was
not brightened, and where it was brightened g times, enough that what noise remains is back at the
level of the original photo. Where the gain exceeds ``HIGH_GAIN`` (the nearly black areas of a
night scene, brightened 10 to 20 times), noise that the auto strength leaves is still plain, so the
blend moves on to a copy denoised ``HIGH_GAIN_FACTOR`` times harder, fully from twice that gain:
the strength follows the local gain in two steps.

The denoiser is a wavelet shrinkage (BayesShrink on YCbCr, ``skimage.restoration.denoise_wavelet``),
cycle-spun over two shifts: on the synthetic pairs it matched non-local means in SSIM against the
ground truth at a fraction of the time (figures: README, "Denoising"). Large images go through it
in overlapping tiles, so memory stays bounded whatever the photo's size.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import torch

from .errors import UsageError

# Strength of denoise "auto": the wavelet threshold is this multiple of the estimated noise level.
# 1.5 scored best of 1, 1.5 and 2 in SSIM on the synthetic pairs (README, "Denoising").
AUTO_STRENGTH = 1.5
# Tiles of this side (plus OVERLAP on each side, discarded) bound the denoiser's memory: its
# float64 work arrays for a 12-megapixel photo would take gigabytes at once.
TILE_SIZE = 1024
# Wider than the support of the coarsest wavelet level (2^WAVELET_LEVELS pixels of the Haar
# wavelet), so a tile's kept centre does not see the tile's edge.
OVERLAP = 32
# A fixed number of decomposition levels: the default depends on the array's size, which would make
# a tile's result depend on where the image was cut.
WAVELET_LEVELS = 4
# Cycle spinning (Coifman and Donoho, 1995): a decimated wavelet transform is not shift-invariant, so
# its shrinkage leaves blocks on the Haar grid; averaging the shrinkage of shifted copies removes
# them. The diagonal shift alone gave nearly what skimage's cycle_spin over the whole 2 x 2 grid
# gives (GT-mean-aligned PSNR +0.26 against +0.29 dB, SSIM +0.030 against +0.034 on the synthetic
# pairs) at half its cost (README, "Denoising").
SHIFTS = ((0, 0), (1, 1))
# Above this per-pixel gain the blend moves from the copy denoised at the configured strength to one
# denoised HIGH_GAIN_FACTOR times harder (all of it from twice the gain). On the 17 real benchmark
# photos this lowered BasicSR's NIQE from 3.81 to 3.44, with SSIM on the synthetic pairs unchanged
# (their gains are mostly below 8); gains 6 to 12 and factors 3 to 8 all helped (README, "Denoising").
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


def noise_level(signal: np.ndarray) -> float:
    """The standard deviation of ``signal``'s ``(H, W, 3)`` Gaussian noise, averaged over channels
    (wavelet median-absolute-deviation estimate: robust to the image's own edges); 0 for a signal
    without any."""
    # A noiseless flat channel has no non-zero detail coefficient: the estimate is then NaN (with a
    # warning about the empty median, which says nothing more).
    from skimage.restoration import estimate_sigma  # see _wavelet_shrinkage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nan_to_num(np.mean(estimate_sigma(signal, channel_axis=-1))))


def _wavelet_shrinkage(tile: np.ndarray, sigma: float) -> np.ndarray:
    # Imported when first used: skimage.restoration imports scipy.stats (1.2 s measured), which a
    # run without denoising (paper, --denoise off, --help, config show) need not pay for.
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(
        tile, sigma=sigma, wavelet_levels=WAVELET_LEVELS, channel_axis=-1, convert2ycbcr=True, rescale_sigma=True
    )


def _shrunk_at(tile: np.ndarray, sigma: float, shift: tuple[int, int]) -> np.ndarray:
    """``tile`` ``(H, W, 3)`` shifted by ``shift``, shrunk and shifted back: float64."""
    shrunk = _wavelet_shrinkage(np.roll(tile, shift, axis=(0, 1)), sigma)
    return np.roll(shrunk, tuple(-step for step in shift), axis=(0, 1))


class _Window(NamedTuple):
    """A tile ``[top, bottom) x [left, right)`` of the result and the larger window it is computed on."""

    top: int
    bottom: int
    left: int
    right: int
    outer_top: int
    outer_bottom: int
    outer_left: int
    outer_right: int


def _windows(height: int, width: int, tile_size: int) -> list[_Window]:
    windows = []
    for top in range(0, height, tile_size):
        for left in range(0, width, tile_size):
            bottom, right = min(top + tile_size, height), min(left + tile_size, width)
            outer_top, outer_bottom = max(top - OVERLAP, 0), min(bottom + OVERLAP, height)
            outer_left, outer_right = max(left - OVERLAP, 0), min(right + OVERLAP, width)
            windows.append(_Window(top, bottom, left, right, outer_top, outer_bottom, outer_left, outer_right))
    return windows


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
    windows = _windows(*signal.shape[:2], tile_size)
    pieces = [(window, shift) for window in windows for shift in SHIFTS]

    def shrink(piece: tuple[_Window, tuple[int, int]]) -> np.ndarray:
        window, shift = piece
        outer = signal[window.outer_top:window.outer_bottom, window.outer_left:window.outer_right]
        return _shrunk_at(outer, sigma, shift)

    result = np.empty_like(signal)
    sums: dict[_Window, list[np.ndarray]] = {}
    workers = max(1, min(threads or torch.get_num_threads(), len(pieces)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(pieces), workers):
            batch = pieces[start:start + workers]
            for (window, _), shrunk in zip(batch, pool.map(shrink, batch)):
                sums.setdefault(window, []).append(shrunk)
                if len(sums[window]) < len(SHIFTS):
                    continue
                # Added in SHIFTS order whatever the thread count, so the result is the same.
                cleaned = sum(sums.pop(window)) / len(SHIFTS)
                result[window.top:window.bottom, window.left:window.right] = cleaned[
                    window.top - window.outer_top:window.bottom - window.outer_top,
                    window.left - window.outer_left:window.right - window.outer_left,
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
