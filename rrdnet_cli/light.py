"""The light level of a result: choosing gamma (and an exposure) for a target brightness, and
rendering a result.

RRDNet's decomposition is fixed once fitted; only the recombination
``clamp(L^gamma · (I − N) / L, 0, 1)`` depends on gamma. So picking the gamma that gives a
wanted mean brightness needs no new optimisation, only a few dozen recombinations (milliseconds).

The mean brightness of the result never increases with gamma: L lies in (0, 1), so ``L^(gamma-1)``
shrinks as gamma grows, for every pixel, and clamping keeps that order. A bisection on log gamma
therefore finds the gamma for any target between the darkest and brightest reachable results.

A chosen gamma (gamma "auto") ends with a tone step instead of the clamp:
``roll_off(expose(L^gamma · (I − N) / L, e))``, a smooth highlight roll-off that never reaches 1,
so the highlights that the clamp would flatten to white keep their shading. When even the floor of
the gamma range is too dark for the target, an exposure gain ``e`` > 1 (found by a second
bisection, on log e) brightens further; otherwise ``e`` = 1. The gain is applied in linear light, as
a camera's exposure is (``expose``): an under-exposed photo is its scene times a small factor
*before* the sRGB encoding, so multiplying the encoded values instead lifted the shadows too little,
the highlights too much and the colours of dark areas off their hue. A fixed gamma renders exactly
as the paper: clamp, no gain, no roll-off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import torch

from . import scene as scenes
from .denoise import Denoised
from .errors import UsageError
from .scene import Scene

# The range searched for gamma when it is chosen for a target brightness. Up to 1: a chosen gamma
# never renders a photo darker than its own (denoised) exposure. Down to 0.1 (config key
# gamma_floor raises it): below, the illumination is flattened to nearly 1, shading disappears and
# the darkest areas' noise is amplified (benchmarks/results/quality.json). A fixed --gamma may be
# any positive number.
GAMMA_MIN = 0.1
GAMMA_MAX = 1.0
# Bisection stops when the mean brightness is this close to the target (well inside
# REACHED_TOLERANCE) or after BISECTION_STEPS halvings of the log interval (2^-40 of it).
BRIGHTNESS_TOLERANCE = 1e-4
BISECTION_STEPS = 40
# A target counts as reached when the result's mean brightness is this close to it: about the
# smallest difference in mean brightness that people notice.
REACHED_TOLERANCE = 0.01
# The highlight roll-off of the tone step is the identity up to KNEE; above, it bends towards 1 as
# 1 − 1/sqrt(1 + 2t), so a pixel needs ~1000 times full scale before it rounds to 8-bit white: an
# exponential or hyperbolic roll-off with the same knee clipped bright targets' pixels to white
# (tests/test_light.py holds the clipping to 0.5 %).
KNEE = 0.8
# The largest exposure gain tried (in linear light: 12 stops): a target that needs more is out of
# reach. Brightness 0.8 needs it on the darkest benchmark photos (benchmarks/results/quality.json);
# a full-scale pixel exposed 4096 times is still far from 8-bit white after the roll-off.
EXPOSURE_MAX = 4096.0
# The searches for gamma and exposure measure the brightness on a regular grid of at most this many
# pixels (every pixel of a smaller image): the rendering is per pixel once the denoised signal
# exists, so the grid's mean tracks the whole image's to about 1e-3 on photos, far inside
# REACHED_TOLERANCE, while each of the search's dozens of renders costs a fraction of a full one.
# The brightness reported is always the full result's.
SEARCH_PIXELS = 1 << 16


@dataclass(frozen=True)
class LightChoice:
    """The gamma and exposure gain used for one image and the mean brightness they give.

    ``target`` is ``None`` when gamma was fixed rather than chosen; only a chosen gamma renders with
    the tone step (``tone``). When the target lies outside what the searched range can give,
    ``gamma`` and ``exposure`` are the end of that range that comes closest and ``reached`` is
    False: the single place that decides "out of reach".
    """

    gamma: float
    brightness: float
    target: Optional[float] = None
    exposure: float = 1.0
    # Local light (``scene``): the key, in stops, that the photo's lit content was brought to, and
    # the gain that took it there (the exposure is then a gain on every region alike, 1 unless a
    # brightness was asked for that the tone curve alone cannot reach). None for one light over the
    # whole photo.
    key: Optional[float] = None
    key_gain: float = 1.0
    # Local light only: a last gain on every region alike, for a brightness that the key and the
    # exposure of the dark regions could not reach together.
    boost: float = 1.0

    @property
    def local(self) -> bool:
        """Whether the light follows the scene (a gain per region) rather than one gamma."""
        return self.key is not None

    @property
    def tone(self) -> bool:
        """Whether the result ends with the exposure gain and roll-off (gamma chosen) or the clamp."""
        return self.target is not None

    @property
    def reached(self) -> bool:
        """Whether the brightness is within ``REACHED_TOLERANCE`` of the target (True without one)."""
        return self.target is None or abs(self.brightness - self.target) <= REACHED_TOLERANCE

    def describe(self) -> str:
        """``gamma 0.412, brightness 0.400``, plus ``, exposure 1.8`` when a gain was applied and
        ``, target 0.500 out of reach`` when missed."""
        text = "local light" if self.local else f"gamma {self.gamma:.3g}"
        if self.local:
            text += f", gain {self.key_gain:.3g} at the key"
        if self.boost != 1.0:
            text += f", boost {self.boost:.3g}"
        if self.exposure != 1.0:
            text += f", exposure {self.exposure:.3g}"
        text += f", brightness {self.brightness:.3f}"
        if not self.reached:
            text += f", target {self.target:.3f} out of reach"
        return text


def mean_brightness(image: torch.Tensor) -> float:
    """Mean of all channels and pixels of ``image`` ``(1, 3, H, W)`` (or any shape), in float64.

    Summed in float64 on contiguous copies, so the value does not depend on memory layout or
    device: a relight and an enhance then choose exactly the same gamma. The copies are of bands of
    rows (``scene.row_bands``), so a large photo's result is not copied whole at twice its size.
    """
    image = image.detach()
    if image.dim() < 2:
        return image.contiguous().double().mean().item()
    height, width = image.shape[-2:]
    total = 0.0
    for top, bottom in scenes.row_bands(height, width):
        total += image[..., top:bottom, :].contiguous().double().sum().item()
    # The mean of one band is its float64 sum over its count, as torch computes it.
    return total / image.numel()


def roll_off(values: torch.Tensor, knee: float = KNEE) -> torch.Tensor:
    """The tone curve: ``y`` up to ``knee``, ``knee + (1 − knee) · (1 − 1 / sqrt(1 + 2t))`` above,
    with ``t = (y − knee) / (1 − knee)``; any shape, values >= 0.

    Continuous with a continuous slope (1) at the knee, increasing, and below 1 for every finite
    ``y``: highlights are compressed, never flattened.
    """
    span = 1.0 - knee
    excess = (values - knee).clamp_min(0.0) / span
    return torch.where(values <= knee, values, knee + span * (1.0 - torch.rsqrt(1.0 + 2.0 * excess)))


def expose(values: torch.Tensor, exposure: float) -> torch.Tensor:
    """sRGB-encoded ``values`` ``(1, 3, H, W)`` (>= 0, may exceed 1) brightened ``exposure`` times in
    linear light: decoded, multiplied, encoded again. The identity for ``exposure`` 1."""
    if exposure == 1.0:
        return values
    return scenes.encode_srgb(exposure * scenes.to_linear(values))


def exposure_gain(level: torch.Tensor, exposure: float) -> torch.Tensor:
    """How many times ``expose`` brightens an sRGB value ``level`` ``(1, 1, H, W)`` in (0, 1]: about
    ``exposure ** (1 / 2.4)`` in the mid-tones, more towards black, where the encoding is linear."""
    if exposure == 1.0:
        return torch.ones_like(level)
    level = level.clamp_min(1e-6)
    return expose(level.expand(-1, 3, -1, -1), exposure)[:, :1] / level


def recombine(
    image: torch.Tensor,
    illumination: torch.Tensor,
    noise: torch.Tensor,
    gamma: float,
    *,
    exposure: float = 1.0,
    tone: bool = False,
    denoised: Optional[Denoised] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The result and ``L^gamma``: ``clamp(L^gamma · S / L, 0, 1)``, or with ``tone``
    ``roll_off(expose(max(L^gamma · S / L, 0), e))`` (``e`` = ``exposure``).

    ``S`` is the signal ``I − N``, or with ``denoised`` (``denoise.denoise_signal``'s copies of it)
    their blend by the per-pixel gain ``exposure_gain(L^gamma, e) · L^(gamma − 1)``
    (``Denoised.blend``): the gain of a pixel whose reflectance is 1, smooth as the illumination.
    ``image``, ``noise``, ``denoised``'s copies: ``(1, 3, H, W)``; ``illumination``: ``(1, 1, H, W)``.
    """
    adjusted = illumination.pow(gamma)
    signal = image - noise
    if denoised is not None:
        signal = denoised.blend(signal, exposure_gain(adjusted, exposure) * adjusted / illumination)
    brightened = adjusted * signal / illumination
    if not tone:
        # The paper's recombination, operation for operation (the golden and parity tests pin it).
        return brightened.clamp(0.0, 1.0), adjusted
    return roll_off(expose(brightened.clamp_min(0.0), exposure)), adjusted


def render(
    image: torch.Tensor, illumination: torch.Tensor, noise: torch.Tensor, gamma: float, **options: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """The result ``(1, 3, H, W)`` and adjusted illumination ``(1, 1, H, W)``: ``recombine`` with
    its keyword ``options`` (exposure, tone, denoised), on contiguous maps, without autograd.

    ``image`` and ``noise``: ``(1, 3, H, W)``; ``illumination``: ``(1, 1, H, W)``. The single code
    path shared by ``enhance`` and ``relight``, so both give bit-identical results.
    """
    with torch.no_grad():
        return recombine(image.contiguous(), illumination.contiguous(), noise.contiguous(), gamma, **options)


def render_choice(
    image: torch.Tensor,
    illumination: torch.Tensor,
    noise: torch.Tensor,
    choice: LightChoice,
    denoised: Optional[Denoised] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``render`` with the gamma, exposure and tone step of ``choice``; shapes as in ``render``."""
    return render(
        image, illumination, noise, choice.gamma, exposure=choice.exposure, tone=choice.tone, denoised=denoised
    )


def brightness_at(
    image: torch.Tensor, illumination: torch.Tensor, noise: torch.Tensor, gamma: float, **options: Any
) -> float:
    """Mean brightness of the result for ``gamma``; arguments as in ``render``."""
    return mean_brightness(render(image, illumination, noise, gamma, **options)[0])


def _bisect(
    brightness_of: Callable[[float], float], low: float, high: float, target: float, increasing: bool
) -> tuple[float, float]:
    """The value in [low, high] (searched on a log scale) whose brightness is nearest ``target``,
    and that brightness. ``brightness_of`` is monotonic (``increasing`` or not) and ``target`` lies
    strictly between its values at the ends."""
    low, high = math.log(low), math.log(high)
    best_value, best_brightness = math.nan, math.inf
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        value = math.exp(middle)
        brightness = brightness_of(value)
        if abs(brightness - target) < abs(best_brightness - target):
            best_value, best_brightness = value, brightness
        if abs(brightness - target) <= BRIGHTNESS_TOLERANCE:
            break
        if (brightness < target) == increasing:
            low = middle
        else:
            high = middle
    return best_value, best_brightness


def search_grid(*maps: Any) -> tuple[Any, ...]:
    """``maps`` ``(1, C, H, W)`` (or ``Denoised``, ``Scene``; ``None`` kept) sampled on the same grid of at most
    ``SEARCH_PIXELS`` pixels: every k-th row and column."""
    height, width = next(x for x in maps if x is not None).shape[-2:]
    stride = max(1, math.ceil(math.sqrt(height * width / SEARCH_PIXELS)))
    return tuple(None if x is None else x[..., ::stride, ::stride] for x in maps)


def gamma_for_brightness(
    image: torch.Tensor,
    illumination: torch.Tensor,
    noise: torch.Tensor,
    target: float,
    gamma_range: tuple[float, float] = (GAMMA_MIN, GAMMA_MAX),
    denoised: Optional[Denoised] = None,
) -> LightChoice:
    """The gamma (and exposure) whose toned result has mean brightness ``target`` (in [0, 1]).

    Shapes as in ``render``. Bisects log gamma over ``gamma_range`` (the package's
    [GAMMA_MIN, GAMMA_MAX] unless the config's gamma_floor or a benchmark sets another). A target
    brighter than the result at the lowest gamma is reached with an exposure gain at that gamma
    (bisection on log e in [1, EXPOSURE_MAX]). When the target is out of reach even so, or darker
    than the result at the highest gamma (the photo is already brighter), the nearest end is
    returned (``reached`` is then False): best effort, never an error, so one extreme image does not
    fail a batch.
    """
    if not 0.0 <= target <= 1.0:
        raise UsageError(f"brightness {target}: must be between 0 and 1")
    gamma_min, gamma_max = gamma_range
    image, illumination, noise, denoised = search_grid(image, illumination, noise, denoised)

    def at(gamma: float, exposure: float = 1.0) -> float:
        return brightness_at(image, illumination, noise, gamma, exposure=exposure, tone=True, denoised=denoised)

    brightest = at(gamma_min)
    if target > brightest:
        strongest = at(gamma_min, EXPOSURE_MAX)
        if target >= strongest:
            return LightChoice(gamma_min, strongest, target, EXPOSURE_MAX)
        exposure, brightness = _bisect(lambda value: at(gamma_min, value), 1.0, EXPOSURE_MAX, target, increasing=True)
        return LightChoice(gamma_min, brightness, target, exposure)
    if target == brightest:
        return LightChoice(gamma_min, brightest, target)
    darkest = at(gamma_max)
    if target <= darkest:
        return LightChoice(gamma_max, darkest, target)
    gamma, brightness = _bisect(at, gamma_min, gamma_max, target, increasing=False)
    return LightChoice(gamma, brightness, target)


def choose_light(
    image: torch.Tensor,
    illumination: torch.Tensor,
    noise: torch.Tensor,
    gamma: float | str,
    brightness: Optional[float],
    gamma_floor: float = GAMMA_MIN,
    denoised: Optional[Denoised] = None,
) -> LightChoice:
    """Resolve a config's ``gamma`` (a number or ``"auto"``) for one image; shapes as in ``render``.

    A number is used as it is; ``"auto"`` picks the gamma in [``gamma_floor``, 1] (and, past the
    floor, the exposure) that brings the mean brightness to ``brightness``. Either way the
    brightness is measured on the search grid (``search_grid``); ``result.from_maps`` reports the
    whole result's.
    """
    if gamma == "auto":
        if brightness is None:
            raise UsageError("gamma 'auto' needs a target brightness")
        return gamma_for_brightness(image, illumination, noise, brightness, (gamma_floor, GAMMA_MAX), denoised=denoised)
    if isinstance(gamma, str):
        raise UsageError(f"gamma '{gamma}': expected a number or 'auto'")
    grid_image, grid_illumination, grid_noise, grid_denoised = search_grid(image, illumination, noise, denoised)
    value = brightness_at(grid_image, grid_illumination, grid_noise, float(gamma), denoised=grid_denoised)
    return LightChoice(float(gamma), value)


# A brightness asked for is reached in up to three monotone steps, each a bisection: the target key
# from KEY_SEARCH_STOP stops below the photo's own key (no region brightened) up to KEY_CEILING
# (linear light: lit content at about 0.85 once encoded); then an exposure up to EXPOSURE_MAX on the
# regions the toe left dark (a night sky, lifted only when asked); then a boost up to EXPOSURE_MAX on
# every region alike, into the highlight roll-off.
KEY_SEARCH_STOP = 20.0
KEY_CEILING = 0.7


def render_local(
    image: torch.Tensor,
    noise: torch.Tensor,
    scene: Scene,
    target_key: float,
    denoised: Optional[Denoised] = None,
    exposure: float = 1.0,
    boost: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The result ``(1, 3, H, W)`` with the light following the scene (``scene``'s tone curve
    bringing the key to ``target_key`` stops, then the regions the toe left dark up to ``exposure``
    times brighter, as ``exposure ** (1 − share)``, then every region ``boost`` times) and the light
    after it, sRGB-encoded ``(1, 1, H, W)``.

    ``image``, ``noise`` and ``denoised``'s copies ``(1, 3, H, W)``; the signal ``I − N`` is blended
    with the denoised copies by each pixel's gain, as in ``recombine``.
    """
    with torch.no_grad():
        height = image.shape[-2]
        result = torch.empty(image.shape, dtype=image.dtype, device=image.device)
        adjusted = torch.empty(scene.stops.shape, dtype=image.dtype, device=image.device)
        for top, bottom in _bands(height, image.shape[-1]):
            rows = slice(max(0, top - scenes.CHROMA_RADIUS), min(height, bottom + scenes.CHROMA_RADIUS))
            kept = slice(top - rows.start, bottom - rows.start)
            # The gain and light are per pixel: computed band by band, like the rest, so that none
            # of their full-size temporaries exists.
            band_scene = scene[..., rows, :]
            gain = band_scene.gain(target_key)
            if exposure != 1.0:
                gain = gain * torch.pow(torch.tensor(exposure, dtype=gain.dtype), 1.0 - band_scene.share)
            gain = gain * boost
            light = torch.exp2(band_scene.stops)
            lit = scenes.to_srgb(light * gain)
            adjusted[..., top:bottom, :] = lit[..., kept, :]
            signal = (image[..., rows, :] - noise[..., rows, :]).clamp(0.0, 1.0)
            if denoised is not None:
                # The blend weighs how many times the gain brightens each pixel's light as sRGB
                # values: the noise was measured on sRGB values.
                signal = denoised[..., rows, :].blend(signal, lit / scenes.to_srgb(light).clamp_min(1e-6))
            band = scenes.finish(signal.contiguous(), gain, band_scene.own_colour)
            result[..., top:bottom, :] = band[..., kept, :]
        return result, adjusted


# The result is rendered in bands of about RENDER_BAND_PIXELS pixels, between RENDER_MIN_ROWS and
# RENDER_BAND_ROWS rows: each pixel needs only its neighbours within the chroma blur's radius, so a
# band with that margin gives the pixels of a whole-image render while its temporaries stay small
# (a 12 MP photo's whole-image ones would be 144 MB each). At 64 K pixels, 0.75 MB a three-channel
# map, they stay in the CPU's cache: 8 % faster than 256 K pixels on one thread. The least height
# keeps the margin's rows, computed twice, under an eighth of a band's on a wide photo.
RENDER_BAND_ROWS = 256
RENDER_MIN_ROWS = 48
RENDER_BAND_PIXELS = 1 << 16


def _bands(height: int, width: int) -> list[tuple[int, int]]:
    """The render's row spans ``[top, bottom)`` (``scene.row_bands``): none much shorter than
    ``RENDER_MIN_ROWS`` / 2, so the chroma blur never meets a band too short for it."""
    return scenes.row_bands(height, width, RENDER_BAND_PIXELS, RENDER_MIN_ROWS, RENDER_BAND_ROWS)


def choose_local_light(
    image: torch.Tensor,
    noise: torch.Tensor,
    scene: Scene,
    brightness: float | str,
    denoised: Optional[Denoised] = None,
) -> LightChoice:
    """The target key (and exposure) for ``brightness``: ``"auto"`` brings the lit content's key to
    ``scene.KEY``; a number is the mean brightness wanted (all RGB values, 0-1), reached in the
    three steps described above ``KEY_SEARCH_STOP`` (the nearest end when out of reach, as
    ``gamma_for_brightness``). Shapes as in ``render_local``; a number's brightness is measured on
    the search grid, ``"auto"``'s is left as NaN: nothing is searched, and ``from_maps`` measures
    every result whole."""

    def choice(key: float, reached: float, target: Optional[float], exposure: float = 1.0, boost: float = 1.0):
        key_gain = max(1.0, 2.0 ** (key - scene.key))
        return LightChoice(1.0, reached, target, exposure=exposure, key=key, key_gain=key_gain, boost=boost)

    if brightness == "auto":
        return choice(math.log2(scenes.KEY), math.nan, None)
    image, noise, denoised, grid_scene = search_grid(image, noise, denoised, scene)

    def at(key: float, exposure: float = 1.0, boost: float = 1.0) -> float:
        return mean_brightness(render_local(image, noise, grid_scene, key, denoised, exposure, boost)[0])

    if isinstance(brightness, str) or not 0.0 <= brightness <= 1.0:
        raise UsageError(f"brightness {brightness!r}: must be between 0 and 1, or 'auto'")
    low = scene.key - KEY_SEARCH_STOP
    ceiling = max(scene.key, math.log2(KEY_CEILING))
    darkest = at(low)
    if brightness <= darkest:
        return choice(low, darkest, brightness)
    at_ceiling = at(ceiling)
    if brightness <= at_ceiling:
        value, reached = _bisect(lambda linear: at(math.log2(linear)), 2.0**low, 2.0**ceiling, brightness, True)
        return choice(math.log2(value), reached, brightness)
    lifted = at(ceiling, EXPOSURE_MAX)
    if brightness <= lifted:
        exposure, reached = _bisect(lambda value: at(ceiling, value), 1.0, EXPOSURE_MAX, brightness, True)
        return choice(ceiling, reached, brightness, exposure)
    brightest = at(ceiling, EXPOSURE_MAX, EXPOSURE_MAX)
    if brightness >= brightest:
        return choice(ceiling, brightest, brightness, EXPOSURE_MAX, EXPOSURE_MAX)
    boost, reached = _bisect(lambda value: at(ceiling, EXPOSURE_MAX, value), 1.0, EXPOSURE_MAX, brightness, True)
    return choice(ceiling, reached, brightness, EXPOSURE_MAX, boost)
