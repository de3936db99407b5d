import numpy as np
import pytest
import torch
from PIL import Image

from rrdnet_cli import InputError, UsageError, enhance
from rrdnet_cli import decomposition
from rrdnet_cli.batch import enhance_file
from rrdnet_cli.images import read_image

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
    assert run("enhance", source, "-o", tmp_path / "out", "--save-decomposition", "-q", *PAPER_FAST_SEED_3).exit_code == 0
    assert run("relight", tmp_path / "out" / "decompositions" / "grey.npz", "--gamma", "0.3", "-o", tmp_path / "r.jpg").exit_code == 0
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
