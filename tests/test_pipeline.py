"""The engine: enhance() basics, errors, and the fast path (default preset, crops, loss
rescaling, convergence stop, determinism)."""

import math

import numpy as np
import pytest
import torch

from rrdnet_cli import ConfigError, InputError, OptimisationError, UsageError, enhance, load_config, losses
from rrdnet_cli.config import Config, from_dict
from rrdnet_cli.light import mean_brightness, recombine
from rrdnet_cli.pipeline import (
    CropSampler,
    _converged,
    carry_illumination,
    decompose,
    downscale,
    downscale_to_pixels,
    loss_terms,
    resolve_device,
    seeded_network,
)
from rrdnet_cli.result import LOSS_COLUMNS

from helpers import dark_tensor


def test_enhance_brightens_and_reports_losses(tiny_config):
    image = dark_tensor()
    enhancement = enhance(image, tiny_config)
    assert enhancement.result.shape == image.shape
    assert enhancement.illumination.shape == (1, 1, 40, 48)
    assert enhancement.losses.shape == (tiny_config.iterations + 1, len(LOSS_COLUMNS))
    assert enhancement.result.mean() > 1.3 * image.mean()
    assert torch.isfinite(enhancement.result).all()


def test_same_seed_same_result_other_seed_differs(tiny_config):
    image = dark_tensor()
    first, second = enhance(image, tiny_config), enhance(image, tiny_config)
    assert torch.equal(first.result, second.result)
    np.testing.assert_array_equal(first.losses, second.losses)
    other = enhance(image, tiny_config.replace(seed=1))
    assert not torch.equal(first.result, other.result)


def test_losses_decrease_over_steps(tiny_config):
    enhancement = enhance(dark_tensor(), tiny_config.replace(iterations=20))
    assert enhancement.losses[-1, 4] < enhancement.losses[0, 4]


def test_recombine_formula():
    image = torch.full((1, 3, 2, 2), 0.2)
    illumination = torch.full((1, 1, 2, 2), 0.25)
    noise = torch.full((1, 3, 2, 2), 0.05)
    result, adjusted = recombine(image, illumination, noise, 0.5)
    assert torch.allclose(adjusted, torch.full_like(illumination, 0.5))
    assert torch.allclose(result, torch.full_like(image, 0.5 * 0.15 / 0.25))


@pytest.mark.parametrize("size", [(1, 1), (3, 3), (4, 40)])
def test_too_small_images_are_refused(tiny_config, size):
    with pytest.raises(InputError, match="at least 5x5"):
        enhance(torch.rand(1, 3, *size), tiny_config)


def test_wrong_shape_is_refused(tiny_config):
    with pytest.raises(InputError, match="shape"):
        enhance(torch.rand(3, 20, 20), tiny_config)


def test_diverging_loss_raises(tiny_config):
    image = dark_tensor()
    image[0, 0, 3, 3] = float("nan")
    with pytest.raises(OptimisationError, match="loss became nan"):
        enhance(image, tiny_config)


def test_cuda_request_without_cuda_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UsageError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(UsageError, match="expected auto, cpu"):
        resolve_device("gpu")


def _image(height=48, width=64, seed=0):
    # A dim, smooth picture with some texture, like an under-exposed photo.
    generator = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0, 1, height).view(1, 1, height, 1)
    columns = torch.linspace(0, 1, width).view(1, 1, 1, width)
    base = 0.05 + 0.15 * rows * columns + 0.03 * torch.rand(1, 3, height, width, generator=generator)
    return base.clamp(0, 1)


def _fast(**overrides):
    # The default preset, shortened so the suite stays quick.
    values = dict(iterations=12, device="cpu", optimisation_side=32, crop_size=16, tile_size=24)
    values.update(overrides)
    return load_config("default", **values)


def test_default_preset_is_the_default():
    assert load_config(None) == load_config("default")


def test_paper_preset_keeps_paper_settings():
    paper = load_config("paper")
    assert paper.strategy == "full" and paper.optimisation_side == 0 and paper.tile_size == 0
    assert paper.precision == "fp32" and paper.convergence_tolerance == 0.0
    assert paper.learning_rate_schedule == "constant" and paper.iterations == 1000


def test_default_preset_runs_on_small_image():
    image = _image()
    enhancement = enhance(image, _fast())
    for name in ("result", "reflectance", "noise"):
        tensor = getattr(enhancement, name)
        assert tensor.shape == (1, 3, 48, 64) and bool(torch.isfinite(tensor).all()), name
    assert enhancement.illumination.shape == (1, 1, 48, 64)
    assert float(enhancement.result.min()) >= 0 and float(enhancement.result.max()) <= 1
    assert enhancement.losses.shape == (enhancement.steps + 1, 5)
    assert np.isfinite(enhancement.losses).all()
    # It brightens.
    assert float(enhancement.result.mean()) > float(image.mean())


def test_without_reflectance_the_result_is_the_same():
    image = _image()
    whole = enhance(image, _fast())
    lighter = enhance(image, _fast(), reflectance=False)
    assert lighter.reflectance is None and lighter.removed is None
    for name in ("result", "illumination", "noise"):
        assert torch.equal(getattr(whole, name), getattr(lighter, name)), name
    np.testing.assert_array_equal(whole.losses, lighter.losses)


def test_a_zero_noise_map_never_runs_the_noise_branch(monkeypatch):
    from rrdnet_cli.model import RRDNet

    image = _image()
    fitted = enhance(image, _fast(noise_map="fitted"))
    calls = []
    original = RRDNet.maps
    monkeypatch.setattr(
        RRDNet,
        "maps",
        lambda self, x, reflectance=True, noise=True, **rest: (
            calls.append(noise) or original(self, x, reflectance, noise, **rest)
        ),
    )
    zero = enhance(image, _fast(noise_map="zero"), reflectance=False)
    assert calls and not any(calls)
    assert not zero.noise.any() and zero.noise.shape == image.shape
    assert not zero.losses[:, LOSS_COLUMNS.index("noise")].any()
    assert np.isfinite(zero.losses).all() and zero.steps == fitted.steps
    # The fit is otherwise the same: the fitted noise map was near zero too.
    assert float((zero.result - fitted.result).abs().mean()) < 0.02


def test_noise_map_is_validated():
    assert from_dict({"noise_map": "zero"}).noise_map == "zero"
    with pytest.raises(ConfigError, match="noise_map"):
        from_dict({"noise_map": "none"})


def test_paper_mode_keeps_the_reflectance_its_final_loss_needs(tiny_config):
    enhancement = enhance(dark_tensor(), tiny_config, reflectance=False)
    assert enhancement.reflectance is not None and enhancement.reflectance.shape == (1, 3, 40, 48)


@pytest.mark.parametrize("precision, strategy", [("fp32", "crops"), ("bf16", "crops"), ("fp32", "full")])
def test_same_seed_same_output(precision, strategy):
    image = _image()
    first = enhance(image, _fast(precision=precision, strategy=strategy))
    second = enhance(image, _fast(precision=precision, strategy=strategy))
    assert torch.equal(first.result, second.result)
    np.testing.assert_array_equal(first.losses, second.losses)


def test_seed_changes_crops():
    image = _image()
    first = enhance(image, _fast(precision="fp32", strategy="crops", seed=1))
    second = enhance(image, _fast(precision="fp32", strategy="crops", seed=2))
    assert not torch.equal(first.result, second.result)


def test_crop_sampler_cuts_image_and_priors_together():
    image = _image(40, 50)
    priors = losses.image_priors(image, 5, 3.0)
    sampler = CropSampler(image, priors, size=16, count=3, seed=7)
    seen, seen_priors = sampler.sample()
    assert seen.shape == (3, 3, 16, 16) and sampler.pixels == 3 * 16 * 16
    # Each crop of the priors comes from the same place as its crop of the image.
    for index in range(3):
        crop = seen[index : index + 1]
        found = [
            (row, column)
            for row in range(40 - 15)
            for column in range(50 - 15)
            if torch.equal(image[..., row : row + 16, column : column + 16], crop)
        ]
        assert len(found) == 1
        row, column = found[0]
        torch.testing.assert_close(
            seen_priors.max_channel[index : index + 1], priors.max_channel[..., row : row + 16, column : column + 16]
        )
    # Seeded: a second sampler with the same seed cuts the same crops.
    again, _ = CropSampler(image, priors, size=16, count=3, seed=7).sample()
    assert torch.equal(seen, again)


def test_crops_larger_than_image_are_clipped():
    image = _image(20, 30)
    sampler = CropSampler(image, losses.image_priors(image, 5, 3.0), size=96, count=2, seed=0)
    seen, _ = sampler.sample()
    assert seen.shape == (2, 3, 20, 30)


def test_noise_scale_only_touches_the_noise_term():
    image = _image(24, 24)
    priors = losses.image_priors(image, 5, 3.0)
    generator = torch.Generator().manual_seed(0)
    outputs = (
        torch.rand(1, 1, 24, 24, generator=generator) * 0.5 + 0.25,
        torch.rand(1, 3, 24, 24, generator=generator),
        torch.rand(1, 3, 24, 24, generator=generator) * 0.02 - 0.01,
    )
    config = Config()
    plain = loss_terms(image, outputs, priors, config)
    scaled = loss_terms(image, outputs, priors, config, noise_scale=0.5)
    torch.testing.assert_close(plain[:4], scaled[:4])
    expected = plain.total - 0.5 * config.noise_weight * plain.noise
    torch.testing.assert_close(scaled.total, expected)


def test_noise_scale_keeps_balance_on_a_repeated_image():
    # An image made of k copies of a patch, with constant outputs (so no smoothness term): its
    # L1 sums are k times the patch's, its L2 noise norm sqrt(k) times. With the noise weight
    # scaled by sqrt(patch pixels / image pixels), the patch's total is exactly 1/k of the whole's.
    patch = _image(16, 16)
    whole = patch.repeat(1, 1, 2, 3)
    k = 6

    def constant_outputs(height, width):
        return (
            torch.full((1, 1, height, width), 0.3),
            torch.full((1, 3, height, width), 0.4),
            torch.full((1, 3, height, width), 0.01),
        )

    config = Config()
    whole_terms = loss_terms(whole, constant_outputs(32, 48), losses.image_priors(whole, 5, 3.0), config)
    patch_terms = loss_terms(
        patch,
        constant_outputs(16, 16),
        losses.image_priors(patch, 5, 3.0),
        config,
        noise_scale=math.sqrt(1 / k),
    )
    torch.testing.assert_close(k * patch_terms.total, whole_terms.total, rtol=1e-5, atol=0)


def test_convergence_stop():
    assert not _converged([10.0] * 8, window=4, tolerance=0.0)
    assert _converged([10.0] * 8, window=4, tolerance=0.01)
    assert not _converged([10.0] * 7, window=4, tolerance=0.01)
    assert not _converged([10.0] * 4 + [5.0] * 4, window=4, tolerance=0.01)
    enhancement = enhance(_image(), _fast(iterations=50, convergence_tolerance=10.0, convergence_window=3))
    assert enhancement.steps == 6


def test_downscale():
    image = _image(40, 80)
    assert downscale(image, 0) is image
    assert downscale(image, 100) is image
    smaller = downscale(image, 20)
    assert smaller.shape == (1, 3, 10, 20)
    assert float(smaller.min()) >= 0 and float(smaller.max()) <= 1


@pytest.mark.parametrize(
    "key, value",
    [
        ("strategy", "tiles"),
        ("precision", "fp16"),
        ("learning_rate_schedule", "linear"),
        ("tile_size", 8),
        ("tile_size", -1),
        ("optimisation_side", 4),
        ("final_pass_pixels", 100),
        ("final_pass_pixels", -1),
        ("crop_size", 8),
        ("crops_per_step", 0),
        ("convergence_tolerance", -0.1),
        ("convergence_window", 0),
        ("crops_per_step", True),
        ("frozen_layers", 5),
        ("frozen_layers", -1),
        ("final_pass", "half"),
    ],
)
def test_new_fields_validate(key, value):
    with pytest.raises(ConfigError, match=key):
        from_dict({key: value})


def test_new_fields_accept_valid_values():
    config = from_dict({"strategy": "crops", "precision": "auto", "tile_size": 0, "optimisation_side": 16})
    assert config.strategy == "crops" and config.tile_size == 0


def test_initial_illumination_starts_at_image_level():
    from rrdnet_cli import RRDNet
    from rrdnet_cli.pipeline import start_illumination_at_image_level

    image = _image()
    torch.manual_seed(0)
    net = RRDNet()
    start_illumination_at_image_level(net, image)
    with torch.no_grad():
        illumination = net(image)[0]
    level = float(image.amax(dim=1).mean())
    assert abs(float(illumination.mean()) - level) < 0.05
    assert from_dict({"initial_illumination": "image"}).initial_illumination == "image"
    with pytest.raises(ConfigError, match="initial_illumination"):
        from_dict({"initial_illumination": "zero"})


def test_enhance_with_gamma_auto_reports_the_chosen_gamma(tiny_config):
    image = dark_tensor()
    enhancement = enhance(image, tiny_config.replace(brightness=0.18))
    assert enhancement.target_brightness == 0.18
    assert abs(mean_brightness(enhancement.result) - 0.18) < 0.01
    assert enhancement.brightness == pytest.approx(mean_brightness(enhancement.result))
    # The fit is the same as with a fixed gamma: only the recombination differs.
    fixed = enhance(image, tiny_config.replace(gamma=enhancement.gamma))
    assert torch.equal(fixed.result, enhancement.result) and fixed.target_brightness is None


def test_downscale_to_pixels_keeps_the_aspect():
    image = _image(60, 120)
    assert downscale_to_pixels(image, 0) is image
    assert downscale_to_pixels(image, 60 * 120) is image
    smaller = downscale_to_pixels(image, 1800)
    assert smaller.shape == (1, 3, 30, 60)


def _step_photo(height: int = 64, width: int = 96) -> torch.Tensor:
    """A dark photo whose right part is lit four times more, with a little texture."""
    generator = torch.Generator().manual_seed(0)
    image = torch.full((1, 3, height, width), 0.05)
    image[..., width // 2 + 1 :] = 0.2
    return image * (1 + 0.1 * torch.rand(image.shape, generator=generator))


def test_carried_illumination_keeps_the_photos_edge():
    image = _step_photo()
    # The reduced illumination: the photo's level at half size, whose edge a plain upsampling
    # spreads over several pixels.
    small = downscale(image.amax(dim=1, keepdim=True), 48)
    carried = carry_illumination(small, image)
    naive = torch.nn.functional.interpolate(small, size=image.shape[-2:], mode="bilinear", align_corners=False)
    truth = image.amax(dim=1, keepdim=True)

    def sharpest_step(light):
        return float(light.diff(dim=-1).amax(dim=-1).median())

    assert carried.shape == (1, 1, 64, 96)
    assert sharpest_step(carried) > 0.6 * sharpest_step(truth) > 1.5 * sharpest_step(naive)
    assert float(carried.min()) >= float(small.min()) and float(carried.max()) <= float(small.max())


def test_a_reduced_final_pass_runs_the_network_on_fewer_pixels(monkeypatch):
    net = seeded_network(0)
    image = _step_photo()
    seen = []
    original = net.maps

    def counting(window, *args, **kwargs):
        seen.append((window.shape[-2] * window.shape[-1], kwargs))
        return original(window, *args, **kwargs)

    monkeypatch.setattr(net, "maps", counting)
    full = decompose(net, image, 0, reflectance=False, noise=False)[0]
    copy = downscale_to_pixels(image, 1536)
    reduced, reflectance, noise = decompose(net, image, 0, reflectance=False, noise=False, reduced=copy)
    assert seen[1][0] == 32 * 48 and len(seen) == 2
    assert reduced.shape == full.shape and reflectance is None and not noise.any()
    # Close to the full-size pass: the network's illumination is smooth at this scale.
    assert (reduced - full).abs().mean() < 0.02
    # Reflectance, when asked, is still the network's at full size.
    _, reflectance, _ = decompose(net, image, 0, reflectance=True, noise=False, reduced=copy)
    assert seen[-1] == (64 * 96, {"reflectance": True, "noise": False, "illumination": False})
    assert torch.allclose(reflectance, decompose(net, image, 0, noise=False)[1])


def test_a_photo_within_the_final_pass_pixels_is_passed_whole(tiny_config):
    image = _image(48, 64)
    whole = enhance(image, tiny_config)
    capped = enhance(image, tiny_config.replace(final_pass_pixels=64 * 64))
    assert torch.equal(whole.result, capped.result)


@pytest.mark.parametrize("strategy", ["full", "crops"])
def test_frozen_layers_keep_their_weights_and_fit_as_if_held_fixed(strategy):
    """The features computed once per image seen give the fit that holding those layers' weights
    fixed gives, and only the later layers move."""
    from rrdnet_cli.pipeline import initial_network

    image = _image()
    config = _fast(strategy=strategy, frozen_layers=2)
    start = initial_network(config, image)
    frozen = initial_network(config, image)
    cached = enhance(image, config, net=frozen)
    held = initial_network(config, image)
    for branch in (held.illumination_net, held.reflectance_net, held.noise_net):
        for parameter in branch[:4].parameters():
            parameter.requires_grad_(False)
    fixed = enhance(image, config.replace(frozen_layers=0), net=held)
    torch.testing.assert_close(cached.result, fixed.result, rtol=0, atol=1e-5)
    np.testing.assert_allclose(cached.losses, fixed.losses, rtol=1e-5)
    for name, before in start.state_dict().items():
        after = frozen.state_dict()[name]
        branch, layer = name.split(".")[:2]
        # The noise branch is not run at all (noise_map zero).
        assert torch.equal(before, after) == (int(layer) < 4 or branch == "noise_net"), name


def test_the_local_light_carries_the_illumination_from_the_fits_own_copy():
    from rrdnet_cli.pipeline import final_pass_copy

    image = _image(48, 64)
    config = _fast(optimisation_side=32, final_pass="auto")
    assert config.light_follows_scene

    def copy_for(config):
        # What the fit was made on: the copy optimise() fits, or the image itself.
        return final_pass_copy(image, config, downscale(image, config.optimisation_side))

    assert copy_for(config).shape == (1, 3, 24, 32)
    # The paper's rendering, or final_pass full, keeps the network's full-size pass.
    assert copy_for(config.replace(gamma=0.4)) is image
    assert copy_for(config.replace(tone_mapping="global")) is image
    assert copy_for(config.replace(final_pass="full")) is image
    # final_pass_pixels still caps the copy where it is the smaller.
    assert copy_for(config.replace(final_pass_pixels=4096, optimisation_side=0)) is image


def test_a_carried_final_pass_runs_the_network_on_the_copy_only(monkeypatch):
    from rrdnet_cli.model import RRDNet

    image = _image(48, 64)
    config = _fast(optimisation_side=32, final_pass="auto", tile_size=0)
    passes = []
    original = RRDNet.maps

    def counting(self, x, *args, **kwargs):
        if not torch.is_grad_enabled():  # the final pass, not a step
            passes.append(tuple(x.shape[-2:]))
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(RRDNet, "maps", counting)
    carried = enhance(image, config, reflectance=False)
    assert passes and all(shape == (24, 32) for shape in passes)
    passes.clear()
    full = enhance(image, config.replace(final_pass="full"), reflectance=False)
    assert (48, 64) in passes
    assert carried.illumination.shape == full.illumination.shape == (1, 1, 48, 64)
    # The picture hardly moves: the local light takes the fitted light at a quarter weight.
    assert float((carried.result - full.result).abs().mean()) < 0.01
