"""Reading and writing image files, safely.

Reading turns any file a user has into a ``(1, 3, H, W)`` float tensor in [0, 1], upright, plus
what is needed to write the result back the same way: grayscale or colour, the alpha channel
untouched, 8 or 16 bits per channel, EXIF (orientation reset) and ICC profile.

Pillow decodes and encodes everything and reads the metadata, except 16-bit colour PNG and TIFF,
which Pillow can only hold at 8 bits: those pixels go through imagecodecs (PNG) and tifffile (TIFF).

Writing encodes in memory first, then writes a temporary file in the target folder and renames it
into place, so an interrupted run never leaves a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import stat
import struct
import sys
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional

import imagecodecs
import numpy as np
import tifffile
import torch
from PIL import Image, ImageCms, UnidentifiedImageError

from .errors import InputError, OutputError, cannot_write, naming, os_failure
from .settings import DEFAULT_QUALITY

# Pillow's format names for the extensions we read and write.
FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "tif": "TIFF", "bmp": "BMP"}
EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tiff", "BMP": ".bmp"}
IMAGE_SUFFIXES = frozenset("." + extension for extension in FORMATS)
# What a folder is searched for: the extensions of every format read (READ_FORMATS), so that a
# folder holds the images its files' names promise.
READ_SUFFIXES = IMAGE_SUFFIXES | {".gif", ".pbm", ".pgm", ".ppm", ".pnm", ".ico"}
# The decoders an input may use: the formats we write plus simple, widely used raster formats.
# Everything else Pillow knows is refused before decoding: its EPS/PS and PDF support runs
# Ghostscript, and rarely used decoders are attack surface an image enhancer does not need.
# (JPEG includes the multi-picture JPEGs many cameras write, MPO; PPM covers PBM, PGM and PPM.)
READ_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF", "PPM", "ICO")

_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_PIXEL_X_DIMENSION, _PIXEL_Y_DIMENSION = 0xA002, 0xA003
# Tags of a TIFF source that describe how that file stores its pixels: copied into another file's
# EXIF they would describe the wrong data (Pillow even fails to write such a TIFF). The ICC profile
# travels on its own, and XMP is left behind because it may repeat the old orientation.
_NOT_COPIED_TAGS = frozenset(
    {
        254,
        255,
        256,
        257,
        258,
        259,
        262,
        266,
        273,
        277,
        278,
        279,
        284,
        317,
        320,
        322,
        323,
        324,
        325,
        330,
        338,
        339,
        347,
        513,
        514,
        529,
        530,
        531,
        532,
        700,
        34675,
    }
)
# The text tags of EXIF's first directory, which tifffile can write into a 16-bit TIFF.
_TIFF_TEXT_TAGS = (270, 271, 272, 305, 306, 315, 33432)
# EXIF orientation -> the transposition that makes the picture upright, as (H, W, C) array views.
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
# ITU-R BT.601 luma, as Pillow's convert("L") weighs the channels.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_CONVERT_ROWS = 256
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The signature plus the IHDR chunk, which a PNG always starts with.
_PNG_HEADER_LENGTH = 8 + 25
_JPEG_MAX_EXIF = 65533
# zlib level of 8-bit PNGs: on 768x512 photos level 3 encodes 2-3 times faster than Pillow's
# default 6 for files 0-13 % larger (a PNG stays lossless either way).
PNG_COMPRESS_LEVEL = 3


@dataclass
class LoadedImage:
    """A decoded image: ``pixels`` ``(1, 3, H, W)`` float32 in [0, 1], upright, plus how to save it.

    ``alpha`` is ``(H, W)`` with the source's own integer type (uint8, or uint16 when ``bits`` is
    16); a grayscale image's pixels hold the gray value in all three channels. ``exif`` is ready to
    write: orientation reset to 1, since the pixels are already upright.
    """

    pixels: torch.Tensor
    format: str
    grayscale: bool = False
    alpha: Optional[np.ndarray] = None
    exif: Optional[bytes] = None
    icc_profile: Optional[bytes] = None
    bits: int = 8

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.pixels.shape[3], self.pixels.shape[2]


# ----------------------------------------------------------------------------------------- reading


# Bytes of headroom over the pixels in the largest file worth reading: EXIF, ICC profile, text.
_METADATA_ROOM = 64 * 1024 * 1024
# What is read of a stream before its first bytes must look like an image.
_SNIFF_BYTES = 64 * 1024


def max_encoded_bytes() -> Optional[int]:
    """The largest encoded image read at all: every pixel the decompression-bomb limit allows, at
    8 bytes (16-bit RGBA stored uncompressed), plus room for metadata; None when that limit is off.
    Anything longer could only be refused after decoding, so it is refused before reading."""
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else int(limit) * 8 + _METADATA_ROOM


class NotRegularFile(OSError):
    """A path that names something other than a regular file (a device, a FIFO, a folder)."""

    def __init__(self, mode: int) -> None:
        super().__init__(f"is {describe_file_type(mode)}, not a regular file")
        self.mode = mode


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """``path`` opened for binary reading, if it is a regular file (links followed); else
    ``NotRegularFile``. Opened without blocking, so that a FIFO with no writer cannot hang the
    caller (a device is refused before it is opened at all, and again after, against a swap)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFile(mode)
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # POSIX only; elsewhere FIFOs are no files to open
    descriptor = os.open(path, os.O_RDONLY | nonblocking | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(mode)
        if nonblocking:
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _too_long(name: str, limit: int) -> InputError:
    return InputError(
        f"{name}: more than {limit} bytes, longer than any image rrdnet reads "
        f"(PIL.Image.MAX_IMAGE_PIXELS at 8 bytes a pixel, plus {_METADATA_ROOM >> 20} MiB); refused"
    )


def read_stream(stream: BinaryIO, name: str) -> bytearray:
    """An encoded image read from ``stream`` (standard input), refused as soon as its first bytes
    are no image (an endless ``/dev/zero``) or it outgrows ``max_encoded_bytes``. A bytearray,
    grown in place: joining chunks would hold the image twice."""
    limit = max_encoded_bytes()
    data = bytearray()
    sniffed = False
    while True:
        want = 1 << 20 if sniffed else _SNIFF_BYTES - len(data)
        if limit is not None:
            want = min(want, limit + 1 - len(data))
        chunk = stream.read(want)
        if not chunk:
            return data
        data += chunk
        if not sniffed and len(data) >= _SNIFF_BYTES:
            sniffed = True
            if not _recognised(bytes(data[:16])):
                raise InputError(f"{name}: {_unidentified(bytes(data[:_SNIFF_BYTES]))}")
        if limit is not None and len(data) > limit:
            raise _too_long(name, limit)


def _recognised(prefix: bytes) -> bool:
    """Whether one of the decoders in ``READ_FORMATS`` takes these first bytes (magic only)."""
    Image.init()
    for format_name in READ_FORMATS:
        accept = Image.OPEN.get(format_name, (None, None))[1]
        try:
            if accept is None or accept(prefix):
                return True
        except Exception:
            continue
    return False


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Decode the file at ``path``; any problem becomes an ``InputError`` naming it and the cause.

    Only a regular file is read (a device, FIFO or socket is refused without reading a byte), and
    only one no longer than ``max_encoded_bytes``."""
    path = Path(path)
    limit = max_encoded_bytes()
    try:
        with open_regular(path) as handle:
            if limit is not None and os.fstat(handle.fileno()).st_size > limit:
                raise _too_long(str(path), limit)
            data = handle.read() if limit is None else handle.read(limit + 1)
    except NotRegularFile as error:
        if stat.S_ISDIR(error.mode):
            raise InputError(f"{path}: is a folder, not an image") from None
        raise InputError(f"{path}: {error}; refused") from None
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as error:
        raise os_failure(InputError, path, "cannot read", error) from None
    if limit is not None and len(data) > limit:  # it grew since fstat
        raise _too_long(str(path), limit)
    return decode_image(data, str(path))


def decode_image(data: bytes, name: str) -> LoadedImage:
    """Decode an encoded image held in memory; ``name`` is what error messages call it."""
    if not data:
        raise InputError(f"{name}: file is empty")
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings(), _quiet_decoders():
            # Pillow only warns for images between one and two times its pixel limit: we refuse them
            # too, since enhancing one would need tens of gigabytes anyway.
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=READ_FORMATS) as opened:
                width, height = opened.size
                if limit is not None and width * height > limit:
                    raise Image.DecompressionBombError()
                if opened.format in ("JPEG", "MPO") and _jpeg_too_small(data, width, height):
                    raise InputError(
                        f"{name}: cannot decode image ({len(data)} bytes cannot hold the {width}x{height} "
                        "pixels its header claims: the file is damaged)"
                    )
                return _decode(opened, data, name)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{name}: {_unidentified(data)}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"{name}: image has more than {limit} pixels, the limit that guards against decompression bombs; refused"
        ) from None
    except MemoryError:
        raise InputError(f"{name}: not enough memory to decode this image") from None
    except Exception as error:
        # Decoders fed a damaged file raise all sorts of types (OSError, SyntaxError, struct.error,
        # IndexError, ...): for the user each one means the same thing.
        detail = _describe(error)
        # Pillow words a cut-off file differently per format ("Truncated File Read", "image file
        # is truncated (3 bytes not processed)"); it is the most common damage, so name it plainly.
        if "truncat" in detail.lower():
            detail = "the file is truncated"
        raise InputError(f"{name}: cannot decode image ({detail})") from None


# Start-of-frame markers of the Huffman-coded JPEG processes (baseline, extended, progressive,
# lossless); the arithmetic-coded ones (C9-CB, CD-CF) can spend less than a bit on a block.
_HUFFMAN_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3})


def _jpeg_too_small(data: bytes, width: int, height: int) -> bool:
    """Whether a Huffman-coded JPEG holds fewer bytes than its header's size needs.

    Each 8x8 block of a component costs at least one bit (its DC code), and a component covers at
    least a sixteenth of the full-size blocks (subsampled at most 4x each way), so a file of 1 KB
    cannot hold 9000x9000 pixels; decoders fill what is missing with grey, and the run would enhance
    81 megapixels of nothing. Only the markers before the first scan are read.
    """
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        if data[position + 1] == 0xFF:  # a fill byte: markers may be padded with any number of them
            position += 1
            continue
        marker = data[position + 1]
        if marker == 0xDA:  # start of scan: no frame header before it
            return False
        if marker in _HUFFMAN_FRAMES or (0xC5 <= marker <= 0xCF and marker not in (0xC8, 0xCC)):
            blocks = -(-width // 8) * -(-height // 8)
            return marker in _HUFFMAN_FRAMES and len(data) * 8 * 16 < blocks
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return False


def _unidentified(data: bytes) -> str:
    """Why no allowed decoder took ``data``, from its first bytes only: nothing is decoded."""
    prefix = data[:16]
    if prefix[:4] in (b"II*\x00", b"MM\x00*"):
        unsupported = _unsupported_tiff(data)
        if unsupported:
            return unsupported
    Image.init()
    for format_name, (_, accept) in Image.OPEN.items():
        # accept() only compares magic bytes; the plugin's decoder (and any program it would run)
        # is never reached for a format outside READ_FORMATS.
        if format_name in READ_FORMATS or accept is None:
            continue
        try:
            recognised = accept(prefix)
        except Exception:
            recognised = False
        if recognised:
            return f"unsupported image format {format_name} (formats read: {', '.join(READ_FORMATS)})"
    return f"not an image (unknown format, or the header is damaged; formats read: {', '.join(READ_FORMATS)})"


# Colour samples per pixel of the TIFF photometric interpretations Pillow reads, and their names.
_TIFF_COLOURS = {
    tifffile.PHOTOMETRIC.MINISBLACK: (1, "grayscale"),
    tifffile.PHOTOMETRIC.MINISWHITE: (1, "grayscale"),
    tifffile.PHOTOMETRIC.PALETTE: (1, "palette"),
    tifffile.PHOTOMETRIC.RGB: (3, "RGB"),
    tifffile.PHOTOMETRIC.YCBCR: (3, "YCbCr"),
    tifffile.PHOTOMETRIC.SEPARATED: (4, "CMYK"),
}


def _unsupported_tiff(data: bytes) -> Optional[str]:
    """A TIFF that Pillow does not read: name its sample type (32-bit float, say) or its layout
    (more extra samples than one alpha), from its header."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page = tiff.pages.first
            kind = {
                tifffile.SAMPLEFORMAT.IEEEFP: "floating-point",
                tifffile.SAMPLEFORMAT.INT: "signed integer",
                tifffile.SAMPLEFORMAT.UINT: "unsigned integer",
            }.get(page.sampleformat, "other")
            bits = page.bitspersample
            samples, photometric = page.samplesperpixel, page.photometric
    except Exception:
        return None
    if kind == "unsigned integer" and bits in (1, 8, 16):
        colours, words = _TIFF_COLOURS.get(photometric, (None, None))
        extra = samples - colours if colours is not None else 0
        if extra < 1:
            return None  # a plain layout: the file is damaged rather than unsupported
        # Pillow reads one extra sample (alpha) with most layouts, and no more than one.
        return f"{bits}-bit {words} TIFF with {extra} extra sample{'s' if extra > 1 else ''} per pixel is not supported"
    return f"{bits}-bit {kind} TIFF is not supported (only 8- and 16-bit unsigned integer samples)"


@contextlib.contextmanager
def _quiet_decoders() -> Iterator[None]:
    """Keep the decoders' own reports off the terminal: the user gets one line, ours.

    They report what they repair or reject as log records (Pillow, tifffile), as text written to
    ``sys.stderr`` (libpng inside imagecodecs) and from C straight to file descriptor 2 (libtiff).
    """
    saved = None
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
    except (OSError, AttributeError, ValueError):
        pass  # no usable descriptor 2 (an embedding host): the Python-level silence below still holds
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)


def _describe(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return text or type(error).__name__


def _decode(opened: Image.Image, data: bytes, name: str) -> LoadedImage:
    source_format = opened.format or "PNG"
    icc_profile = opened.info.get("icc_profile") or None
    if source_format == "PNG" and data[24:25] == b"\x10":
        array, maximum = _decode_png_16(data), 65535
    elif source_format == "TIFF" and any(bits > 8 for bits in _tiff_bits(opened)):
        array, maximum = _decode_tiff_16(data, name), 65535
    else:
        array, maximum, icc_profile = _decode_with_pillow(opened, icc_profile, name)
    # The pixel-count check above trusted Pillow's reading of the header; the other decoders must
    # agree with it. (Sides may be swapped: Pillow reports TIFF sizes already oriented.)
    if array.shape[0] * array.shape[1] != opened.size[0] * opened.size[1]:
        raise InputError(f"{name}: the decoded pixels do not match the size in the header")
    # Read after decoding: Pillow orients some formats itself while loading and then drops the tag.
    exif = _read_exif(opened)
    orientation = exif.get(_ORIENTATION) if exif is not None else None
    if orientation in _UPRIGHT:
        array = _UPRIGHT[orientation](array)
    height, width = array.shape[:2]
    channels = array.shape[2]
    colour = torch.from_numpy(np.ascontiguousarray(array[:, :, :1] if channels <= 2 else array[:, :, :3]))
    alpha = np.ascontiguousarray(array[:, :, -1]) if channels in (2, 4) else None
    # Converted straight into the (1, 3, H, W) float tensor, scaled in place: a 12 MP photo's
    # intermediate float copies would be 144 MB each.
    pixels = torch.empty((1, 3, height, width), dtype=torch.float32)
    pixels[0].copy_(colour.permute(2, 0, 1).expand(3, height, width)).div_(maximum)
    return LoadedImage(
        pixels=pixels,
        format=source_format,
        grayscale=channels <= 2,
        alpha=alpha,
        exif=_exif_for_output(exif, (width, height)),
        icc_profile=icc_profile,
        bits=16 if maximum == 65535 else 8,
    )


def _tiff_bits(opened: Image.Image) -> tuple[int, ...]:
    bits = opened.tag_v2.get(258, (8,))  # type: ignore[attr-defined]  # a TIFF's tags: TiffImageFile only
    return tuple(bits) if isinstance(bits, (tuple, list)) else (bits,)


def _decode_with_pillow(
    opened: Image.Image, icc_profile: Optional[bytes], name: str
) -> tuple[np.ndarray, int, Optional[bytes]]:
    """Pixels as ``(H, W, C)`` (C: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), their maximum, the ICC profile."""
    # Decoding is lazy in Pillow; load() here makes truncation errors surface now.
    opened.load()
    mode = opened.mode
    # Pillow opens a 16-bit PGM (maxval above 255) in mode I, its samples scaled to 0-65535.
    if mode.startswith("I;16") or (mode == "I" and opened.format == "PPM"):
        return np.asarray(opened).astype(np.uint16)[:, :, None], 65535, icc_profile
    if mode in ("I", "F"):
        kind = "floating-point" if mode == "F" else "integer"
        raise InputError(
            f"{name}: 32-bit {kind} pixels are not supported (only 8- and 16-bit unsigned integer samples)"
        )
    if mode == "CMYK":
        return _cmyk_to_rgb(opened, icc_profile)
    if mode in ("1", "L"):
        converted = opened.convert("L")
    elif mode in ("LA", "La"):
        converted = opened.convert("LA")
    elif mode == "PA" or (mode == "P" and "transparency" in opened.info) or mode in ("RGBA", "RGBa"):
        converted = opened.convert("RGBA")
    else:
        converted = opened.convert("RGB")
    array = np.asarray(converted)
    return (array[:, :, None] if array.ndim == 2 else array), 255, icc_profile


def _cmyk_to_rgb(opened: Image.Image, icc_profile: Optional[bytes]) -> tuple[np.ndarray, int, Optional[bytes]]:
    # A CMYK profile cannot describe RGB pixels: convert through it to sRGB and embed sRGB instead.
    if icc_profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            converted = ImageCms.profileToProfile(opened, source, srgb, outputMode="RGB")
            return np.asarray(converted), 255, srgb.tobytes()
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # an unusable profile: fall back to the plain conversion below
    return np.asarray(opened.convert("RGB")), 255, None


def _decode_png_16(data: bytes) -> np.ndarray:
    array = imagecodecs.png_decode(data)
    if array.dtype != np.uint16:
        raise ValueError(f"expected 16-bit samples, decoded {array.dtype}")
    return array[:, :, None] if array.ndim == 2 else array


def _decode_tiff_16(data: bytes, name: str) -> np.ndarray:
    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        page = tiff.pages[0]
        if page.bitspersample != 16 or page.sampleformat != tifffile.SAMPLEFORMAT.UINT:
            raise InputError(f"{name}: only 8- and 16-bit unsigned integer TIFF images are supported")
        photometric = page.photometric
        if photometric not in (
            tifffile.PHOTOMETRIC.MINISBLACK,
            tifffile.PHOTOMETRIC.MINISWHITE,
            tifffile.PHOTOMETRIC.RGB,
        ):
            raise InputError(f"{name}: 16-bit TIFF with {photometric.name} colours is not supported")
        array = page.asarray()
        samples = page.samplesperpixel
        if samples > 1 and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
            array = np.moveaxis(array, 0, -1)
        if array.ndim == 2:
            array = array[:, :, None]
        colour_samples = 3 if photometric == tifffile.PHOTOMETRIC.RGB else 1
        has_alpha = any(
            extra in (tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA) for extra in page.extrasamples
        )
        array = array[:, :, : colour_samples + (1 if has_alpha and samples > colour_samples else 0)]
        if photometric == tifffile.PHOTOMETRIC.MINISWHITE:
            array = array.copy()
            array[:, :, 0] = 65535 - array[:, :, 0]
        return array.astype(np.uint16, copy=False)


def _read_exif(opened: Image.Image) -> Optional[Image.Exif]:
    try:
        exif = opened.getexif()
        return exif if len(exif) else None
    except Exception:
        # A damaged EXIF block costs the metadata, not the picture.
        return None


def _keep_text_bytes(tags) -> None:
    """Let non-ASCII text tags (a UTF-8 "Caméra") go back out byte for byte.

    Pillow reads a text tag's bytes as Latin-1 and writes text back as ASCII, turning each byte
    above 127 into "?"; the original bytes, handed back as bytes, are written as they were.
    """
    for tag, value in list(tags.items()):
        if isinstance(value, str) and not value.isascii():
            tags[tag] = value.encode("latin-1", "replace")


def _exif_for_output(exif: Optional[Image.Exif], size: tuple[int, int]) -> Optional[bytes]:
    if exif is None:
        return None
    try:
        for tag in _NOT_COPIED_TAGS & set(exif):
            del exif[tag]
        if _ORIENTATION in exif:
            exif[_ORIENTATION] = 1
        details = exif.get_ifd(_EXIF_IFD)
        # After an orientation the stored pixel dimensions may be swapped: state the real ones.
        if _PIXEL_X_DIMENSION in details:
            details[_PIXEL_X_DIMENSION] = size[0]
        if _PIXEL_Y_DIMENSION in details:
            details[_PIXEL_Y_DIMENSION] = size[1]
        _keep_text_bytes(exif)
        _keep_text_bytes(details)
        # Written in the classic TIFF layout even from a BigTIFF: EXIF blocks are classic, and
        # Pillow cannot read a BigTIFF one back (a TIFF output failed to encode).
        exif.bigtiff = False
        return exif.tobytes() if len(exif) else None
    except Exception:
        return None


# ----------------------------------------------------------------------------------------- writing


def format_for(path: Path, error: type = OutputError) -> str:
    """Pillow's name of the format that ``path``'s extension names; ``error`` if it names none
    (``UsageError`` where the user chose the name, so that nothing is processed)."""
    try:
        return FORMATS[path.suffix.lower().lstrip(".")]
    except KeyError:
        known = ", ".join(sorted(set(FORMATS)))
        raise error(f"{path}: unknown image extension '{path.suffix}' (known: {known})") from None


def to_array(
    pixels: torch.Tensor, grayscale: bool = False, alpha: Optional[np.ndarray] = None, bits: int = 8
) -> np.ndarray:
    """``pixels`` ``(1, 3 or 1, H, W)`` in [0, 1] -> ``(H, W, C)`` uint8 or uint16, C as in ``LoadedImage``."""
    maximum, dtype = (65535, np.uint16) if bits == 16 else (255, np.uint8)
    pixels = pixels[0].detach().float().cpu()
    luma = grayscale and pixels.shape[0] == 3
    height, width = pixels.shape[-2:]
    integers = np.empty((height, width, 1 if luma else pixels.shape[0]), dtype=dtype)
    # Converted a band of rows at a time: a 12 MP photo's float copies would be 144 MB each.
    for top in range(0, height, _CONVERT_ROWS):
        values = pixels[:, top : top + _CONVERT_ROWS].clamp(0, 1).permute(1, 2, 0).numpy()
        if luma:
            values = (values @ _LUMA)[:, :, None]
        integers[top : top + _CONVERT_ROWS] = np.rint(values * maximum)
    if alpha is None:
        return integers
    return np.concatenate([integers, _rescale(alpha, dtype)[:, :, None]], axis=2)


def _rescale(alpha: np.ndarray, dtype) -> np.ndarray:
    if alpha.dtype == dtype:
        return alpha
    if dtype == np.uint16:
        return alpha.astype(np.uint16) * 257
    return ((alpha.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def to_pil(pixels: torch.Tensor, grayscale: bool = False, alpha: Optional[np.ndarray] = None) -> Image.Image:
    """``pixels`` ``(1, C, H, W)`` in [0, 1] (C = 1 or 3) -> an 8-bit Pillow image."""
    array = to_array(pixels, grayscale or pixels.shape[1] == 1, alpha, 8)
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def encode_like(
    pixels: torch.Tensor, source: LoadedImage, image_format: str, *, quality: int = DEFAULT_QUALITY
) -> bytes:
    """Encode ``pixels`` ``(1, 3, H, W)`` as the enhanced version of ``source`` in ``image_format``
    (a value of ``FORMATS``): same gray or colour, alpha, bit depth where the format holds it,
    EXIF and ICC profile where it holds them."""
    wide = source.bits == 16 and image_format in ("PNG", "TIFF")
    array = to_array(pixels, source.grayscale, source.alpha, 16 if wide else 8)
    try:
        if wide and image_format == "PNG":
            return _encode_png_16(array, source.exif, source.icc_profile)
        if wide:
            return _encode_tiff_16(array, source.exif, source.icc_profile)
        return _encode_with_pillow(array, image_format, quality, source.exif, source.icc_profile)
    except OutputError:
        raise
    except Exception as error:
        raise OutputError(f"cannot encode {image_format} ({_describe(error)})") from None


def _icc_colour_space(icc_profile: Optional[bytes]) -> Optional[str]:
    # An ICC header names the colour space it describes at bytes 16-19 ("RGB ", "GRAY", "CMYK").
    if not icc_profile or len(icc_profile) < 20:
        return None
    return icc_profile[16:20].decode("latin-1").strip()


def _icc_for(icc_profile: Optional[bytes], channels: int) -> Optional[bytes]:
    """The profile if it describes pixels with ``channels`` channels (alpha counted), else None."""
    wanted = "GRAY" if channels <= 2 else "RGB"
    return icc_profile if _icc_colour_space(icc_profile) == wanted else None


def _encode_with_pillow(
    array: np.ndarray, image_format: str, quality: int, exif: Optional[bytes], icc_profile: Optional[bytes]
) -> bytes:
    channels = array.shape[2]
    if image_format in ("JPEG", "BMP") and channels in (2, 4):
        # Neither format has an alpha channel.
        array, channels = array[:, :, : channels - 1], channels - 1
    if image_format == "WEBP" and channels <= 2:
        # WebP has no grayscale: spell the gray out in three channels.
        array = np.concatenate([np.repeat(array[:, :, :1], 3, axis=2), array[:, :, 1:]], axis=2)
        channels = array.shape[2]
    image = Image.fromarray(np.ascontiguousarray(array[:, :, 0] if channels == 1 else array))
    options: dict = {}
    if image_format in ("JPEG", "WEBP"):
        options["quality"] = quality
    if image_format == "PNG":
        options["compress_level"] = PNG_COMPRESS_LEVEL
    if image_format != "BMP":
        if exif and not (image_format == "JPEG" and len(exif) > _JPEG_MAX_EXIF):
            options["exif"] = exif
        profile = _icc_for(icc_profile, channels)
        if profile:
            options["icc_profile"] = profile
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _encode_png_16(array: np.ndarray, exif: Optional[bytes], icc_profile: Optional[bytes]) -> bytes:
    data = np.ascontiguousarray(array[:, :, 0] if array.shape[2] == 1 else array)
    encoded = bytes(imagecodecs.png_encode(data))
    if not encoded.startswith(_PNG_SIGNATURE) or encoded[12:16] != b"IHDR":
        raise ValueError("unexpected PNG layout from the encoder")
    # imagecodecs writes pixels only; the metadata chunks go right after IHDR, where the PNG
    # specification wants iCCP (before the image data).
    chunks = b""
    profile = _icc_for(icc_profile, array.shape[2])
    if profile:
        chunks += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(profile))
    if exif:
        chunks += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    return encoded[:_PNG_HEADER_LENGTH] + chunks + encoded[_PNG_HEADER_LENGTH:]


def _encode_tiff_16(array: np.ndarray, exif: Optional[bytes], icc_profile: Optional[bytes]) -> bytes:
    channels = array.shape[2]
    tags = []
    if exif:
        # tifffile writes no EXIF sub-directories: the first directory's text tags and the
        # orientation are what a 16-bit TIFF keeps.
        loaded = Image.Exif()
        loaded.load(exif)
        for tag in _TIFF_TEXT_TAGS:
            if isinstance(loaded.get(tag), str):
                # Pillow reads text as Latin-1: its bytes are the file's own (UTF-8, say).
                tags.append((tag, "s", 0, loaded[tag].encode("latin-1", "replace"), True))
        if _ORIENTATION in loaded:
            tags.append((_ORIENTATION, "H", 1, 1, True))
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        np.ascontiguousarray(array[:, :, 0] if channels == 1 else array),
        photometric="minisblack" if channels <= 2 else "rgb",
        extrasamples=["unassalpha"] if channels in (2, 4) else None,
        compression="zlib",
        iccprofile=_icc_for(icc_profile, channels),
        metadata=None,
        software=False,
        extratags=tags,
    )
    return buffer.getvalue()


def _default_file_mode() -> int:
    # mkstemp creates files readable by the owner only; outputs get the usual umask-based mode.
    return 0o666 & ~_umask()


@functools.cache
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp's random part, and the dot, dots and ".part" around the name in a temporary file's name.
_TEMPORARY_EXTRA = len(".") + len(".") + 8 + len(".part")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _temporary_stem(path: Path) -> str:
    """The final name, shortened (with a hash, so that names stay distinct) where the temporary
    name built on it would exceed the folder's file-name limit: any name valid there can be written."""
    name = path.name
    room = _name_max(path.parent) - _TEMPORARY_EXTRA
    if len(os.fsencode(name)) <= room:
        return name
    digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:16]
    kept = os.fsencode(name)[: max(room - len(digest) - 1, 0)]
    return kept.decode("utf-8", "ignore") + "~" + digest


def real_path(path: str | Path) -> Path:
    """``path`` made absolute, with its symbolic links followed as far as they go: where
    ``Path.resolve`` raises on a loop of links (a user's folder may hold one), this stops at it."""
    return Path(os.path.realpath(path))


def describe_file_type(mode: int) -> str:
    """What ``st_mode`` says a path is, in words, for messages: "a FIFO", "a character device"."""
    for test, words in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return words
    return "not a regular file"


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A device, FIFO or socket at ``path`` is refused: the rename would replace it (``/dev/null``
    itself, for root) with a plain file."""
    try:
        kind = os.lstat(path).st_mode
    except OSError:
        kind = None  # nothing there (or unreachable: the writes below say why)
    if kind is not None and not (stat.S_ISREG(kind) or stat.S_ISLNK(kind) or stat.S_ISDIR(kind)):
        raise OSError(f"is {describe_file_type(kind)}, not a regular file")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{_temporary_stem(path)}.", suffix=".part", dir=path.parent)
    os.close(handle)
    try:
        os.chmod(temporary, _default_file_mode())
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def temporaries_of(path: Path) -> list[Path]:
    """The temporary files ``atomic_output(path)`` may have left (only a killed process leaves any)."""
    prefix, suffix = f".{_temporary_stem(path)}.", ".part"
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    length = len(prefix) + 8 + len(suffix)  # mkstemp's random part has 8 characters
    return [
        path.parent / name
        for name in names
        if len(name) == length and name.startswith(prefix) and name.endswith(suffix)
    ]


def write_fully(target, data: bytes, name: str) -> None:
    """Write all of ``data`` to ``target`` (a file descriptor or a binary file object) or raise
    ``OutputError`` naming ``name``: a short write that makes no progress, a full disk, a pipe
    whose reader has gone (EPIPE) or any other ``OSError`` never passes for success.

    A file object with a descriptor (``sys.stdout.buffer``) is flushed and then written through the
    descriptor, so that no part of ``data`` stays in a Python buffer to fail later, at exit.
    """
    view = memoryview(data).cast("B")
    try:
        if not isinstance(target, int):
            target.flush()
            try:
                target = target.fileno()
            except (AttributeError, OSError, ValueError):
                pass  # an in-memory stream: write to the object itself
        written = 0
        while written < len(view):
            count = os.write(target, view[written:]) if isinstance(target, int) else target.write(view[written:])
            if not count:
                # None (a non-blocking stream that would block) or 0: no progress, so no end to it.
                raise OSError(f"wrote {written} of {len(view)} bytes")
            written += count
        if not isinstance(target, int):
            target.flush()
    except OSError as error:
        raise OutputError(f"{name}: cannot write ({error.strerror or error})") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename; ``OutputError`` on failure."""
    try:
        with atomic_output(path) as temporary:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_BINARY", 0))
            try:
                write_fully(descriptor, data, str(path))
                # On disk before the rename, so that a crash cannot leave an empty final file.
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
    except OSError as error:
        raise cannot_write(path, error) from None


def save_image(image: Image.Image, path: Path, *, quality: int = DEFAULT_QUALITY, exif=None, icc_profile=None) -> None:
    """Write the Pillow ``image`` to ``path`` atomically, in the format its extension names."""
    image_format = format_for(path)
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    array = np.asarray(image)
    array = array[:, :, None] if array.ndim == 2 else array
    try:
        data = _encode_with_pillow(array, image_format, quality, exif, icc_profile)
    except Exception as error:
        raise OutputError(f"{path}: cannot encode {image_format} ({_describe(error)})") from None
    write_atomic(path, data)


def write_like(
    pixels: torch.Tensor, path: str | os.PathLike, source: LoadedImage, *, quality: int = DEFAULT_QUALITY
) -> None:
    """Save ``pixels`` ``(1, 3, H, W)`` to ``path`` as the enhanced version of ``source``."""
    path = Path(path)
    try:
        data = encode_like(pixels, source, format_for(path), quality=quality)
    except OutputError as error:
        raise OutputError(naming(path, str(error))) from None
    write_atomic(path, data)
