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
``source_bits``           int64, ()                    8 or 16, its bits per sample (absent: 8)
``source_alpha``          uint8, (H, W) or (0, 0)      its alpha channel, if any (uint16 at 16 bits)
``source_exif``           uint8, (n,)                  its EXIF block (n = 0: none)
``source_icc_profile``    uint8, (n,)                  its ICC profile (n = 0: none)
========================  ===========================  ==========================================

The maps stay float32 (not 8-bit) and relighting goes through the same ``light.render`` as
``enhance``, so a relight with the gamma of an enhance gives the same file, byte for byte.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Optional

import numpy as np
import torch
import yaml
from PIL import Image

from . import images
from .config import MAX_CONFIG_BYTES, MAX_SHOWN, Config, check_value, parse_yaml
from .errors import ConfigError, InputError, UsageError, cannot_write
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
    ) -> Decomposition:
        return cls(
            image=enhancement.image,
            illumination=enhancement.illumination,
            reflectance=enhancement.reflectance_for("a decomposition"),
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
    arrays: dict[str, Any] = {
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
        "source_bits": np.array(source.bits, dtype=np.int64),
        "source_alpha": np.asarray(alpha),
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


# Every field a relight reads: numpy dtype kind ("U" text, "b" bool, "i" integer, "u" unsigned,
# "f" float) and shape, where "H", "W" are the image's sides, "n" any length, "A" the alpha
# (either (H, W) or (0, 0)); int entries are fixed sides. Anything else in the file is never read.
_FIELDS = {
    "format": ("U", ()),
    "version": ("iu", ()),
    "input": ("f", (1, 3, "H", "W")),
    "illumination": ("f", (1, 1, "H", "W")),
    "reflectance": ("f", (1, 3, "H", "W")),
    "noise": ("f", (1, 3, "H", "W")),
    "losses": ("f", ("n", len(LOSS_COLUMNS))),
    "gamma": ("fiu", ()),
    "target_brightness": ("fiu", ()),
    "config": ("U", ()),
    "source_name": ("U", ()),
    "source_format": ("U", ()),
    "source_grayscale": ("b", ()),
    "source_bits": ("iu", ()),
    "source_alpha": ("u", "A"),
    "source_exif": ("u", ("n",)),
    "source_icc_profile": ("u", ("n",)),
}
# Fields a file written before they were added lacks, and what that means.
_OPTIONAL = {"source_bits": 8}
# Bytes a decomposition may hold per image pixel: four float32 maps of 3, 1, 3, 3 channels
# and a 16-bit alpha.
_BYTES_PER_PIXEL = (3 + 1 + 3 + 3) * 4 + 2
# Beyond the maps: loss history (a million steps), EXIF, ICC profile and text fields.
_METADATA_BYTES = 64 * 1024 * 1024 + 4 * MAX_CONFIG_BYTES


def _fail(path: Path, problem: str) -> InputError:
    return InputError(f"{path}: {problem}")


def _open(path: Path) -> BinaryIO:
    """The decomposition file, opened only if it is a regular file (a FIFO would hang the reader,
    a device never ends)."""
    try:
        return images.open_regular(path)
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except images.NotRegularFile as error:
        if stat.S_ISDIR(error.mode):
            raise _fail(path, "is a folder, not a decomposition") from None
        raise _fail(path, f"{error}; refused") from None


def _read_headers(path: Path, handle: BinaryIO) -> dict[str, tuple[np.dtype, tuple]]:
    """Each known member's dtype and shape, from the zip directory and the .npy headers alone:
    nothing is inflated or allocated before the sizes are known to be those of a real image."""
    try:
        archive = zipfile.ZipFile(handle)
    except zipfile.BadZipFile:
        raise _fail(path, "not a decomposition (.npz) file") from None
    headers = {}
    declared = 0
    with archive:
        for info in archive.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else None
            if key not in _FIELDS:
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise ValueError(f"'{key}' has .npy format version {version}")
                header_length = member.tell()
            if dtype.hasobject:
                raise _fail(path, f"'{key}' holds Python objects; refused (decompositions hold numbers and text)")
            size = math.prod(shape) * dtype.itemsize
            # zipfile never inflates a member past the size the zip directory gives it, so bounding
            # that size by the array's own bounds the memory, however well the member compresses
            # (np.savez_compressed shrinks an all-zero noise map a thousand times: that is fine).
            if info.file_size > header_length + size:
                raise _fail(
                    path, f"'{key}' inflates to {info.file_size} bytes, more than its {size}-byte array; refused"
                )
            headers[key] = dtype, shape
            declared += size
    missing = [key for key in _FIELDS if key not in headers and key not in _OPTIONAL]
    if missing:
        raise _fail(path, f"not an rrdnet decomposition (no '{missing[0]}')")
    _check_headers(path, headers, declared)
    return headers


def _check_headers(path: Path, headers: dict, declared: int) -> None:
    input_shape = headers["input"][1]
    height, width = input_shape[2:] if len(input_shape) == 4 else (0, 0)
    sides: dict[object, int] = {"H": height, "W": width}
    # The input first: its sides are what every other field is measured against.
    for key in ["input"] + [key for key in _FIELDS if key != "input" and key in headers]:
        kinds, wanted = _FIELDS[key]
        dtype, shape = headers[key]
        if wanted == "A":
            wanted = (0, 0) if shape == (0, 0) else ("H", "W")
        expected = tuple(sides.get(side, side) for side in wanted)
        fits = len(shape) == len(expected) and all(want == "n" or have == want for have, want in zip(shape, expected))
        if dtype.kind not in kinds or not fits:
            described = " x ".join(str(side) for side in expected) or "a single value"
            raise _fail(path, f"'{key}' has dtype {dtype} and shape {shape}, expected {described}")
        if key == "input":
            limit = Image.MAX_IMAGE_PIXELS
            if height < 1 or width < 1 or (limit is not None and height * width > limit):
                raise _fail(path, f"image of {width}x{height} pixels; must be between 1 and {limit} pixels")
    cap = height * width * _BYTES_PER_PIXEL + _METADATA_BYTES
    if declared > cap:
        raise _fail(
            path, f"holds {declared} bytes of arrays, more than a {width}x{height} image needs ({cap}); refused"
        )


def _scalar(arrays, key: str) -> Any:
    return arrays[key].item()


def _checked_values(path: Path, arrays) -> dict:
    """The fields' values, each checked for what relighting relies on."""
    if _scalar(arrays, "format") != FORMAT_NAME:
        raise _fail(path, "not an rrdnet decomposition")
    version = _scalar(arrays, "version")
    if version != FORMAT_VERSION:
        raise _fail(path, f"decomposition format version {version}; this rrdnet reads {FORMAT_VERSION}")
    values = {key: arrays[key] for key in ("input", "illumination", "reflectance", "noise")}
    for key, value in values.items():
        if not np.isfinite(value).all():
            raise _fail(path, f"'{key}' holds NaN or infinite values")
    image, illumination = values["input"], values["illumination"]
    if image.min() < 0 or image.max() > 1:
        raise _fail(path, f"'input' must lie in [0, 1], holds {image.min():.4g} to {image.max():.4g}")
    # The result divides by L: it must be positive (the network's L is a sigmoid, in (0, 1)).
    if illumination.min() <= 0 or illumination.max() > 1:
        raise _fail(
            path, f"'illumination' must lie in (0, 1], holds {illumination.min():.4g} to {illumination.max():.4g}"
        )
    gamma = float(_scalar(arrays, "gamma"))
    if not (math.isfinite(gamma) and gamma > 0):
        raise _fail(path, f"'gamma' must be a positive number, got {gamma}")
    bits = int(_scalar(arrays, "source_bits")) if "source_bits" in arrays else _OPTIONAL["source_bits"]
    if bits not in (8, 16):
        raise _fail(path, f"'source_bits' must be 8 or 16, got {bits}")
    alpha = arrays["source_alpha"]
    if alpha.size and alpha.dtype != (np.uint16 if bits == 16 else np.uint8):
        raise _fail(path, f"'source_alpha' has dtype {alpha.dtype}, expected {bits}-bit unsigned integers")
    target = float(_scalar(arrays, "target_brightness"))
    if not (math.isnan(target) or 0 <= target <= 1):
        raise _fail(path, f"'target_brightness' must be NaN (none) or in [0, 1], got {target}")
    values.update(
        losses=arrays["losses"].astype(np.float64),
        gamma=gamma,
        target=None if math.isnan(target) else target,
        config=str(_scalar(arrays, "config")),
        source_name=str(_scalar(arrays, "source_name")),
        source_format=str(_scalar(arrays, "source_format")),
        grayscale=bool(_scalar(arrays, "source_grayscale")),
        bits=bits,
        alpha=alpha,
        exif=arrays["source_exif"].astype(np.uint8).tobytes(),
        icc_profile=arrays["source_icc_profile"].astype(np.uint8).tobytes(),
    )
    return values


def load(path: str | Path) -> Decomposition:
    """Read a decomposition written by ``save``; any problem is an ``InputError`` naming the file.

    Untrusted files are safe to give: the sizes are checked from the headers before anything is
    read, pickled objects are refused, and every field is checked before it is used.
    """
    path = Path(path)
    try:
        with _open(path) as handle:
            _read_headers(path, handle)
            handle.seek(0)
            with np.load(handle, allow_pickle=False) as arrays:
                values = _checked_values(path, arrays)
    except InputError:
        raise
    except MemoryError:
        raise _fail(path, "not enough memory to read this decomposition") from None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as error:
        raise _fail(path, f"cannot read decomposition ({str(error)[:200]})") from None
    pixels = torch.from_numpy(values["input"].astype(np.float32))
    alpha = values["alpha"]
    source = images.LoadedImage(
        pixels=pixels,
        format=values["source_format"],
        grayscale=values["grayscale"],
        alpha=alpha if alpha.size else None,
        bits=values["bits"],
        exif=values["exif"] or None,
        icc_profile=values["icc_profile"] or None,
    )
    return Decomposition(
        image=pixels,
        illumination=torch.from_numpy(values["illumination"].astype(np.float32)),
        reflectance=torch.from_numpy(values["reflectance"].astype(np.float32)),
        noise=torch.from_numpy(values["noise"].astype(np.float32)),
        losses=values["losses"],
        gamma=values["gamma"],
        target_brightness=values["target"],
        config_yaml=values["config"],
        source=source,
        source_name=values["source_name"],
    )


def saved_config_problem(decomposition: Decomposition) -> Optional[str]:
    """Why the decomposition's saved config cannot be read, or None when it can."""
    try:
        values = parse_yaml(decomposition.config_yaml)
    except yaml.YAMLError as error:
        return f"invalid YAML: {str(error).splitlines()[0][:MAX_SHOWN] if str(error) else 'unreadable'}"
    except (ValueError, RecursionError) as error:
        return f"invalid YAML: {str(error)[:MAX_SHOWN]}"
    if values is not None and not isinstance(values, dict):
        return f"expected a mapping of keys to values, got {type(values).__name__}"
    return None


def saved_setting(decomposition: Decomposition, key: str, notes: Optional[list[str]] = None) -> Any:
    """The value of config ``key`` in the decomposition's saved config, checked as a config value;
    the ``Config`` default when the saved config lacks it (an older file) or it is unusable, in
    which case ``notes`` (when given) gets a line saying so."""
    default = getattr(Config(), key)
    if saved_config_problem(decomposition) is not None:
        return default
    values = parse_yaml(decomposition.config_yaml) or {}
    try:
        return check_value(key, values.get(key, default), source="saved config")
    except ConfigError as error:
        if notes is not None:
            notes.append(f"{error}; using the default, {default}")
        return default


def saved_brightness(decomposition: Decomposition, notes: Optional[list[str]] = None) -> float | str:
    """The target brightness in the decomposition's saved config (a number or ``"auto"``; the
    default if it has none)."""
    value = saved_setting(decomposition, "brightness", notes)
    return value if isinstance(value, str) else float(value)


def relight(
    decomposition: Decomposition,
    *,
    gamma: float | str | None = None,
    brightness: float | str | None = None,
    denoise: float | str | None = None,
    on_note: Optional[Callable[[str], None]] = None,
) -> Enhancement:
    """A new result from a saved decomposition: a fixed ``gamma``, or the one for ``brightness``.

    ``gamma="auto"`` without a ``brightness`` aims for the brightness of the saved config, as an
    enhance with that config would; the gamma floor is the saved config's, and so is ``denoise``
    (``"auto"``, ``"off"`` or a strength) unless given. Costs milliseconds to a second: no
    optimisation runs. ``on_note(text)`` hears when the saved config (or a setting in it) cannot
    be used and the default takes its place.
    """
    notes: list[str] = []
    problem = saved_config_problem(decomposition)
    if problem is not None:
        notes.append(f"the saved config cannot be read ({problem}); relit with the default settings")
    if gamma is None and brightness is None:
        raise UsageError("relight needs a gamma or a brightness")
    if gamma is not None and gamma != "auto" and brightness is not None:
        raise UsageError(f"gamma {gamma} and brightness {brightness} conflict: give one of them")
    if gamma is None or gamma == "auto":
        gamma, brightness = "auto", saved_brightness(decomposition, notes) if brightness is None else brightness
    elif not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
        raise UsageError(f"gamma {gamma}: must be a number greater than 0, or 'auto'")
    if isinstance(brightness, str) and brightness != "auto":
        raise UsageError(f"brightness {brightness!r}: must be a number between 0 and 1, or 'auto'")
    if isinstance(brightness, (int, float)) and not 0.0 <= brightness <= 1.0:
        raise UsageError(f"brightness {brightness}: must be between 0 and 1")
    if denoise is None:
        denoise = saved_setting(decomposition, "denoise", notes)
    else:
        denoise = check_value("denoise", denoise, source="option")
    gamma_floor = saved_setting(decomposition, "gamma_floor", notes)
    tone_mapping = saved_setting(decomposition, "tone_mapping", notes)
    if on_note is not None:
        for note in notes:
            on_note(note)
    return from_maps(
        decomposition.image,
        decomposition.illumination,
        decomposition.reflectance,
        decomposition.noise,
        decomposition.losses,
        gamma,
        brightness,
        gamma_floor=gamma_floor,
        denoise=denoise,
        tone_mapping=tone_mapping,
    )


def _same_file(source: Path, destination: Path) -> bool:
    try:
        return os.path.samefile(source, destination)
    except OSError:  # one of them does not exist (yet): the resolved names decide
        return images.real_path(source) == images.real_path(destination)


def relight_file(
    source: str | Path,
    destination: str | Path,
    *,
    gamma: float | str | None = None,
    brightness: float | str | None = None,
    denoise: float | str | None = None,
    quality: int = 95,
    on_note: Optional[Callable[[str], None]] = None,
) -> Enhancement:
    """Load the decomposition ``source``, relight it and write the image ``destination``
    (``on_note``: see ``relight``)."""
    # The output name is the user's choice: an unknown extension is a usage error, found first.
    images.format_for(Path(destination), UsageError)
    if _same_file(Path(source), Path(destination)):
        raise UsageError(f"{source}: output {destination} would overwrite the input")
    decomposition = load(source)
    enhancement = relight(
        decomposition,
        gamma=gamma,
        brightness=brightness,
        denoise=denoise,
        on_note=None if on_note is None else lambda note: on_note(f"{source}: {note}"),
    )
    images.write_like(enhancement.result, Path(destination), decomposition.source, quality=quality)
    return enhancement
