"""Removing the photo's own noise where the rendering raised the light.

RRDNet's noise map N takes out the noise the fit can tell from texture, but much of the sensor
noise stays in ``I − N``, and the rendering multiplies it by each pixel's gain ``g(x)``. So the
signal ``D = clamp(I − N, 0, 1)`` is denoised in the input domain, where sensor noise is nearly
uniform, with a strength set by the noise level estimated from ``D`` itself; the rendering then
blends the denoised copy in by ``w(x) = clamp(1 − 1/g(x), 0, 1)``: nothing where a pixel was not
brightened, and where it was brightened g times, enough that the noise left is back at the original
photo's level. Where the gain exceeds ``HIGH_GAIN`` (the nearly black areas of a night scene) the
blend moves on to a copy denoised ``HIGH_GAIN_FACTOR`` times harder, all of it from twice that gain.

The denoiser is a wavelet shrinkage (BayesShrink, Haar, on a luminance/opponent-colour basis, in
torch), cycle-spun over two shifts, in overlapping tiles (``tiling.tiles``) so that memory
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
import torch.nn.functional as F

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


def signal_noise_level(image: torch.Tensor, noise: torch.Tensor) -> float:
    """The standard deviation of the Gaussian noise in the signal ``clamp(I − N, 0, 1)`` (``image``,
    ``noise`` ``(1, 3, H, W)``), averaged over channels: the median absolute deviation of the finest
    diagonal wavelet coefficients (Daubechies 2), robust to the image's own edges; 0 for a signal
    without any. One channel at a time, on torch's intra-op thread count (which ``--threads`` and
    the workers set): a full-size three-channel copy of the signal is never made."""

    def level(channel: int) -> float:
        with torch.no_grad():
            return _channel_noise_level((image[0, channel] - noise[0, channel]).clamp(0.0, 1.0).numpy())

    with ThreadPoolExecutor(max_workers=max(1, min(3, torch.get_num_threads()))) as pool:
        return float(np.mean(list(pool.map(level, range(3)))))


def _channel_noise_level(channel: np.ndarray) -> float:
    """``signal_noise_level`` of one channel ``(H, W)`` float32."""
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
    return max(0, min(WAVELET_LEVELS, min(height, width).bit_length() - 1))


def haar_forward(planes: torch.Tensor) -> torch.Tensor:
    """One level of the orthonormal 2-D Haar transform of ``planes`` ``(C, H, W)``: ``(C, 4, h, w)``
    with ``h, w = ceil(H / 2), ceil(W / 2)``, the approximation first, then the details across rows,
    across columns and diagonal. An odd side is extended by its last sample, as PyWavelets'
    symmetric mode does for the Haar wavelet, so the coefficients are PyWavelets' to float rounding
    (its details in another order, and some with the other sign, which soft thresholding ignores).

    Sums and differences of neighbouring rows, then of neighbouring columns, on strided views: the
    transform is a few passes over memory, where PyWavelets' filter loops ran two to three times
    slower and held the GIL.
    """
    height, width = planes.shape[-2:]
    if height % 2 or width % 2:
        planes = F.pad(planes[None], (0, width % 2, 0, height % 2), mode="replicate")[0]
    row_sums = planes[:, 0::2] + planes[:, 1::2]
    row_differences = planes[:, 0::2] - planes[:, 1::2]
    coefficients = planes.new_empty((planes.shape[0], 4, *row_sums.shape[-2:-1], row_sums.shape[-1] // 2))
    torch.add(row_sums[..., 0::2], row_sums[..., 1::2], out=coefficients[:, 0])
    torch.add(row_differences[..., 0::2], row_differences[..., 1::2], out=coefficients[:, 1])
    torch.sub(row_sums[..., 0::2], row_sums[..., 1::2], out=coefficients[:, 2])
    torch.sub(row_differences[..., 0::2], row_differences[..., 1::2], out=coefficients[:, 3])
    return coefficients.mul_(0.5)


def haar_inverse(approximation: torch.Tensor, details: torch.Tensor) -> torch.Tensor:
    """The inverse of ``haar_forward``: ``approximation`` ``(C, h, w)`` and ``details`` ``(C, 4, h, w)``
    (its first band is ignored: the approximation stands in for it, so a coarser level's inverse
    need not be copied in) give ``(C, 2h, 2w)``; crop it to an odd side's length."""
    channels, _, height, width = details.shape
    planes = details.new_empty((channels, height, 2, width, 2))
    upper = approximation + details[:, 1]
    lower = approximation - details[:, 1]
    sums = details[:, 2] + details[:, 3]
    differences = details[:, 2] - details[:, 3]
    torch.add(upper, sums, out=planes[:, :, 0, :, 0])
    torch.sub(upper, sums, out=planes[:, :, 0, :, 1])
    torch.add(lower, differences, out=planes[:, :, 1, :, 0])
    torch.sub(lower, differences, out=planes[:, :, 1, :, 1])
    return planes.mul_(0.5).view(channels, 2 * height, 2 * width)


def bayes_shrink(tile: torch.Tensor, sigmas: Sequence[float], levels: int) -> list[torch.Tensor]:
    """``tile`` ``(3, H, W)`` float32 (channel planes) with each wavelet sub-band of each opponent
    channel soft-thresholded at BayesShrink's ``sigma² / sqrt(max(variance − sigma², eps))`` (Chang,
    Yu and Vetterli, 2000), once for each of ``sigmas``: Haar wavelet, ``levels`` levels. Returns one
    float32 ``(3, H, W)`` tensor a sigma.

    The forward transform and each sub-band's variance are computed once for all the sigmas: they
    differ only in the shrinkage and the inverse.
    """
    if levels == 0:
        return [tile.clone() for _ in sigmas]
    eps = float(np.finfo(np.float32).eps)
    height, width = tile.shape[-2:]
    opponent = torch.from_numpy(OPPONENT)
    approximation = torch.mm(opponent, tile.reshape(3, -1)).view(3, height, width)
    sizes, levels_coefficients = [], []
    for _ in range(levels):
        sizes.append(approximation.shape[-2:])
        coefficients = haar_forward(approximation)
        levels_coefficients.append(coefficients)
        approximation = coefficients[:, 0]
    # Each band's mean energy, by NumPy's dot product (one contiguous band at a time): the same sum,
    # whatever torch's thread count.
    energies = [
        [[float(np.vdot(band, band)) / band.size for band in channel[1:]] for channel in coefficients.numpy()]
        for coefficients in levels_coefficients
    ]
    results = []
    for sigma in sigmas:
        variance = sigma * sigma
        cleaned = approximation
        for coefficients, level_energies, size in zip(
            reversed(levels_coefficients), reversed(energies), reversed(sizes)
        ):
            shrunk = torch.empty_like(coefficients)
            for channel, channel_energies in enumerate(level_energies):
                for band, energy in enumerate(channel_energies, start=1):
                    threshold = float(np.float32(variance / np.sqrt(max(energy - variance, eps))))
                    # Written straight into the band's place: no copy of the shrunk band.
                    torch.ops.aten.softshrink.out(coefficients[channel, band], threshold, out=shrunk[channel, band])
            cleaned = haar_inverse(cleaned[..., : coefficients.shape[-2], : coefficients.shape[-1]], shrunk)
            cleaned = cleaned[..., : size[0], : size[1]]
        results.append(torch.mm(opponent.t(), cleaned.reshape(3, -1)).view(3, height, width))
    return results


def _shrunk_at(tile: torch.Tensor, sigmas: Sequence[float], shift: tuple[int, int], levels: int) -> list[torch.Tensor]:
    """``tile`` ``(3, H, W)`` shifted by ``shift``, shrunk at each of ``sigmas`` and shifted back."""
    if not any(shift):
        return bayes_shrink(tile, sigmas, levels)
    back = tuple(-step for step in shift)
    return [
        torch.roll(shrunk, back, dims=(1, 2))
        for shrunk in bayes_shrink(torch.roll(tile, shift, dims=(1, 2)), sigmas, levels)
    ]


def _shrink_tiles(
    window_of: Callable[[tiling.Tile], torch.Tensor],
    height: int,
    width: int,
    sigmas: Sequence[float],
    tile_size: int,
    store: Callable[[tiling.Tile, list[torch.Tensor]], None],
) -> None:
    """Shrink a ``height`` x ``width`` signal at each of ``sigmas`` (all > 0), tile by tile:
    ``window_of(tile)`` gives a tile's window ``(3, h, w)`` float32 (its kept part plus
    ``OVERLAP``), ``store(tile, cleaned)`` takes the kept part at each sigma, ``(3, bottom − top,
    right − left)`` float32 clipped to [0, 1], as each tile is done; nothing full-size is held here.
    Each tile is the mean of its shrinkages at ``SHIFTS``, added in that order; every step is
    elementwise or one band's NumPy dot product, so the result does not depend on the thread count."""
    # One level count for every tile (the smallest window's), so a tile's result does not depend on
    # where the image was cut.
    windows = list(tiling.tiles(height, width, tile_size, OVERLAP))
    levels = min(wavelet_levels(w.window_bottom - w.window_top, w.window_right - w.window_left) for w in windows)
    for window in windows:
        signal = window_of(window)
        rows = slice(window.top - window.window_top, window.bottom - window.window_top)
        columns = slice(window.left - window.window_left, window.right - window.window_left)
        # One shift's shrinkages at a time, added in SHIFTS' order.
        spins = (_shrunk_at(signal, sigmas, shift, levels) for shift in SHIFTS)
        totals = [shrunk[:, rows, columns].clone() for shrunk in next(spins)]
        for spin in spins:
            for total, shrunk in zip(totals, spin):
                total += shrunk[:, rows, columns]
        store(window, [total.div_(len(SHIFTS)).clamp_(0.0, 1.0) for total in totals])


def denoise_signal(
    image: torch.Tensor,
    noise: torch.Tensor,
    strength: float,
    level: Optional[float] = None,
    tile_size: int = TILE_SIZE,
) -> Denoised:
    """``clamp(I − N, 0, 1)`` denoised at ``strength`` and ``HIGH_GAIN_FACTOR`` times it (one noise
    estimate for both: ``level``, or ``signal_noise_level`` when not given); ``image``, ``noise``
    and the copies ``(1, 3, H, W)`` on the CPU (float32, or float16 above ``HALF_PRECISION_PIXELS``).

    Processed in tiles of ``tile_size`` overlapping by ``OVERLAP``. Both copies come from one forward
    transform a (tile, shift) (``bayes_shrink``), and each tile's signal is cut from ``image`` and
    ``noise`` as it is needed: the two copies are the only full-size arrays made.
    """
    if level is None:
        level = signal_noise_level(image, noise)
    height, width = image.shape[-2:]
    dtype = torch.float16 if height * width > HALF_PRECISION_PIXELS else torch.float32
    gentle = torch.empty((1, 3, height, width), dtype=dtype)
    strong = torch.empty((1, 3, height, width), dtype=dtype)
    sigmas = (strength * level, HIGH_GAIN_FACTOR * strength * level)

    def window(tile: tiling.Tile) -> torch.Tensor:
        rows, columns = slice(tile.window_top, tile.window_bottom), slice(tile.window_left, tile.window_right)
        return (image[0, :, rows, columns] - noise[0, :, rows, columns]).clamp(0.0, 1.0).float().contiguous()

    def store(tile: tiling.Tile, cleaned: list[torch.Tensor]) -> None:
        for copy, values in zip((gentle, strong), cleaned):
            copy[0, :, tile.top : tile.bottom, tile.left : tile.right] = values

    if all(sigma > 0 for sigma in sigmas):
        with torch.no_grad():
            _shrink_tiles(window, height, width, sigmas, tile_size, store)
    else:
        # No measurable noise: both copies are the signal itself.
        whole = tiling.Tile(0, height, 0, width, 0, height, 0, width)
        store(whole, [window(whole)] * 2)
    return Denoised(gentle, strong)
