"""Regenerate examples/coffee_dark.png from scikit-image's bundled CC0 'coffee' photo.

The darkening imitates an under-exposed camera shot: sRGB -> linear light, exposure x 0.05, shot
noise (Poisson, 3000 electrons at full scale) and read noise (2 electrons), back to 8-bit sRGB.
Seeded, so the file is reproducible. Needs scikit-image (pip install scikit-image).

    python examples/make_dark_example.py
"""

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

EXPOSURE = 0.05
FULL_WELL = 3000.0
READ_NOISE = 2.0


def srgb_to_linear(x):
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def darken(rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    linear = srgb_to_linear(rgb.astype(np.float64) / 255.0) * EXPOSURE
    electrons = rng.poisson(linear * FULL_WELL) + rng.normal(0.0, READ_NOISE, linear.shape)
    dark = linear_to_srgb(np.clip(electrons / FULL_WELL, 0.0, 1.0))
    return np.round(dark * 255.0).astype(np.uint8)


if __name__ == "__main__":
    target = Path(__file__).with_name("coffee_dark.png")
    Image.fromarray(darken(data.coffee())).save(target, optimize=True)
    print(f"wrote {target}")
