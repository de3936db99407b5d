"""Other ways to brighten a photo, scored beside RRDNet by ``benchmarks/quality.py``.

* ``gamma_curve``: one global curve ``x ** p`` over the whole image, ``p`` found by bisection so
  the mean brightness is a given target (quality.py gives the default rendering's);
* ``clahe``: OpenCV's CLAHE on the L channel of Lab (clip limit 2, 8x8 tiles);
* ``zero_dce_pp``: the Zero-DCE++-style curve network whose trained weights ship in the
  MIT-licensed wheel ``neuro-low-light`` 0.1.0 (``neuro_low_light/weights/best_model.pth``).

Their dependencies (opencv-python-headless, neuro-low-light) are the optional extra
``[benchmarks]``, never the package's: ``missing()`` says what is absent.

Every function takes and returns ``(1, 3, H, W)`` float32 tensors in [0, 1].
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

INSTALL_HINT = "pip install -e '.[benchmarks]'"
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILES = (8, 8)
GAMMA_CURVE_RANGE = (1e-3, 10.0)
GAMMA_CURVE_STEPS = 60


def _weights_folder() -> Path | None:
    """neuro_low_light's folder, found without importing it (its ``__init__`` pulls torchvision)."""
    spec = importlib.util.find_spec("neuro_low_light")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def missing() -> list[str]:
    """The ``[benchmarks]`` extra's parts that are not installed (empty when all are)."""
    absent = []
    if importlib.util.find_spec("cv2") is None:
        absent.append("opencv-python-headless (cv2)")
    folder = _weights_folder()
    if folder is None or not (folder / "model.py").is_file() or not (folder / "weights" / "best_model.pth").is_file():
        absent.append("neuro-low-light 0.1.0 (Zero-DCE++ weights)")
    return absent


def gamma_curve(image: torch.Tensor, target: float) -> tuple[torch.Tensor, float]:
    """``image ** p`` with the ``p`` whose result has mean brightness ``target`` (bisection on
    log p within GAMMA_CURVE_RANGE; the nearest end when out of reach). Returns (result, p)."""
    pixels = image.double()
    low, high = (math.log(end) for end in GAMMA_CURVE_RANGE)  # brighter at low, darker at high
    for _ in range(GAMMA_CURVE_STEPS):
        middle = 0.5 * (low + high)
        if pixels.pow(math.exp(middle)).mean().item() > target:
            low = middle
        else:
            high = middle
    exponent = math.exp(0.5 * (low + high))
    return pixels.pow(exponent).float(), exponent


def clahe(image: torch.Tensor) -> torch.Tensor:
    """OpenCV CLAHE on Lab's L channel of the 8-bit picture (clip limit 2, 8x8 tiles)."""
    import cv2

    rgb = np.round(image[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255.0).astype(np.uint8)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    equaliser = cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=CLAHE_TILES)
    lab[..., 0] = equaliser.apply(np.ascontiguousarray(lab[..., 0]))
    result = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return torch.from_numpy(result.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)


@lru_cache(maxsize=1)
def _zero_dce_network() -> torch.nn.Module:
    """The wheel's network with its shipped weights, in eval mode.

    The class comes from the wheel's ``model.py``, loaded on its own (it imports torch only) so the
    package's ``__init__`` (torchvision, tqdm, OpenCV video helpers) never runs; the checkpoint is
    read with ``weights_only=True`` (tensors and plain values, no pickled code).
    """
    folder = _weights_folder()
    spec = importlib.util.spec_from_file_location("_neuro_low_light_model", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    network = module.ZeroDCEPP()
    checkpoint = torch.load(folder / "weights" / "best_model.pth", map_location="cpu", weights_only=True)
    network.load_state_dict(checkpoint["model_state_dict"])
    return network.eval()


def zero_dce_pp(image: torch.Tensor) -> torch.Tensor:
    """The wheel's Zero-DCE++ result for ``image`` at full resolution, on the CPU, in fp32."""
    with torch.no_grad():
        enhanced, _ = _zero_dce_network()(image.float().contiguous())
    return enhanced.clamp(0.0, 1.0)
