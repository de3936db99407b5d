"""RRDNet's loss terms and the filters they use: pure tensor functions, no state.

Norms follow the reference exactly: ``‖x‖₁`` is a sum (not a mean) and ``‖x‖₂`` a square root of a
sum of squares, so the terms grow with the pixel count at different rates (docs/algorithm.md).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .filters import gaussian_blur

# ITU-R BT.601 luma, as the reference computes its gray image.
_LUMA = (0.299, 0.587, 0.114)
# Keeps the 1/x weights finite where the image is flat.
_EPSILON = 1e-4


def gray(image: torch.Tensor) -> torch.Tensor:
    """Luma of ``image`` ``(B, 3, H, W)`` -> ``(B, 1, H, W)``."""
    red, green, blue = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    return _LUMA[0] * red + _LUMA[1] * green + _LUMA[2] * blue


def _directional_gradient(x: torch.Tensor, dim: int) -> torch.Tensor:
    length = x.shape[dim]
    near = (x.narrow(dim, 2, length - 2) - x.narrow(dim, 0, length - 2)).abs()
    far = (x.narrow(dim, 4, length - 4) - x.narrow(dim, 0, length - 4)).abs()
    # F.pad lists (left, right, top, bottom): replicate along the differenced axis only.
    if dim == 2:
        near, far = F.pad(near, (0, 0, 1, 1), mode="replicate"), F.pad(far, (0, 0, 2, 2), mode="replicate")
    else:
        near, far = F.pad(near, (1, 1, 0, 0), mode="replicate"), F.pad(far, (2, 2, 0, 0), mode="replicate")
    return near * far


def gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-scale gradient magnitudes of ``x`` ``(B, C, H, W)``, each ``(B, C, H, W)``.

    Returns ``(g_h, g_w)``: along the height and along the width. Needs H, W >= 5.
    """
    return _directional_gradient(x, 2), _directional_gradient(x, 3)


def blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``x`` ``(B, C, H, W)`` with zero padding, as the reference does."""
    return gaussian_blur(x, size, sigma)


def normalize01(x: torch.Tensor) -> torch.Tensor:
    """Stretch ``x`` (any shape) to [0, 1] using its global min and max; a flat ``x`` gives zeros.

    An image flat along either axis (all black, all white, stripes) makes the reflectance weight
    flat, and the reference's 0 / 0 would turn the loss into NaN. The division by 1 in that case
    keeps the unused branch's gradient finite; for any other ``x`` the numbers are the reference's.
    """
    low, high = x.min(), x.max()
    span = high - low
    flat = span == 0
    stretched = (x - low) / torch.where(flat, torch.ones_like(span), span)
    return torch.where(flat, torch.zeros_like(stretched), stretched)


class ImagePriors(NamedTuple):
    """Loss inputs that depend on the image alone, computed once per image.

    ``max_channel``, ``weight_h``, ``weight_w``, ``gray_gradient_product``: ``(B, 1, H, W)``.
    """

    max_channel: torch.Tensor
    weight_h: torch.Tensor
    weight_w: torch.Tensor
    gray_gradient_product: torch.Tensor


def image_priors(image: torch.Tensor, blur_size: int, blur_sigma: float) -> ImagePriors:
    """Precompute the image-only parts of the losses for ``image`` ``(B, 3, H, W)``."""
    gray_h, gray_w = gradient(gray(image))
    return ImagePriors(
        max_channel=image.amax(dim=1, keepdim=True),
        weight_h=1.0 / (blur(gray_h, blur_size, blur_sigma) + _EPSILON),
        weight_w=1.0 / (blur(gray_w, blur_size, blur_sigma) + _EPSILON),
        gray_gradient_product=gray_h * gray_w,
    )


def reconstruction_loss(
    image: torch.Tensor, illumination: torch.Tensor, reflectance: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """``‖I − (L·R + N)‖₁``; image, reflectance, noise ``(B, 3, H, W)``, illumination ``(B, 1, H, W)``."""
    return (image - (illumination * reflectance + noise)).abs().sum()


def illumination_loss(illumination: torch.Tensor, priors: ImagePriors) -> torch.Tensor:
    """Edge-aware smoothness of ``illumination`` ``(B, 1, H, W)`` plus closeness to max_c I."""
    grad_h, grad_w = gradient(illumination)
    smoothness = (priors.weight_h * grad_h).sum() + (priors.weight_w * grad_w).sum()
    return smoothness + (illumination - priors.max_channel).abs().sum()


def reflectance_loss(
    image: torch.Tensor,
    illumination: torch.Tensor,
    reflectance: torch.Tensor,
    priors: ImagePriors,
    fidelity_weight: float,
) -> torch.Tensor:
    """Weighted smoothness of ``reflectance`` ``(B, 3, H, W)`` plus ``‖I / L − R‖₁``.

    The weight depends on ``illumination`` and is *not* detached: the reference's ``.detach()``
    result is discarded, so gradients flow through it and paper mode keeps that.
    """
    weight = normalize01(1.0 / (illumination * priors.gray_gradient_product + _EPSILON))
    grad_h, grad_w = gradient(reflectance)
    smoothness = (weight * grad_h).sum() + (weight * grad_w).sum()
    return smoothness + fidelity_weight * (image / illumination - reflectance).abs().sum()


def noise_loss(illumination: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``‖L·N‖₂`` (not squared); illumination ``(B, 1, H, W)``, noise ``(B, 3, H, W)``."""
    return (illumination * noise).square().sum().sqrt()
