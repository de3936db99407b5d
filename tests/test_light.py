"""light.py: the bisection for a target brightness and the light choice, on synthetic maps.

(Runs of the command with --gamma/--brightness are in test_cli.py, configs in test_config.py.)
"""

import numpy as np
import pytest
import torch

from rrdnet_cli.denoise import AUTO_STRENGTH, denoise_signal
from rrdnet_cli.light import (
    BRIGHTNESS_TOLERANCE,
    EXPOSURE_MAX,
    GAMMA_MAX,
    GAMMA_MIN,
    KNEE,
    REACHED_TOLERANCE,
    brightness_at,
    choose_light,
    expose,
    exposure_gain,
    gamma_for_brightness,
    mean_brightness,
    recombine,
    render_choice,
    roll_off,
)


def synthetic_maps(seed=0):
    """A dim image and a plausible decomposition of it: L in (0.05, 0.6), small noise."""
    generator = torch.Generator().manual_seed(seed)
    illumination = 0.05 + 0.55 * torch.rand(1, 1, 24, 32, generator=generator)
    reflectance = torch.rand(1, 3, 24, 32, generator=generator)
    noise = 0.01 * torch.randn(1, 3, 24, 32, generator=generator)
    image = (illumination * reflectance + noise).clamp(0, 1)
    return image, illumination, noise


@pytest.mark.parametrize("target", [0.2, 0.3, 0.38])
def test_bisection_hits_a_reachable_target(target):
    image, illumination, noise = synthetic_maps()
    choice = gamma_for_brightness(image, illumination, noise, target)
    assert choice.reached and abs(choice.brightness - target) < 1e-3
    assert GAMMA_MIN < choice.gamma < GAMMA_MAX
    assert choice.exposure == 1.0
    assert choice.brightness == pytest.approx(brightness_at(image, illumination, noise, choice.gamma, tone=True))


@pytest.mark.parametrize("tone", [False, True])
def test_brightness_never_increases_with_gamma(tone):
    image, illumination, noise = synthetic_maps(1)
    gammas = np.geomspace(GAMMA_MIN, GAMMA_MAX, 30)
    values = [brightness_at(image, illumination, noise, gamma, tone=tone) for gamma in gammas]
    assert all(later <= earlier + 1e-12 for earlier, later in zip(values, values[1:]))


def half_black_maps():
    """``synthetic_maps`` with its left half black: no gain brightens the mean past about 0.5."""
    image, illumination, noise = synthetic_maps()
    image[..., :16], noise[..., :16] = 0.0, 0.0
    return image, illumination, noise


def test_unreachable_targets_give_the_nearest_end_and_say_so():
    image, illumination, noise = half_black_maps()
    too_bright = gamma_for_brightness(image, illumination, noise, 0.99)
    assert not too_bright.reached and too_bright.gamma == GAMMA_MIN and too_bright.exposure == EXPOSURE_MAX
    strongest = brightness_at(image, illumination, noise, GAMMA_MIN, exposure=EXPOSURE_MAX, tone=True)
    assert too_bright.brightness == pytest.approx(strongest)
    assert "target 0.990 out of reach" in too_bright.describe()
    too_dark = gamma_for_brightness(image, illumination, noise, 0.0)
    assert not too_dark.reached and too_dark.gamma == GAMMA_MAX


def test_another_gamma_range_bounds_the_search():
    image, illumination, noise = synthetic_maps()
    floor = gamma_for_brightness(*half_black_maps(), 0.99, gamma_range=(0.3, 1.0))
    assert floor.gamma == 0.3 and not floor.reached
    reachable = brightness_at(image, illumination, noise, 0.5, tone=True)
    inside = gamma_for_brightness(image, illumination, noise, reachable, gamma_range=(0.3, 0.8))
    assert inside.reached and inside.gamma == pytest.approx(0.5, rel=1e-3)


def test_a_chosen_gamma_never_darkens_below_the_photo_own_exposure():
    image, illumination, noise = synthetic_maps()
    own_exposure = mean_brightness((image - noise).clamp(0, 1))
    choice = gamma_for_brightness(image, illumination, noise, own_exposure / 2)
    assert choice.gamma == GAMMA_MAX == 1.0 and not choice.reached
    assert choice.brightness == pytest.approx(own_exposure, abs=1e-6)


def test_fixed_gamma_is_kept_and_auto_needs_a_target():
    image, illumination, noise = synthetic_maps()
    fixed = choose_light(image, illumination, noise, 0.4, 0.45)
    assert fixed.gamma == 0.4 and fixed.target is None
    assert choose_light(image, illumination, noise, "auto", 0.3).brightness == pytest.approx(0.3, abs=1e-3)


def scene_maps(seed, height=48, width=64):
    """A dark photo with a bright lamp: smooth illumination from 0.02 to 0.5 (peaking in a small
    bright area), textured reflectance, sensor-like noise; its decomposition as RRDNet would give it
    (the noise map holds a part of the noise)."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.linspace(-1, 1, height).view(1, 1, height, 1)
    columns = torch.linspace(-1, 1, width).view(1, 1, 1, width)
    centre_row, centre_column = (torch.rand(2, generator=generator) - 0.5).tolist()
    distance = (rows - centre_row) ** 2 + (columns - centre_column) ** 2
    illumination = 0.02 + 0.48 * torch.exp(-distance / (0.05 + 0.3 * torch.rand(1, generator=generator).item()))
    reflectance = (0.2 + 0.8 * torch.rand(1, 3, height, width, generator=generator)).clamp(0, 1)
    sensor = 0.01 * torch.randn(1, 3, height, width, generator=generator)
    image = (illumination * reflectance + sensor).clamp(0, 1)
    return image, illumination, 0.5 * sensor


def night_maps(seed, height=48, width=64):
    """A night scene: illumination 0.02-0.03 everywhere and 2 % of the pixels small lamps at
    0.4-0.6, which the smooth illumination does not follow (so the recombination lifts them far
    above full scale, as real street lights in a dark photo); noise as in ``scene_maps``."""
    generator = torch.Generator().manual_seed(seed)
    illumination = 0.02 + 0.01 * torch.rand(1, 1, height, width, generator=generator)
    image = illumination * (0.2 + 0.8 * torch.rand(1, 3, height, width, generator=generator))
    lamps = torch.rand(1, 1, height, width, generator=generator) < 0.02
    image = torch.where(lamps, 0.4 + 0.2 * torch.rand(1, 3, height, width, generator=generator), image)
    sensor = 0.002 * torch.randn(1, 3, height, width, generator=generator)
    return (image + sensor).clamp(0, 1), illumination, 0.5 * sensor


def clipped(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels ``(H, W)`` whose brightest channel of ``(1, 3, H, W)`` rounds to 8-bit 255."""
    return torch.round(pixels[0].amax(dim=0) * 255) >= 255


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("denoise", ["off", "auto"])
@pytest.mark.parametrize("scene", [scene_maps, night_maps])
def test_auto_light_reaches_every_target_up_to_0_8_and_barely_clips(seed, denoise, scene):
    # In the night scene the lamps reach 100 times full scale before the tone step: a hyperbolic
    # roll-off (white from ~20 times) clipped them, 2 % of the pixels, at brightness 0.8.
    image, illumination, noise = scene(seed)
    denoised = None if denoise == "off" else denoise_signal(image, noise, AUTO_STRENGTH)
    start = mean_brightness(image)
    for target in np.linspace(start, 0.8, 6):
        choice = choose_light(image, illumination, noise, "auto", float(target), denoised=denoised)
        result = render_choice(image, illumination, noise, choice, denoised)[0]
        assert abs(mean_brightness(result) - target) <= REACHED_TOLERANCE and choice.reached
        assert mean_brightness(result) == choice.brightness
        newly_clipped = clipped(result) & ~clipped(image)
        assert newly_clipped.double().mean().item() <= 0.005, (target, choice)
    # The brightest targets need the exposure gain; the darker ones gamma alone.
    assert choice.exposure > 1.0 and choice.gamma == GAMMA_MIN
    assert "exposure" in choice.describe()


def test_exposure_gain_only_past_the_gamma_floor():
    image, illumination, noise = scene_maps(0)
    at_floor = brightness_at(image, illumination, noise, 0.3, tone=True)
    below = choose_light(image, illumination, noise, "auto", at_floor - 0.02, gamma_floor=0.3)
    assert below.exposure == 1.0 and below.gamma > 0.3 and below.reached
    above = choose_light(image, illumination, noise, "auto", at_floor + 0.02, gamma_floor=0.3)
    assert above.exposure > 1.0 and above.gamma == 0.3 and above.reached
    assert abs(above.brightness - (at_floor + 0.02)) <= BRIGHTNESS_TOLERANCE


def srgb_encoded(linear: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1's encoding written out, independent of the package's."""
    return torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def srgb_decoded(values: torch.Tensor) -> torch.Tensor:
    """The inverse of ``srgb_encoded``."""
    return torch.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def test_exposure_undoes_an_under_exposure_in_linear_light():
    # A camera that under-exposes k times scales the scene before the sRGB encoding: exposing its
    # photo 1/k times gives the scene back, dark shadows included, and keeps each pixel's hue.
    scene = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    k = 0.02
    photo = srgb_encoded(k * srgb_decoded(scene))
    assert torch.allclose(expose(photo, 1 / k), scene, atol=1e-9)
    assert torch.equal(expose(photo, 1.0), photo)


def test_exposure_gain_is_the_factor_expose_applies_and_grows_towards_black():
    levels = torch.tensor([0.002, 0.01, 0.05, 0.2, 0.5, 1.0], dtype=torch.float64).view(1, 1, 1, -1)
    gain = exposure_gain(levels, 16.0)
    assert torch.allclose(gain * levels, expose(levels.expand(-1, 3, -1, -1), 16.0)[:, :1])
    assert (gain.diff() < 0).all()
    # Above black about e^(1/2.4) (the power-law part of the encoding), near black the full e (the linear part).
    assert gain[..., -1].item() == pytest.approx(1.055 * 16.0 ** (1 / 2.4) - 0.055, rel=1e-6)
    assert gain[..., 0].item() == pytest.approx(16.0, rel=1e-6)
    assert torch.equal(exposure_gain(levels, 1.0), torch.ones_like(levels))


def test_the_tone_step_exposes_the_recombination_then_rolls_off():
    image, illumination, noise = scene_maps(2)
    result, adjusted = recombine(image, illumination, noise, 0.5, exposure=6.0, tone=True)
    brightened = (illumination.pow(0.5) * (image - noise) / illumination).clamp_min(0)
    expected = roll_off(srgb_encoded(6.0 * srgb_decoded(brightened)))
    assert torch.allclose(result, expected, atol=1e-5)


def test_roll_off_is_smooth_at_the_knee_and_never_reaches_one():
    values = torch.tensor([0.0, 0.5, KNEE, KNEE + 1e-4, 1.0, 2.0, 4.0], dtype=torch.float64)
    toned = roll_off(values)
    assert torch.equal(toned[:3], values[:3])
    assert (toned[3] - toned[2]) / 1e-4 == pytest.approx(1.0, abs=1e-3)
    assert (toned.diff() > 0).all() and (toned < 1).all()


def test_a_fixed_gamma_renders_as_the_paper():
    image, illumination, noise = scene_maps(1)
    choice = choose_light(image, illumination, noise, 0.4, None)
    result, adjusted = render_choice(image, illumination, noise, choice)
    expected = (illumination.pow(0.4) * (image - noise) / illumination).clamp(0, 1)
    assert not choice.tone and choice.exposure == 1.0 and torch.equal(result, expected)


def test_the_local_render_in_bands_equals_the_whole_image_render(monkeypatch):
    from rrdnet_cli import light
    from rrdnet_cli.denoise import signal_noise_level
    from rrdnet_cli.scene import analyse

    generator = torch.Generator().manual_seed(3)
    image = (0.08 * torch.rand(1, 3, 70, 48, generator=generator)).clamp(0, 1)
    image[..., 20:40, 10:30] += 0.3  # a lit region, so bands differ in gain
    noise = torch.zeros_like(image)
    level = signal_noise_level(image, noise)
    denoised = denoise_signal(image, noise, AUTO_STRENGTH, level)
    scene = analyse(image, level, torch.full((1, 1, 70, 48), 0.2))
    whole, whole_light = light.render_local(image, noise, scene, -1.5, denoised)
    monkeypatch.setattr(light, "RENDER_BAND_ROWS", 16)
    monkeypatch.setattr(light, "RENDER_MIN_ROWS", 16)
    assert len(light._bands(70, 48)) == 4
    banded, banded_light = light.render_local(image, noise, scene, -1.5, denoised)
    torch.testing.assert_close(banded, whole, rtol=0, atol=1e-5)
    # The same per-pixel formulas; only where a band's end falls inside a SIMD vector of the whole
    # image's may exp2 and log2 round the last bit differently.
    torch.testing.assert_close(banded_light, whole_light, rtol=1e-6, atol=0)
    assert float((whole - image).abs().max()) > 0.1  # the render did brighten


def test_the_mean_brightness_in_bands_equals_the_whole_mean(monkeypatch):
    from rrdnet_cli import scene
    from rrdnet_cli.light import mean_brightness

    image = torch.rand(1, 3, 70, 48, generator=torch.Generator().manual_seed(2))
    whole = mean_brightness(image)
    assert whole == image.double().mean().item()  # one band: torch's own float64 mean
    monkeypatch.setattr(scene, "BAND_PIXELS", 16 * 48)
    assert len(scene.row_bands(70, 48)) == 4
    assert mean_brightness(image) == pytest.approx(whole, rel=1e-12)
    assert mean_brightness(image.permute(0, 1, 3, 2)) == pytest.approx(whole, rel=1e-12)


def test_a_wide_photo_renders_in_thinner_bands():
    from rrdnet_cli import light

    # About RENDER_BAND_PIXELS a band: 85 rows of 768 pixels, or the least height on a wide photo.
    bands = light._bands(512, 768)
    assert len(bands) == 6 and bands[0][0] == 0 and bands[-1][1] == 512
    assert all(84 <= bottom - top <= 86 for top, bottom in bands)
    bands = light._bands(3000, 4000)
    assert bands[0][0] == 0 and bands[-1][1] == 3000 and all(48 <= bottom - top <= 49 for top, bottom in bands)
    assert light._bands(20, 4000) == [(0, 20)]
