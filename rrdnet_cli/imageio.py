"""Reading and writing image files, safely.

Reading turns any file a user has into a ``(1, 3, H, W)`` float tensor in [0, 1] plus what is
needed to write the result back the same way (mode, alpha, EXIF, ICC). Writing goes through a
temporary file in the target folder and a rename, so no partial file ever has the final name.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError, OutputError

# Pillow's format names for the extensions we write.
FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "tif": "TIFF", "bmp": "BMP"}
EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tiff", "BMP": ".bmp"}
IMAGE_SUFFIXES = frozenset("." + extension for extension in FORMATS)


@dataclass
class LoadedImage:
    """A decoded image: ``pixels`` ``(1, 3, H, W)`` float32 in [0, 1], upright, plus how to save it."""

    pixels: torch.Tensor
    format: str
    grayscale: bool = False
    alpha: Optional[np.ndarray] = None
    exif: Optional[bytes] = None
    icc_profile: Optional[bytes] = None

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.pixels.shape[3], self.pixels.shape[2]


def _decode(opened: Image.Image, name: str) -> LoadedImage:
    source_format = opened.format or "PNG"
    icc_profile = opened.info.get("icc_profile")
    # Decoding happens lazily in Pillow; load() here makes truncation errors surface now.
    opened.load()
    upright = ImageOps.exif_transpose(opened)
    exif = upright.getexif()
    exif_bytes = exif.tobytes() if len(exif) else None
    grayscale = upright.mode in ("1", "L", "LA", "I", "I;16", "F")
    alpha = None
    if upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info):
        with_alpha = upright.convert("RGBA")
        alpha = np.asarray(with_alpha.getchannel("A"))
    rgb = upright.convert("RGB")
    array = np.asarray(rgb, dtype=np.float32) / 255.0
    pixels = torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)
    return LoadedImage(pixels, source_format, grayscale, alpha, exif_bytes, icc_profile)


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Decode ``path``; any problem becomes an ``InputError`` naming the file and the cause."""
    path = Path(path)
    try:
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not an image")
        if path.stat().st_size == 0:
            raise InputError(f"{path}: file is empty")
        with Image.open(path) as opened:
            return _decode(opened, str(path))
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read (unknown or corrupt format)") from None
    except Image.DecompressionBombError as error:
        raise InputError(f"{path}: image too large ({error})") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise InputError(f"{path}: cannot decode image ({error})") from None


def to_pil(pixels: torch.Tensor, grayscale: bool = False, alpha: Optional[np.ndarray] = None) -> Image.Image:
    """``pixels`` ``(1, C, H, W)`` in [0, 1] (C = 1 or 3) -> an 8-bit Pillow image."""
    array = pixels[0].detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        image = Image.fromarray(array[:, :, 0], "L")
    else:
        image = Image.fromarray(array, "RGB")
        if grayscale:
            image = image.convert("L")
    if alpha is not None:
        image = image.convert("LA" if image.mode == "L" else "RGBA")
        image.putalpha(Image.fromarray(alpha, "L"))
    return image


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def format_for(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower().lstrip(".")]
    except KeyError:
        raise OutputError(f"{path}: unknown image extension '{path.suffix}'") from None


def save_image(image: Image.Image, path: Path, *, quality: int = 95, exif=None, icc_profile=None) -> None:
    """Write ``image`` to ``path`` atomically, in the format its extension names."""
    image_format = format_for(path)
    options = {}
    if image_format in ("JPEG", "WEBP"):
        options["quality"] = quality
        if image.mode in ("RGBA", "LA") and image_format == "JPEG":
            image = image.convert("RGB" if image.mode == "RGBA" else "L")
    if exif and image_format in ("JPEG", "PNG", "WEBP", "TIFF"):
        options["exif"] = exif
    if icc_profile and image_format in ("JPEG", "PNG", "WEBP", "TIFF"):
        options["icc_profile"] = icc_profile
    try:
        with atomic_output(path) as temporary:
            image.save(temporary, format=image_format, **options)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None


def write_like(pixels: torch.Tensor, path: Path, source: LoadedImage, *, quality: int = 95) -> None:
    """Save ``pixels`` ``(1, 3, H, W)`` as the enhanced version of ``source``: same mode, alpha,
    EXIF (orientation reset, since the pixels are already upright) and ICC profile."""
    image = to_pil(pixels, grayscale=source.grayscale, alpha=source.alpha)
    save_image(image, path, quality=quality, exif=source.exif, icc_profile=source.icc_profile)
