"""The local light: an edge-aware light map, the tone curve with its toe, colours kept."""

import math

import numpy as np
import pytest
import torch

from rrdnet_cli import scene
from rrdnet_cli.light import choose_local_light, mean_brightness, render_local
from rrdnet_cli.result import from_maps


def _hue_degrees(rgb: torch.Tensor) -> torch.Tensor:
    """Hue angle of linear RGB ``(1, 3, ...)`` in the opponent plane (enough to see a hue move)."""
    red, green, blue = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    return torch.rad2deg(torch.atan2(math.sqrt(3) * (green - blue), 2 * red - green - blue))


def night_scene(seed: int = 0, size: int = 64) -> torch.Tensor:
    """A black, noisy sky over a warm lit façade with texture: ``(1, 3, size, size)`` sRGB."""
    generator = torch.Generator().manual_seed(seed)
    linear = torch.zeros(1, 3, size, size)
    rows = torch.arange(size).view(-1, 1).float()
    columns = torch.arange(size).view(1, -1).float()
    texture = 0.5 + 0.5 * torch.sin(columns / 2.0) * torch.sin(rows / 3.0)
    facade = torch.tensor([0.06, 0.035, 0.012]).view(1, 3, 1, 1) * (0.6 + 0.4 * texture)
    linear[..., size // 2 :, :] = facade[..., size // 2 :, :]
    srgb = scene.to_srgb(linear)
    return (srgb + 0.006 * torch.randn(srgb.shape, generator=generator)).clamp(0.0, 1.0)


def _maps(image: torch.Tensor):
    illumination = torch.full_like(image[:, :1], 0.3)
    return image, illumination, None, torch.zeros_like(image), np.zeros((1, 5))


def test_light_map_steps_at_an_edge_instead_of_bleeding_across_it():
    linear = torch.full((1, 3, 48, 48), 0.01)
    linear[..., 24:] = 0.4
    stops = scene.edge_aware(torch.log2(linear.amax(dim=1, keepdim=True) + 1e-4))
    assert stops[..., :, :20].mean().item() == pytest.approx(math.log2(0.01 + 1e-4), abs=0.25)
    assert stops[..., :, 28:].mean().item() == pytest.approx(math.log2(0.4 + 1e-4), abs=0.25)


def test_tone_curve_lifts_darker_regions_more_and_never_darkens():
    stops = torch.tensor([-10.0, -8.0, -6.0, -4.0, -2.0]).view(1, 1, 1, 5)
    share = torch.ones_like(stops)
    gain = scene.gain(stops, key=-6.0, target_key=-2.0, share=share, slopes=(0.7, 0.4))
    assert gain[0, 0, 0, 2].item() == pytest.approx(16.0)  # the key lands on the target key
    assert torch.all(gain[..., :-1] >= gain[..., 1:])  # darker regions get more
    assert torch.all(gain >= 1.0)
    # A region with no share of the lift (nothing above the noise) keeps its level.
    assert scene.gain(stops, -6.0, -2.0, torch.zeros_like(stops), (0.7, 0.4)).eq(1.0).all()


def test_the_curve_keeps_a_short_range_and_compresses_a_long_one():
    curve = scene.CURVE
    key = -6.0
    # Lit content spanning a stop below and half a stop above its key (a flat indoor scene): its
    # brightest regions would stay below the white level even at slope 1, so they keep it.
    short = key + torch.linspace(-1.0, 0.5, 1001)
    assert scene.scene_slopes(short, key) == pytest.approx((curve.contrast, 1.0))
    # Eight stops below and six above (a backlit subject, a spot-lit print): compressed to the
    # least slopes.
    long = key + torch.linspace(-8.0, 6.0, 1001)
    assert scene.scene_slopes(long, key) == pytest.approx((curve.min_contrast, curve.min_highlight_contrast))
    # In between, the darkest lit regions end shadow_stops below the target key and the brightest
    # reach the white level.
    middle = key + torch.linspace(-4.0, 3.0, 1001)
    below, above = scene.scene_slopes(middle, key)
    darkest, brightest = torch.quantile(middle, torch.tensor([curve.range_quantile, 1 - curve.range_quantile]))
    assert below * (key - darkest.item()) == pytest.approx(curve.shadow_stops, rel=1e-3)
    assert math.log2(scene.KEY) + above * (brightest.item() - key) == pytest.approx(math.log2(curve.white), rel=1e-3)


def flat_room(seed: int = 5, size: int = 64) -> torch.Tensor:
    """A dim, flat indoor scene: a grey wall (linear 0.01) with a white cupboard door (0.02, a
    stop brighter) on its right, little noise: ``(1, 3, size, size)`` sRGB."""
    generator = torch.Generator().manual_seed(seed)
    linear = torch.full((1, 3, size, size), 0.01)
    linear[..., size // 2 :] = 0.02
    srgb = scene.to_srgb(linear)
    return (srgb + 0.002 * torch.randn(srgb.shape, generator=generator)).clamp(0.0, 1.0)


def test_a_flat_indoor_scene_keeps_its_contrast():
    image = flat_room()
    result = from_maps(*_maps(image), "auto", "auto", denoise="auto", tone_mapping="local").result

    def stops_between_door_and_wall(picture: torch.Tensor) -> float:
        linear = scene.to_linear(picture)
        return math.log2(linear[..., 8:-8, 40:56].mean().item() / linear[..., 8:-8, 8:24].mean().item())

    # The door stays nearly a stop brighter than the wall (a fixed highlight slope of 0.4 left 0.67
    # of it: a grey plateau).
    assert stops_between_door_and_wall(result) > 0.85 * stops_between_door_and_wall(image)
    assert result.mean().item() > 3.0 * image.mean().item()


def test_presence_lifts_detail_near_the_floor_but_not_bare_noise():
    floor = 1e-3
    stops = torch.full((1, 1, 4, 4), math.log2(floor) + scene.CURVE.toe_start)
    assert scene.presence(stops, floor, torch.zeros_like(stops)).max().item() == 0.0
    assert scene.presence(stops, floor, torch.ones_like(stops)).min().item() == 1.0
    assert scene.presence(stops + 4.0, floor, torch.zeros_like(stops)).min().item() == 1.0


def test_detail_share_tells_texture_from_noise():
    generator = torch.Generator().manual_seed(1)
    noise = 0.01 * torch.randn(1, 3, 48, 48, generator=generator)
    flat = (0.05 + noise).clamp(0, 1)
    columns = torch.arange(48).float().view(1, 1, 1, -1)
    textured = (0.05 + 0.05 * torch.sin(columns) + noise).clamp(0, 1)
    assert scene.regional_mean(scene.texture_share(flat, 0.01), 9).mean().item() < 0.2
    assert scene.regional_mean(scene.texture_share(textured, 0.01), 9).mean().item() > 0.8


def test_highlights_are_compressed_below_one_with_the_colour_ratios_kept():
    # Up to 1.9 times full scale: below the fade to white.
    linear = torch.tensor([4.0, 2.0, 1.0]).view(1, 3, 1, 1) * torch.linspace(0.1, 0.475, 16).view(1, 1, 1, -1)
    compressed = scene.compress_highlights(linear)
    assert compressed.max().item() < 1.0
    ratios = compressed / compressed[:, :1]
    assert torch.allclose(ratios, (linear / linear[:, :1]), atol=1e-5)
    # Increasing: brighter stays brighter.
    assert torch.all(compressed[0, 0, 0, 1:] > compressed[0, 0, 0, :-1])


def test_clean_chroma_keeps_the_luminance():
    generator = torch.Generator().manual_seed(2)
    linear = torch.rand(1, 3, 24, 24, generator=generator)
    cleaned = scene.clean_chroma(linear, torch.ones(1, 1, 24, 24))
    assert torch.allclose(scene.luminance(cleaned), scene.luminance(linear), atol=1e-5)
    assert cleaned.std(dim=(2, 3)).mean() < linear.std(dim=(2, 3)).mean()


def grey_and_stripes(seed: int = 3, size: int = 48, sigma: float = 0.01):
    """A noisy dark grey left half beside fine red and blue stripes (2 px each): ``(sRGB with noise,
    the noiseless linear)``, both ``(1, 3, size, size)``, and the columns of the red stripes."""
    generator = torch.Generator().manual_seed(seed)
    linear = torch.full((1, 3, size, size), 0.02)
    half = size // 2
    red_columns = [half + column for column in range(half) if column // 2 % 2 == 0]
    linear[..., half:] = torch.tensor([0.008, 0.012, 0.05]).view(1, 3, 1, 1)
    linear[..., red_columns] = torch.tensor([0.05, 0.008, 0.008]).view(1, 3, 1, 1)
    srgb = scene.to_srgb(linear)
    return (srgb + sigma * torch.randn(srgb.shape, generator=generator)).clamp(0.0, 1.0), linear, red_columns


def test_chroma_detail_tells_colour_detail_from_chroma_noise():
    signal, _, _ = grey_and_stripes()
    own = scene.chroma_detail(signal, 0.01)
    assert own[..., 4:-4, 4:20].mean().item() < 0.1  # a grey region's colour is all noise
    assert own[..., 4:-4, 28:-4].min().item() > 0.9  # stripes a blur would mix
    # Without measurable noise there is nothing to clean.
    assert scene.chroma_detail(signal, 0.0).min().item() == 1.0


def test_finish_keeps_the_hue_of_fine_colour_detail_and_cleans_grey_speckle():
    signal, linear, red_columns = grey_and_stripes()
    gain = torch.full_like(signal[:, :1], 8.0)
    truth = _hue_degrees(linear[..., red_columns].mean(dim=(2, 3), keepdim=True)).item()

    def rendered(own_colour: torch.Tensor):
        result = scene.to_linear(scene.finish(signal, gain, own_colour))
        grey = result[..., 4:-4, 4:20]
        speckle = (grey - scene.luminance(grey)).std().item()
        red = _hue_degrees(result[..., 4:-4, red_columns].mean(dim=(2, 3), keepdim=True)).item()
        return speckle, abs(red - truth)

    speckle, hue_moved = rendered(scene.chroma_detail(signal, 0.01))
    uncleaned_speckle, _ = rendered(torch.ones_like(gain))
    _, blurred_hue_moved = rendered(torch.zeros_like(gain))
    assert hue_moved < 3.0
    assert blurred_hue_moved > 30.0  # cleaning every pixel would mix red and blue stripes
    assert speckle < 0.4 * uncleaned_speckle


def test_the_local_light_keeps_fine_colour_detail_in_a_lifted_noisy_photo():
    signal, linear, red_columns = grey_and_stripes()
    analysed = scene.analyse(signal, 0.01, torch.full_like(signal[:, :1], 0.3))
    choice = choose_local_light(signal, torch.zeros_like(signal), analysed, "auto")
    assert choice.key is not None
    result, _ = render_local(signal, torch.zeros_like(signal), analysed, choice.key)
    assert mean_brightness(result) > 2 * mean_brightness(signal)
    red = scene.to_linear(result)[..., 4:-4, red_columns].mean(dim=(2, 3), keepdim=True)
    truth = linear[..., red_columns].mean(dim=(2, 3), keepdim=True)
    assert abs(_hue_degrees(red).item() - _hue_degrees(truth).item()) < 5.0


def test_srgb_transfer_round_trips():
    values = torch.linspace(0.0, 1.0, 101)
    assert torch.allclose(scene.to_srgb(scene.to_linear(values)), values, atol=1e-5)


def test_a_night_sky_stays_dark_while_the_lit_facade_is_brightened_in_its_own_colour():
    image = night_scene()
    enhancement = from_maps(*_maps(image), "auto", "auto", denoise="auto", tone_mapping="local")
    result = enhancement.result
    sky, facade = slice(4, 28), slice(36, 60)
    assert result[..., sky, :].mean().item() < 0.06
    assert result[..., facade, :].mean().item() > 2.0 * image[..., facade, :].mean().item()
    before = _hue_degrees(scene.to_linear(image[..., facade, :]).mean(dim=(2, 3)))
    after = _hue_degrees(scene.to_linear(result[..., facade, :]).mean(dim=(2, 3)))
    assert abs((after - before).item()) < 5.0
    assert enhancement.light.local and "local light" in enhancement.light.describe()


def test_the_automatic_light_renders_once_and_reports_the_result_s_own_brightness(monkeypatch):
    from rrdnet_cli import light

    renders = []
    original = light.render_local

    def counted(image, *arguments, **options):
        renders.append(image.shape)
        return original(image, *arguments, **options)

    monkeypatch.setattr(light, "render_local", counted)
    monkeypatch.setattr("rrdnet_cli.result.render_local", counted)
    image = night_scene()
    enhancement = from_maps(*_maps(image), "auto", "auto", denoise="auto", tone_mapping="local", removed=False)
    assert renders == [image.shape]  # the whole photo once: no search for a brightness nobody asked
    assert enhancement.brightness == mean_brightness(enhancement.result)


@pytest.mark.parametrize("target", [0.3, 0.45, 0.6, 0.8])
def test_a_brightness_asked_for_is_reached_on_a_night_scene(target):
    image = night_scene(seed=3)
    enhancement = from_maps(*_maps(image), "auto", target, denoise="auto", tone_mapping="local")
    assert enhancement.brightness == pytest.approx(target, abs=0.01)
    assert enhancement.light.reached


def test_a_photo_already_brighter_than_the_target_keeps_its_own_light():
    image = torch.full((1, 3, 32, 32), 0.7)
    choice = choose_local_light(image, torch.zeros_like(image), scene.analyse(image, 0.0, image[:, :1]), 0.2)
    result, _ = render_local(image, torch.zeros_like(image), scene.analyse(image, 0.0, image[:, :1]), choice.key)
    assert mean_brightness(result) == pytest.approx(0.7, abs=0.01)
    assert not choice.reached


def test_the_fitted_illumination_moves_the_result():
    image = night_scene(seed=4)
    maps = list(_maps(image))
    first = from_maps(*maps, "auto", "auto", tone_mapping="local").result
    maps[1] = torch.full_like(maps[1], 0.6)
    second = from_maps(*maps, "auto", "auto", tone_mapping="local").result
    assert not torch.equal(first, second)


def test_light_far_past_full_scale_turns_white_while_moderate_highlights_keep_their_colour():
    colour = torch.tensor([1.0, 0.1, 0.02]).view(1, 3, 1, 1)
    moderate = scene.compress_highlights(colour * 1.2)
    far = scene.compress_highlights(colour * 100.0)
    assert torch.allclose(moderate / moderate[:, :1], colour, atol=1e-5)  # the ratios are kept
    assert far.min().item() > 0.9 and far.max().item() < 1.0  # white, never past it


def test_a_saturated_photo_still_reaches_a_bright_target():
    image = torch.zeros(1, 3, 40, 40)
    image[:, 0] = 0.12  # a dark, pure red picture
    image[:, 1] = 0.01
    enhancement = from_maps(*_maps(image), "auto", 0.8, denoise="off", tone_mapping="local")
    assert enhancement.brightness == pytest.approx(0.8, abs=0.01)


def test_the_analysis_in_bands_equals_the_whole_image_analysis(monkeypatch):
    generator = torch.Generator().manual_seed(5)
    # A dark background holding nothing but noise, and a lit, textured region across band edges.
    signal = 0.02 + 0.01 * torch.randn(1, 3, 70, 40, generator=generator)
    signal[..., 25:45, 8:30] += 0.4 + 0.1 * torch.rand(1, 3, 20, 22, generator=generator)
    signal = signal.clamp(0, 1)
    illumination = torch.linspace(0.02, 0.5, 70).view(1, 1, 70, 1).expand(1, 1, 70, 40).contiguous()
    whole = scene.analyse(signal, 0.01, illumination)
    assert len(scene.row_bands(70, 40)) == 1
    monkeypatch.setattr(scene, "BAND_PIXELS", 16 * 40)
    assert len(scene.row_bands(70, 40)) == 4
    reads = []

    def signal_rows(top, bottom):
        reads.append((top, bottom))
        return signal[..., top:bottom, :]

    banded = scene.analyse_rows(signal_rows, 0.01, illumination)
    # Each band is read with the widest window's margin, never the whole image.
    assert all(bottom - top < 70 for top, bottom in reads) and (0, 70) not in reads
    # The same per-pixel formulas; only where a band's end falls inside a SIMD vector of the whole
    # image's may log2 and pow round the last bit differently.
    for name in ("stops", "share", "own_colour"):
        torch.testing.assert_close(getattr(banded, name), getattr(whole, name), rtol=1e-6, atol=1e-7)
    assert banded.key == pytest.approx(whole.key, rel=1e-7)
    assert banded.slopes == pytest.approx(whole.slopes, rel=1e-6)
    # Neither map is trivial: parts of the lift and of the colour kept vary across the bands.
    assert float(whole.share.max() - whole.share.min()) > 0.2
    assert float(whole.own_colour.min()) < 0.5 < float(whole.own_colour.max())
