"""NIQE as BasicSR 1.4.2 computes it (the MATLAB ``niqe`` variant most papers report), for
``quality.py`` to score beside ``rrdnet_cli.niqe`` (scikit-video's variant, what ``rrdnet eval``
prints). Quality targets are often set with BasicSR's, and the two disagree in direction on
brightened photos: scikit-video's rises with brightening and denoising where BasicSR's falls.

BasicSR is part of the optional extra ``[benchmarks]``. Its package ``__init__`` imports its whole
training stack, which fails with current torchvision (``transforms.functional_tensor`` is gone),
so this module loads only the four files the metric needs, by path, from the installed package:
``metrics/niqe.py`` (with its pristine model ``niqe_pris_params.npz``), ``metrics/metric_util.py``,
``utils/matlab_functions.py`` and ``utils/color_util.py``. Their code runs unchanged.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from functools import lru_cache
from pathlib import Path

import numpy as np


def _package_folder() -> Path | None:
    spec = importlib.util.find_spec("basicsr")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def available() -> bool:
    folder = _package_folder()
    return folder is not None and (folder / "metrics" / "niqe_pris_params.npz").is_file()


class _Registry:
    """Stands in for BasicSR's metric registry: ``@METRIC_REGISTRY.register()`` leaves the function as is."""

    def register(self, *_args, **_kwargs):
        return lambda function: function


@lru_cache(maxsize=1)
def _module() -> types.ModuleType:
    folder = _package_folder()
    if folder is None:
        raise ImportError("basicsr is not installed (the optional extra [benchmarks])")
    saved = {name: sys.modules.get(name) for name in ("basicsr", "basicsr.utils", "basicsr.metrics")}

    def load(name: str, relative: str) -> types.ModuleType:
        spec = importlib.util.spec_from_file_location(name, folder / relative)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    try:
        # Empty parent packages, so that BasicSR's own __init__ files never run.
        for name in saved:
            sys.modules[name] = types.ModuleType(name)
        sys.modules["basicsr.utils"].bgr2ycbcr = load("basicsr.utils.color_util", "utils/color_util.py").bgr2ycbcr
        sys.modules["basicsr.utils.registry"] = types.SimpleNamespace(METRIC_REGISTRY=_Registry())
        load("basicsr.utils.matlab_functions", "utils/matlab_functions.py")
        load("basicsr.metrics.metric_util", "metrics/metric_util.py")
        return load("basicsr.metrics.niqe", "metrics/niqe.py")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def niqe(rgb: np.ndarray) -> float | None:
    """BasicSR's NIQE of ``rgb`` ``(H, W, 3)`` float in [0, 1] (rounded to 8 bits, on its Y channel,
    no border cropped); ``None`` for a picture too small for its 96-pixel blocks."""
    if min(rgb.shape[:2]) < 96:
        return None
    bgr = np.round(np.clip(rgb, 0.0, 1.0) * 255.0)[..., ::-1].astype(np.float64)
    return float(_module().calculate_niqe(bgr, crop_border=0, input_order="HWC", convert_to="y"))
