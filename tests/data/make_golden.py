"""Regenerate tests/data/golden/: a tiny dark input and what rrdnet makes of it.

    .venv/bin/python tests/data/make_golden.py

Run it only when a change of the output is intended (say why in the commit); tests/test_golden.py
then holds every later change to these pictures. The input is stored as a PNG, so the goldens do
not depend on any random number generator's stream.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_golden import CASES, GOLDEN, INPUT, run_case  # noqa: E402

from rrdnet_cli import images  # noqa: E402

from helpers import dark_array  # noqa: E402


def main() -> None:
    # The thread count the test process uses (tests/conftest.py): another count sums in another
    # order, and the goldens must be what the test computes.
    torch.set_num_threads(1)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    if not INPUT.is_file():
        Image.fromarray(dark_array(48, 64, seed=7)).save(INPUT)
    for name in CASES:
        enhancement = run_case(name)
        for field in ("result", "illumination"):
            path = GOLDEN / f"{name}_{field}.png"
            images.save_image(images.to_pil(getattr(enhancement, field)), path)
            print(f"{path.relative_to(ROOT)}: mean {np.asarray(Image.open(path)).mean() / 255:.4f}")


if __name__ == "__main__":
    main()
