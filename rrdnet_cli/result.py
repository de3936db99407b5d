"""What an enhancement gives back: the result, the decomposition behind it, its losses and light.

Its own module so that the modules that only read results (``sheet``, ``decomposition``, ``batch``)
need not import the optimiser to get the type, and so that ``enhance`` and ``relight`` turn maps
into a result through one function, ``from_maps``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import torch

from .denoise import denoise_signal, signal_noise_level, strength_of
from .errors import UsageError
from .light import (
    GAMMA_MIN,
    LightChoice,
    choose_light,
    choose_local_light,
    mean_brightness,
    render_choice,
    render_local,
)
from .scene import analyse_rows

# The mean brightness that gamma "auto" aims for with one light over the whole photo when the
# config's brightness is "auto" (the local light meters the scene instead).
GLOBAL_AUTO_BRIGHTNESS = 0.4


class LossRow(NamedTuple):
    """The loss of one forward pass: the four unweighted terms and the weighted total.

    Each field is a 0-dimensional tensor; ``stack()`` gives the ``(5,)`` row stored in a history,
    whose columns are ``LOSS_COLUMNS``.
    """

    reconstruction: torch.Tensor
    illumination: torch.Tensor
    reflectance: torch.Tensor
    noise: torch.Tensor
    total: torch.Tensor

    def stack(self) -> torch.Tensor:
        return torch.stack(list(self))


LOSS_COLUMNS = LossRow._fields


@dataclass(frozen=True)
class Enhancement:
    """The enhanced image and the decomposition behind it, all on the CPU.

    ``image`` (the input), ``result``, ``reflectance``, ``noise``: ``(1, 3, H, W)`` float32;
    ``illumination`` and ``adjusted_illumination``: ``(1, 1, H, W)``; ``reflectance`` is ``None``
    when the enhancement was asked not to compute it (``pipeline.enhance(reflectance=False)``).
    ``removed``: ``(1, 3, H, W)``, what the denoising took out of the result (the result rendered
    without it minus ``result``; zeros when denoising is off), or ``None`` when the enhancement was
    asked not to compute it (a second rendering that only maps and sheets show). ``losses``: ``(steps + 1, 5)``
    float64, row k the loss terms (unweighted, columns ``LOSS_COLUMNS``) at the forward pass after
    k Adam steps, on what the optimisation saw (the whole image in paper mode; the step's crops or
    the downscaled copy in the fast modes). ``light``: the gamma used, the result's mean
    brightness and, for gamma "auto", the exposure gain, the target and whether it was reached.
    ``steps``: Adam steps actually run (a convergence stop may end early; 0 for a relight).
    """

    image: torch.Tensor
    result: torch.Tensor
    illumination: torch.Tensor
    adjusted_illumination: torch.Tensor
    reflectance: Optional[torch.Tensor]
    noise: torch.Tensor
    losses: np.ndarray
    light: LightChoice
    removed: Optional[torch.Tensor]
    steps: int = 0

    def reflectance_for(self, purpose: str) -> torch.Tensor:
        """The reflectance, which ``purpose`` (e.g. "a contact sheet") needs: a ``UsageError`` when
        this enhancement skipped it (``pipeline.enhance(reflectance=False)``)."""
        if self.reflectance is None:
            raise UsageError(f"{purpose} needs the reflectance map, which this enhancement skipped (reflectance=False)")
        return self.reflectance

    def removed_for(self, purpose: str) -> torch.Tensor:
        """What the denoising removed, which ``purpose`` needs: a ``UsageError`` when this
        enhancement skipped it (``pipeline.enhance(reflectance=False)``)."""
        if self.removed is None:
            raise UsageError(f"{purpose} needs what the denoising removed, which this enhancement skipped")
        return self.removed

    @property
    def gamma(self) -> float:
        return self.light.gamma

    @property
    def brightness(self) -> float:
        return self.light.brightness

    @property
    def target_brightness(self) -> Optional[float]:
        return self.light.target


def from_maps(
    image: torch.Tensor,
    illumination: torch.Tensor,
    reflectance: Optional[torch.Tensor],
    noise: torch.Tensor,
    losses: np.ndarray,
    gamma: float | str,
    brightness: Optional[float | str],
    steps: int = 0,
    *,
    gamma_floor: float = GAMMA_MIN,
    denoise: float | str = "off",
    tone_mapping: str = "global",
    removed: bool = True,
) -> Enhancement:
    """Choose the light for a decomposition and render the result; shapes as in ``Enhancement``.

    ``gamma``, ``brightness`` and ``gamma_floor`` as in ``light.choose_light``; ``denoise`` as the
    config key (``"auto"``, ``"off"`` or a strength). With ``tone_mapping`` ``"local"`` a gamma
    ``"auto"`` lets the light follow the scene (``light.render_local``) and ``brightness`` may be
    ``"auto"`` (metered on the scene); a fixed gamma always renders as the paper. The one path from
    maps to a result, shared by ``enhance`` and ``relight``, so a relight with a run's settings
    gives that run's bytes. Without ``removed`` the rendering without denoising that
    ``Enhancement.removed`` needs is skipped.
    """
    strength = strength_of(denoise)
    if gamma == "auto" and tone_mapping == "local":
        return _from_maps_local(image, illumination, reflectance, noise, losses, brightness, steps, strength, removed)
    target = GLOBAL_AUTO_BRIGHTNESS if isinstance(brightness, str) else brightness
    denoised = None if strength is None else denoise_signal(image, noise, strength)
    choice = choose_light(image, illumination, noise, gamma, target, gamma_floor, denoised)
    result, adjusted = render_choice(image, illumination, noise, choice, denoised)
    taken: Optional[torch.Tensor] = None
    if removed:
        taken = (
            torch.zeros_like(result)
            if denoised is None
            else render_choice(image, illumination, noise, choice)[0] - result
        )
    return _enhancement(image, result, illumination, adjusted, reflectance, noise, losses, choice, taken, steps)


def _from_maps_local(
    image: torch.Tensor,
    illumination: torch.Tensor,
    reflectance: Optional[torch.Tensor],
    noise: torch.Tensor,
    losses: np.ndarray,
    brightness: Optional[float | str],
    steps: int,
    strength: Optional[float],
    removed: bool,
) -> Enhancement:
    """``from_maps`` with the light following the scene; the adjusted illumination is the light
    after the tone curve."""
    level = signal_noise_level(image, noise)
    denoised = None if strength is None else denoise_signal(image, noise, strength, level)

    def signal_rows(top: int, bottom: int) -> torch.Tensor:
        return (image[..., top:bottom, :] - noise[..., top:bottom, :]).clamp(0.0, 1.0)

    # The signal I − N is handed to the analysis a band at a time: a full-size copy would be one
    # more 3-channel array at the peak of a large photo's memory.
    scene = analyse_rows(signal_rows, level, illumination)
    choice = choose_local_light(image, noise, scene, "auto" if brightness is None else brightness, denoised)
    assert choice.key is not None
    result, adjusted = render_local(image, noise, scene, choice.key, denoised, choice.exposure, choice.boost)
    taken: Optional[torch.Tensor] = None
    if removed:
        taken = (
            torch.zeros_like(result)
            if denoised is None
            else render_local(image, noise, scene, choice.key, exposure=choice.exposure, boost=choice.boost)[0] - result
        )
    return _enhancement(image, result, illumination, adjusted, reflectance, noise, losses, choice, taken, steps)


def _enhancement(
    image: torch.Tensor,
    result: torch.Tensor,
    illumination: torch.Tensor,
    adjusted: torch.Tensor,
    reflectance: Optional[torch.Tensor],
    noise: torch.Tensor,
    losses: np.ndarray,
    choice: LightChoice,
    removed: Optional[torch.Tensor],
    steps: int,
) -> Enhancement:
    # The search measured a grid of pixels (light.SEARCH_PIXELS), or nothing for the automatic
    # local light: report the whole result's.
    choice = dataclasses.replace(choice, brightness=mean_brightness(result))
    return Enhancement(
        image=image,
        result=result,
        illumination=illumination,
        adjusted_illumination=adjusted,
        reflectance=reflectance,
        noise=noise,
        losses=losses,
        light=choice,
        removed=removed,
        steps=steps,
    )
