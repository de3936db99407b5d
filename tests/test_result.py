"""result.py: the loss row's names and the one path from maps to an Enhancement."""

import numpy as np
import pytest
import torch

from rrdnet_cli.light import LightChoice, render
from rrdnet_cli.result import LOSS_COLUMNS, LossRow, from_maps

from helpers import dark_tensor


def maps():
    generator = torch.Generator().manual_seed(0)
    illumination = 0.05 + 0.5 * torch.rand(1, 1, 8, 10, generator=generator)
    reflectance = torch.rand(1, 3, 8, 10, generator=generator)
    noise = 0.01 * torch.randn(1, 3, 8, 10, generator=generator)
    image = (illumination * reflectance + noise).clamp(0, 1)
    return image, illumination, reflectance, noise


def test_loss_row_columns_are_its_field_names_in_stacking_order():
    row = LossRow(*(torch.tensor(float(value)) for value in range(5)))
    assert LOSS_COLUMNS == ("reconstruction", "illumination", "reflectance", "noise", "total")
    assert row.stack().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and row.total.item() == 4.0


def test_from_maps_renders_the_chosen_light_and_carries_it():
    image, illumination, reflectance, noise = maps()
    losses = np.zeros((1, 5))
    enhancement = from_maps(image, illumination, reflectance, noise, losses, 0.5, None, steps=3)
    expected, adjusted = render(image, illumination, noise, 0.5)
    assert torch.equal(enhancement.result, expected) and torch.equal(enhancement.adjusted_illumination, adjusted)
    assert enhancement.light.target is None and enhancement.light.reached and enhancement.steps == 3
    assert enhancement.gamma == 0.5 and enhancement.target_brightness is None


def test_from_maps_with_an_unreachable_target_says_so():
    image, illumination, reflectance, noise = maps()
    # Black on the left half: no exposure brings the mean near 0.99.
    image[..., :5], noise[..., :5] = 0.0, 0.0
    enhancement = from_maps(image, illumination, reflectance, noise, np.zeros((1, 5)), "auto", 0.99)
    assert not enhancement.light.reached and enhancement.target_brightness == 0.99
    assert enhancement.light.describe().endswith(", target 0.990 out of reach")


def test_reached_allows_the_tolerance_people_do_not_notice():
    assert LightChoice(0.3, 0.495, 0.5).reached
    assert not LightChoice(0.1, 0.48, 0.5).reached
    assert LightChoice(0.4, 0.2).reached and LightChoice(0.4, 0.2).describe() == "gamma 0.4, brightness 0.200"


def test_what_needs_a_skipped_reflectance_says_so():
    from rrdnet_cli import UsageError, enhance, load_config
    from rrdnet_cli.decomposition import Decomposition
    from rrdnet_cli.sheet import contact_sheet

    config = load_config("default", iterations=2, optimisation_side=32, device="cpu")
    enhancement = enhance(dark_tensor(), config, reflectance=False)
    assert enhancement.removed is None
    with pytest.raises(UsageError, match="a contact sheet needs"):
        contact_sheet(enhancement)
    with pytest.raises(UsageError, match="--save-maps needs what the denoising removed"):
        enhancement.removed_for("--save-maps")
    with pytest.raises(UsageError, match="a decomposition needs the reflectance"):
        Decomposition.from_enhancement(enhancement, None, config)
    whole = enhance(dark_tensor(), config)
    assert whole.reflectance_for("a sheet").shape == whole.removed_for("a sheet").shape == (1, 3, 40, 48)
