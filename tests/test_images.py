"""Reading and writing every kind of image file: formats, modes, 16 bits, metadata, safety."""

import errno
import io
import os
import stat
import subprocess
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms, ImageOps

from rrdnet_cli import InputError, OutputError, images
from rrdnet_cli.images import (
    LoadedImage,
    atomic_output,
    decode_image,
    encode_like,
    read_image,
    write_atomic,
    write_fully,
    write_like,
)

from helpers import crafted_png_header, dark_array, write_dark

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
ORIENTATION, MAKE = 0x0112, 0x010F


def exif_bytes(orientation=None, make="rrdnet-test", size=None):
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    exif[MAKE] = make
    if size is not None:
        details = exif.get_ifd(0x8769)
        details[0xA002], details[0xA003] = size
    return exif.tobytes()


def as_uint8(loaded: LoadedImage) -> np.ndarray:
    return np.rint(loaded.pixels[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def random_uint16(shape, seed=0):
    # Full 16-bit range, so that a detour through 8 bits would show.
    return np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)


# ------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize("extension", ["png", "bmp", "tiff", "jpg", "webp"])
def test_every_format_reads_and_writes(tmp_path, extension):
    source = write_dark(tmp_path / f"in.{extension}", 24, 32)
    loaded = read_image(source)
    assert loaded.pixels.shape == (1, 3, 24, 32) and loaded.pixels.dtype == torch.float32
    lossless = extension in ("png", "bmp", "tiff")
    difference = np.abs(as_uint8(loaded).astype(int) - dark_array(24, 32).astype(int))
    assert difference.max() <= (0 if lossless else 40) and difference.mean() <= (0 if lossless else 4)
    for output_extension in ("png", "bmp", "tiff", "jpg", "webp"):
        output = tmp_path / f"out_{extension}.{output_extension}"
        write_like(loaded.pixels, output, loaded)
        with Image.open(output) as written:
            assert written.size == (32, 24) and written.mode == "RGB"
            assert written.format == {"jpg": "JPEG"}.get(output_extension, output_extension.upper())


def test_lossless_round_trip_is_exact(tmp_path):
    source = write_dark(tmp_path / "in.png")
    loaded = read_image(source)
    write_like(loaded.pixels, tmp_path / "out.png", loaded)
    with Image.open(tmp_path / "out.png") as written:
        np.testing.assert_array_equal(np.asarray(written), dark_array())


def test_jpeg_quality_option(tmp_path):
    loaded = read_image(write_dark(tmp_path / "in.png", 64, 64))
    sizes = {}
    for quality in (20, 95):
        write_like(loaded.pixels, tmp_path / f"q{quality}.jpg", loaded, quality=quality)
        sizes[quality] = (tmp_path / f"q{quality}.jpg").stat().st_size
    assert sizes[20] < sizes[95]
    webp_low = encode_like(loaded.pixels, loaded, "WEBP", quality=20)
    webp_high = encode_like(loaded.pixels, loaded, "WEBP", quality=95)
    assert len(webp_low) < len(webp_high)


# --------------------------------------------------------------------------------------- modes


def brighter(loaded: LoadedImage) -> torch.Tensor:
    """A stand-in for an enhancement: changes every colour value, never the alpha."""
    return (loaded.pixels * 0.5 + 0.4).clamp(0, 1)


@pytest.mark.parametrize(
    "mode, expected_mode, grayscale, has_alpha",
    [
        ("L", "L", True, False),
        ("1", "L", True, False),
        ("LA", "LA", True, True),
        ("RGBA", "RGBA", False, True),
        ("P", "RGB", False, False),
        ("CMYK", "RGB", False, False),
    ],
)
def test_modes_are_kept_or_converted(tmp_path, mode, expected_mode, grayscale, has_alpha):
    rgb = Image.fromarray(dark_array(20, 24) * 3)
    alpha = Image.fromarray(np.tile(np.arange(24, dtype=np.uint8) * 10, (20, 1)))
    image = rgb.convert(mode)
    if "A" in mode:
        image.putalpha(alpha)
    extension = "jpg" if mode == "CMYK" else "tiff" if mode == "1" else "png"
    source = tmp_path / f"in.{extension}"
    image.save(source)
    loaded = read_image(source)
    assert loaded.grayscale == grayscale and (loaded.alpha is not None) == has_alpha
    if grayscale:
        assert torch.equal(loaded.pixels[:, 0], loaded.pixels[:, 1]) and torch.equal(
            loaded.pixels[:, 1], loaded.pixels[:, 2]
        )
    write_like(brighter(loaded), tmp_path / "out.png", loaded)
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == expected_mode and written.size == (24, 20)
        if has_alpha:
            np.testing.assert_array_equal(np.asarray(written.getchannel("A")), np.asarray(alpha))
        colour = np.asarray(written.convert("RGB"), dtype=float) / 255
        assert colour.mean() > np.asarray(image.convert("RGB"), dtype=float).mean() / 255


def test_palette_with_transparency_keeps_it(tmp_path):
    image = Image.fromarray(dark_array(20, 24)).convert("P")
    image.info["transparency"] = 0
    image.save(tmp_path / "in.png", transparency=0)
    loaded = read_image(tmp_path / "in.png")
    assert loaded.alpha is not None and loaded.alpha.dtype == np.uint8
    expected = np.asarray(Image.open(tmp_path / "in.png").convert("RGBA").getchannel("A"))
    write_like(brighter(loaded), tmp_path / "out.png", loaded)
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(written.getchannel("A")), expected)


def test_gray_input_gives_gray_output_of_the_same_values(tmp_path):
    gray = Image.fromarray(dark_array(20, 24)).convert("L")
    gray.save(tmp_path / "in.png")
    loaded = read_image(tmp_path / "in.png")
    write_like(loaded.pixels, tmp_path / "out.png", loaded)
    with Image.open(tmp_path / "out.png") as written:
        np.testing.assert_array_equal(np.asarray(written), np.asarray(gray))


def test_cmyk_profile_is_not_copied_onto_rgb_output(tmp_path):
    image = Image.fromarray(dark_array(20, 24)).convert("CMYK")
    # An unusable CMYK profile: the plain conversion is used, and no CMYK profile reaches the
    # RGB output (a usable one converts to sRGB and embeds sRGB).
    image.save(tmp_path / "in.jpg", icc_profile=b"\0" * 16 + b"CMYK" + b"\0" * 108)
    loaded = read_image(tmp_path / "in.jpg")
    assert loaded.icc_profile is None
    write_like(loaded.pixels, tmp_path / "out.jpg", loaded)
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.mode == "RGB" and written.info.get("icc_profile") is None


# ------------------------------------------------------------------------------------- 16 bits


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_png_round_trip(tmp_path, channels):
    array = random_uint16((18, 22, channels) if channels > 1 else (18, 22))
    (tmp_path / "in.png").write_bytes(imagecodecs.png_encode(array))
    loaded = read_image(tmp_path / "in.png")
    assert loaded.bits == 16 and loaded.grayscale == (channels <= 2)
    assert (loaded.alpha is not None) == (channels in (2, 4))
    colour = array if channels == 1 else array[:, :, 0 if channels == 2 else slice(0, 3)]
    expected = colour.astype(np.float32) / 65535
    ours = loaded.pixels[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours[:, :, 0] if channels <= 2 else ours, expected, atol=1e-7)
    write_like(loaded.pixels, tmp_path / "out.png", loaded)
    written = imagecodecs.png_decode((tmp_path / "out.png").read_bytes())
    assert written.dtype == np.uint16
    np.testing.assert_array_equal(written, array)


@pytest.mark.parametrize("layout", ["rgb", "rgba", "gray", "rgb-planar", "miniswhite"])
def test_16_bit_tiff_round_trip(tmp_path, layout):
    if layout in ("rgb", "rgb-planar"):
        array, options = random_uint16((18, 22, 3)), {"photometric": "rgb"}
    elif layout == "rgba":
        array, options = random_uint16((18, 22, 4)), {"photometric": "rgb", "extrasamples": ["unassalpha"]}
    else:
        array, options = random_uint16((18, 22)), {"photometric": layout if layout == "miniswhite" else "minisblack"}
    stored = np.moveaxis(array, -1, 0) if layout == "rgb-planar" else array
    if layout == "rgb-planar":
        options["planarconfig"] = "separate"
    tifffile.imwrite(tmp_path / "in.tiff", stored, **options)
    loaded = read_image(tmp_path / "in.tiff")
    assert loaded.bits == 16 and loaded.pixels.shape == (1, 3, 18, 22)
    write_like(loaded.pixels, tmp_path / "out.tiff", loaded)
    written = tifffile.imread(tmp_path / "out.tiff")
    assert written.dtype == np.uint16
    np.testing.assert_array_equal(written, 65535 - array if layout == "miniswhite" else array)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_bigtiff_goes_back_out_with_its_tags(tmp_path, dtype):
    array = dark_array(18, 22).astype(dtype) * (257 if dtype == np.uint16 else 1)
    tifffile.imwrite(tmp_path / "in.tiff", array, photometric="rgb", bigtiff=True, software="camera 1")
    loaded = read_image(tmp_path / "in.tiff")
    for name in ("out.tiff", "out.jpg", "out.png"):
        write_like(loaded.pixels, tmp_path / name, loaded)
        with Image.open(tmp_path / name) as written:
            assert written.size == (22, 18) and written.getexif().get(305) == "camera 1", name
    assert tifffile.imread(tmp_path / "out.tiff").dtype == dtype


@pytest.mark.parametrize("maxval", [4095, 65535])
def test_a_16_bit_pgm_is_read_as_16_bit_gray(tmp_path, maxval):
    samples = np.array([[0, 1, maxval // 2], [maxval, 7, 100]], ">u2")
    (tmp_path / "in.pgm").write_bytes(b"P5\n3 2\n%d\n" % maxval + samples.tobytes())
    loaded = read_image(tmp_path / "in.pgm")
    assert loaded.bits == 16 and loaded.grayscale
    np.testing.assert_allclose(loaded.pixels[0, 0].numpy(), samples / maxval, atol=1 / 65535)
    write_like(loaded.pixels, tmp_path / "out.png", loaded)
    assert imagecodecs.png_decode((tmp_path / "out.png").read_bytes()).dtype == np.uint16


def test_16_bit_to_8_bit_formats(tmp_path):
    array = random_uint16((18, 22, 4))
    (tmp_path / "in.png").write_bytes(imagecodecs.png_encode(array))
    loaded = read_image(tmp_path / "in.png")
    write_like(loaded.pixels, tmp_path / "out.webp", loaded)
    with Image.open(tmp_path / "out.webp") as written:
        assert written.mode == "RGBA"
        alpha = np.asarray(written.getchannel("A")).astype(int)
        assert np.abs(alpha - array[:, :, 3] / 257).max() <= 1
    write_like(loaded.pixels, tmp_path / "out.jpg", loaded)
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.mode == "RGB" and written.size == (22, 18)


# ------------------------------------------------------------------------------------ metadata


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillows_exif_transpose(tmp_path, orientation):
    source = write_dark(tmp_path / "in.png", 20, 30, exif=exif_bytes(orientation))
    loaded = read_image(source)
    with Image.open(source) as opened:
        upright = np.asarray(ImageOps.exif_transpose(opened))
    np.testing.assert_array_equal(as_uint8(loaded), upright)


def test_8_bit_tiff_orientation_is_applied_once(tmp_path):
    # Pillow orients TIFF pixels itself while loading: they must not be turned a second time.
    source = write_dark(tmp_path / "in.tiff", 20, 30, exif=exif_bytes(6))
    loaded = read_image(source)
    np.testing.assert_array_equal(as_uint8(loaded), np.rot90(dark_array(20, 30), -1))


@pytest.mark.parametrize("extension", ["jpg", "png", "webp", "tiff"])
def test_exif_orientation_6_and_icc_profile(tmp_path, extension):
    source = write_dark(tmp_path / "in.jpg", 20, 30, exif=exif_bytes(6, size=(30, 20)), icc_profile=SRGB, quality=95)
    loaded = read_image(source)
    assert loaded.size == (20, 30)
    output = tmp_path / f"out.{extension}"
    write_like(loaded.pixels, output, loaded)
    with Image.open(output) as written:
        assert written.size == (20, 30)
        exif = written.getexif()
        assert exif.get(ORIENTATION) == 1 and exif.get(MAKE) == "rrdnet-test"
        assert written.info.get("icc_profile") == SRGB
        if extension != "tiff":
            assert exif.get_ifd(0x8769).get(0xA002) == 20 and exif.get_ifd(0x8769).get(0xA003) == 30
        # Upright everywhere: a viewer applying the (reset) tag shows the same picture.
        assert ImageOps.exif_transpose(written).size == (20, 30)


@pytest.mark.parametrize("extension", ["png", "tiff"])
def test_16_bit_keeps_orientation_and_icc(tmp_path, extension):
    array = random_uint16((18, 22, 3))
    tifffile.imwrite(
        tmp_path / "in.tiff",
        array,
        photometric="rgb",
        iccprofile=SRGB,
        extratags=[(ORIENTATION, "H", 1, 6, True), (MAKE, "s", 0, "rrdnet-test", True)],
    )
    loaded = read_image(tmp_path / "in.tiff")
    assert loaded.size == (18, 22) and loaded.bits == 16
    output = tmp_path / f"out.{extension}"
    write_like(loaded.pixels, output, loaded)
    with Image.open(output) as written:
        assert written.size == (18, 22)
        assert written.getexif().get(ORIENTATION) == 1 and written.getexif().get(MAKE) == "rrdnet-test"
        assert written.info.get("icc_profile") == SRGB
    pixels = imagecodecs.png_decode(output.read_bytes()) if extension == "png" else tifffile.imread(output)
    np.testing.assert_array_equal(pixels, np.rot90(array, -1))


def test_gray_profile_is_not_put_on_colour_pixels(tmp_path):
    gray_profile = SRGB[:16] + b"GRAY" + SRGB[20:]
    Image.fromarray(dark_array(20, 24)).convert("L").save(tmp_path / "in.png", icc_profile=gray_profile)
    loaded = read_image(tmp_path / "in.png")
    write_like(loaded.pixels, tmp_path / "gray.png", loaded)
    write_like(loaded.pixels, tmp_path / "colour.webp", loaded)
    with Image.open(tmp_path / "gray.png") as gray, Image.open(tmp_path / "colour.webp") as colour:
        assert gray.info.get("icc_profile") == gray_profile
        assert colour.mode == "RGB" and colour.info.get("icc_profile") is None


# ---------------------------------------------------------------------------------- bad input


def truncated(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "name, make, needle",
    [
        ("empty.png", lambda tmp: b"", "empty"),
        (
            "truncated.jpg",
            lambda tmp: truncated(write_dark(tmp / "full.jpg")),
            "cannot decode image \\(the file is truncated\\)",
        ),
        (
            "truncated.png",
            lambda tmp: truncated(write_dark(tmp / "full.png")),
            "cannot decode image \\(the file is truncated\\)",
        ),
        ("random.png", lambda tmp: np.random.default_rng(0).bytes(2000), "not an image"),
        ("text.jpg", lambda tmp: b"hello, I am a text file\n" * 20, "not an image"),
        ("header_only.png", lambda tmp: crafted_png_header(40, 30), "cannot decode"),
    ],
)
def test_bad_files_raise_input_error_naming_the_file(tmp_path, name, make, needle):
    path = tmp_path / name
    path.write_bytes(make(tmp_path))
    with pytest.raises(InputError, match=needle) as caught:
        read_image(path)
    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)


def test_folder_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        read_image(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.png")


@pytest.mark.parametrize("factor", [1.5, 3.0])
def test_over_the_pixel_limit_is_refused(tmp_path, monkeypatch, factor):
    # Pillow only warns between one and two times its limit, and raises above: both are refused.
    source = write_dark(tmp_path / "in.png", 20, 30)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(20 * 30 / factor))
    with pytest.raises(InputError, match="decompression bomb"):
        read_image(source)


def test_huge_header_is_refused_without_decoding():
    with pytest.raises(InputError, match="decompression bomb"):
        decode_image(crafted_png_header(30000, 30000), "bomb.png")


def test_32_bit_float_tiff_is_refused_clearly(tmp_path):
    Image.fromarray(np.zeros((10, 10), np.float32), "F").save(tmp_path / "float.tiff")
    with pytest.raises(InputError, match="only 8- and 16-bit"):
        read_image(tmp_path / "float.tiff")


# ------------------------------------------------------------------------------------- writing


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"

    def broken_fsync(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OutputError, match="out.png: cannot write \\(No space left on device\\)"):
        write_atomic(target, b"data")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target) as temporary:
            temporary.write_bytes(b"half of the new")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["out.png"]


def test_outputs_get_the_usual_permissions(tmp_path):
    write_atomic(tmp_path / "out.png", b"data")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o666 & ~mask


def test_output_under_a_regular_file_is_an_output_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    loaded = read_image(write_dark(tmp_path / "in.png"))
    with pytest.raises(OutputError, match="file/out/x.png: cannot write"):
        write_like(loaded.pixels, tmp_path / "file" / "out" / "x.png", loaded)


def test_decode_from_memory_matches_file(tmp_path):
    source = write_dark(tmp_path / "in.jpg")
    from_file = read_image(source)
    from_memory = decode_image(source.read_bytes(), "stdin")
    assert torch.equal(from_file.pixels, from_memory.pixels)
    buffer = io.BytesIO(encode_like(from_memory.pixels, from_memory, "PNG"))
    with Image.open(buffer) as written:
        assert written.format == "PNG" and written.size == (48, 40)


# ------------------------------------------------------------------------ untrusted input, writes


class ShortWrites(io.RawIOBase):
    """A stream that takes at most ``chunk`` bytes a call, then (past ``capacity``) none at all."""

    def __init__(self, chunk, capacity):
        self.chunk, self.capacity, self.data = chunk, capacity, bytearray()

    def writable(self):
        return True

    def write(self, data):
        count = min(self.chunk, len(data), self.capacity - len(self.data))
        self.data += bytes(data[:count])
        return count


def test_write_fully_completes_short_writes():
    stream = ShortWrites(chunk=7, capacity=10_000)
    write_fully(stream, bytes(range(256)) * 4, "stdout")
    assert bytes(stream.data) == bytes(range(256)) * 4


def test_write_fully_refuses_a_stream_that_stops_taking_bytes():
    stream = ShortWrites(chunk=7, capacity=100)
    with pytest.raises(OutputError, match="^stdout: cannot write \\(wrote 100 of 1024 bytes\\)$"):
        write_fully(stream, bytes(1024), "stdout")


def test_write_fully_reports_a_closed_pipe():
    reading, writing = os.pipe()
    os.close(reading)
    with os.fdopen(writing, "wb") as stream:
        with pytest.raises(OutputError, match="^stdout: cannot write \\(Broken pipe\\)$"):
            write_fully(stream, b"x" * 100_000, "stdout")


def test_write_fully_reports_a_full_disk(monkeypatch):
    def full(descriptor, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OutputError, match="out.png: cannot write \\(No space left on device\\)"):
        write_fully(1, b"data", "out.png")


def test_atomic_write_of_a_short_writing_disk_leaves_nothing(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda descriptor, data: real_write(descriptor, data[:3]) if len(data) > 5 else 0)
    with pytest.raises(OutputError, match="cannot write \\(wrote 6 of 10 bytes\\)"):
        write_atomic(tmp_path / "out.png", b"0123456789")
    assert list(tmp_path.iterdir()) == []


def test_output_names_up_to_the_limit_can_be_written(tmp_path):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    for length in (name_max - 14, name_max - 5, name_max):
        target = tmp_path / ("n" * (length - 4) + ".png")
        write_atomic(target, b"data")
        assert target.read_bytes() == b"data"
    assert all(len(path.name) <= name_max for path in tmp_path.iterdir())
    with pytest.raises(OutputError, match="cannot write"):
        write_atomic(tmp_path / ("n" * name_max + ".png"), b"data")


def test_temporary_names_of_long_outputs_stay_distinct(tmp_path):
    seen = []
    for ending in ("a.png", "b.png"):
        with atomic_output(tmp_path / ("é" * 123 + ending)) as temporary:
            seen.append(temporary.name)
            assert len(os.fsencode(temporary.name)) <= 255
    assert seen[0][:-14] != seen[1][:-14]


def test_postscript_named_png_is_refused_before_decoding(tmp_path, monkeypatch):
    def no_programs(*args, **kwargs):
        raise AssertionError("a decoder tried to run a program")

    monkeypatch.setattr(subprocess, "Popen", no_programs)
    monkeypatch.setattr(subprocess, "check_call", no_programs)
    path = tmp_path / "photo.png"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nshowpage\n")
    with pytest.raises(InputError, match="photo.png: unsupported image format EPS \\(formats read: JPEG"):
        read_image(path)


def test_pdf_and_other_formats_outside_the_list_are_refused(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(dark_array(32, 32)).save(buffer, format="PCX")
    with pytest.raises(InputError, match="unsupported image format PCX"):
        decode_image(buffer.getvalue(), "x.png")
    with pytest.raises(InputError, match="x.png: "):
        decode_image(b"%PDF-1.4\n" + bytes(200), "x.png")


@pytest.mark.parametrize("image_format", ["GIF", "PPM", "ICO"])
def test_simple_formats_beyond_the_written_ones_are_read(image_format):
    buffer = io.BytesIO()
    Image.fromarray(dark_array(32, 32)).save(buffer, format=image_format)
    assert decode_image(buffer.getvalue(), "x").size == (32, 32)


@pytest.mark.parametrize("dtype, words", [(np.float32, "32-bit floating-point"), (np.int16, "16-bit signed integer")])
def test_unsupported_tiff_samples_are_named(tmp_path, dtype, words):
    # RGB float TIFFs are not even identified by Pillow: the message must still say what they are.
    tifffile.imwrite(tmp_path / "x.tiff", np.zeros((32, 32, 3), dtype), photometric="rgb")
    with pytest.raises(InputError, match=f"x.tiff: {words} TIFF is not supported"):
        read_image(tmp_path / "x.tiff")


def test_utf8_text_tags_survive_the_16_bit_tiff_path(tmp_path):
    tifffile.imwrite(
        tmp_path / "in.tiff",
        random_uint16((32, 32, 3)),
        photometric="rgb",
        extratags=[(MAKE, "s", 0, "Caméra".encode(), True)],
    )
    loaded = read_image(tmp_path / "in.tiff")
    write_like(loaded.pixels, tmp_path / "out.tiff", loaded)
    with tifffile.TiffFile(tmp_path / "out.tiff") as written:
        assert written.pages[0].tags[MAKE].value == "Caméra"


@pytest.mark.parametrize("extension", ["jpg", "png"])
def test_utf8_text_tags_survive_8_bit_outputs(tmp_path, extension):
    source = write_dark(tmp_path / "in.jpg", 32, 32, exif=exif_bytes(make="Caméra".encode()))
    loaded = read_image(source)
    write_like(loaded.pixels, tmp_path / f"out.{extension}", loaded)
    with Image.open(tmp_path / f"out.{extension}") as written:
        assert written.getexif()[MAKE].encode("latin-1").decode("utf-8") == "Caméra"


def test_atomic_writes_refuse_to_replace_a_fifo_or_device(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="pipe.png: cannot write \\(is a FIFO, not a regular file\\)"):
        write_atomic(fifo, b"data")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.listdir(tmp_path) == ["pipe.png"]


@pytest.mark.parametrize(
    "photometric, channels, words", [("rgb", 5, "16-bit RGB"), ("minisblack", 3, "16-bit grayscale")]
)
def test_tiff_with_several_extra_samples_names_its_layout(tmp_path, photometric, channels, words):
    array = np.zeros((24, 24, channels), np.uint16)
    tifffile.imwrite(tmp_path / "x.tiff", array, photometric=photometric, extrasamples=["unspecified", "unspecified"])
    with pytest.raises(InputError, match=f"x.tiff: {words} TIFF with 2 extra samples per pixel is not supported"):
        read_image(tmp_path / "x.tiff")
    # RGB with one extra sample (alpha) is a layout that is read.
    tifffile.imwrite(
        tmp_path / "y.tiff", np.zeros((24, 24, 4), np.uint16), photometric="rgb", extrasamples=["unassalpha"]
    )
    assert read_image(tmp_path / "y.tiff").size == (24, 24)


@pytest.mark.parametrize("kind", ["device", "link to a device", "fifo"])
def test_only_regular_files_are_read(tmp_path, kind):
    path = tmp_path / "x.png"
    if kind == "fifo":
        os.mkfifo(path)  # no writer: opening it blocking would hang
    elif kind == "device":
        path = Path("/dev/zero")
    else:
        path.symlink_to("/dev/zero")
    words = "a FIFO" if kind == "fifo" else "a character device"
    with pytest.raises(InputError, match=f"(x.png|zero): is {words}, not a regular file; refused"):
        read_image(path)


def test_a_file_longer_than_any_readable_image_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    limit = images.max_encoded_bytes()
    assert limit == 8000 + 64 * 1024 * 1024
    path = tmp_path / "huge.png"
    path.write_bytes(crafted_png_header(10, 10))
    os.truncate(path, limit + 1)  # sparse: nothing to read if the size is checked first
    with pytest.raises(InputError, match=f"huge.png: more than {limit} bytes, longer than any image"):
        read_image(path)


def test_a_stream_that_is_no_image_is_refused_after_its_first_bytes(tmp_path):
    with open("/dev/zero", "rb") as endless:
        with pytest.raises(InputError, match="stdin: not an image"):
            images.read_stream(endless, "stdin")
        assert endless.tell() < 1 << 20


def test_a_stream_longer_than_any_readable_image_is_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    monkeypatch.setattr(images, "_METADATA_ROOM", 0)
    image = io.BytesIO()
    Image.fromarray(dark_array(8, 8)).save(image, format="PNG")
    assert images.read_stream(io.BytesIO(image.getvalue()), "stdin") == image.getvalue()
    with pytest.raises(InputError, match="stdin: more than 800 bytes"):
        images.read_stream(io.BytesIO(image.getvalue() + bytes(100_000)), "stdin")


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("grayscale", [False, True])
def test_conversion_to_integers_in_bands_equals_the_whole(monkeypatch, bits, grayscale):
    generator = torch.Generator().manual_seed(3)
    pixels = torch.rand((1, 3, 21, 13), generator=generator) * 1.2 - 0.1  # some out of [0, 1]
    maximum, dtype = (65535, np.uint16) if bits == 16 else (255, np.uint8)
    values = pixels[0].clamp(0, 1).permute(1, 2, 0).numpy()
    if grayscale:
        values = (values @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, :, None]
    expected = np.rint(values * maximum).astype(dtype)
    monkeypatch.setattr(images, "_CONVERT_ROWS", 4)
    converted = images.to_array(pixels, grayscale, bits=bits)
    assert converted.dtype == dtype and converted.flags.c_contiguous
    np.testing.assert_array_equal(converted, expected)


def test_decoded_pixels_are_the_samples_over_their_maximum(tmp_path):
    rgb = dark_array(9, 7)
    gray16 = (np.arange(63, dtype=np.uint16).reshape(9, 7) * 1000).astype(np.uint16)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    loaded = images.read_image(tmp_path / "rgb.png")
    expected = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
    assert loaded.pixels.is_contiguous() and torch.equal(loaded.pixels, expected)
    gray = images.read_image(tmp_path / "gray16.png")
    assert gray.grayscale and gray.bits == 16
    expected_gray = torch.from_numpy(gray16.astype(np.float32) / 65535)[None, None].expand(1, 3, 9, 7)
    assert gray.pixels.is_contiguous() and torch.equal(gray.pixels, expected_gray)


@pytest.mark.parametrize("kind", ["JPEG", "padded", "MPO"])
def test_a_jpeg_too_small_for_the_size_its_header_claims_is_refused(kind):
    small = io.BytesIO()
    picture = Image.fromarray(dark_array(48, 48))
    if kind == "MPO":  # a camera's multi-picture JPEG: the first picture is what is read
        picture.save(small, "MPO", save_all=True, append_images=[picture])
    else:
        picture.save(small, "JPEG")
    data = bytearray(small.getvalue())
    frame = data.find(b"\xff\xc0")
    data[frame + 5 : frame + 9] = (9000).to_bytes(2, "big") * 2  # height, width
    if kind == "padded":  # fill bytes before a marker are allowed, and must not hide the frame
        data[frame:frame] = b"\xff\xff"
    with pytest.raises(InputError, match=r"bytes cannot hold the 9000x9000 pixels its header claims"):
        decode_image(bytes(data), "lie.jpg")
    # The flattest real photo a camera could give (black, heavily compressed, progressive) passes.
    black = io.BytesIO()
    Image.new("RGB", (2000, 1500)).save(black, "JPEG", quality=1, progressive=True)
    assert decode_image(black.getvalue(), "black.jpg").pixels.shape == (1, 3, 1500, 2000)
