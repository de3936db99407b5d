"""Enhance one image tensor: fit RRDNet to it, then brighten the illumination and recombine."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from . import filters, losses, runtime, tiling, weights
from .config import Config
from .errors import InputError, OptimisationError
from .model import RRDNet
from .optimiser import Adam
from .result import Enhancement, LossRow, from_maps
from .runtime import resolve_device

# gradient() differences pixels 4 apart along each axis.
MIN_SIDE = 5

StepCallback = Callable[[int, float], None]


def check_image(image: torch.Tensor) -> None:
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise InputError(f"expected an image tensor of shape (1, 3, H, W), got {tuple(image.shape)}")
    height, width = image.shape[2:]
    if height < MIN_SIDE or width < MIN_SIDE:
        raise InputError(f"image is {width}x{height} pixels; RRDNet needs at least {MIN_SIDE}x{MIN_SIDE}")


Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def loss_terms(
    image: torch.Tensor,
    outputs: Outputs,
    priors: losses.ImagePriors,
    config: Config,
    noise_scale: float = 1.0,
) -> LossRow:
    """The four unweighted terms and the weighted total.

    ``noise_scale`` multiplies the noise weight: the noise term is an L2 norm (it grows with the
    square root of the pixel count, the others linearly), so a loss over fewer pixels than the
    image needs it scaled by ``sqrt(pixels seen / image pixels)`` to keep the paper's balance.
    """
    illumination, reflectance, noise = outputs
    reconstruction = losses.reconstruction_loss(image, illumination, reflectance, noise)
    illumination_term = losses.illumination_loss(illumination, priors)
    reflectance_term = losses.reflectance_loss(
        image, illumination, reflectance, priors, config.reflectance_fidelity_weight
    )
    if config.fits_noise:
        noise_term = losses.noise_loss(illumination, noise)
    else:
        # N is held at zero, so is its term (whose square root has no gradient at zero).
        noise_term = torch.zeros((), device=image.device)
    total = (
        reconstruction
        + config.illumination_weight * illumination_term
        + config.reflectance_weight * reflectance_term
        + config.noise_weight * noise_scale * noise_term
    )
    return LossRow(reconstruction, illumination_term, reflectance_term, noise_term, total)


def use_bf16(config: Config, device: torch.device) -> bool:
    """Whether the optimisation runs the network under bf16 autocast."""
    if config.precision == "auto":
        return runtime.bf16_is_fast(device)
    return config.precision == "bf16"


def _autocast(device: torch.device, bf16: bool):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@dataclass(frozen=True)
class FrozenFeatures:
    """Every fitted branch's activations after its first ``layers`` convolutions, which the fit
    leaves at their starting weights (``config.frozen_layers``): computed once per image seen, so
    no step runs or differentiates those layers."""

    image: torch.Tensor
    layers: int
    features: tuple[torch.Tensor, ...]

    @classmethod
    def of(cls, net: RRDNet, image: torch.Tensor, layers: int, bf16: bool, noise: bool) -> FrozenFeatures:
        with torch.no_grad(), _autocast(image.device, bf16):
            return cls(image, layers, net.features(image, layers, noise=noise))


def run_network(
    net: RRDNet, image: torch.Tensor, bf16: bool, noise: bool = True, frozen: Optional[FrozenFeatures] = None
) -> Outputs:
    """The three maps of ``net`` on ``image``; without ``noise`` the noise branch is not run and N
    is a zero scalar (it broadcasts wherever the losses use it). With ``frozen`` (computed for this
    image) the branches start from those features."""
    with _autocast(image.device, bf16):
        if frozen is None:
            outputs = net.maps(image, noise=noise)
        else:
            outputs = net.maps(image, noise=noise, features=frozen.features, layers_done=frozen.layers)
    # The losses stay in fp32: sums over many pixels would lose their small changes in bf16.
    outputs = tuple(output.float() for output in outputs)
    if not noise:
        outputs = (*outputs, torch.zeros((), device=image.device))
    return outputs  # type: ignore[return-value]


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """The layout ``x`` ``(B, C, H, W)`` is in, for the copies cut from it to keep."""
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def downscale(image: torch.Tensor, longer_side: int) -> torch.Tensor:
    """``image`` ``(1, C, H, W)`` resized (antialiased) so its longer side is ``longer_side``.

    Returned unchanged when it is already no larger.
    """
    height, width = image.shape[-2:]
    if longer_side == 0 or max(height, width) <= longer_side:
        return image
    scale = longer_side / max(height, width)
    size = (max(MIN_SIDE, round(height * scale)), max(MIN_SIDE, round(width * scale)))
    smaller = torch.nn.functional.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
    return smaller.clamp(0.0, 1.0).contiguous(memory_format=memory_format_of(image))


class CropSampler:
    """Random square crops of an image and of its priors, from a seeded generator.

    All crops of a step are stacked into one batch ``(crops, C, side, side)``. Positions come
    from a CPU generator seeded by ``config.seed``, so a run is reproducible on any device.
    """

    def __init__(self, image: torch.Tensor, priors: losses.ImagePriors, size: int, count: int, seed: int) -> None:
        self.image, self.priors, self.count = image, priors, count
        height, width = image.shape[-2:]
        self.height, self.width = min(size, height), min(size, width)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    @property
    def pixels(self) -> int:
        return self.count * self.height * self.width

    def sample(self) -> tuple[torch.Tensor, losses.ImagePriors]:
        rows = torch.randint(0, self.image.shape[-2] - self.height + 1, (self.count,), generator=self.generator)
        columns = torch.randint(0, self.image.shape[-1] - self.width + 1, (self.count,), generator=self.generator)

        def cut(x: torch.Tensor) -> torch.Tensor:
            return torch.cat(
                [x[..., r : r + self.height, c : c + self.width] for r, c in zip(rows.tolist(), columns.tolist())]
            ).contiguous(memory_format=memory_format_of(self.image))

        return cut(self.image), losses.ImagePriors(*(cut(prior) for prior in self.priors))


def _converged(totals: list[float], window: int, tolerance: float) -> bool:
    """True when the last window's mean loss is within ``tolerance`` (relative) of the one before."""
    if tolerance == 0.0 or len(totals) < 2 * window or len(totals) % window:
        return False
    previous = sum(totals[-2 * window : -window]) / window
    last = sum(totals[-window:]) / window
    return (previous - last) < tolerance * abs(previous)


@dataclass
class Optimisation:
    """What the Adam steps leave behind for the final loss row.

    ``history``: one ``(5,)`` loss row per step; ``seen`` and ``priors``: what the last step saw
    (the image, its downscaled copy or the last crops) with its ``noise_scale``; ``copy``: the
    downscaled copy the fit was made on (the image itself when not downscaled); ``whole_image``:
    the steps saw the image itself in fp32, so the final full-resolution pass is also the final
    loss pass.
    """

    history: list[torch.Tensor]
    steps: int
    seen: torch.Tensor
    priors: losses.ImagePriors
    noise_scale: float
    bf16: bool
    copy: torch.Tensor
    whole_image: bool


def optimise(
    net: RRDNet,
    image: torch.Tensor,
    config: Config,
    on_step: Optional[StepCallback] = None,
) -> Optimisation:
    """Adam steps of ``net`` on ``image`` ``(1, 3, H, W)`` as ``config`` describes."""
    bf16 = use_bf16(config, image.device)
    target = downscale(image, config.optimisation_side)
    whole = target is image
    # The layout the small fit runs fastest in (the caller's image may be in the final pass's).
    layout = runtime.preferred_memory_format(image.device, bf16)
    target = target.contiguous(memory_format=layout)
    net.to_layout(layout)
    priors = losses.image_priors(target, config.blur_size, config.blur_sigma)
    full_pixels = image.shape[-2] * image.shape[-1]
    sampler = None
    if config.strategy == "crops":
        sampler = CropSampler(target, priors, config.crop_size, config.crops_per_step, config.seed)
        seen_pixels = sampler.pixels
    else:
        seen_pixels = target.shape[-2] * target.shape[-1]
    noise_scale = 1.0 if seen_pixels == full_pixels else math.sqrt(seen_pixels / full_pixels)
    cosine = config.learning_rate_schedule == "cosine"
    optimizer = Adam(
        net.parameters_after(config.frozen_layers),
        config.learning_rate,
        cosine_steps=config.iterations if cosine else 0,
    )
    history: list[torch.Tensor] = []
    totals: list[float] = []
    seen, seen_priors = target, priors
    frozen: Optional[FrozenFeatures] = None
    steps = 0
    for step in range(config.iterations):
        if sampler is not None:
            seen, seen_priors = sampler.sample()
        if config.frozen_layers and (frozen is None or frozen.image is not seen):
            frozen = FrozenFeatures.of(net, seen, config.frozen_layers, bf16, config.fits_noise)
        outputs = run_network(net, seen, bf16, noise=config.fits_noise, frozen=frozen)
        terms = loss_terms(seen, outputs, seen_priors, config, noise_scale)
        total_value = terms.total.item()
        if not math.isfinite(total_value):
            raise OptimisationError(f"the loss became {total_value} at step {step}")
        history.append(terms.stack().detach())
        totals.append(total_value)
        optimizer.zero_grad()
        terms.total.backward()
        optimizer.step()
        steps = step + 1
        if on_step is not None:
            on_step(steps, total_value)
        if _converged(totals, config.convergence_window, config.convergence_tolerance):
            break
    whole_image = sampler is None and whole and not bf16
    copy = image if whole else target
    return Optimisation(history, steps, seen, seen_priors, noise_scale, bf16, copy, whole_image)


def final_loss_row(
    net: RRDNet,
    fitted: Optimisation,
    image: torch.Tensor,
    outputs: tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor],
    config: Config,
) -> LossRow:
    """The loss row after the last step, on what the optimisation last saw."""
    with torch.no_grad():
        if fitted.whole_image:
            # Paper mode: the final row is the loss of the final pass itself, as in the reference
            # (whose final pass always computes the reflectance).
            illumination, reflectance, noise = outputs
            assert reflectance is not None
            return loss_terms(image, (illumination, reflectance, noise), fitted.priors, config)
        outputs_seen = run_network(net, fitted.seen, fitted.bf16, noise=config.fits_noise)
        return loss_terms(fitted.seen, outputs_seen, fitted.priors, config, fitted.noise_scale)


def downscale_to_pixels(image: torch.Tensor, pixels: int) -> torch.Tensor:
    """``image`` ``(1, C, H, W)`` resized (antialiased) to at most ``pixels`` pixels, its aspect
    kept; returned unchanged when it has no more (or ``pixels`` is 0)."""
    height, width = image.shape[-2:]
    if pixels == 0 or height * width <= pixels:
        return image
    return downscale(image, math.floor(max(height, width) * math.sqrt(pixels / (height * width))))


# The guided upsampling of the illumination works in stops (log2), where a shadow's edge is a step
# of the same size whatever the light, guided by the photo's brightest channel (which the
# illumination follows: its loss pulls it there). GUIDE_RADIUS is in pixels of the reduced copy;
# a step of the guide much larger than GUIDE_EDGE_STOPS is kept as an edge, smaller ones follow the
# reduced illumination. GUIDE_FLOOR keeps black pixels' logarithm finite (half an 8-bit step).
GUIDE_RADIUS = 2
GUIDE_EDGE_STOPS = 0.03
GUIDE_FLOOR = 0.5 / 255.0


def carry_illumination(illumination: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """The illumination ``(1, 1, h, w)`` computed on a reduced copy of ``image`` ``(1, 3, H, W)``,
    carried to ``(1, 1, H, W)`` by a fast guided filter guided by ``image``.

    The filter fits, in every window of the reduced copy, the illumination (in stops) as a linear
    function of the guide (the brightest channel, in stops) and applies those coefficients at full
    size: the illumination's edges land on the photo's edges instead of being blurred across them.
    The result stays within the reduced illumination's range.
    """
    height, width = image.shape[-2:]
    scale = max(1, math.floor(min(height / illumination.shape[-2], width / illumination.shape[-1])))
    guide = image.amax(dim=1, keepdim=True).add_(GUIDE_FLOOR).log2_()
    stops = F.interpolate(torch.log2(illumination), size=(height, width), mode="bilinear", align_corners=False)
    size = 2 * GUIDE_RADIUS * scale + 1
    carried = filters.guided_filter(guide, stops, size, GUIDE_EDGE_STOPS**2, subsample=scale)
    del guide, stops  # full-size maps: a 12 MP photo's are 48 MB each
    return carried.exp2_().clamp_(illumination.min(), illumination.max())


def final_pass_copy(image: torch.Tensor, config: Config, fitted_copy: torch.Tensor) -> torch.Tensor:
    """What the final pass runs the illumination branch on: ``image`` ``(1, 3, H, W)`` itself, or a
    reduced copy whose illumination ``carry_illumination`` takes to full size.

    A copy of at most ``final_pass_pixels``; with ``final_pass: auto`` and the local light, the
    fit's own downscaled copy (``fitted_copy``, ``Optimisation.copy``), where smaller: that
    rendering takes the fitted light in stops at a quarter of its weight, over an edge-aware light
    map of the photo itself, so the network's full-size detail barely reaches the picture, and its
    pass would cost a third of the photo.
    """
    if config.final_pass == "auto" and config.light_follows_scene:
        if config.final_pass_pixels == 0 or fitted_copy.shape[-2] * fitted_copy.shape[-1] <= config.final_pass_pixels:
            return fitted_copy
    return downscale_to_pixels(image, config.final_pass_pixels)


def decompose(
    net: RRDNet,
    image: torch.Tensor,
    tile_size: int,
    reflectance: bool = True,
    noise: bool = True,
    reduced: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """The fitted network's illumination, reflectance and noise for ``image``, in fp32.

    Tiled when ``tile_size`` > 0, with the receptive-field radius as overlap: equal to the
    untiled pass (up to float rounding), while memory stays bounded for any image size. A branch
    not asked for is not run: no ``reflectance``, ``None`` in its place; no ``noise``, zeros.
    With a ``reduced`` copy of the image (``final_pass_copy``), the illumination is computed on it
    and carried to full size by ``carry_illumination`` (the network's cost is per pixel, the
    upsampling's a few operations a pixel); reflectance and noise, where asked, are still the
    network's at full size (they hold the photo's fine detail).
    """
    margin = RRDNet.receptive_field // 2
    smaller = image if reduced is None else reduced

    def run(x: torch.Tensor, reflectance: bool, noise: bool, illumination: bool = True) -> list[torch.Tensor]:
        def network(window: torch.Tensor) -> tuple[torch.Tensor, ...]:
            window = window.contiguous(memory_format=torch.channels_last)
            return net.maps(window, reflectance=reflectance, noise=noise, illumination=illumination)

        return list(tiling.forward_tiled(network, x, tile_size, margin))

    with torch.no_grad():
        if smaller is image:
            maps = run(image, reflectance=reflectance, noise=noise)
            illumination = maps.pop(0)
        else:
            illumination = carry_illumination(run(smaller, reflectance=False, noise=False)[0], image)
            maps = run(image, reflectance=reflectance, noise=noise, illumination=False) if reflectance or noise else []
    reflectance_map = maps.pop(0) if reflectance else None
    # A noise map held at zero is one zero expanded to the image's shape: a full-size map of zeros
    # would be 137 MB more at a 12 MP photo's peak.
    noise_map = maps.pop(0) if noise else image.new_zeros(()).expand_as(image)
    return illumination, reflectance_map, noise_map


def fit(
    net: RRDNet,
    image: torch.Tensor,
    config: Config,
    on_step: Optional[StepCallback] = None,
    reflectance: bool = True,
) -> tuple[np.ndarray, tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor], int]:
    """Optimise ``net`` on ``image``, then decompose the full-resolution image.

    Returns the loss history ``(steps + 1, 5)``, the final pass (illumination, reflectance,
    noise) and the number of Adam steps run. Without ``reflectance`` the final pass skips that
    branch (``None``) unless the final loss row needs it (paper mode).
    """
    fitted = optimise(net, image, config, on_step)
    # The final pass runs fastest in channels_last on every CPU measured, AVX2 included, where the
    # plain layout suits the small fit better (runtime.preferred_memory_format); decompose hands it
    # each tile in that layout.
    net.to_layout(torch.channels_last)
    outputs = decompose(
        net,
        image,
        config.tile_size,
        reflectance or fitted.whole_image,
        config.fits_noise,
        final_pass_copy(image, config, fitted.copy),
    )
    final = final_loss_row(net, fitted, image, outputs, config)
    if not torch.isfinite(final.total):
        raise OptimisationError(f"the loss became {final.total.item()} at step {fitted.steps}")
    history = torch.stack([*fitted.history, final.stack()])
    return history.double().cpu().numpy(), outputs, fitted.steps


def start_illumination_at_image_level(net: RRDNet, image: torch.Tensor) -> None:
    """Set the illumination branch's last bias so that L starts near the mean of ``max_c I``.

    A fresh network outputs L ~ sigmoid(0) = 0.5 everywhere, while the loss pulls L towards the
    channel maximum, which in a dark photo is ~0.03-0.1: most of the early steps are spent only
    moving that one level. Starting there (the weights are the seed's; only this bias changes)
    leaves the steps for the spatial structure.
    """
    level = image.amax(dim=1).mean().clamp(0.01, 0.99)
    last = net.illumination_net[-1]
    assert isinstance(last, torch.nn.Conv2d) and last.bias is not None
    with torch.no_grad():
        last.bias.fill_(torch.logit(level).item())


def seeded_network(seed: int) -> RRDNet:
    """A fresh RRDNet whose initial weights are drawn from ``seed``.

    Drawn inside a fork of the CPU generator, so the caller's global RNG state is left exactly as
    it was (a library must not reseed its caller's process); the weights are those that
    ``torch.manual_seed(seed); RRDNet()`` gives.
    """
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return RRDNet()


def initial_network(config: Config, image: torch.Tensor) -> RRDNet:
    """The network a fit of ``image`` starts from, as ``config`` says."""
    if config.initial_weights == "learned":
        # No bias set here: the learned weights start L at about 0.21 whatever the photo, and moving
        # it to the photo's channel maximum (as for the random start) took the fits further from
        # paper's (a one-off check on nine photos: 30.5 against 39.8 dB mean).
        return weights.learned_network()
    net = seeded_network(config.seed)
    if config.initial_illumination == "image":
        start_illumination_at_image_level(net, image)
    return net


def enhance(
    image: torch.Tensor,
    config: Config,
    *,
    net: Optional[RRDNet] = None,
    on_step: Optional[StepCallback] = None,
    reflectance: bool = True,
) -> Enhancement:
    """Enhance ``image`` ``(1, 3, H, W)`` float in [0, 1].

    ``net`` (optional) supplies the initial weights, e.g. the reference's; otherwise they are drawn
    from ``config.seed``. ``on_step(step, total_loss)`` is called after every Adam step.
    ``reflectance=False`` skips what the result does not use: the reflectance map at full
    resolution (a third of the final pass) and what the denoising removed (a second rendering);
    ``Enhancement.reflectance`` and ``Enhancement.removed`` may then be ``None``.
    Leaves the process as it found it: global RNG state, allocator and thread settings untouched
    (``runtime.tune_allocator`` is the caller's choice; the CLI makes it).
    """
    check_image(image)
    device = resolve_device(config.device)
    if net is None:
        net = initial_network(config, image)
    net = net.to(device=device)
    # Layouts are chosen where the work is: optimise takes its small copy in the one the fit runs
    # fastest in, and the final pass each tile in channels_last.
    image = image.to(device=device, dtype=torch.float32)
    history, (illumination, reflectance_map, noise), steps = fit(net, image, config, on_step, reflectance)
    # Recombine on the CPU from the maps exactly as they are returned (and saved by
    # --save-decomposition): a relight from a saved decomposition then gives this very result,
    # whatever device the fit ran on.
    image, illumination = (x.cpu().contiguous() for x in (image, illumination))
    if noise.stride() == (0,) * noise.dim():  # the zero map of a fit without noise: kept expanded
        noise = torch.zeros((), dtype=noise.dtype).expand(noise.shape)
    else:
        noise = noise.cpu().contiguous()
    if reflectance_map is not None:
        reflectance_map = reflectance_map.cpu().contiguous()
    return from_maps(
        image,
        illumination,
        reflectance_map,
        noise,
        history,
        config.gamma,
        config.brightness,
        steps,
        gamma_floor=config.gamma_floor,
        denoise=config.denoise,
        tone_mapping=config.tone_mapping,
        removed=reflectance,
    )
