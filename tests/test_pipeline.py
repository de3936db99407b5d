import numpy as np
import pytest
import torch

from rrdnet_cli import InputError, OptimisationError, UsageError, enhance
from rrdnet_cli.pipeline import LOSS_COLUMNS, recombine, resolve_device

from conftest import dark_tensor


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
