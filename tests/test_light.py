"""light.py: the bisection for a target brightness and the light choice, on synthetic maps.

(Runs of the command with --gamma/--brightness are in test_cli.py, configs in test_config.py.)
"""

import numpy as np
import pytest
import torch

from rrdnet_cli.light import GAMMA_MAX, GAMMA_MIN, brightness_at, choose_light, gamma_for_brightness, mean_brightness


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
    assert choice.brightness == pytest.approx(brightness_at(image, illumination, noise, choice.gamma))


def test_brightness_never_increases_with_gamma():
    image, illumination, noise = synthetic_maps(1)
    gammas = np.geomspace(GAMMA_MIN, GAMMA_MAX, 30)
    values = [brightness_at(image, illumination, noise, gamma) for gamma in gammas]
    assert all(later <= earlier + 1e-12 for earlier, later in zip(values, values[1:]))


def test_unreachable_targets_give_the_nearest_end_and_say_so():
    image, illumination, noise = synthetic_maps()
    too_bright = gamma_for_brightness(image, illumination, noise, 0.99)
    assert not too_bright.reached and too_bright.gamma == GAMMA_MIN
    assert too_bright.brightness == pytest.approx(brightness_at(image, illumination, noise, GAMMA_MIN))
    assert "target 0.990 out of reach" in too_bright.describe()
    too_dark = gamma_for_brightness(image, illumination, noise, 0.0)
    assert not too_dark.reached and too_dark.gamma == GAMMA_MAX


def test_another_gamma_range_bounds_the_search():
    image, illumination, noise = synthetic_maps()
    floor = gamma_for_brightness(image, illumination, noise, 0.99, gamma_range=(0.3, 1.0))
    assert floor.gamma == 0.3 and not floor.reached
    reachable = brightness_at(image, illumination, noise, 0.5)
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
