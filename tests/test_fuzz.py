"""Mutated image bytes through the read path: a clean InputError or a valid image, nothing else."""

import io
from contextlib import contextmanager, redirect_stderr

import imagecodecs
import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rrdnet_cli import InputError
from rrdnet_cli.images import LoadedImage, decode_image

from helpers import dark_array


def _pillow(image_format, mode="RGB", **options) -> bytes:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "fuzz"
    image = Image.fromarray(dark_array(12, 16)).convert(mode)
    if image_format != "BMP":
        options["exif"] = exif.tobytes()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _tiff_16() -> bytes:
    buffer = io.BytesIO()
    pixels = dark_array(12, 16).astype(np.uint16) * 257
    tifffile.imwrite(buffer, pixels, photometric="rgb", extratags=[(0x0112, "H", 1, 6, True)])
    return buffer.getvalue()


SEEDS = {
    "png": _pillow("PNG"),
    "png-la": _pillow("PNG", "LA"),
    "png-palette": _pillow("PNG", "P"),
    "png-16": imagecodecs.png_encode(dark_array(12, 16).astype(np.uint16) * 257),
    "jpeg": _pillow("JPEG", quality=90),
    "jpeg-cmyk": _pillow("JPEG", "CMYK"),
    "tiff": _pillow("TIFF"),
    "tiff-16": _tiff_16(),
    "webp": _pillow("WEBP"),
    "bmp": _pillow("BMP"),
}
# Small enough that a mutated header cannot make a test allocate much.
PIXEL_LIMIT = 200_000


@contextmanager
def small_pixel_limit():
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = PIXEL_LIMIT
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "header", "insert"]))
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            del data[position:]
        elif kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[position : position + len(chunk)] = chunk
        elif kind == "header":
            # Another format's signature on this body.
            other = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
            data[:8] = other[:8]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
    return name, bytes(data)


def check(data: bytes) -> None:
    printed = io.StringIO()
    try:
        with redirect_stderr(printed):
            loaded = decode_image(data, "fuzzed.img")
    except InputError as error:
        message = str(error)
        assert message.startswith("fuzzed.img: ") and "\n" not in message
        return
    finally:
        # The decoders' own chatter must never reach the terminal beside our one-line error.
        assert printed.getvalue() == ""
    assert isinstance(loaded, LoadedImage)
    pixels = loaded.pixels
    assert pixels.ndim == 4 and pixels.shape[:2] == (1, 3) and pixels.dtype == torch.float32
    assert pixels.shape[2] * pixels.shape[3] <= PIXEL_LIMIT
    assert torch.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 1
    if loaded.alpha is not None:
        assert loaded.alpha.shape == tuple(pixels.shape[2:])


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seeds_decode(name):
    with small_pixel_limit():
        loaded = decode_image(SEEDS[name], name)
    assert loaded.size in ((16, 12), (12, 16))


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=mutated())
def test_mutated_bytes_give_a_clean_error_or_a_valid_image(case, capfd):
    name, data = case
    with small_pixel_limit():
        check(data)
    # Nothing written from C either (libtiff prints straight to file descriptor 2).
    assert capfd.readouterr().err == ""


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data):
    with small_pixel_limit():
        check(data)
