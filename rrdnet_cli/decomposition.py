"""Saving an image's fitted decomposition, and relighting it later without solving again.

File format (``.npz``, written by ``numpy.savez``, readable with ``numpy.load(path)`` and no
pickle; version 1). Maps are float32 in the tensor layout of ``Enhancement``:

========================  ===========================  ==========================================
key                       dtype, shape                 what
========================  ===========================  ==========================================
``format``                str, ()                      always ``"rrdnet-decomposition"``
``version``               int64, ()                    1
``input``                 float32, (1, 3, H, W)        the input image I in [0, 1]
``illumination``          float32, (1, 1, H, W)        L, in (0, 1)
``reflectance``           float32, (1, 3, H, W)        R
``noise``                 float32, (1, 3, H, W)        N (signed)
``losses``                float64, (steps + 1, 5)      loss terms per step, columns ``loss_columns``
``loss_columns``          str, (5,)                    reconstruction, illumination, ...
``gamma``                 float64, ()                  the gamma of the result saved with it
``target_brightness``     float64, ()                  what gamma "auto" aimed for; NaN if fixed
``config``                str, ()                      the effective config as YAML
``source_name``           str, ()                      the input file's name
``source_format``         str, ()                      its Pillow format (PNG, JPEG, ...)
``source_grayscale``      bool, ()                     whether it was a grey-level image
``source_alpha``          uint8, (H, W) or (0, 0)      its alpha channel, if any
``source_exif``           uint8, (n,)                  its EXIF block (n = 0: none)
``source_icc_profile``    uint8, (n,)                  its ICC profile (n = 0: none)
========================  ===========================  ==========================================

The maps stay float32 (not 8-bit) and relighting goes through the same ``light.render`` as
``enhance``, so a relight with the gamma of an enhance gives the same file, byte for byte.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml

from . import images
from .config import AUTO_BRIGHTNESS, Config
from .errors import InputError, UsageError, cannot_write
from .result import LOSS_COLUMNS, Enhancement, from_maps

FORMAT_NAME = "rrdnet-decomposition"
FORMAT_VERSION = 1
SUFFIX = ".npz"


@dataclass
class Decomposition:
    """What a relight needs: the input, its fitted maps and how to write a result like the source.

    ``image``, ``reflectance``, ``noise``: ``(1, 3, H, W)`` float32; ``illumination``:
    ``(1, 1, H, W)`` float32; ``losses``: ``(steps + 1, 5)`` float64.
    """

    image: torch.Tensor
    illumination: torch.Tensor
    reflectance: torch.Tensor
    noise: torch.Tensor
    losses: np.ndarray
    gamma: float
    target_brightness: Optional[float]
    config_yaml: str
    source: images.LoadedImage
    source_name: str = ""

    @classmethod
    def from_enhancement(
        cls, enhancement: Enhancement, source: images.LoadedImage, config: Config, source_name: str = ""
    ) -> "Decomposition":
        return cls(
            image=enhancement.image,
            illumination=enhancement.illumination,
            reflectance=enhancement.reflectance,
            noise=enhancement.noise,
            losses=enhancement.losses,
            gamma=enhancement.gamma,
            target_brightness=enhancement.target_brightness,
            config_yaml=config.to_yaml(),
            source=source,
            source_name=source_name,
        )


def _bytes_array(data: Optional[bytes]) -> np.ndarray:
    return np.frombuffer(data or b"", dtype=np.uint8)


def save(decomposition: Decomposition, path: str | Path) -> None:
    """Write ``decomposition`` to ``path`` (``.npz``) atomically."""
    path = Path(path)
    source = decomposition.source
    alpha = source.alpha if source.alpha is not None else np.zeros((0, 0), dtype=np.uint8)
    target = decomposition.target_brightness
    arrays = {
        "format": np.array(FORMAT_NAME),
        "version": np.array(FORMAT_VERSION, dtype=np.int64),
        "input": decomposition.image.detach().cpu().float().contiguous().numpy(),
        "illumination": decomposition.illumination.detach().cpu().float().contiguous().numpy(),
        "reflectance": decomposition.reflectance.detach().cpu().float().contiguous().numpy(),
        "noise": decomposition.noise.detach().cpu().float().contiguous().numpy(),
        "losses": np.asarray(decomposition.losses, dtype=np.float64),
        "loss_columns": np.array(LOSS_COLUMNS),
        "gamma": np.array(decomposition.gamma, dtype=np.float64),
        "target_brightness": np.array(math.nan if target is None else target, dtype=np.float64),
        "config": np.array(decomposition.config_yaml),
        "source_name": np.array(decomposition.source_name),
        "source_format": np.array(source.format),
        "source_grayscale": np.array(bool(source.grayscale)),
        "source_alpha": np.asarray(alpha, dtype=np.uint8),
        "source_exif": _bytes_array(source.exif),
        "source_icc_profile": _bytes_array(source.icc_profile),
    }
    try:
        with images.atomic_output(path) as temporary:
            # A file object, not a name: numpy would append ".npz" to a temporary name.
            with open(temporary, "wb") as handle:
                np.savez(handle, **arrays)
    except OSError as error:
        raise cannot_write(path, error) from None


def _expect(arrays, key: str, path: Path, dtype: str, shape: tuple) -> np.ndarray:
    if key not in arrays:
        raise InputError(f"{path}: not an rrdnet decomposition (no '{key}')")
    value = arrays[key]
    if value.dtype.kind != np.dtype(dtype).kind or value.ndim != len(shape) or any(
        want is not None and have != want for have, want in zip(value.shape, shape)
    ):
        raise InputError(f"{path}: '{key}' has dtype {value.dtype} and shape {value.shape}, expected {dtype} {shape}")
    return value


def load(path: str | Path) -> Decomposition:
    """Read a decomposition written by ``save``; any problem is an ``InputError`` naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if "format" not in arrays or str(arrays["format"]) != FORMAT_NAME:
                raise InputError(f"{path}: not an rrdnet decomposition")
            version = int(arrays["version"])
            if version != FORMAT_VERSION:
                raise InputError(f"{path}: decomposition format version {version}; this rrdnet reads {FORMAT_VERSION}")
            image = _expect(arrays, "input", path, "float32", (1, 3, None, None))
            height, width = image.shape[-2:]
            maps = {
                "illumination": _expect(arrays, "illumination", path, "float32", (1, 1, height, width)),
                "reflectance": _expect(arrays, "reflectance", path, "float32", (1, 3, height, width)),
                "noise": _expect(arrays, "noise", path, "float32", (1, 3, height, width)),
            }
            alpha = _expect(arrays, "source_alpha", path, "uint8", (None, None))
            exif = _expect(arrays, "source_exif", path, "uint8", (None,)).tobytes()
            icc_profile = _expect(arrays, "source_icc_profile", path, "uint8", (None,)).tobytes()
            pixels = torch.from_numpy(image.astype(np.float32))
            source = images.LoadedImage(
                pixels=pixels,
                format=str(arrays["source_format"]),
                grayscale=bool(arrays["source_grayscale"]),
                alpha=alpha if alpha.size else None,
                exif=exif or None,
                icc_profile=icc_profile or None,
            )
            target = float(arrays["target_brightness"])
            return Decomposition(
                image=pixels,
                illumination=torch.from_numpy(maps["illumination"].copy()),
                reflectance=torch.from_numpy(maps["reflectance"].copy()),
                noise=torch.from_numpy(maps["noise"].copy()),
                losses=_expect(arrays, "losses", path, "float64", (None, len(LOSS_COLUMNS))).copy(),
                gamma=float(arrays["gamma"]),
                target_brightness=None if math.isnan(target) else target,
                config_yaml=str(arrays["config"]),
                source=source,
                source_name=str(arrays["source_name"]),
            )
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a decomposition") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise InputError(f"{path}: cannot read decomposition ({error})") from None


def saved_brightness(decomposition: Decomposition) -> float:
    """The target brightness in the decomposition's saved config (the default if it has none)."""
    try:
        values = yaml.safe_load(decomposition.config_yaml) or {}
        return float(values.get("brightness", AUTO_BRIGHTNESS))
    except (yaml.YAMLError, AttributeError, TypeError, ValueError):
        return AUTO_BRIGHTNESS


def relight(
    decomposition: Decomposition, *, gamma: float | str | None = None, brightness: Optional[float] = None
) -> Enhancement:
    """A new result from a saved decomposition: a fixed ``gamma``, or the one for ``brightness``.

    ``gamma="auto"`` without a ``brightness`` aims for the brightness of the saved config, as an
    enhance with that config would. Costs milliseconds: no optimisation runs.
    """
    if gamma is None and brightness is None:
        raise UsageError("relight needs a gamma or a brightness")
    if gamma is not None and gamma != "auto" and brightness is not None:
        raise UsageError(f"gamma {gamma} and brightness {brightness} conflict: give one of them")
    if gamma is None or gamma == "auto":
        gamma, brightness = "auto", saved_brightness(decomposition) if brightness is None else brightness
    elif not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
        raise UsageError(f"gamma {gamma}: must be a number greater than 0, or 'auto'")
    if brightness is not None and not 0.0 <= brightness <= 1.0:
        raise UsageError(f"brightness {brightness}: must be between 0 and 1")
    return from_maps(
        decomposition.image,
        decomposition.illumination,
        decomposition.reflectance,
        decomposition.noise,
        decomposition.losses,
        gamma,
        brightness,
    )


def relight_file(
    source: str | Path,
    destination: str | Path,
    *,
    gamma: float | str | None = None,
    brightness: Optional[float] = None,
    quality: int = 95,
) -> Enhancement:
    """Load the decomposition ``source``, relight it and write the image ``destination``."""
    decomposition = load(source)
    enhancement = relight(decomposition, gamma=gamma, brightness=brightness)
    images.write_like(enhancement.result, Path(destination), decomposition.source, quality=quality)
    return enhancement
