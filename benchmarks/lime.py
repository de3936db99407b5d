"""LIME (Guo, Li and Ling, "LIME: Low-light Image Enhancement via Illumination Map Estimation",
IEEE TIP 2017), written from the paper for the benchmarks; a peer, never part of the package.

1. Initial illumination: ``T̂(x) = max_c I_c(x)``, the brightest channel of each pixel.
2. Refinement with the paper's structure-aware objective
   ``min_T ||T̂ − T||² + α ||W ∘ ∇T||₁``, by its sped-up solver: the l1 term is replaced by
   ``Σ_x Σ_d W̃_d(x) (∇_d T(x))²`` with ``W̃_d(x) = W_d(x) / (|∇_d T̂(x)| + ε)``, weights taken
   from the initial map's gradients, so the refined map is the solution of one sparse linear
   system ``(Id + α Σ_d D_dᵀ diag(W̃_d) D_d) t = t̂`` (``D_d``: forward differences, horizontal
   and vertical), solved directly with SciPy (SuperLU).
   ``W_d`` is the paper's weighting strategy III:
   ``W_d(x) = Σ_{y∈Ω(x)} G_σ(x, y) / (|Σ_{y∈Ω(x)} G_σ(x, y) ∇_d T̂(y)| + ε)``, with a normalised
   Gaussian ``G_σ`` (SciPy's ``gaussian_filter``, edges replicated), so ``W_d = 1 / (|G_σ ∗ ∇_d T̂| + ε)``.
   The paper's settings: ``α = 0.15``, ``σ = 2``; ``ε = 1e-3``.
3. Enhancement: ``R = I / T^γ`` per channel with the paper's ``γ = 0.8``, clipped to [0, 1]
   (``T`` floored at ``ILLUMINATION_FLOOR`` so a black pixel is not divided by zero).
4. Optional denoising, as in the paper: BM3D on the Y channel of ``R`` in YUV (BT.601, U and V
   kept), then recomposed as ``R_f = R ∘ T + R_d ∘ (1 − T)`` with the refined ``T`` (before its
   gamma): the dark areas, lifted the most, take the denoised picture, the lit ones keep theirs.
   The paper gives no noise level for BM3D; here it is estimated from ``R``'s Y channel
   (``skimage.restoration.estimate_sigma``, a wavelet median absolute deviation).
   BM3D is the ``bm3d`` package (PyPI, Tampere University's binaries; free for non-commercial
   use), part of the ``[benchmarks]`` extra only.

Images are ``(H, W, 3)`` float arrays in [0, 1].
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
from scipy.ndimage import gaussian_filter

ALPHA = 0.15
SIGMA = 2.0
EPSILON = 1e-3
GAMMA = 0.8
ILLUMINATION_FLOOR = 1e-3


def initial_illumination(image: np.ndarray) -> np.ndarray:
    """``(H, W)``: the brightest channel of each pixel of ``image`` ``(H, W, 3)``."""
    return image.max(axis=2)


def forward_differences(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical forward differences of ``values`` ``(H, W)``, each ``(H, W)``,
    zero in the last column (row), where there is no next pixel."""
    horizontal = np.zeros_like(values)
    vertical = np.zeros_like(values)
    horizontal[:, :-1] = values[:, 1:] - values[:, :-1]
    vertical[:-1, :] = values[1:, :] - values[:-1, :]
    return horizontal, vertical


def solver_weights(
    initial: np.ndarray, sigma: float = SIGMA, epsilon: float = EPSILON
) -> tuple[np.ndarray, np.ndarray]:
    """The sped-up solver's ``W̃_d = W_d / (|∇_d T̂| + ε)`` for d horizontal and vertical, each
    ``(H, W)``, with the paper's strategy III ``W_d`` (module docstring)."""
    weights = []
    for gradient in forward_differences(initial):
        structure = 1.0 / (np.abs(gaussian_filter(gradient, sigma, mode="nearest")) + epsilon)
        weights.append(structure / (np.abs(gradient) + epsilon))
    return weights[0], weights[1]


def _difference_operator(height: int, width: int, axis: int) -> scipy.sparse.csr_matrix:
    """Sparse ``(H·W, H·W)`` forward difference along ``axis`` (1: horizontal, 0: vertical) of a
    row-major flattened ``(H, W)`` map; rows of the last column (row) are zero."""
    size = height * width
    step = 1 if axis == 1 else width
    has_next = np.ones((height, width))
    if axis == 1:
        has_next[:, -1] = 0.0
    else:
        has_next[-1, :] = 0.0
    has_next = has_next.ravel()
    return scipy.sparse.diags([-has_next, has_next[: size - step]], [0, step], shape=(size, size), format="csr")


def refine_illumination(
    initial: np.ndarray, alpha: float = ALPHA, sigma: float = SIGMA, epsilon: float = EPSILON
) -> np.ndarray:
    """The refined illumination ``(H, W)``: the sped-up solver's linear system solved for ``initial``."""
    height, width = initial.shape
    horizontal_weights, vertical_weights = solver_weights(initial.astype(np.float64), sigma, epsilon)
    system = scipy.sparse.identity(height * width, format="csr")
    for axis, weights in ((1, horizontal_weights), (0, vertical_weights)):
        difference = _difference_operator(height, width, axis)
        system = system + alpha * (difference.T @ scipy.sparse.diags(weights.ravel()) @ difference)
    refined = scipy.sparse.linalg.spsolve(system.tocsc(), initial.astype(np.float64).ravel())
    return refined.reshape(height, width)


def denoise_luma(enhanced: np.ndarray) -> np.ndarray:
    """``enhanced`` ``(H, W, 3)`` with BM3D applied to its Y channel (YUV, BT.601), U and V kept."""
    import bm3d
    from skimage.color import rgb2yuv, yuv2rgb
    from skimage.restoration import estimate_sigma

    yuv = rgb2yuv(enhanced)
    noise = float(estimate_sigma(yuv[..., 0]))
    if noise > 0:
        yuv[..., 0] = bm3d.bm3d(yuv[..., 0], sigma_psd=noise)
    return np.clip(yuv2rgb(yuv), 0.0, 1.0)


def lime(image: np.ndarray, denoise: bool = False, alpha: float = ALPHA, gamma: float = GAMMA) -> np.ndarray:
    """LIME's result ``(H, W, 3)`` for ``image`` ``(H, W, 3)`` in [0, 1]; ``denoise``: with its BM3D step."""
    image = image.astype(np.float64)
    illumination = np.clip(refine_illumination(initial_illumination(image), alpha), ILLUMINATION_FLOOR, 1.0)
    enhanced = np.clip(image / illumination[..., None] ** gamma, 0.0, 1.0)
    if not denoise:
        return enhanced
    weight = illumination[..., None]
    return np.clip(enhanced * weight + denoise_luma(enhanced) * (1.0 - weight), 0.0, 1.0)
