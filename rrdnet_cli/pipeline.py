"""Enhance one image tensor: fit RRDNet to it, then brighten the illumination and recombine."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from . import losses
from .config import Config
from .errors import InputError, OptimisationError, UsageError
from .model import RRDNet

LOSS_COLUMNS = ("reconstruction", "illumination", "reflectance", "noise", "total")
# gradient() differences pixels 4 apart along each axis.
MIN_SIDE = 5

StepCallback = Callable[[int, float], None]


@dataclass
class Enhancement:
    """The enhanced image and the decomposition behind it, all on the CPU.

    ``result``, ``reflectance``, ``noise``: ``(1, 3, H, W)``; ``illumination`` and
    ``adjusted_illumination``: ``(1, 1, H, W)``. ``losses``: ``(steps + 1, 5)`` float64, row k the
    loss terms (unweighted, columns ``LOSS_COLUMNS``) at the forward pass after k Adam steps.
    ``gamma``: the exponent used (chosen per image when the config says "auto");
    ``image``: the input ``(1, 3, H, W)`` float32; ``brightness``: the result's mean;
    ``target_brightness``: what gamma "auto" aimed for (``None`` for a fixed gamma).
    """

    result: torch.Tensor
    illumination: torch.Tensor
    adjusted_illumination: torch.Tensor
    reflectance: torch.Tensor
    noise: torch.Tensor
    losses: np.ndarray
    gamma: float
    image: Optional[torch.Tensor] = None
    brightness: Optional[float] = None
    target_brightness: Optional[float] = None


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit CUDA request never falls back to the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if not match:
        raise UsageError(f"device '{name}': expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UsageError(f"device '{name}': CUDA is not available on this machine")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise UsageError(f"device '{name}': only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device(name)


def check_image(image: torch.Tensor) -> None:
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise InputError(f"expected an image tensor of shape (1, 3, H, W), got {tuple(image.shape)}")
    height, width = image.shape[2:]
    if height < MIN_SIDE or width < MIN_SIDE:
        raise InputError(
            f"image is {width}x{height} pixels; RRDNet needs at least {MIN_SIDE}x{MIN_SIDE}"
        )


def loss_terms(
    image: torch.Tensor,
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    priors: losses.ImagePriors,
    config: Config,
) -> torch.Tensor:
    """The four unweighted terms and the weighted total, as a ``(5,)`` tensor."""
    illumination, reflectance, noise = outputs
    reconstruction = losses.reconstruction_loss(image, illumination, reflectance, noise)
    illumination_term = losses.illumination_loss(illumination, priors)
    reflectance_term = losses.reflectance_loss(
        image, illumination, reflectance, priors, config.reflectance_fidelity_weight
    )
    noise_term = losses.noise_loss(illumination, noise)
    total = (
        reconstruction
        + config.illumination_weight * illumination_term
        + config.reflectance_weight * reflectance_term
        + config.noise_weight * noise_term
    )
    return torch.stack([reconstruction, illumination_term, reflectance_term, noise_term, total])


def fit(
    net: RRDNet,
    image: torch.Tensor,
    config: Config,
    on_step: Optional[StepCallback] = None,
) -> tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Run ``config.iterations`` Adam steps of ``net`` on ``image``.

    Returns the loss history and the final forward pass (illumination, reflectance, noise).
    """
    priors = losses.image_priors(image, config.blur_size, config.blur_sigma)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    history = []
    for step in range(config.iterations):
        terms = loss_terms(image, net(image), priors, config)
        total = terms[4]
        if not torch.isfinite(total):
            raise OptimisationError(f"the loss became {total.item()} at step {step}")
        history.append(terms.detach())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if on_step is not None:
            on_step(step + 1, total.item())
    with torch.no_grad():
        outputs = net(image)
        terms = loss_terms(image, outputs, priors, config)
    if not torch.isfinite(terms[4]):
        raise OptimisationError(f"the loss became {terms[4].item()} at step {config.iterations}")
    history.append(terms)
    return torch.stack(history).double().cpu().numpy(), outputs


def recombine(
    image: torch.Tensor, illumination: torch.Tensor, noise: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``clamp(L^gamma · (I − N) / L, 0, 1)`` and ``L^gamma``; shapes as in ``Enhancement``."""
    adjusted = illumination.pow(gamma)
    result = (adjusted * (image - noise) / illumination).clamp(0.0, 1.0)
    return result, adjusted


def enhance(
    image: torch.Tensor,
    config: Config,
    *,
    net: Optional[RRDNet] = None,
    on_step: Optional[StepCallback] = None,
) -> Enhancement:
    """Enhance ``image`` ``(1, 3, H, W)`` float in [0, 1].

    ``net`` (optional) supplies the initial weights, e.g. the reference's; otherwise they are drawn
    from ``config.seed``. ``on_step(step, total_loss)`` is called after every Adam step.
    """
    check_image(image)
    device = resolve_device(config.device)
    if net is None:
        torch.manual_seed(config.seed)
        net = RRDNet()
    net = net.to(device)
    image = image.to(device=device, dtype=torch.float32)
    history, outputs = fit(net, image, config, on_step)
    # Recombine on the CPU from the maps exactly as they are returned (and saved by
    # --save-decomposition): a relight from a saved decomposition then gives this very result,
    # whatever device the fit ran on. Imported here: light builds on recombine below.
    from .light import choose_light, render

    image, illumination, reflectance, noise = (x.cpu().contiguous() for x in (image, *outputs))
    choice = choose_light(image, illumination, noise, config.gamma, config.brightness)
    result, adjusted = render(image, illumination, noise, choice.gamma)
    return Enhancement(
        result=result,
        illumination=illumination,
        adjusted_illumination=adjusted,
        reflectance=reflectance,
        noise=noise,
        losses=history,
        gamma=choice.gamma,
        image=image,
        brightness=choice.brightness,
        target_brightness=choice.target,
    )
