"""Other ways to brighten a photo, scored beside RRDNet by ``benchmarks/quality.py``.

* ``gamma_curve``: one global curve ``x ** p`` over the whole image, ``p`` found by bisection so
  the mean brightness is a given target (quality.py gives the default rendering's);
* ``clahe``: OpenCV's CLAHE on the L channel of Lab (clip limit 2, 8x8 tiles);
* ``zero_dce_pp``: the Zero-DCE++-style curve network whose trained weights ship in the
  MIT-licensed wheel ``neuro-low-light`` 0.1.0 (``neuro_low_light/weights/best_model.pth``);
* ``lime`` and ``lime_bm3d``: LIME (Guo et al. 2017) written from its paper (``lime.py``),
  without and with its BM3D denoising step (the ``bm3d`` package).

SCI (Ma et al., CVPR 2022) is not among them: its weights ship in no package that installs here,
and nothing is downloaded from elsewhere.

Their dependencies (opencv-python-headless, neuro-low-light, bm3d) are the optional extra
``[benchmarks]``, never the package's: ``missing()`` says what is absent.

Every function takes and returns ``(1, 3, H, W)`` float32 tensors in [0, 1]. ``cached`` runs a
peer by name and keeps its 8-bit result in ``benchmarks/cache/`` (LIME with BM3D takes seconds).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from functools import lru_cache
from pathlib import Path

import lime as lime_paper
import numpy as np
import torch
from PIL import Image

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
    if importlib.util.find_spec("bm3d") is None:
        absent.append("bm3d (LIME's denoiser)")
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


def _as_array(image: torch.Tensor) -> np.ndarray:
    return image[0].permute(1, 2, 0).double().clamp(0, 1).numpy()


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)


def lime(image: torch.Tensor) -> torch.Tensor:
    """LIME without denoising (``lime.py``: max-RGB illumination, structure-aware refinement, gamma 0.8)."""
    return _as_tensor(lime_paper.lime(_as_array(image), denoise=False))


def lime_bm3d(image: torch.Tensor) -> torch.Tensor:
    """LIME with its BM3D step on Y, recomposed by the illumination (``lime.py``)."""
    return _as_tensor(lime_paper.lime(_as_array(image), denoise=True))


# Every peer that needs only the photo, by name (the gamma curve also needs a target: not here).
PEERS = {"lime_bm3d": lime_bm3d, "lime": lime, "zero_dce_pp": zero_dce_pp, "clahe": clahe}
# Bumped when a peer's code changes what it produces, so older cached results are not reused.
PEER_VERSIONS = {"lime_bm3d": 1, "lime": 1, "zero_dce_pp": 1, "clahe": 1}


def cached(name: str, image: torch.Tensor, cache: Path) -> torch.Tensor:
    """Peer ``name``'s result for ``image`` ``(1, 3, H, W)``, rounded to 8 bits as a written file
    is; kept as a PNG in ``cache`` keyed by the 8-bit pixels, the peer and its version."""
    pixels = np.round(_as_array(image) * 255.0).astype(np.uint8)
    key = hashlib.sha256(pixels.tobytes() + f"{name}:{PEER_VERSIONS[name]}".encode()).hexdigest()[:16]
    path = cache / f"peer-{name}-{pixels.shape[1]}x{pixels.shape[0]}-{key}.png"
    if path.is_file():
        with Image.open(path) as stored:
            return _as_tensor(np.asarray(stored.convert("RGB"), dtype=np.float32) / 255.0)
    result = np.round(_as_array(PEERS[name](_as_tensor(pixels / 255.0))) * 255.0).astype(np.uint8)
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.png")
    Image.fromarray(result).save(partial)
    partial.replace(path)
    return _as_tensor(result.astype(np.float32) / 255.0)
