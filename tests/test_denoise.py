"""denoise.py: the noise estimate, the tiled denoiser and the gain-guided blend; and how the
rendering uses them (from_maps)."""

import warnings

import numpy as np
import pytest
import torch

from rrdnet_cli import denoise, enhance, load_config
from rrdnet_cli.denoise import (
    AUTO_STRENGTH,
    HIGH_GAIN,
    Denoised,
    blend_weight,
    denoise_signal,
    signal_noise_level,
    strength_of,
)
from rrdnet_cli.errors import UsageError
from rrdnet_cli.result import from_maps

from helpers import dark_tensor


def noisy_flat(sigma=0.02, size=48, seed=0):
    generator = np.random.default_rng(seed)
    clean = np.full((size, size, 3), 0.3, dtype=np.float32)
    clean[:, size // 2 :] = 0.6
    return clean, np.clip(clean + sigma * generator.standard_normal(clean.shape), 0, 1).astype(np.float32)


def as_tensor(pixels):
    """``(H, W, 3)`` pixels as the package's ``(1, 3, H, W)`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].contiguous()


def denoised(pixels, strength=AUTO_STRENGTH, **options):
    """``pixels`` ``(H, W, 3)`` denoised at ``strength`` (the gentle copy), ``(1, 3, H, W)``."""
    image = as_tensor(pixels)
    return denoise_signal(image, torch.zeros_like(image), strength, **options).gentle


def test_noise_level_is_estimated_from_the_image():
    _, noisy = noisy_flat(0.02)
    image = as_tensor(noisy)
    assert signal_noise_level(image, torch.zeros_like(image)) == pytest.approx(0.02, rel=0.25)
    flat = as_tensor(noisy_flat(0.0)[1])
    assert signal_noise_level(flat, torch.zeros_like(flat)) < 1e-3


def test_denoising_brings_the_image_closer_to_the_clean_one():
    clean, noisy = noisy_flat(0.03)
    cleaned = denoised(noisy)
    clean, noisy = as_tensor(clean), as_tensor(noisy)
    assert cleaned.shape == noisy.shape and cleaned.dtype == torch.float32
    assert (cleaned - clean).abs().mean() < 0.5 * (noisy - clean).abs().mean()
    assert 0.0 <= cleaned.min() and cleaned.max() <= 1.0


def test_tiles_give_nearly_the_untiled_result():
    _, noisy = noisy_flat(0.03, size=64)
    whole = denoised(noisy, tile_size=1024)
    tiled = denoised(noisy, tile_size=24)
    # Each tile estimates its own BayesShrink thresholds, so the two differ by a fraction of the noise.
    assert not torch.equal(whole, tiled)
    assert (whole - tiled).abs().mean() < 3e-3


def test_blend_weight_is_zero_where_nothing_was_brightened():
    gain = torch.tensor([0.5, 1.0, 2.0, 4.0, 1e12], dtype=torch.float64)
    assert blend_weight(gain).tolist() == pytest.approx([0.0, 0.0, 0.5, 0.75, 1.0])


def test_the_blend_moves_to_the_strong_copy_where_the_gain_is_high():
    signal = torch.zeros(1, 3, 1, 5)
    denoised = Denoised(gentle=torch.full((1, 3, 1, 5), 1.0), strong=torch.full((1, 3, 1, 5), 3.0))
    gain = torch.tensor([1.0, 2.0, HIGH_GAIN, 1.5 * HIGH_GAIN, 4 * HIGH_GAIN]).view(1, 1, 1, 5)
    blended = denoised.blend(signal, gain)[0, 0, 0]
    weight = blend_weight(gain)[0, 0, 0]
    # Up to HIGH_GAIN the gentle copy alone; halfway to twice it, half of each; beyond, the strong.
    expected = weight * torch.tensor([1.0, 1.0, 1.0, 2.0, 3.0])
    assert torch.allclose(blended, expected)
    # Indexing cuts both copies alike (the brightness search's grid).
    assert denoised[..., ::2].strong.shape == (1, 3, 1, 3) and denoised[..., ::2].gentle.shape == (1, 3, 1, 3)


def test_the_strong_copy_removes_more_noise_from_one_estimate():
    clean, noisy = noisy_flat(0.03)
    image = torch.from_numpy(noisy).permute(2, 0, 1)[None]
    copies = denoise_signal(image, torch.zeros_like(image), AUTO_STRENGTH)
    harder = denoise_signal(image, torch.zeros_like(image), denoise.HIGH_GAIN_FACTOR * AUTO_STRENGTH)
    assert torch.equal(copies.strong, harder.gentle)  # the strong copy is the harder strength's
    flat = (slice(None), slice(None), slice(4, 44), slice(4, 20))  # inside the left half, away from the edge
    assert copies.strong[flat].std() < 0.8 * copies.gentle[flat].std()


def test_strength_of_reads_the_config_value():
    assert strength_of("off") is None and strength_of("auto") == AUTO_STRENGTH and strength_of(0.7) == 0.7
    with pytest.raises(UsageError):
        strength_of("strong")


def dark_maps(seed=0, height=40, width=48):
    generator = torch.Generator().manual_seed(seed)
    illumination = torch.linspace(0.03, 0.9, width).view(1, 1, 1, width).expand(1, 1, height, width).contiguous()
    reflectance = 0.3 + 0.4 * torch.rand(1, 3, height, width, generator=generator)
    image = (illumination * reflectance + 0.01 * torch.randn(1, 3, height, width, generator=generator)).clamp(0, 1)
    noise = torch.zeros_like(image)
    return image, illumination, reflectance, noise


def test_from_maps_denoises_where_the_light_was_raised_and_says_what_it_removed():
    image, illumination, reflectance, noise = dark_maps()
    losses = np.zeros((1, 5))
    plain = from_maps(image, illumination, reflectance, noise, losses, 0.4, None)
    denoised = from_maps(image, illumination, reflectance, noise, losses, 0.4, None, denoise="auto")
    assert torch.equal(plain.removed, torch.zeros_like(plain.result))
    assert torch.allclose(plain.result - denoised.result, denoised.removed, atol=1e-6)
    # Dark columns (gain ~8) lose most of their pixel-to-pixel noise; the bright end (gain ~1.07)
    # keeps nearly all of it.
    dark = (slice(None), slice(None), slice(None), slice(0, 8))
    assert denoised.result[dark].diff(dim=2).std() < 0.7 * plain.result[dark].diff(dim=2).std()
    assert denoised.removed[..., -4:].abs().mean() < 0.2 * denoised.removed[dark].abs().mean()
    again = from_maps(image, illumination, reflectance, noise, losses, 0.4, None, denoise="auto")
    assert torch.equal(again.result, denoised.result)


def test_default_with_gamma_0_4_and_denoise_off_renders_as_the_paper():
    config = load_config("default", gamma=0.4, denoise="off", iterations=2, device="cpu")
    enhancement = enhance(dark_tensor(), config)
    image, illumination, noise = enhancement.image, enhancement.illumination, enhancement.noise
    expected = (illumination.pow(0.4) * (image - noise) / illumination).clamp(0.0, 1.0)
    assert torch.equal(enhancement.result, expected)
    assert enhancement.light.exposure == 1.0 and not enhancement.light.tone
    assert not enhancement.removed.any()


def test_cycle_spinning_beats_one_shrinkage(monkeypatch):
    # The edge sits on an odd column, off the Haar grid, where one shrinkage leaves a step artefact.
    generator = np.random.default_rng(1)
    x = np.linspace(0.2, 0.7, 64, dtype=np.float32)
    clean = np.repeat(np.repeat(x[None, :, None], 64, axis=0), 3, axis=2)
    clean[:, 33:] += 0.15
    noisy = np.clip(clean + 0.04 * generator.standard_normal(clean.shape), 0, 1).astype(np.float32)
    spun = denoised(noisy)
    monkeypatch.setattr(denoise, "SHIFTS", ((0, 0),))
    single = denoised(noisy)
    clean = as_tensor(clean)
    assert not torch.equal(spun, single)
    assert ((spun - clean) ** 2).mean() < 0.95 * ((single - clean) ** 2).mean()


def test_the_thread_count_does_not_change_the_result():
    _, noisy = noisy_flat(0.03, size=200)  # large enough for torch to split its loops
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            results.append(denoised(noisy, tile_size=96))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(result, results[0]) for result in results[1:])


@pytest.mark.parametrize("size", [(5, 5), (6, 9), (12, 16)])
def test_tiny_images_are_denoised_without_a_warning(size):
    # PyWavelets warns when asked for more levels than an image holds: the levels follow its size.
    generator = np.random.default_rng(3)
    noisy = (0.2 + 0.05 * generator.standard_normal((*size, 3))).clip(0, 1).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cleaned = denoised(noisy)
    assert cleaned.shape == (1, 3, *size)


def per_channel_shrink(tile, sigma, levels):
    """BayesShrink one opponent channel at a time, each with its own forward transform, the pixels
    ``(H, W, 3)``: what ``bayes_shrink`` computes on planes from one transform for several sigmas."""
    import pywt

    opponent = tile @ denoise.OPPONENT.T
    cleaned = np.empty_like(opponent)
    variance, eps = sigma * sigma, np.finfo(np.float32).eps
    for channel in range(3):
        coefficients = pywt.wavedec2(np.ascontiguousarray(opponent[..., channel]), "haar", level=levels)
        shrunk = [coefficients[0]]
        for bands in coefficients[1:]:
            shrunk.append(
                tuple(
                    pywt.threshold(
                        band, np.float32(variance / np.sqrt(max(float(np.mean(band * band)) - variance, eps))), "soft"
                    )
                    for band in bands
                )
            )
        cleaned[..., channel] = pywt.waverec2(shrunk, "haar")[: tile.shape[0], : tile.shape[1]]
    return cleaned @ denoise.OPPONENT


def test_one_transform_shrinks_at_every_strength_as_each_alone():
    _, noisy = noisy_flat(0.03, size=40)
    noisy = noisy[:, :37]  # odd width: the inverse is cropped
    planes = as_tensor(noisy)[0]
    # 0.002: most bands above the threshold's variance; 0.2: every band takes the eps branch.
    sigmas = (0.002, 0.03, 0.2)
    for shrunk, sigma in zip(denoise.bayes_shrink(planes, sigmas, 3), sigmas):
        assert shrunk.dtype == torch.float32 and shrunk.shape == planes.shape
        # PyWavelets' coefficients and thresholds, to the rounding of sums taken in another order.
        np.testing.assert_allclose(
            shrunk.permute(1, 2, 0).numpy(), per_channel_shrink(noisy, sigma, 3), rtol=0, atol=2e-6
        )


def test_the_noise_level_is_that_of_the_clamped_signal():
    clean, noisy = noisy_flat(0.02)
    image = as_tensor(noisy)
    noise = 0.01 * torch.ones_like(image)
    noise[..., :4, :] = -2.0  # clamped to 1: a flat band that adds no noise
    signal = (image - noise).clamp(0.0, 1.0)
    assert signal_noise_level(image, noise) == signal_noise_level(signal, torch.zeros_like(signal))
    # A noise map that holds the photo's noise leaves none in the signal.
    assert signal_noise_level(image, image - as_tensor(clean)) < 1e-3 < signal_noise_level(image, noise)


def test_copies_of_a_large_signal_are_kept_in_half_precision(monkeypatch):
    _, noisy = noisy_flat(0.03, size=48)
    image = torch.from_numpy(noisy).permute(2, 0, 1)[None].contiguous()
    noise = torch.zeros_like(image)
    full = denoise_signal(image, noise, AUTO_STRENGTH)
    monkeypatch.setattr(denoise, "HALF_PRECISION_PIXELS", 48 * 48 - 1)
    half = denoise_signal(image, noise, AUTO_STRENGTH)
    assert full.gentle.dtype == torch.float32 and half.gentle.dtype == half.strong.dtype == torch.float16
    # Rounded to the nearest float16: within 2^-11 of a value up to 1.
    assert torch.allclose(half.gentle.float(), full.gentle, rtol=0, atol=2**-11)
    assert torch.allclose(half.strong.float(), full.strong, rtol=0, atol=2**-11)
    gain = torch.full((1, 1, 48, 48), 12.0)
    assert half.blend(image, gain).dtype == torch.float32
    assert torch.allclose(half.blend(image, gain), full.blend(image, gain), rtol=0, atol=2**-11)


def test_a_signal_without_noise_gives_itself_as_both_copies():
    image = torch.zeros(1, 3, 20, 24)  # black: every wavelet coefficient zero, no noise measured
    assert denoise.signal_noise_level(image, torch.zeros_like(image)) == 0.0
    copies = denoise_signal(image, torch.zeros_like(image), AUTO_STRENGTH)
    assert torch.equal(copies.gentle, image) and torch.equal(copies.strong, image)


def test_the_noise_level_reads_exactly_dwt2_s_finest_diagonal_whatever_the_threads():
    import pywt

    _, noisy = noisy_flat(0.02, size=64)
    diagonal = pywt.dwt2(noisy[..., 1], "db2")[1][2]
    expected = float(np.median(np.abs(diagonal[diagonal != 0]))) / denoise.MAD_TO_SIGMA
    assert denoise._channel_noise_level(noisy[..., 1]) == expected
    image = as_tensor(noisy)
    threads = torch.get_num_threads()
    levels = set()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            levels.add(denoise.signal_noise_level(image, torch.zeros_like(image)))
    finally:
        torch.set_num_threads(threads)
    channels = [denoise._channel_noise_level(noisy[..., channel]) for channel in range(3)]
    assert levels == {float(np.mean(channels))}


@pytest.mark.parametrize("size", [(8, 12), (7, 10), (9, 5)])
def test_the_haar_transform_is_pywavelets_and_inverts_exactly(size):
    import pywt

    generator = np.random.default_rng(4)
    planes = generator.random((2, *size), dtype=np.float32)
    coefficients = denoise.haar_forward(torch.from_numpy(planes))
    for channel in range(2):
        approximation, (across_rows, across_columns, diagonal) = pywt.dwt2(planes[channel], "haar")
        expected = np.stack([approximation, across_rows, across_columns, diagonal])
        # PyWavelets' detail bands, up to their sign (which soft thresholding does not see).
        np.testing.assert_allclose(np.abs(coefficients[channel].numpy()), np.abs(expected), rtol=0, atol=1e-6)
    rebuilt = denoise.haar_inverse(coefficients[:, 0], coefficients)[:, : size[0], : size[1]]
    torch.testing.assert_close(rebuilt, torch.from_numpy(planes), rtol=0, atol=1e-6)
