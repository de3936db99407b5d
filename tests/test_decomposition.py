import os

import imagecodecs
import numpy as np
import pytest
import torch
from PIL import Image

from rrdnet_cli import InputError, UsageError, decomposition, enhance
from rrdnet_cli.images import read_image
from rrdnet_cli.jobs import enhance_file

from helpers import PAPER_FAST, run, write_dark

PAPER_FAST_SEED_3 = [*PAPER_FAST, "--seed", "3"]


@pytest.fixture
def saved(tmp_path, tiny_config):
    source = write_dark(tmp_path / "dark.png", 36, 44)
    path = tmp_path / "dark.npz"
    enhance_file(source, tmp_path / "first.png", tiny_config, decomposition_file=path)
    return source, path


def test_round_trip_keeps_float32_maps_exactly(tmp_path, tiny_config, saved):
    source, path = saved
    enhancement = enhance(read_image(source).pixels, tiny_config)
    loaded = decomposition.load(path)
    for name in ("illumination", "reflectance", "noise"):
        stored = getattr(loaded, name)
        assert stored.dtype == torch.float32 and torch.equal(stored, getattr(enhancement, name))
    assert torch.equal(loaded.image, read_image(source).pixels)
    np.testing.assert_array_equal(loaded.losses, enhancement.losses)
    assert loaded.gamma == 0.4 and loaded.target_brightness is None
    assert "iterations: 3" in loaded.config_yaml and loaded.source_name == "dark.png"


def test_file_is_a_plain_documented_npz(saved):
    _, path = saved
    with np.load(path, allow_pickle=False) as arrays:
        assert str(arrays["format"]) == "rrdnet-decomposition" and int(arrays["version"]) == 1
        assert arrays["input"].shape == (1, 3, 36, 44) and arrays["input"].dtype == np.float32
        assert arrays["illumination"].shape == (1, 1, 36, 44)
        assert list(arrays["loss_columns"]) == ["reconstruction", "illumination", "reflectance", "noise", "total"]


@pytest.mark.parametrize("light", [["--gamma", "0.55"], ["--brightness", "0.17"]])
def test_relight_equals_a_fresh_enhance_with_the_same_gamma_and_seed(tmp_path, light):
    source = write_dark(tmp_path / "in" / "photo.png", 40, 48, seed=2)
    first = run("enhance", source, "-o", tmp_path / "a", "--save-decomposition", "-q", *PAPER_FAST_SEED_3)
    assert first.exit_code == 0, first.output
    saved = tmp_path / "a" / "decompositions" / "photo.npz"
    # Relight to another light level first, then back: nothing is re-solved, only recombined.
    assert run("relight", saved, "--gamma", "0.9", "-o", tmp_path / "other.png").exit_code == 0
    relit = run("relight", saved, *light, "-o", tmp_path / "relit.png")
    assert relit.exit_code == 0, relit.output
    fresh = run("enhance", source, "-o", tmp_path / "b", "-q", *light, *PAPER_FAST_SEED_3)
    assert fresh.exit_code == 0, fresh.output
    assert (tmp_path / "relit.png").read_bytes() == (tmp_path / "b" / "photo.png").read_bytes()
    assert (tmp_path / "other.png").read_bytes() != (tmp_path / "relit.png").read_bytes()
    assert "gamma" in relit.stderr and "brightness" in relit.stderr


def test_relight_keeps_the_source_format_details(tmp_path):
    source = tmp_path / "grey.png"
    Image.fromarray((np.arange(36 * 40).reshape(36, 40) % 50).astype(np.uint8), "L").save(source)
    assert (
        run("enhance", source, "-o", tmp_path / "out", "--save-decomposition", "-q", *PAPER_FAST_SEED_3).exit_code == 0
    )
    assert (
        run(
            "relight", tmp_path / "out" / "decompositions" / "grey.npz", "--gamma", "0.3", "-o", tmp_path / "r.jpg"
        ).exit_code
        == 0
    )
    with Image.open(tmp_path / "r.jpg") as image:
        assert image.mode == "L" and image.size == (40, 36)


def test_relight_gamma_auto_uses_the_saved_target(tmp_path, tiny_config, saved):
    _, path = saved
    loaded = decomposition.load(path)
    auto = decomposition.relight(loaded, gamma="auto")
    assert auto.target_brightness == pytest.approx(decomposition.saved_brightness(loaded))


def test_relight_needs_exactly_one_light_setting(tmp_path, saved):
    _, path = saved
    result = run("relight", path, "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "--gamma" in result.stderr
    result = run("relight", path, "--gamma", "0.5", "--brightness", "0.3", "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "conflict" in result.stderr
    result = run("relight", path, "--brightness", "3", "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "between 0 and 1" in result.stderr
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(UsageError):
        decomposition.relight(decomposition.load(path), gamma=-1.0)


def test_bad_decomposition_files_are_one_line_input_errors(tmp_path):
    (tmp_path / "text.npz").write_text("not a zip")
    np.savez(tmp_path / "other.npz", values=np.zeros(3))
    for name in ("text.npz", "other.npz", "missing.npz"):
        result = run("relight", tmp_path / name, "--gamma", "0.5", "-o", tmp_path / "x.png")
        assert result.exit_code == 1 and name in result.stderr and "Traceback" not in result.output
    with pytest.raises(InputError, match="not an rrdnet decomposition"):
        decomposition.load(tmp_path / "other.npz")


def test_wrong_version_is_refused(tmp_path, saved):
    _, path = saved
    with np.load(path) as arrays:
        values = dict(arrays)
    values["version"] = np.array(99)
    np.savez(tmp_path / "future.npz", **values)
    with pytest.raises(InputError, match="version 99"):
        decomposition.load(tmp_path / "future.npz")


# ---------------------------------------------------------------------- untrusted decompositions


def test_a_16_bit_source_is_relit_at_16_bits_with_its_alpha(tmp_path):
    rng = np.random.default_rng(0)
    rgba = (rng.random((30, 34, 4)) * [9000, 8000, 7000, 65535]).astype(np.uint16)
    (tmp_path / "deep.png").write_bytes(imagecodecs.png_encode(rgba))
    first = run("enhance", tmp_path / "deep.png", "-o", tmp_path / "a", "--save-decomposition", "-q", *PAPER_FAST)
    assert first.exit_code == 0, first.output
    relit = run("relight", tmp_path / "a" / "decompositions" / "deep.npz", "--gamma", "0.4", "-o", tmp_path / "r.png")
    assert relit.exit_code == 0, relit.output
    assert (tmp_path / "r.png").read_bytes() == (tmp_path / "a" / "deep.png").read_bytes()
    written = imagecodecs.png_decode((tmp_path / "r.png").read_bytes())
    assert written.dtype == np.uint16 and np.array_equal(written[:, :, 3], rgba[:, :, 3])


def test_relight_says_a_name_with_a_newline_on_one_line(tmp_path, saved):
    result = run("relight", saved[1], "--gamma", "0.5", "-o", tmp_path / "re\nlit.png")
    assert result.exit_code == 0 and (tmp_path / "re\nlit.png").is_file()
    (line,) = result.stderr.splitlines()
    assert "re\\nlit.png" in line


def test_a_file_from_before_source_bits_reads_as_8_bit(tmp_path, saved):
    with np.load(saved[1]) as arrays:
        values = {key: arrays[key] for key in arrays.files if key != "source_bits"}
    np.savez(tmp_path / "older.npz", **values)
    assert decomposition.load(tmp_path / "older.npz").source.bits == 8
    wide_alpha = rewritten(tmp_path, saved[1], source_alpha=np.zeros((36, 44), np.uint16))
    with pytest.raises(InputError, match="'source_alpha' has dtype uint16, expected 8-bit unsigned integers"):
        decomposition.load(wide_alpha)


def rewritten(tmp_path, path, **changes):
    with np.load(path) as arrays:
        values = dict(arrays)
    values.update(changes)
    target = tmp_path / "changed.npz"
    np.savez(target, **values)
    return target


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"version": np.array([1, 1])}, "'version' has dtype int64 and shape \\(2,\\), expected a single value"),
        ({"gamma": np.zeros((2, 2))}, "'gamma' has dtype float64 and shape \\(2, 2\\)"),
        ({"target_brightness": np.array([0.5])}, "'target_brightness' .* expected a single value"),
        ({"source_alpha": np.zeros((5, 7), np.uint8)}, "'source_alpha' .* shape \\(5, 7\\), expected 36 x 44"),
        ({"noise": np.zeros((1, 3, 36, 43), np.float32)}, "'noise' .* expected 1 x 3 x 36 x 44"),
        ({"illumination": np.full((1, 1, 36, 44), np.nan, np.float32)}, "'illumination' holds NaN"),
        ({"illumination": np.zeros((1, 1, 36, 44), np.float32)}, "'illumination' must lie in \\(0, 1\\]"),
        ({"input": np.full((1, 3, 36, 44), 2.0, np.float32)}, "'input' must lie in \\[0, 1\\]"),
        ({"gamma": np.array(-0.5)}, "'gamma' must be a positive number"),
        ({"target_brightness": np.array(7.0)}, "'target_brightness' must be NaN"),
        ({"config": np.array([b"x"], dtype=object)}, "'config' holds Python objects"),
    ],
)
def test_every_field_is_checked_before_use(tmp_path, saved, changes, needle):
    path = rewritten(tmp_path, saved[1], **changes)
    with pytest.raises(InputError, match=needle) as caught:
        decomposition.load(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_relight_of_a_zero_illumination_fails_and_writes_nothing(tmp_path, saved):
    path = rewritten(tmp_path, saved[1], illumination=np.zeros((1, 1, 36, 44), np.float32))
    result = run("relight", path, "--gamma", "0.5", "-o", tmp_path / "x.png")
    assert result.exit_code == 1 and "illumination" in result.stderr
    assert not (tmp_path / "x.png").exists()


def _npy_header(shape, dtype="<f4") -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


def test_huge_array_headers_are_refused_before_reading(tmp_path, saved, monkeypatch):
    import zipfile

    # The header claims a 112 GiB input; the data is not there at all.
    path = tmp_path / "huge.npz"
    with np.load(saved[1]) as arrays, zipfile.ZipFile(path, "w") as archive:
        for key in arrays.files:
            if key != "input":
                with archive.open(f"{key}.npy", "w") as member:
                    np.lib.format.write_array(member, arrays[key])
        archive.writestr("input.npy", _npy_header((1, 3, 100_000, 100_000)))

    def no_reading(*args, **kwargs):
        raise AssertionError("array data was read")

    monkeypatch.setattr(np.lib.format, "read_array", no_reading)
    with pytest.raises(InputError, match="image of 100000x100000 pixels; must be between 1 and"):
        decomposition.load(path)


def test_zip_bomb_is_refused_from_the_zip_directory(tmp_path, saved, monkeypatch):
    import zipfile

    # The header declares 10 bytes of EXIF; the member inflates to 50 MB of zeros behind it.
    path = tmp_path / "bomb.npz"
    with np.load(saved[1]) as arrays, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key in arrays.files:
            if key != "source_exif":
                with archive.open(f"{key}.npy", "w") as member:
                    np.lib.format.write_array(member, arrays[key])
        archive.writestr("source_exif.npy", _npy_header((10,), "|u1") + bytes(50_000_000))
    assert path.stat().st_size < 1_000_000
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: pytest.fail("array data was read"))
    with pytest.raises(InputError, match="'source_exif' inflates to 50000\\d+ bytes, more than its 10-byte array"):
        decomposition.load(path)


def test_a_file_resaved_compressed_loads_however_well_it_compresses(tmp_path, saved):
    with np.load(saved[1]) as arrays:
        values = dict(arrays)
    values["noise"] = np.zeros_like(values["noise"])  # compresses far more than 100 times
    path = tmp_path / "compressed.npz"
    np.savez_compressed(path, **values)
    loaded = decomposition.load(path)
    assert torch.equal(loaded.noise, torch.zeros_like(loaded.noise))
    assert torch.equal(loaded.illumination, torch.from_numpy(values["illumination"]))


def test_relight_refuses_to_write_over_its_own_decomposition(tmp_path, saved):
    renamed = tmp_path / "dec.png"
    renamed.write_bytes(saved[1].read_bytes())
    before = renamed.read_bytes()
    result = run("relight", renamed, "--brightness", "0.5", "-o", renamed)
    assert result.exit_code == 2 and "would overwrite the input" in result.stderr
    assert renamed.read_bytes() == before
    (tmp_path / "link.png").symlink_to(renamed)
    assert run("relight", tmp_path / "link.png", "--gamma", "0.5", "-o", renamed).exit_code == 2
    assert renamed.read_bytes() == before


@pytest.mark.parametrize(
    "config, needle",
    [
        ("[unclosed", "the saved config cannot be read (invalid YAML"),
        ("- a list", "the saved config cannot be read (expected a mapping"),
        ("brightness: 7", "saved config: key 'brightness': must be at most 1.0, got 7.0; using the default, 0.5"),
        # Read as strictly as a config file: nine levels of aliases would expand to 9^9 items.
        (
            "\n".join([f"a{d}: &a{d} [{', '.join([f'*a{d - 1}'] * 9)}]" if d else "a0: &a0 [1]" for d in range(10)])
            + "\nbrightness: *a9",
            "the saved config cannot be read (invalid YAML: anchors are not allowed in a config (line 1))",
        ),
    ],
)
def test_relight_notes_a_saved_config_it_cannot_use(tmp_path, saved, config, needle):
    path = rewritten(tmp_path, saved[1], config=np.array(config))
    result = run("relight", path, "--gamma", "auto", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("rrdnet: note:")]
    assert len(notes) == 1 and needle in notes[0] and str(path) in notes[0], result.stderr
    clean = run("relight", saved[1], "--gamma", "auto", "-o", tmp_path / "clean.png")
    assert "rrdnet: note:" not in clean.stderr


def test_metadata_beyond_what_an_image_needs_is_refused(tmp_path, saved):
    path = rewritten(tmp_path, saved[1], source_icc_profile=np.zeros(80_000_000, np.uint8))
    with pytest.raises(InputError, match="holds \\d+ bytes of arrays, more than a 44x36 image needs"):
        decomposition.load(path)


def test_an_image_given_to_relight_is_named_plainly(tmp_path):
    source = write_dark(tmp_path / "photo.png", 32, 32)
    result = run("relight", source, "--gamma", "0.5", "-o", tmp_path / "x.png")
    assert result.exit_code == 1
    assert "photo.png: not a decomposition (.npz) file" in result.stderr and "pickle" not in result.stderr


def test_unknown_output_extension_is_a_usage_error(tmp_path, saved):
    result = run("relight", saved[1], "--gamma", "0.5", "-o", tmp_path / "x.gif")
    assert result.exit_code == 2 and "x.gif: unknown image extension '.gif'" in result.stderr
    assert not (tmp_path / "x.gif").exists()


def test_a_fifo_or_device_given_to_relight_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "dec.npz"
    os.mkfifo(fifo)
    for path, words in ((fifo, "a FIFO"), ("/dev/zero", "a character device")):
        result = run("relight", path, "--gamma", "0.5", "-o", tmp_path / "x.png")
        assert result.exit_code == 1 and f"is {words}, not a regular file; refused" in result.stderr
