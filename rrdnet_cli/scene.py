"""Local light: a gain for each region of the photo instead of one for the whole.

RRDNet's fitted illumination is nearly flat across a photo, so brightening it with one gamma and
one exposure gives every region the same gain: a night sky with nothing in it but sensor noise is
lifted as much as the lit subject, and the subject's highlights are pushed into white. Here the
light follows the scene instead:

1. **The light** ``l``: the photo's brightest channel in linear light, smoothed by an edge-aware
   (guided) filter on its logarithm, so it is flat inside a region and steps at the region's edges,
   as illumination does (a gain computed from it leaves no halo at an edge); raised towards the
   fitted illumination where the fit sees more light than the photo shows (``analyse``).
2. **Metering** on what has detail: the key is the log-average of ``l`` over the pixels lit above
   the noise floor, so a black sky does not pull the exposure up.
3. **The tone curve**, on the light in stops: the key goes to the target key; regions darker than
   the key are lifted more, brighter ones less, each side's slope set by the range the scene's lit
   content spans on that side (``scene_slopes``): a scene of a few stops keeps its own contrast (its
   whites come near white instead of a grey plateau), a scene of many stops is compressed (a dark
   subject against a bright sky is lifted, a spot-lit highlight is not blown); the lift fades out
   near the noise floor (the toe) unless a region holds detail above its noise, so what holds
   nothing but noise stays dark. A pixel's gain is the curve's output light over its input light,
   never below 1.
4. **Colour kept**: the gain multiplies the three linear channels alike, so their ratios, and the
   hue, do not move; the highlights it pushes past the knee are compressed on the brightest channel
   with the ratios kept; in lifted shadows the colour ratios are taken from a blurred copy (chroma
   noise is what the eye sees first there) while the luminance keeps its detail, but only as much
   as the noise warrants: where the chroma around a pixel varies by more than the noise (a colour
   edge, a coloured texture) the pixel keeps its own colour, which a blur would smear.

Everything here is a pure function of tensors ``(1, C, H, W)``; ``light`` chooses the key and
``result.from_maps`` puts it together with the denoiser.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Optional

import torch

from .denoise import OPPONENT
from .filters import box_blur, guided_filter

# Rec. 709 luminance of linear sRGB.
LUMA = (0.2126, 0.7152, 0.0722)


@dataclass(frozen=True)
class ToneCurve:
    """The shape of the local tone curve, in stops (log2 of linear light).

    ``contrast``: slope of output against input light, in stops, below the key (1: one gain
    everywhere; 0.5: a region four stops darker than the key ends two stops darker), at most; a
    scene whose darkest lit regions (``range_quantile``) lie more than ``shadow_stops`` / ``contrast``
    stops below its key takes the slope that brings them ``shadow_stops`` below the target key, down
    to ``min_contrast`` (``scene_slopes``).
    ``white``: the linear level that the scene's brightest lit regions (``1 − range_quantile``) reach
    at the metered key (``KEY``): the slope above the key that takes them there, at most 1 (a scene
    is never given more contrast than it has), at least ``min_highlight_contrast`` (bright regions
    are lifted less).
    ``toe_start`` and ``toe_stops``: how far above the noise floor the lift starts, and from where
    it is whole (darker regions keep their own level: what holds no detail stays dark).
    ``floor_sigmas``: the noise floor, in multiples of the noise level of the photo's darkest tones.
    ``knee``: linear level of the brightest channel above which highlights are compressed.
    """

    contrast: float = 0.7
    min_contrast: float = 0.4
    shadow_stops: float = 2.0
    white: float = 0.9
    min_highlight_contrast: float = 0.25
    range_quantile: float = 0.01
    toe_start: float = -1.0
    toe_stops: float = 2.0
    floor_sigmas: float = 2.0
    knee: float = 0.7


CURVE = ToneCurve()
# The light map's guided filter: a window of this fraction of the longer side (regions of the scene,
# not textures), an edge threshold of EDGE_STOPS stops (a step smaller than that is smoothed over),
# computed on a copy SUBSAMPLE times smaller (the fast guided filter: the same map within rounding
# at a sixteenth of the cost).
WINDOW_FRACTION = 1.0 / 12.0
EDGE_STOPS = 0.5
SUBSAMPLE = 4
# A linear level no photo's noise goes below: 8-bit sRGB's first step.
MIN_FLOOR = 1.0 / (255.0 * 12.92)
# A region counts as holding detail when its luminance varies (over windows of TEXTURE_RADIUS) by more
# than its noise: from DETAIL_SIGMAS[0] noise levels beyond the noise, fully from DETAIL_SIGMAS[1].
TEXTURE_RADIUS = 2
DETAIL_SIGMAS = (0.5, 2.0)
# The share, in stops, of RRDNet's fitted illumination in the light that the tone curve reads.
FITTED_SHARE = 0.25
# Chroma is taken from a box blur of this radius (pixels at full size) where the gain is high.
CHROMA_RADIUS = 3
# The chroma is cleaned only as much as the noise warrants: a pixel keeps its own colour where the
# chroma of its cleaning window varies by more than noise explains (a colour edge, a coloured
# texture), from CHROMA_SIGMAS[0] noise levels beyond the noise, all of it from CHROMA_SIGMAS[1]
# (``chroma_detail``). The start lies about one standard error of a 7x7 window's variance above
# pure noise, so a flat noisy region is still cleaned nearly whole.
CHROMA_SIGMAS = (0.5, 1.0)


def luminance(linear: torch.Tensor) -> torch.Tensor:
    """Rec. 709 luminance ``(1, 1, H, W)`` of linear RGB ``(1, 3, H, W)``."""
    weights = torch.tensor(LUMA, dtype=linear.dtype, device=linear.device).view(1, 3, 1, 1)
    return (linear * weights).sum(dim=1, keepdim=True)


def noise_floor(noise_sigma: float) -> float:
    """The linear level below which a region holds no detail: ``floor_sigmas`` times the photo's
    noise level ``noise_sigma`` (estimated on the sRGB values), taken into linear light at black,
    where the sRGB encoding is linear with slope 12.92."""
    return max(MIN_FLOOR, CURVE.floor_sigmas * noise_sigma / 12.92)


def edge_aware(stops: torch.Tensor) -> torch.Tensor:
    """The light ``stops`` ``(1, 1, H, W)`` smoothed by a guided filter guided by itself: flat within
    regions, sharp at their edges. A new tensor; ``stops`` is only read."""
    height, width = stops.shape[-2:]
    radius = max(1, round(WINDOW_FRACTION * max(height, width) / 2))
    subsample = SUBSAMPLE if min(height, width) >= 8 * SUBSAMPLE else 1
    size = min(2 * radius + 1, 2 * ((min(height, width) - 1) // 2) + 1)
    # The fast guided filter needs the window to cover a few subsampled pixels.
    if size < 3 * subsample:
        subsample = 1
    return guided_filter(stops, stops, size, EDGE_STOPS**2, subsample=subsample)


def smoothstep(values: torch.Tensor, start: float, end: float) -> torch.Tensor:
    """0 below ``start``, 1 above ``end``, the cubic smoothstep between; any shape."""
    position = ((values - start) / (end - start)).clamp(0.0, 1.0)
    return position * position * (3.0 - 2.0 * position)


def has_texture_window(size: Sequence[int], noise_sigma: float) -> bool:
    """Whether an image of ``size`` ``(H, W)`` holds ``texture_share``'s window and has noise to
    measure texture against (otherwise ``analyse`` counts every region as holding detail)."""
    return min(size) >= 2 * TEXTURE_RADIUS + 1 and noise_sigma > 0


def texture_share(signal: torch.Tensor, noise_sigma: float) -> torch.Tensor:
    """How far each pixel's ``TEXTURE_RADIUS`` neighbourhood of the sRGB ``signal`` ``(1, 3, H, W)``
    holds detail above its noise, ``(1, 1, H, W)`` in [0, 1]: the local standard deviation of the
    luminance beyond the noise's ``noise_sigma``, in multiples of it (0 at ``DETAIL_SIGMAS[0]``, 1
    from ``DETAIL_SIGMAS[1]``); ``regional_mean`` then averages it so that a textured region counts
    as a whole. Local: rows ``TEXTURE_RADIUS`` beyond a band are all it needs to be computed band by
    band."""
    # The same weights on the sRGB values: the noise is measured there.
    luma = luminance(signal)
    size = 2 * TEXTURE_RADIUS + 1
    mean = box_blur(luma, size, border="reflect")
    variance = (box_blur(luma * luma, size, border="reflect") - mean * mean).clamp_min(0.0)
    excess = (variance - noise_sigma**2).clamp_min(0.0).sqrt() / noise_sigma
    return smoothstep(excess, *DETAIL_SIGMAS)


def regional_mean(share: torch.Tensor, window: int) -> torch.Tensor:
    """The mean of ``share`` ``(1, 1, H, W)`` over ``window`` pixels, same shape."""
    # The regional mean is taken on a copy pooled to about 16 pixels a window: the same average, at a
    # cost that does not grow with the window.
    factor = max(1, window // 16)
    pooled = torch.nn.functional.avg_pool2d(share, factor, ceil_mode=True) if factor > 1 else share
    size = max(1, min(window // factor, 2 * ((min(pooled.shape[-2:]) - 1) // 2) + 1))
    size += 1 - size % 2
    averaged = box_blur(pooled, size, border="reflect")
    if factor == 1:
        return averaged
    return torch.nn.functional.interpolate(averaged, size=share.shape[-2:], mode="bilinear", align_corners=False)


def presence(stops: torch.Tensor, floor: float, detail: torch.Tensor) -> torch.Tensor:
    """How much of the lift each region of the photo's light map ``stops`` ``(1, 1, H, W)`` takes,
    in [0, 1]: none at ``toe_start`` stops above the noise ``floor``, all from ``toe_stops`` (a
    smoothstep in stops), or all the same where the region holds detail (``detail``,
    the regional mean of ``texture_share``): what holds nothing but noise keeps its own dark level."""
    share = smoothstep(stops, math.log2(floor) + CURVE.toe_start, math.log2(floor) + CURVE.toe_stops)
    return torch.maximum(share, detail)


def scene_slopes(lit_stops: torch.Tensor, key: float) -> tuple[float, float]:
    """The tone curve's slopes ``(below, above)`` the ``key`` for a scene whose lit content's light
    is ``lit_stops`` (stops, any shape, not empty): set by the range that content spans on each side
    of the key, between its ``range_quantile`` and ``1 − range_quantile`` quantiles (``ToneCurve``).
    A scene of a few stops keeps its own contrast, a scene of many is compressed to fit."""
    values = lit_stops.flatten().float()
    # The light map is smooth: a regular sample of at most 2**16 values has the same quantiles
    # (torch.quantile also refuses more than 2**24).
    values = values[:: max(1, values.numel() >> 16)]
    quantiles = torch.tensor([CURVE.range_quantile, 1.0 - CURVE.range_quantile], dtype=values.dtype)
    darkest, brightest = torch.quantile(values, quantiles).tolist()
    below = CURVE.shadow_stops / max(key - darkest, 1e-6)
    above = (math.log2(CURVE.white) - math.log2(KEY)) / max(brightest - key, 1e-6)
    return min(CURVE.contrast, max(CURVE.min_contrast, below)), min(1.0, max(CURVE.min_highlight_contrast, above))


def tone_stops(
    stops: torch.Tensor, key: float, target_key: float, share: torch.Tensor, slopes: tuple[float, float]
) -> torch.Tensor:
    """The output light, in stops, for the light ``stops`` ``(1, 1, H, W)``: ``key`` goes to
    ``target_key`` with ``slopes`` (below, above) around it (``scene_slopes``: darker regions lifted
    more, brighter ones less), each region taking its ``share`` (``presence``) of that lift."""
    slope = torch.where(stops < key, slopes[0], slopes[1])
    lifted = target_key + slope * (stops - key)
    return stops + share * (lifted - stops)


def gain(
    stops: torch.Tensor, key: float, target_key: float, share: torch.Tensor, slopes: tuple[float, float]
) -> torch.Tensor:
    """The linear gain of each pixel ``(1, 1, H, W)``: the tone curve's output light over the light
    itself, at least 1 (a brightening tool never darkens a region); arguments as ``tone_stops``."""
    return torch.exp2((tone_stops(stops, key, target_key, share, slopes) - stops).clamp_min(0.0))


def compress_highlights(linear: torch.Tensor, knee: float = CURVE.knee) -> torch.Tensor:
    """Linear RGB ``(1, 3, H, W)`` (>= 0, any level) brought below 1 with the channel ratios kept:
    the brightest channel ``m`` passes up to ``knee``, above it becomes
    ``knee + (1 − knee) · (1 − 1 / sqrt(1 + 2t))``, ``t = (m − knee) / (1 − knee)``: continuous with
    slope 1 at the knee and below 1 for every finite level, so bright subjects keep their shading;
    far past full scale (``WHITE_PATH``) the colour fades to white."""
    brightest = linear.amax(dim=1, keepdim=True)
    span = 1.0 - knee
    excess = (brightest - knee).clamp_min(0.0) / span
    compressed = knee + span * (1.0 - torch.rsqrt(1.0 + 2.0 * excess))
    scale = torch.where(brightest > knee, compressed / brightest.clamp_min(1e-12), torch.ones_like(brightest))
    # Light far past full scale turns white, as film and eyes see it: from WHITE_FROM times full scale
    # on the brightest channel the colour fades towards the grey of that level, all of it by
    # WHITE_AT. Without it a saturated colour could never come near white however far it was pushed.
    towards_white = smoothstep(brightest, *WHITE_PATH)
    return torch.lerp(linear * scale, compressed.expand_as(linear), towards_white)


def clean_chroma(linear: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Linear RGB ``(1, 3, H, W)`` whose colour ratios are taken, by ``weight`` ``(1, 1, H, W)`` in
    [0, 1], from a box blur of radius ``CHROMA_RADIUS``: the luminance (and so the detail) is kept,
    the chroma noise of the blurred copy is averaged away."""
    size = 2 * CHROMA_RADIUS + 1
    if min(linear.shape[-2:]) < size:
        return linear
    luma = luminance(linear)
    blurred = box_blur(linear, size, border="reflect")
    smooth_ratios = blurred / luminance(blurred).clamp_min(1e-6)
    cleaned = smooth_ratios * luma
    return torch.lerp(linear, cleaned, weight)


def chroma_detail(signal: torch.Tensor, noise_sigma: float) -> torch.Tensor:
    """How much of its own colour each pixel of the sRGB ``signal`` ``(1, 3, H, W)``, whose noise
    level is ``noise_sigma``, keeps when the chroma is cleaned: ``(1, 1, H, W)`` in [0, 1].

    The chroma is the two colour axes of the denoiser's orthonormal opponent basis, where white
    noise of level ``noise_sigma`` on each channel has that level on each axis. Over the cleaning's
    window (``CHROMA_RADIUS``) their variance beyond the noise's, as a standard deviation in
    multiples of ``noise_sigma``, goes through a smoothstep from ``CHROMA_SIGMAS[0]`` to
    ``CHROMA_SIGMAS[1]``: 0 where the window holds nothing but noise (its colour is best taken from
    the blur), 1 at a colour edge or in a coloured texture (a blur would smear it across the edge
    and move each pixel's hue). Without measurable noise every pixel keeps its own colour.
    """
    size = 2 * CHROMA_RADIUS + 1
    if min(signal.shape[-2:]) < size or noise_sigma <= 0:
        return torch.ones_like(signal[:, :1])
    axes = torch.from_numpy(OPPONENT[1:]).to(dtype=signal.dtype, device=signal.device)
    chroma = torch.einsum("kc,bchw->bkhw", axes, signal)
    # One blur for the means of both axes and of the squared chroma's length.
    means = box_blur(torch.cat([chroma, chroma.square().sum(dim=1, keepdim=True)], dim=1), size, border="reflect")
    variance = means[:, 2:] - means[:, :2].square().sum(dim=1, keepdim=True)
    excess = (variance - len(axes) * noise_sigma**2).clamp_min(0.0).sqrt() / noise_sigma
    return smoothstep(excess, *CHROMA_SIGMAS)


def _power(base: torch.Tensor, exponent: float) -> torch.Tensor:
    """``base ** exponent`` for ``base`` > 0, as ``exp2(exponent · log2 base)``: within a few float
    rounding steps of ``pow``, which ran four times slower on the CPU (a new tensor)."""
    return torch.exp2(torch.log2(base).mul_(exponent))


def to_linear(srgb: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values (>= 0; any shape, any number of channels) to linear light."""
    srgb = srgb.clamp_min(0.0)
    return torch.where(srgb <= 0.04045, srgb / 12.92, _power((srgb + 0.055) / 1.055, 2.4))


def encode_srgb(linear: torch.Tensor) -> torch.Tensor:
    """Linear light (>= 0; any shape, any number of channels) sRGB-encoded, the curve continued
    above 1 (a level past full scale stays past it)."""
    return torch.where(
        linear <= 0.0031308, 12.92 * linear, 1.055 * _power(linear.clamp_min(0.0031308), 1 / 2.4) - 0.055
    )


def to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """Linear light, clamped to [0, 1], sRGB-encoded (any shape, any number of channels)."""
    return encode_srgb(linear.clamp(0.0, 1.0))


# Where highlights pushed past full scale fade to white (``compress_highlights``): from this
# multiple of full scale on the brightest channel, all of it from the second.
WHITE_PATH = (2.0, 16.0)
# The key a photo's lit content is brought to when no brightness is asked for: mid-grey's 18 % of
# linear light, the reflectance that exposure meters assume.
KEY = 0.45


@dataclass(frozen=True)
class Scene:
    """What the tone curve needs to know of one photo, maps ``(1, 1, H, W)``: its light ``stops``
    (log2 of linear light), the key of its lit content (stops), each region's ``share`` of the
    lift (``presence``), how much of its own colour each pixel keeps when the chroma is cleaned
    (``own_colour``, ``chroma_detail``) and the tone curve's ``slopes`` below and above the key
    (``scene_slopes``)."""

    stops: torch.Tensor
    key: float
    share: torch.Tensor
    own_colour: torch.Tensor
    slopes: tuple[float, float]

    def __getitem__(self, index) -> Scene:
        return Scene(self.stops[index], self.key, self.share[index], self.own_colour[index], self.slopes)

    def gain(self, target_key: float) -> torch.Tensor:
        """The linear gain ``(1, 1, H, W)`` that brings the key to ``target_key`` (stops)."""
        return gain(self.stops, self.key, target_key, self.share, self.slopes)


def analyse(signal: torch.Tensor, noise_sigma: float, illumination: torch.Tensor) -> Scene:
    """The scene of the sRGB ``signal`` ``(1, 3, H, W)`` in [0, 1], whose noise level (on sRGB
    values) is ``noise_sigma``, lit by RRDNet's fitted ``illumination`` ``(1, 1, H, W)``.

    The light is the photo's edge-aware light map (its brightest channel plus the noise floor, so
    that noise alone does not make structure, in stops, smoothed by ``edge_aware``) blended with the
    fitted illumination by ``FITTED_SHARE`` where the fit sees more light than the photo's map: RRDNet
    puts a black sky's darkness in the reflectance, under a light that needs no lift, while a bright
    subject's light is never taken for less than the photo shows (which would blow it out). Where
    the lift goes (the toe, the detail) is read on the photo's own map, which knows where the noise
    floor is. The key and the curve's slopes are measured on the lit content's light.
    """
    return analyse_rows(lambda top, bottom: signal[..., top:bottom, :], noise_sigma, illumination)


def analyse_rows(
    signal_rows: Callable[[int, int], torch.Tensor], noise_sigma: float, illumination: torch.Tensor
) -> Scene:
    """``analyse`` of the signal whose rows ``[top, bottom)`` ``signal_rows(top, bottom)`` gives,
    ``(1, 3, bottom − top, W)``; ``illumination`` ``(1, 1, H, W)`` gives the size.

    Computed in bands of about ``BAND_PIXELS`` (``row_bands``): the filters that look at the signal
    are local (a 5x5 and a 7x7 window), so each band is read with ``BAND_MARGIN`` rows around it and
    gives the whole image's values; what is regional (the light map's guided filter, the detail's
    regional mean) runs on one-channel maps, and the key is summed band by band. So no full-size
    three-channel array is made: a 12 MP photo's would be 137 MB each, and a band's temporaries
    stay small enough to be served from the CPU's caches. The maps are those of a whole-image
    analysis; only the key's float64 sum is added up in another order.
    """
    height, width = illumination.shape[-2:]
    floor = noise_floor(noise_sigma)
    # Three maps, each its own block: one-channel full-size blocks fit where earlier ones were freed.
    brightest, texture, own_colour = (
        torch.empty((1, 1, height, width), dtype=illumination.dtype, device=illumination.device) for _ in range(3)
    )
    textured = has_texture_window((height, width), noise_sigma)
    bands = row_bands(height, width)
    for top, bottom in bands:
        start, stop = max(0, top - BAND_MARGIN), min(height, bottom + BAND_MARGIN)
        signal = signal_rows(start, stop)
        kept = slice(top - start, bottom - start)
        brightest[..., top:bottom, :] = to_linear(signal[..., kept, :]).amax(dim=1, keepdim=True)
        if textured:
            texture[..., top:bottom, :] = texture_share(signal, noise_sigma)[..., kept, :]
        own_colour[..., top:bottom, :] = chroma_detail(signal, noise_sigma)[..., kept, :]
    # In stops in place: the light map is a new tensor, and this one then takes the tone curve's.
    photo = edge_aware(brightest.add_(floor).log2_())
    window = 2 * max(1, round(WINDOW_FRACTION * max(height, width) / 4)) + 1
    detail = regional_mean(texture, window) if textured else torch.ones_like(photo)
    # The maps the tone curve reads, written over the ones no longer needed.
    stops, share = brightest, texture
    lit_level = math.log2(floor) + CURVE.toe_stops
    lit_sum, all_sum = 0.0, 0.0
    lit_values = []
    for top, bottom in bands:
        rows = (..., slice(top, bottom), slice(None))
        photo_rows = photo[rows]
        fitted = torch.log2(to_linear(illumination[rows]) + floor)
        stops[rows] = torch.maximum(photo_rows, torch.lerp(photo_rows, fitted, FITTED_SHARE))
        share[rows] = presence(photo_rows, floor, detail[rows])
        # Kept for the slopes' sample below: a mask's selection is one of the analysis's dearer steps.
        lit_values.append(stops[rows][photo_rows > lit_level])
        lit_sum += lit_values[-1].double().sum().item()
        all_sum += stops[rows].double().sum().item()
    lit_count = sum(values.numel() for values in lit_values)
    key = lit_sum / lit_count if lit_count else all_sum / stops.numel()
    # The slopes read a regular sample of the lit content's light (``scene_slopes``), gathered band
    # by band: the values a sample of the whole image's would hold.
    step = max(1, (lit_count or stops.numel()) >> 16)
    sample, seen = [], 0
    for (top, bottom), lit in zip(bands, lit_values):
        values = lit if lit_count else stops[..., top:bottom, :].flatten()
        sample.append(values[(-seen) % step :: step])
        seen += values.numel()
    return Scene(stops, key, share, own_colour, scene_slopes(torch.cat(sample), key))


# The scene is analysed in bands of whole rows of about this many pixels (``analyse_rows``), at
# least ``MIN_BAND_ROWS`` rows, read with BAND_MARGIN rows around them: the radius of the widest
# local window (chroma_detail's). A band of 128 K pixels: the analysis of a 768x512 photo ran 18 %
# faster on one thread than as one band, its temporaries (1.5 MB a three-channel map) kept in cache.
BAND_PIXELS = 1 << 17
MIN_BAND_ROWS = 16
BAND_MARGIN = max(CHROMA_RADIUS, TEXTURE_RADIUS)


def row_bands(
    height: int,
    width: int,
    pixels: Optional[int] = None,
    min_rows: int = MIN_BAND_ROWS,
    max_rows: Optional[int] = None,
) -> list[tuple[int, int]]:
    """Row spans ``[top, bottom)`` of nearly equal height covering ``height`` rows, each about
    ``pixels`` (default ``BAND_PIXELS``) pixels of a row ``width`` long, at least ``min_rows`` and
    at most ``max_rows`` rows (or the whole image)."""
    rows = (BAND_PIXELS if pixels is None else pixels) // max(1, width)
    rows = max(min_rows, rows if max_rows is None else min(max_rows, rows))
    count = max(1, height // rows)
    bounds = [round(index * height / count) for index in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def finish(signal: torch.Tensor, linear_gain: torch.Tensor, own_colour: torch.Tensor) -> torch.Tensor:
    """The result ``(1, 3, H, W)`` in [0, 1]: the sRGB ``signal`` ``(1, 3, H, W)`` brightened
    ``linear_gain`` ``(1, 1, H, W)`` times in linear light, its colour ratios cleaned where the gain
    is high but for the share ``own_colour`` ``(1, 1, H, W)`` (``chroma_detail``) that holds colour
    detail, the highlights it pushed past the knee compressed, encoded again."""
    brightened = to_linear(signal) * linear_gain
    cleaning = (1.0 - linear_gain.reciprocal()).clamp(0.0, 1.0) * (1.0 - own_colour)
    brightened = clean_chroma(brightened, cleaning)
    # A pixel the curve leaves alone keeps its own highlights: compression would only flatten them.
    compressed = torch.lerp(
        brightened.clamp(max=1.0), compress_highlights(brightened), (linear_gain - 1.0).clamp(0.0, 1.0)
    )
    return to_srgb(compressed)
