from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rrdnet_cli.cli import main

from conftest import write_dark

FAST = ["--iterations", "2", "--device", "cpu"]


def run(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def single_line_error(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rrdnet: error:"), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_single_file_with_maps(tmp_path):
    source = write_dark(tmp_path / "dark.png", 36, 44)
    result = run("enhance", source, "-o", tmp_path / "out", "--save-maps", *FAST)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "dark.png") as output:
        assert output.size == (44, 36) and output.mode == "RGB"
    for name in ("illumination", "illumination_adjusted", "reflectance", "noise"):
        with Image.open(tmp_path / "out" / "maps" / f"dark_{name}.png") as image:
            assert image.size == (44, 36)
    assert "1 done, 0 failed" in result.stderr


def test_folder_recursive_and_glob(tmp_path):
    write_dark(tmp_path / "in" / "a.png")
    write_dark(tmp_path / "in" / "deep" / "b.jpg")
    result = run("enhance", tmp_path / "in", "-r", "-o", tmp_path / "out", "--suffix", "_x", *FAST)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a_x.png").exists() and (tmp_path / "out" / "deep" / "b_x.jpg").exists()
    result = run("enhance", tmp_path / "in" / "*.png", "-o", tmp_path / "globbed", "--format", "webp", *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "globbed").iterdir()) == ["a.webp"]


def test_same_seed_gives_identical_files(tmp_path):
    source = write_dark(tmp_path / "dark.png")
    for folder in ("one", "two"):
        assert run("enhance", source, "-o", tmp_path / folder, "-q", *FAST).exit_code == 0
    assert (tmp_path / "one" / "dark.png").read_bytes() == (tmp_path / "two" / "dark.png").read_bytes()


def test_a_failed_file_gives_exit_1_and_others_are_written(tmp_path):
    write_dark(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = run("enhance", tmp_path / "in", "-o", tmp_path / "out", *FAST)
    assert result.exit_code == 1
    assert "broken.jpg" in result.stderr and "1 done, 1 failed" in result.stderr
    assert (tmp_path / "out" / "good.png").exists() and not (tmp_path / "out" / "broken.jpg").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--iterations", "abc"], "--iterations"),
        (["--iterations", "-3"], "iterations"),
        (["--gamma", "0"], "gamma"),
        (["--format", "gif"], "--format"),
        (["--config", "nonexistent-preset"], "nonexistent-preset"),
        (["--device", "tpu"], "tpu"),
    ],
)
def test_bad_options_are_one_line_usage_errors(tmp_path, args, needle):
    source = write_dark(tmp_path / "dark.png")
    result = run("enhance", source, "-o", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert needle in single_line_error(result)
    assert not (tmp_path / "out" / "dark.png").exists()


def test_bad_config_file_names_file_and_key(tmp_path):
    source = write_dark(tmp_path / "dark.png")
    config = tmp_path / "mine.yaml"
    config.write_text("gama: 0.5\n")
    result = run("enhance", source, "--config", config, "-o", tmp_path / "out")
    assert result.exit_code == 2
    line = single_line_error(result)
    assert "mine.yaml" in line and "gama" in line


def test_output_equal_to_input_is_refused(tmp_path):
    source = write_dark(tmp_path / "dark.png")
    before = source.read_bytes()
    result = run("enhance", source, "-o", tmp_path, *FAST)
    assert result.exit_code == 2 and "overwrite an input" in single_line_error(result)
    assert source.read_bytes() == before


def test_missing_input_is_a_usage_error(tmp_path):
    result = run("enhance", tmp_path / "nope.png")
    assert result.exit_code == 2 and "nope.png" in single_line_error(result)


def test_config_show_prints_effective_yaml(tmp_path):
    result = run("config", "show", "--gamma", "0.7", "--iterations", "5")
    assert result.exit_code == 0
    assert "gamma: 0.7" in result.output and "iterations: 5" in result.output
    saved = tmp_path / "run.yaml"
    saved.write_text(result.output)
    again = run("config", "show", "--config", saved)
    assert again.output == result.output


def test_verbose_prints_config_and_each_file(tmp_path):
    source = write_dark(tmp_path / "dark.png")
    result = run("enhance", source, "-o", tmp_path / "out", "-v", *FAST)
    assert result.exit_code == 0
    assert "iterations: 2" in result.stderr and "dark.png ->" in result.stderr


def test_module_entry_point_and_version():
    result = run("--version")
    assert result.exit_code == 0 and "rrdnet" in result.output
