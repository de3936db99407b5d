"""What an enhancement gives back: the result, the decomposition behind it, its losses and light.

Its own module so that the modules that only read results (``sheet``, ``decomposition``, ``batch``)
need not import the optimiser to get the type, and so that ``enhance`` and ``relight`` turn maps
into a result through one function, ``from_maps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import torch

from .light import LightChoice, choose_light, render


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
    ``illumination`` and ``adjusted_illumination``: ``(1, 1, H, W)``. ``losses``: ``(steps + 1, 5)``
    float64, row k the loss terms (unweighted, columns ``LOSS_COLUMNS``) at the forward pass after
    k Adam steps, on what the optimisation saw (the whole image in paper mode; the step's crops or
    the downscaled copy in the fast modes). ``light``: the gamma used, the result's mean
    brightness and, for gamma "auto", the target and whether it was reached. ``steps``: Adam steps
    actually run (a convergence stop may end early; 0 for a relight).
    """

    image: torch.Tensor
    result: torch.Tensor
    illumination: torch.Tensor
    adjusted_illumination: torch.Tensor
    reflectance: torch.Tensor
    noise: torch.Tensor
    losses: np.ndarray
    light: LightChoice
    steps: int = 0

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
    reflectance: torch.Tensor,
    noise: torch.Tensor,
    losses: np.ndarray,
    gamma: float | str,
    brightness: Optional[float],
    steps: int = 0,
) -> Enhancement:
    """Choose the light for a decomposition and render the result; shapes as in ``Enhancement``.

    ``gamma`` and ``brightness`` as in ``light.choose_light``. The one path from maps to a result,
    shared by ``enhance`` and ``relight``, so a relight with a run's gamma gives that run's bytes.
    """
    choice = choose_light(image, illumination, noise, gamma, brightness)
    result, adjusted = render(image, illumination, noise, choice.gamma)
    return Enhancement(
        image=image,
        result=result,
        illumination=illumination,
        adjusted_illumination=adjusted,
        reflectance=reflectance,
        noise=noise,
        losses=losses,
        light=choice,
        steps=steps,
    )
