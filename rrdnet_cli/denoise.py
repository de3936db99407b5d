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

from collections.abc import Callable, Sequence
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
# Above this many pixels the two denoised copies are kept in float16, half the memory (a 12 MP
# photo's pair: 137 MB instead of 275, at the peak of its memory). Its rounding, 2^-12 of a value,
# is about a twentieth of an 8-bit step; below it, where the benchmark photos lie, they stay float32.
HALF_PRECISION_PIXELS = 1_000_000


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
    harder (``strong``), both ``(1, 3, H, W)``, float32 (float16 above ``HALF_PRECISION_PIXELS``);
    indexing cuts both alike (``x[..., ::2, ::2]``)."""

    gentle: torch.Tensor
    strong: torch.Tensor

    def __getitem__(self, index) -> Denoised:
        return Denoised(self.gentle[index], self.strong[index])

    def blend(self, signal: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """``signal`` ``(1, 3, H, W)`` with the denoised copies blended in by the per-pixel ``gain``
        ``(1, 1, H, W)``: ``blend_weight(gain)`` of a copy that moves from ``gentle`` to ``strong``
        as the gain goes from ``HIGH_GAIN`` to twice it."""
        toward_strong = (gain / HIGH_GAIN - 1.0).clamp(0.0, 1.0)
        cleaned = torch.lerp(self.gentle.float(), self.strong.float(), toward_strong)
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
    signal = np.asarray(signal, dtype=np.float32)
    return float(np.mean([_channel_noise_level(signal[..., channel]) for channel in range(3)]))


def signal_noise_level(image: torch.Tensor, noise: torch.Tensor) -> float:
    """``noise_level`` of the signal ``clamp(I − N, 0, 1)`` (``image``, ``noise`` ``(1, 3, H, W)``),
    one channel at a time (on torch's intra-op thread count, which ``--threads`` and the workers
    set): a full-size three-channel copy of the signal is never made."""

    def level(channel: int) -> float:
        with torch.no_grad():
            return _channel_noise_level((image[0, channel] - noise[0, channel]).clamp(0.0, 1.0).numpy())

    with ThreadPoolExecutor(max_workers=max(1, min(3, torch.get_num_threads()))) as pool:
        return float(np.mean(list(pool.map(level, range(3)))))


def _channel_noise_level(channel: np.ndarray) -> float:
    """``noise_level`` of one channel ``(H, W)`` float32."""
    import pywt

    # The finest diagonal sub-band alone, exactly dwt2's last detail (the same passes in the same
    # order) without the three sub-bands it is not taken from.
    diagonal = pywt.dwt(pywt.dwt(channel, "db2", axis=0)[1], "db2", axis=1)[1]
    # Exact zeros are flat, clipped or saturated areas, not noise.
    diagonal = diagonal[diagonal != 0]
    return float(np.median(np.abs(diagonal))) / MAD_TO_SIGMA if diagonal.size else 0.0


def wavelet_levels(height: int, width: int) -> int:
    """``WAVELET_LEVELS``, or fewer for a window too small for them (a level needs at least two
    coefficients along each side)."""
    import pywt

    return max(0, min(WAVELET_LEVELS, pywt.dwt_max_level(min(height, width), "haar")))


def bayes_shrink(tile: np.ndarray, sigmas: Sequence[float], levels: int) -> list[np.ndarray]:
    """``tile`` ``(3, H, W)`` (channel planes) with each wavelet sub-band of each opponent channel
    soft-thresholded at BayesShrink's ``sigma² / sqrt(max(variance − sigma², eps))`` (Chang, Yu and
    Vetterli, 2000), once for each of ``sigmas``: Haar wavelet, ``levels`` levels. Returns one
    float32 ``(3, H, W)`` array a sigma.

    The forward transform and each sub-band's variance are computed once for all the sigmas: they
    differ only in the shrinkage and the inverse. Everything stays in float32 and in planes: each
    channel's transform reads and writes contiguous memory.
    """
    import pywt

    if levels == 0:
        return [tile.astype(np.float32, copy=True) for _ in sigmas]
    eps = np.finfo(np.float32).eps
    height, width = tile.shape[1:]
    # einsum's own loops, not BLAS: the pieces run on threads already, and BLAS would start (and keep
    # spinning) threads of its own beside them and torch's.
    opponent = np.einsum("kc,chw->khw", OPPONENT, tile)
    channels = [pywt.wavedec2(opponent[channel], "haar", level=levels) for channel in range(3)]
    energies = [
        [[float(np.vdot(band, band)) / band.size for band in bands] for bands in channel[1:]] for channel in channels
    ]
    results = []
    for sigma in sigmas:
        variance = sigma * sigma
        cleaned = np.empty_like(opponent)
        for channel, (coefficients, channel_energies) in enumerate(zip(channels, energies)):
            shrunk = [coefficients[0]]
            for bands, band_energies in zip(coefficients[1:], channel_energies):
                shrunk.append(
                    tuple(
                        pywt.threshold(band, np.float32(variance / np.sqrt(max(energy - variance, eps))), "soft")
                        for band, energy in zip(bands, band_energies)
                    )
                )
            cleaned[channel] = pywt.waverec2(shrunk, "haar")[:height, :width]
        results.append(np.einsum("kc,khw->chw", OPPONENT, cleaned))
    return results


def _shrunk_at(tile: np.ndarray, sigmas: Sequence[float], shift: tuple[int, int], levels: int) -> list[np.ndarray]:
    """``tile`` ``(3, H, W)`` shifted by ``shift``, shrunk at each of ``sigmas`` and shifted back."""
    if not any(shift):
        return bayes_shrink(tile, sigmas, levels)
    back = tuple(-step for step in shift)
    return [
        np.roll(shrunk, back, axis=(1, 2)) for shrunk in bayes_shrink(np.roll(tile, shift, axis=(1, 2)), sigmas, levels)
    ]


def denoise_image(
    signal: np.ndarray, strength: float, tile_size: int = TILE_SIZE, threads: Optional[int] = None
) -> np.ndarray:
    """``signal`` ``(H, W, 3)`` float in [0, 1], denoised: ``(H, W, 3)`` float32 in [0, 1].

    The threshold is ``strength`` times the noise level estimated on the whole signal; processed
    in tiles of ``tile_size`` overlapping by ``OVERLAP``, each the mean of its shrinkages at
    ``SHIFTS``. Those (tile, shift) pieces run on ``threads`` threads (default: torch's intra-op
    thread count, which ``--threads`` and the workers set), a few at a time so that memory stays
    bounded; the result does not depend on the count. (They overlap only a little: the transforms
    are bound by memory bandwidth, and PyWavelets' Python-level steps hold the GIL.) A signal with
    no measurable noise is returned unchanged.
    """
    signal = np.asarray(signal, dtype=np.float32)
    sigma = strength * noise_level(signal)
    if not sigma > 0:
        return signal.copy()
    planes = np.ascontiguousarray(signal.transpose(2, 0, 1))
    result = np.empty_like(signal)

    def window(tile: tiling.Tile) -> np.ndarray:
        return planes[:, tile.window_top : tile.window_bottom, tile.window_left : tile.window_right]

    def store(tile: tiling.Tile, cleaned: list[np.ndarray]) -> None:
        result[tile.top : tile.bottom, tile.left : tile.right] = cleaned[0].transpose(1, 2, 0)

    _shrink_tiles(window, signal.shape[0], signal.shape[1], (sigma,), tile_size, threads, store)
    return result


def _shrink_tiles(
    window_of: Callable[[tiling.Tile], np.ndarray],
    height: int,
    width: int,
    sigmas: Sequence[float],
    tile_size: int,
    threads: Optional[int],
    store: Callable[[tiling.Tile, list[np.ndarray]], None],
) -> None:
    """Shrink a ``height`` x ``width`` signal at each of ``sigmas`` (all > 0), tile by tile:
    ``window_of(tile)`` gives a tile's window ``(3, h, w)`` float32 (its kept part plus
    ``OVERLAP``), ``store(tile, cleaned)`` takes the kept part at each sigma, ``(3, bottom − top,
    right − left)`` float32 clipped to [0, 1], as each tile is done; nothing full-size is held here."""
    # One level count for every tile (the smallest window's), so a tile's result does not depend on
    # where the image was cut.
    windows = list(tiling.tiles(height, width, tile_size, OVERLAP))
    levels = min(wavelet_levels(w.window_bottom - w.window_top, w.window_right - w.window_left) for w in windows)
    pieces = [(window, shift) for window in windows for shift in SHIFTS]

    def shrink(piece: tuple[tiling.Tile, tuple[int, int]]) -> list[np.ndarray]:
        window, shift = piece
        return _shrunk_at(window_of(window), sigmas, shift, levels)

    sums: dict[tiling.Tile, list[list[np.ndarray]]] = {}
    workers = max(1, min(threads or torch.get_num_threads(), len(pieces)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(pieces), workers):
            batch = pieces[start : start + workers]
            for (window, _), shrunk in zip(batch, pool.map(shrink, batch)):
                sums.setdefault(window, []).append(shrunk)
                if len(sums[window]) < len(SHIFTS):
                    continue
                rows = slice(window.top - window.window_top, window.bottom - window.window_top)
                columns = slice(window.left - window.window_left, window.right - window.window_left)
                # Added in SHIFTS order whatever the thread count, so the result is the same.
                by_shift = sums.pop(window)
                cleaned = [_spun_mean([spin[:, rows, columns] for spin in spins]) for spins in zip(*by_shift)]
                store(window, cleaned)


def _spun_mean(spins: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of the shrinkages ``spins`` (each ``(3, h, w)``), added in their order, clipped to
    [0, 1]: a new array."""
    total = spins[0] + spins[1] if len(spins) > 1 else spins[0].copy()
    for spin in spins[2:]:
        total += spin
    total /= len(spins)
    return np.clip(total, 0.0, 1.0, out=total)


def signal_array(image: torch.Tensor, noise: torch.Tensor) -> np.ndarray:
    """``clamp(I − N, 0, 1)`` as an ``(H, W, 3)`` float32 array; ``image``, ``noise`` ``(1, 3, H, W)``."""
    with torch.no_grad():
        signal = (image - noise).clamp(0.0, 1.0)[0].permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(signal, dtype=np.float32)


def denoise_signal(
    image: torch.Tensor, noise: torch.Tensor, strength: float, level: Optional[float] = None
) -> Denoised:
    """``clamp(I − N, 0, 1)`` denoised at ``strength`` and ``HIGH_GAIN_FACTOR`` times it (one noise
    estimate for both: ``level``, or ``signal_noise_level`` when not given); ``image``, ``noise``
    and the copies ``(1, 3, H, W)`` on the CPU (float32, or float16 above ``HALF_PRECISION_PIXELS``).

    Both copies come from one forward transform a (tile, shift) (``bayes_shrink``), and each tile's
    signal is cut from ``image`` and ``noise`` as it is needed: the two copies are the only
    full-size arrays made.
    """
    if level is None:
        level = signal_noise_level(image, noise)
    height, width = image.shape[-2:]
    dtype = torch.float16 if height * width > HALF_PRECISION_PIXELS else torch.float32
    gentle = torch.empty((1, 3, height, width), dtype=dtype)
    strong = torch.empty((1, 3, height, width), dtype=dtype)
    sigmas = (strength * level, HIGH_GAIN_FACTOR * strength * level)

    def window(tile: tiling.Tile) -> np.ndarray:
        rows, columns = slice(tile.window_top, tile.window_bottom), slice(tile.window_left, tile.window_right)
        with torch.no_grad():
            cut = (image[0, :, rows, columns] - noise[0, :, rows, columns]).clamp(0.0, 1.0)
        return np.ascontiguousarray(cut.numpy(), dtype=np.float32)

    def store(tile: tiling.Tile, cleaned: list[np.ndarray]) -> None:
        for copy, values in zip((gentle, strong), cleaned):
            copy[0, :, tile.top : tile.bottom, tile.left : tile.right] = torch.from_numpy(values)

    if all(sigma > 0 for sigma in sigmas):
        _shrink_tiles(window, height, width, sigmas, TILE_SIZE, None, store)
    else:
        # No measurable noise: both copies are the signal itself.
        whole = tiling.Tile(0, height, 0, width, 0, height, 0, width)
        store(whole, [window(whole)] * 2)
    return Denoised(gentle, strong)
