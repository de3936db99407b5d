"""The light level of a result: choosing gamma for a target brightness, and rendering a result.

RRDNet's decomposition is fixed once fitted; only the recombination
``clamp(L^gamma · (I − N) / L, 0, 1)`` depends on gamma. So picking the gamma that gives a
wanted mean brightness needs no new optimisation, only a few dozen recombinations (milliseconds).

The mean brightness of the result never increases with gamma: L lies in (0, 1), so ``L^(gamma-1)``
shrinks as gamma grows, for every pixel, and clamping keeps that order. A bisection on log gamma
therefore finds the gamma for any target between the darkest and brightest reachable results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .errors import UsageError

# The range searched for gamma when it is chosen for a target brightness. Up to 1: a chosen gamma
# never renders a photo darker than its own (denoised) exposure, since this is a brightening tool.
# Down to 0.1: below, the illumination is flattened to nearly 1, shading disappears and noise in
# the darkest areas is amplified, and NIQE on the real benchmark photos got worse. Higher floors
# cost PSNR on the synthetic pairs with no NIQE gain (figures: README, "Benchmarks";
# benchmarks/quality.py --floors).
# A fixed --gamma may be any positive number.
GAMMA_MIN = 0.1
GAMMA_MAX = 1.0
# Bisection stops when the mean brightness is this close to the target (well inside
# REACHED_TOLERANCE) or after BISECTION_STEPS halvings of the log-gamma interval (2^-40 of it).
BRIGHTNESS_TOLERANCE = 1e-4
BISECTION_STEPS = 40
# A target counts as reached when the result's mean brightness is this close to it: about the
# smallest difference in mean brightness that people notice.
REACHED_TOLERANCE = 0.01


@dataclass(frozen=True)
class LightChoice:
    """The gamma used for one image and the mean brightness it gives.

    ``target`` is ``None`` when gamma was fixed rather than chosen. When the target lies outside
    what any gamma in the searched range can give, ``gamma`` is the end of that range that comes
    closest and ``reached`` is False: the single place that decides "out of reach".
    """

    gamma: float
    brightness: float
    target: Optional[float] = None

    @property
    def reached(self) -> bool:
        """Whether the brightness is within ``REACHED_TOLERANCE`` of the target (True without one)."""
        return self.target is None or abs(self.brightness - self.target) <= REACHED_TOLERANCE

    def describe(self) -> str:
        """``gamma 0.412, brightness 0.400``, plus ``, target 0.500 out of reach`` when missed."""
        text = f"gamma {self.gamma:.3g}, brightness {self.brightness:.3f}"
        if not self.reached:
            text += f", target {self.target:.3f} out of reach"
        return text


def mean_brightness(image: torch.Tensor) -> float:
    """Mean of all channels and pixels of ``image`` ``(1, 3, H, W)`` (or any shape), in float64.

    Summed in float64 on a contiguous copy, so the value does not depend on memory layout or
    device: a relight and an enhance then choose exactly the same gamma.
    """
    return image.detach().contiguous().double().mean().item()


def recombine(
    image: torch.Tensor, illumination: torch.Tensor, noise: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``clamp(L^gamma · (I − N) / L, 0, 1)`` and ``L^gamma``.

    ``image`` and ``noise``: ``(1, 3, H, W)``; ``illumination``: ``(1, 1, H, W)``.
    """
    adjusted = illumination.pow(gamma)
    result = (adjusted * (image - noise) / illumination).clamp(0.0, 1.0)
    return result, adjusted


def render(
    image: torch.Tensor, illumination: torch.Tensor, noise: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The result ``(1, 3, H, W)`` and adjusted illumination ``(1, 1, H, W)`` for ``gamma``.

    ``image`` and ``noise``: ``(1, 3, H, W)``; ``illumination``: ``(1, 1, H, W)``. The single code
    path shared by ``enhance`` and ``relight``, so both give bit-identical results.
    """
    with torch.no_grad():
        return recombine(image.contiguous(), illumination.contiguous(), noise.contiguous(), gamma)


def brightness_at(
    image: torch.Tensor, illumination: torch.Tensor, noise: torch.Tensor, gamma: float
) -> float:
    """Mean brightness of the result for ``gamma``; shapes as in ``render``."""
    return mean_brightness(render(image, illumination, noise, gamma)[0])


def gamma_for_brightness(
    image: torch.Tensor,
    illumination: torch.Tensor,
    noise: torch.Tensor,
    target: float,
    gamma_range: tuple[float, float] = (GAMMA_MIN, GAMMA_MAX),
) -> LightChoice:
    """The gamma whose result has mean brightness ``target`` (in [0, 1]); shapes as in ``render``.

    Bisects log gamma over ``gamma_range`` (the package's [GAMMA_MIN, GAMMA_MAX] unless a
    benchmark tries another). When the target is out of reach (brighter than the result at the
    lowest gamma, or darker than at the highest: the photo is already brighter) the nearest end is
    returned (``reached`` is then False): best effort, never an error, so one extreme image does not
    fail a batch.
    """
    if not 0.0 <= target <= 1.0:
        raise UsageError(f"brightness {target}: must be between 0 and 1")
    gamma_min, gamma_max = gamma_range
    low, high = math.log(gamma_min), math.log(gamma_max)
    brightest = brightness_at(image, illumination, noise, gamma_min)
    if target >= brightest:
        return LightChoice(gamma_min, brightest, target)
    darkest = brightness_at(image, illumination, noise, gamma_max)
    if target <= darkest:
        return LightChoice(gamma_max, darkest, target)
    # Invariant: brightness(exp(low)) > target > brightness(exp(high)).
    best = LightChoice(gamma_min, brightest, target)
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        gamma = math.exp(middle)
        brightness = brightness_at(image, illumination, noise, gamma)
        if abs(brightness - target) < abs(best.brightness - target):
            best = LightChoice(gamma, brightness, target)
        if abs(brightness - target) <= BRIGHTNESS_TOLERANCE:
            break
        if brightness > target:
            low = middle
        else:
            high = middle
    return best


def choose_light(
    image: torch.Tensor,
    illumination: torch.Tensor,
    noise: torch.Tensor,
    gamma: float | str,
    brightness: Optional[float],
) -> LightChoice:
    """Resolve a config's ``gamma`` (a number or ``"auto"``) for one image; shapes as in ``render``.

    A number is used as it is; ``"auto"`` picks the gamma that brings the mean brightness to
    ``brightness``.
    """
    if gamma == "auto":
        if brightness is None:
            raise UsageError("gamma 'auto' needs a target brightness")
        return gamma_for_brightness(image, illumination, noise, brightness)
    if isinstance(gamma, str):
        raise UsageError(f"gamma '{gamma}': expected a number or 'auto'")
    return LightChoice(float(gamma), brightness_at(image, illumination, noise, float(gamma)))
