import gc
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rrdnet_cli import workers
from rrdnet_cli.cli import main

from helpers import DEFAULT_FAST, PAPER_FAST, crafted_png_header, run, write_dark


def single_line_error(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rrdnet: error:"), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_single_file_with_maps(tmp_path):
    source = write_dark(tmp_path / "dark.png", 36, 44)
    result = run("enhance", source, "-o", tmp_path / "out", "--save-maps", *DEFAULT_FAST)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "dark.png") as output:
        assert output.size == (44, 36) and output.mode == "RGB"
    for name in ("illumination", "illumination_adjusted", "reflectance", "noise", "denoised_away"):
        with Image.open(tmp_path / "out" / "maps" / f"dark_{name}.png") as image:
            assert image.size == (44, 36)
    assert "1 done, 0 failed" in result.stderr


def test_main_leaves_the_garbage_collector_as_it_found_it(tmp_path):
    # Only the `rrdnet` entry (cli.run) turns the collector off and freezes the imports.
    frozen = gc.get_freeze_count()
    result = run("enhance", write_dark(tmp_path / "dark.png"), "-o", tmp_path / "out", *DEFAULT_FAST)
    assert result.exit_code == 0, result.output
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_folder_recursive_and_glob(tmp_path):
    write_dark(tmp_path / "in" / "a.png")
    write_dark(tmp_path / "in" / "deep" / "b.jpg")
    result = run("enhance", tmp_path / "in", "-r", "-o", tmp_path / "out", "--suffix", "_x", *DEFAULT_FAST)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a_x.png").exists() and (tmp_path / "out" / "deep" / "b_x.jpg").exists()
    result = run("enhance", tmp_path / "in" / "*.png", "-o", tmp_path / "globbed", "--format", "webp", *DEFAULT_FAST)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "globbed").iterdir()) == ["a.webp"]


def test_same_seed_gives_identical_files(tmp_path):
    source = write_dark(tmp_path / "dark.png")
    for folder in ("one", "two"):
        assert run("enhance", source, "-o", tmp_path / folder, "-q", *DEFAULT_FAST).exit_code == 0
    assert (tmp_path / "one" / "dark.png").read_bytes() == (tmp_path / "two" / "dark.png").read_bytes()


def test_a_failed_file_gives_exit_1_and_others_are_written(tmp_path):
    write_dark(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = run("enhance", tmp_path / "in", "-o", tmp_path / "out", *DEFAULT_FAST)
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
        (["--threads", "0"], "--threads '0': expected a positive whole number"),
        (["--threads", "two"], "--threads 'two'"),
        (["--jobs", "0"], "--jobs '0': expected a positive whole number or 'auto'"),
        (["--jobs", "-2"], "--jobs '-2'"),
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
    result = run("enhance", source, "-o", tmp_path, *DEFAULT_FAST)
    assert result.exit_code == 2 and "overwrite an input" in single_line_error(result)
    assert source.read_bytes() == before


def test_a_missing_input_fails_alone(tmp_path):
    write_dark(tmp_path / "good.png")
    listed = tmp_path / "list.txt"
    listed.write_text(f"{tmp_path / 'gone.png'}\n")
    result = run(
        "enhance",
        tmp_path / "nope.png",
        tmp_path / "good.png",
        "--files-from",
        listed,
        "-o",
        tmp_path / "out",
        *DEFAULT_FAST,
    )
    assert result.exit_code == 1 and "1 done, 2 failed" in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("rrdnet: error:")]
    assert errors == [
        f"rrdnet: error: {tmp_path / 'nope.png'}: no such file or folder",
        f"rrdnet: error: {tmp_path / 'gone.png'}: no such file or folder (path list, line 1)",
    ]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["good.png"]
    # Nothing to do at all: exit 1, and no output folder made.
    alone = run("enhance", tmp_path / "nope.png", "-o", tmp_path / "none")
    assert alone.exit_code == 1 and "no such file or folder" in alone.stderr and not (tmp_path / "none").exists()


def test_config_show_prints_effective_yaml(tmp_path):
    result = run("config", "show", "--gamma", "0.7", "--iterations", "5")
    assert result.exit_code == 0
    assert "gamma: 0.7" in result.output and "iterations: 5" in result.output
    saved = tmp_path / "run.yaml"
    saved.write_text(result.output)
    again = run("config", "show", "--config", saved)
    assert again.output == result.output


def test_denoise_option_takes_auto_off_or_a_strength(tmp_path):
    assert "denoise: 1.5" in run("config", "show", "--denoise", "1.5").output
    assert "denoise: 'off'" in run("config", "show", "--denoise", "off").output
    assert "denoise: auto" in run("config", "show").output
    for wrong in ("strong", "0", "-1"):
        assert run("config", "show", "--denoise", wrong).exit_code == 2, wrong


@pytest.mark.parametrize(
    "args, message",
    [
        (["config", "show", "--lr", "2"], "rrdnet: error: --lr: must be at most 1.0, got 2.0"),
        (["config", "show", "--seed", "-1"], "rrdnet: error: --seed: must be at least 0, got -1"),
        (["config", "show", "--tile", "3"], "rrdnet: error: --tile: must be 0 (no tiling) or at least"),
    ],
)
def test_a_bad_option_value_is_named_as_typed(args, message):
    result = run(*args)
    assert result.exit_code == 2 and single_line_error(result).startswith(message)


def test_help_spells_the_keywords_as_they_are_typed():
    assert "--gamma G|auto" in run("enhance", "--help").output
    assert "--denoise auto|off|STRENGTH" in run("relight", "--help").output
    # Upper case is taken as well.
    shown = run("config", "show", "--gamma", "AUTO", "--denoise", "Off").output
    assert "gamma: auto" in shown and "denoise: 'off'" in shown


def test_relight_denoise_defaults_to_the_saved_config(tmp_path):
    source = write_dark(tmp_path / "dark.png", 36, 44)
    result = run("enhance", source, "-o", tmp_path / "out", "--save-decomposition", *DEFAULT_FAST)
    assert result.exit_code == 0, result.output
    saved = tmp_path / "out" / "decompositions" / "dark.npz"
    assert run("relight", saved, "--gamma", "auto", "-o", tmp_path / "same.png").exit_code == 0
    assert (tmp_path / "same.png").read_bytes() == (tmp_path / "out" / "dark.png").read_bytes()
    assert run("relight", saved, "--gamma", "auto", "--denoise", "off", "-o", tmp_path / "noisy.png").exit_code == 0
    assert (tmp_path / "noisy.png").read_bytes() != (tmp_path / "same.png").read_bytes()


def test_verbose_prints_config_and_each_file(tmp_path):
    source = write_dark(tmp_path / "dark.png")
    result = run("enhance", source, "-o", tmp_path / "out", "-v", *DEFAULT_FAST)
    assert result.exit_code == 0
    assert "iterations: 2" in result.stderr and "dark.png ->" in result.stderr


def test_module_entry_point_and_version():
    result = run("--version")
    assert result.exit_code == 0 and "rrdnet" in result.output


# ---------------------------------------------------------------------------- pipes and lists

PAPER = ["--config", "paper", *DEFAULT_FAST]


def run_with_input(data, *args):
    return CliRunner().invoke(main, [str(arg) for arg in args], input=data)


@pytest.mark.parametrize("output_format, pillow_format", [(None, "PNG"), ("jpg", "JPEG"), ("tiff", "TIFF")])
def test_stdin_to_stdout(tmp_path, output_format, pillow_format):
    source = write_dark(tmp_path / "a.jpg", 36, 44)
    extra = ["--format", output_format] if output_format else []
    result = run_with_input(source.read_bytes(), "enhance", "-", "-o", "-", *extra, *PAPER)
    assert result.exit_code == 0, result.stderr
    with Image.open(io.BytesIO(result.stdout_bytes)) as written:
        assert written.format == pillow_format and written.size == (44, 36)
    assert "1 done" in result.stderr


def test_file_to_stdout_and_bad_stdin(tmp_path):
    source = write_dark(tmp_path / "a.png")
    result = run("enhance", source, "-o", "-", *PAPER)
    assert result.exit_code == 0
    assert result.stdout_bytes.startswith(b"\x89PNG")
    bad = run_with_input(b"definitely not an image", "enhance", "-", "-o", "-", *PAPER)
    assert bad.exit_code == 1 and bad.stdout_bytes == b""
    assert "stdin: not an image" in single_line_error_among(bad)


def single_line_error_among(result):
    errors = [line for line in result.stderr.splitlines() if line.startswith("rrdnet: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["a.png", "b.png", "-o", "-"], "exactly one image"),
        (["a.png", "-o", "-", "--json"], "--json"),
        (["a.png", "-o", "-", "--save-maps"], "maps"),
        (["-", "--files-from", "-"], "stdin"),
        (["a.png", "--shard", "3/3"], "counts from 0"),
        (["a.png", "--shard", "x"], "K/N"),
        (["a.png", "--quality", "0"], "--quality"),
        ([], "no inputs"),
    ],
)
def test_pipe_and_batch_usage_errors(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    write_dark(tmp_path / "a.png")
    write_dark(tmp_path / "b.png")
    result = run_with_input(b"", "enhance", *args, *PAPER)
    assert result.exit_code == 2
    assert needle in single_line_error(result)
    assert not (tmp_path / "enhanced").exists()


def test_files_from_file_and_stdin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_dark(tmp_path / "shots" / "a.png")
    write_dark(tmp_path / "shots" / "deep" / "b.jpg")
    (tmp_path / "list.txt").write_text("shots/a.png\nshots/deep/b.jpg\n")
    result = run("enhance", "--files-from", "list.txt", "-o", "out", *PAPER)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "shots" / "a.png").exists() and (tmp_path / "out" / "shots" / "deep" / "b.jpg").exists()
    piped = run_with_input(b"shots/a.png\n", "enhance", "--files-from", "-", "-o", "piped", *PAPER)
    assert piped.exit_code == 0, piped.stderr
    assert [path.name for path in (tmp_path / "piped").rglob("*.png")] == ["a.png"]


def test_json_lines_on_stdout_messages_on_stderr(tmp_path):
    write_dark(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "bad.png").write_bytes(b"")
    result = run("enhance", tmp_path / "in", "-o", tmp_path / "out", "--json", *PAPER)
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["type"] for record in records] == ["file", "file", "summary"]
    bad, good, summary = records
    assert bad["status"] == "failed" and bad["output"] is None and "file is empty" in bad["error"]
    assert good["status"] == "done" and good["output"] == str(tmp_path / "out" / "good.png") and good["error"] is None
    assert good["gamma"] == 0.4 and good["seconds"] >= 0
    assert (summary["files"], summary["done"], summary["failed"], summary["skipped"]) == (2, 1, 1, 0)
    assert "bad.png" in result.stderr and "1 done, 1 failed" in result.stderr


def test_skip_existing_and_overwrite(tmp_path):
    write_dark(tmp_path / "in" / "a.png")
    first = run("enhance", tmp_path / "in", "-o", tmp_path / "out", *PAPER)
    stamp = (tmp_path / "out" / "a.png").stat().st_mtime_ns
    again = run("enhance", tmp_path / "in", "-o", tmp_path / "out", "--skip-existing", *PAPER)
    assert first.exit_code == again.exit_code == 0
    assert "0 done, 0 failed, 1 skipped" in again.stderr
    assert (tmp_path / "out" / "a.png").stat().st_mtime_ns == stamp
    overwritten = run("enhance", tmp_path / "in", "-o", tmp_path / "out", *PAPER)
    assert "1 done" in overwritten.stderr
    assert "--overwrite" in run("enhance", "--help").output and "default" in run("enhance", "--help").output


def test_every_kind_of_bad_input_in_one_batch(tmp_path):
    folder = tmp_path / "in"
    write_dark(folder / "good.png")
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(folder / "black.png")
    Image.fromarray(np.full((24, 32, 3), 255, np.uint8)).save(folder / "white.jpg")
    full_jpeg = write_dark(tmp_path / "full.jpg").read_bytes()
    full_png = write_dark(tmp_path / "full.png").read_bytes()
    bad = {
        "empty.png": (b"", "file is empty"),
        "truncated.jpg": (full_jpeg[: len(full_jpeg) // 2], "cannot decode"),
        "truncated.png": (full_png[: len(full_png) // 2], "cannot decode"),
        "random.png": (np.random.default_rng(1).bytes(3000), "not an image"),
        "text.jpg": (b"just some text\n" * 10, "not an image"),
        "bomb.png": (crafted_png_header(20000, 20000), "decompression bomb"),
        "bomb_warning_range.png": (crafted_png_header(10000, 10000), "decompression bomb"),
    }
    for name, (data, _) in bad.items():
        (folder / name).write_bytes(data)
    for side in (1, 3):
        Image.fromarray(np.full((side, side, 3), 30, np.uint8)).save(folder / f"tiny{side}.png")
        bad[f"tiny{side}.png"] = (None, f"image is {side}x{side} pixels; RRDNet needs at least 5x5")
    result = run("enhance", folder, "-o", tmp_path / "out", *PAPER)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("rrdnet: error:")]
    assert len(errors) == len(bad)
    for name, (_, needle) in bad.items():
        matching = [line for line in errors if f"{folder / name}:" in line]
        assert len(matching) == 1 and needle in matching[0], (name, errors)
        assert not (tmp_path / "out" / name).exists()
    assert f"3 done, {len(bad)} failed" in result.stderr
    assert not [path for path in (tmp_path / "out").iterdir() if path.name.endswith(".part")]
    black = np.asarray(Image.open(tmp_path / "out" / "black.png"), dtype=int)
    white = np.asarray(Image.open(tmp_path / "out" / "white.jpg"), dtype=int)
    assert black.max() <= 5 and white.min() >= 245


def test_a_name_with_a_newline_is_still_a_one_line_error(tmp_path):
    (tmp_path / "bad\nname.png").write_bytes(b"junk")
    result = run("enhance", tmp_path / "bad\nname.png", "-o", tmp_path / "out")
    error, summary = result.stderr.splitlines()  # the newline shown as \n, not started anew
    assert result.exit_code == 1 and summary.startswith("rrdnet: 0 done, 1 failed")
    assert error.startswith(f"rrdnet: error: {tmp_path}/bad\\nname.png: not an image")


def test_a_loop_of_links_in_a_folder_fails_alone(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        write_dark(tmp_path / "in" / name)
    (tmp_path / "in" / "loop1.png").symlink_to("loop2.png")
    (tmp_path / "in" / "loop2.png").symlink_to("loop1.png")
    result = run("enhance", tmp_path / "in", "-o", tmp_path / "out", *DEFAULT_FAST)
    assert result.exit_code == 1 and "3 done, 2 failed" in result.stderr
    assert "loop1.png: cannot read (Too many levels of symbolic links)" in result.stderr
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]


def test_a_loop_of_links_as_the_output_folder_is_a_usage_error(tmp_path):
    source = write_dark(tmp_path / "a.png")
    (tmp_path / "out").symlink_to("out")
    result = run("enhance", source, "-o", tmp_path / "out", *DEFAULT_FAST)
    assert result.exit_code == 2
    assert single_line_error(result).endswith(": cannot use as the output folder (Too many levels of symbolic links)")


def test_folder_without_images_fails(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no images here")
    result = run("enhance", tmp_path / "in", "-o", tmp_path / "out", *PAPER)
    assert result.exit_code == 1 and "no images found" in result.stderr and "0 done, 1 failed" in result.stderr


def test_unwritable_output_folder(tmp_path):
    source = write_dark(tmp_path / "a.png")
    (tmp_path / "some_file").write_text("a regular file, not a folder")
    result = run("enhance", source, "-o", tmp_path / "some_file" / "out", *PAPER)
    assert result.exit_code == 1
    line = single_line_error(result)
    assert "some_file/out" in line and "cannot be written" in line


@pytest.mark.parametrize(
    "text, key, needle",
    [
        ("gama: 0.5\n", "gama", "unknown key"),
        ("iterations: lots\n", "iterations", "integer"),
        ("learning_rate: -0.1\n", "learning_rate", "greater than"),
        ("noise_weight: -5\n", "noise_weight", "at least"),
    ],
)
def test_bad_config_values_are_named(tmp_path, text, key, needle):
    source = write_dark(tmp_path / "dark.png")
    config = tmp_path / "mine.yaml"
    config.write_text(text)
    result = run("enhance", source, "--config", config, "-o", tmp_path / "out")
    assert result.exit_code == 2
    line = single_line_error(result)
    assert "mine.yaml" in line and key in line and needle in line
    assert not (tmp_path / "out").exists()


def test_shard_option_takes_its_share(tmp_path):
    for index in range(5):
        write_dark(tmp_path / "in" / f"{index}.png", 20, 20)
    done = []
    for shard in ("0/2", "1/2"):
        result = run("enhance", tmp_path / "in", "-o", tmp_path / "out", "--shard", shard, "--json", *PAPER)
        assert result.exit_code == 0
        done.append([json.loads(line)["input"] for line in result.stdout.splitlines()[:-1]])
    assert [len(share) for share in done] == [3, 2]
    assert sorted(done[0] + done[1]) == sorted(str(path) for path in (tmp_path / "in").iterdir())


def test_reporter_owns_the_lines_the_summary_and_the_exit_code(capsys):
    from rrdnet_cli.batch import BatchSummary
    from rrdnet_cli.cli import Reporter
    from rrdnet_cli.jobs import FileResult, Status
    from rrdnet_cli.light import LightChoice

    reporter = Reporter(json_lines=True, quiet=False, verbose=True)
    done = FileResult(Path("a.png"), Path("out/a.png"), Status.DONE, 1.0, light=LightChoice(0.1, 0.38, 0.5))
    failed = FileResult(Path("b.png"), None, Status.FAILED, 0.0, "b.png: file is empty")
    for result in (done, failed):
        reporter.file(result)
    reporter.summary(BatchSummary([done, failed], 1.0))
    out, err = capsys.readouterr()
    assert [json.loads(line)["type"] for line in out.splitlines()] == ["file", "file", "summary"]
    assert "(gamma 0.1, brightness 0.380, target 0.500 out of reach, 1.0 s)" in err
    assert "rrdnet: error: b.png: file is empty" in err and "1 done, 1 failed in 1.0 s" in err
    assert reporter.exit_code == 1
    assert Reporter(json_lines=False, quiet=True, verbose=False).exit_code == 0


# ------------------------------------------------------------------------ light level


def test_cli_brightness_hits_its_target_in_the_written_file(tmp_path):
    source = write_dark(tmp_path / "dark.png", 40, 48)
    result = run("enhance", source, "-o", tmp_path / "out", "--brightness", "0.18", "-v", *PAPER_FAST)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "dark.png") as written:
        mean = np.asarray(written, dtype=np.float64).mean() / 255.0
    assert abs(mean - 0.18) < 0.01
    line = next(line for line in result.stderr.splitlines() if "dark.png ->" in line)
    assert "gamma " in line and "brightness 0.18" in line
    assert "gamma: auto" in result.stderr and "brightness: 0.18" in result.stderr


def test_cli_gamma_auto_and_bad_gamma(tmp_path):
    source = write_dark(tmp_path / "dark.png")
    result = run("enhance", source, "-o", tmp_path / "out", "--gamma", "auto", "-v", *PAPER_FAST)
    assert result.exit_code == 0 and "gamma: auto" in result.stderr
    result = run("enhance", source, "-o", tmp_path / "o2", "--gamma", "bright", *PAPER_FAST)
    assert result.exit_code == 2 and "not a number or 'auto'" in result.stderr
    result = run("enhance", source, "-o", tmp_path / "o3", "--gamma", "0.5", "--brightness", "0.3", *PAPER_FAST)
    assert result.exit_code == 2 and "conflict" in result.stderr
    assert not (tmp_path / "o3").exists()
    result = run("enhance", source, "-o", tmp_path / "o4", "--brightness", "2", *PAPER_FAST)
    assert result.exit_code == 2 and "brightness" in result.stderr


# -------------------------------------------------------------------------------- one-line errors


def test_output_folder_equal_to_the_input_folder_says_so(tmp_path):
    write_dark(tmp_path / "shots" / "a.png")
    result = run("enhance", tmp_path / "shots", "-o", tmp_path / "shots", *PAPER)
    assert result.exit_code == 2
    assert "is the output folder or inside it" in single_line_error(result)


def test_suffix_with_a_separator_is_a_usage_error(tmp_path):
    source = write_dark(tmp_path / "in" / "a.png")
    result = run("enhance", source, "-o", tmp_path / "out", "--suffix", "/../../escaped", *PAPER)
    assert result.exit_code == 2
    assert "cannot contain a path separator" in single_line_error(result)
    assert not list(tmp_path.rglob("*escaped*"))


def test_symlinked_duplicate_is_noted_and_enhanced_once(tmp_path):
    write_dark(tmp_path / "shots" / "zz.png")
    (tmp_path / "shots" / "aa.png").symlink_to("zz.png")
    result = run("enhance", tmp_path / "shots", "-o", tmp_path / "out", *PAPER)
    assert result.exit_code == 0, result.stderr
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["zz.png"]
    assert "aa.png is the same file as" in result.stderr and "1 done" in result.stderr


@pytest.mark.parametrize(
    "raised, code, message",
    [
        (KeyboardInterrupt(), 130, "rrdnet: error: interrupted"),
        (ValueError("boom"), 70, "rrdnet: error: internal error: ValueError: boom"),
    ],
)
def test_interrupts_and_bugs_are_one_line(tmp_path, monkeypatch, raised, code, message):
    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr("rrdnet_cli.batch.run_batch", fail)
    result = run("enhance", write_dark(tmp_path / "a.png"), "-o", tmp_path / "out", *PAPER)
    assert result.exit_code == code
    assert result.stderr == message + "\n"  # no blank line before it, no traceback


@pytest.mark.parametrize("value", ["0", "lots", "2.5"])
def test_bad_threads_variable_is_a_usage_error(tmp_path, value):
    source = write_dark(tmp_path / "dark.png")
    result = CliRunner().invoke(
        main, ["enhance", str(source), "-o", str(tmp_path / "out")], env={"RRDNET_THREADS": value}
    )
    assert result.exit_code == 2
    assert f"RRDNET_THREADS '{value}': expected a positive whole number" in single_line_error(result)
    assert not (tmp_path / "out").exists()


def threads_seen_by_enhance(monkeypatch, cores: int) -> list[int]:
    """The torch thread count at each enhance of the run, on a machine of ``cores`` cores."""
    import torch

    from rrdnet_cli import pipeline

    seen: list[int] = []
    real_enhance = pipeline.enhance

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_enhance(*args, **kwargs)

    monkeypatch.setattr("rrdnet_cli.jobs.enhance", spy)
    monkeypatch.setattr("rrdnet_cli.workers.available_cores", lambda: cores)
    return seen


def test_threads_apply_to_the_run_only_and_the_option_wins(tmp_path, monkeypatch):
    import torch

    seen = threads_seen_by_enhance(monkeypatch, 8)
    source = write_dark(tmp_path / "dark.png", 24, 24)
    before = torch.get_num_threads()
    result = CliRunner().invoke(
        main, ["enhance", str(source), "-o", str(tmp_path / "a"), "--threads", "2", *PAPER], env={"RRDNET_THREADS": "3"}
    )
    assert result.exit_code == 0, result.stderr
    result = CliRunner().invoke(
        main, ["enhance", str(source), "-o", str(tmp_path / "b"), *PAPER], env={"RRDNET_THREADS": "3"}
    )
    assert result.exit_code == 0, result.stderr
    assert seen == [2, 3] and torch.get_num_threads() == before


def test_tile_and_precision_options_override_the_config_file(tmp_path):
    (tmp_path / "run.yaml").write_text("tile_size: 64\nprecision: bf16\n")
    shown = run("config", "show", "--config", tmp_path / "run.yaml")
    assert "tile_size: 64" in shown.stdout and "precision: bf16" in shown.stdout
    shown = run("config", "show", "--config", tmp_path / "run.yaml", "--tile", "0", "--precision", "fp32")
    assert shown.exit_code == 0 and "tile_size: 0" in shown.stdout and "precision: fp32" in shown.stdout
    source = write_dark(tmp_path / "dark.png", 40, 48)
    result = run("enhance", source, "-o", tmp_path / "out", "-v", "--tile", "16", "--precision", "fp32", *PAPER_FAST)
    assert result.exit_code == 0, result.stderr
    assert "tile_size: 16" in result.stderr and "precision: fp32" in result.stderr
    assert (tmp_path / "out" / "dark.png").is_file()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--tile", "-1"], "Invalid value for '--tile': -1 is not in the range x>=0"),
        (["--tile", "8"], "--tile: must be 0 (no tiling) or at least 16, got 8"),
        (["--tile", "big"], "Invalid value for '--tile'"),
        (["--precision", "fp16"], "Invalid value for '--precision': 'fp16' is not one of 'auto', 'fp32', 'bf16'"),
    ],
)
def test_bad_tile_and_precision_are_one_line_usage_errors(tmp_path, args, needle):
    for command in (["config", "show"], ["enhance", write_dark(tmp_path / "dark.png"), "-o", tmp_path / "out"]):
        result = run(*command, *args)
        assert result.exit_code == 2 and needle in single_line_error(result)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_click_generates_the_shell_completion(shell):
    # What `eval "$(_RRDNET_COMPLETE=bash_source rrdnet)"` in a shell's start-up file runs.
    script = CliRunner().invoke(main, [], prog_name="rrdnet", env={"_RRDNET_COMPLETE": f"{shell}_source"})
    assert script.exit_code == 0 and "_rrdnet_completion" in script.stdout and "_RRDNET_COMPLETE" in script.stdout


def test_completion_offers_options_and_their_choices():
    def complete(*words):
        env = {
            "_RRDNET_COMPLETE": "bash_complete",
            "COMP_WORDS": " ".join(("rrdnet", *words)),
            "COMP_CWORD": str(len(words)),
        }
        result = CliRunner().invoke(main, [], prog_name="rrdnet", env=env)
        assert result.exit_code == 0, result.output
        return result.stdout.split()

    assert complete("enhance", "--prec") == ["plain,--precision"]
    assert complete("enhance", "--precision", "") == ["plain,auto", "plain,fp32", "plain,bf16"]
    assert "plain,--tile" in complete("config", "show", "--t")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--threads", "\u00b2"], "--threads '\u00b2': expected a positive whole number"),
        (["--jobs", "\u00b2"], "--jobs '\u00b2': expected a positive whole number or 'auto'"),
        (["--threads", "9" * 23], "--threads '99999999999999999999999': at most 1000000"),
        (["--jobs", "9" * 5000], "at most 1000000"),
        (["--iterations", "9" * 5000], "... (5000 characters)' is not a whole number"),
        (["--iterations", str(10**12)], "--iterations: must be at most 100000, got 1000000000000"),
    ],
)
def test_out_of_range_numbers_are_one_line_usage_errors(tmp_path, args, needle):
    source = write_dark(tmp_path / "dark.png", 24, 24)
    result = run("enhance", source, "-o", tmp_path / "out", *args)
    assert result.exit_code == 2
    line = single_line_error(result)
    assert needle in line and len(line) < 300
    assert not (tmp_path / "out").exists()


def test_a_config_with_a_5000_digit_number_is_a_usage_error(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text("iterations: " + "9" * 5000 + "\n")
    result = run("config", "show", "--config", path)
    assert result.exit_code == 2
    assert "long.yaml: key 'iterations': out of range, got an integer of 5000 digits" in single_line_error(result)


def test_threads_beyond_the_cores_are_capped_with_a_note(tmp_path, monkeypatch):
    seen = threads_seen_by_enhance(monkeypatch, 2)
    source = write_dark(tmp_path / "dark.png", 24, 24)
    result = run("enhance", source, "-o", tmp_path / "out", "--threads", "100000", *PAPER_FAST)
    assert result.exit_code == 0, result.stderr
    assert seen == [2]
    assert "rrdnet: note: 100000 threads asked for, 2 cores available: using at most 2" in result.stderr


def test_workers_beyond_the_cores_are_capped_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "available_cores", lambda: 1)
    for name in ("a.png", "b.png"):
        write_dark(tmp_path / "in" / name, 24, 24)
    result = run("enhance", tmp_path / "in", "-o", tmp_path / "out", "--jobs", "1000", *PAPER_FAST)
    assert result.exit_code == 0, result.stderr
    assert "rrdnet: note: 1000 workers asked for, 1 core available: using at most 1" in result.stderr
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]


def test_endless_zeros_on_stdin_are_refused_after_their_first_bytes(tmp_path):
    result = run_with_input(bytes(4 << 20), "enhance", "-", "-o", "-", *PAPER)
    assert result.exit_code == 1 and result.stdout_bytes == b""
    assert "stdin: not an image" in single_line_error_among(result)


def test_devices_and_fifos_named_as_inputs_fail_alone(tmp_path):
    import os

    write_dark(tmp_path / "in" / "good.png")
    os.mkfifo(tmp_path / "in" / "pipe.png")  # no writer: reading it would block for ever
    (tmp_path / "in" / "random.png").symlink_to("/dev/urandom")
    listed = tmp_path / "list.txt"
    listed.write_text(f"{tmp_path / 'in' / 'pipe.png'}\n{tmp_path / 'in' / 'good.png'}\n")
    result = run(
        "enhance",
        "/dev/zero",
        tmp_path / "in" / "random.png",
        "--files-from",
        listed,
        "-o",
        tmp_path / "out",
        *PAPER_FAST,
    )
    assert result.exit_code == 1, result.stderr
    assert "1 done, 3 failed" in result.stderr
    for name, words in (
        ("/dev/zero", "a character device"),
        ("random.png", "a character device"),
        ("pipe.png", "a FIFO"),
    ):
        assert any(
            name in line and f"is {words}, not a regular file; refused" in line for line in result.stderr.splitlines()
        ), name
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["good.png"]


@pytest.mark.parametrize("target", ["/dev/null", "fifo"])
def test_an_output_folder_that_is_a_device_or_fifo_says_so(tmp_path, target):
    import os

    if target == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
    source = write_dark(tmp_path / "a.png")
    result = run("enhance", source, "-o", target, *PAPER_FAST)
    assert result.exit_code == 2
    assert "not a folder (it is a" in single_line_error(result) and "-o takes a folder" in result.stderr


def test_files_from_a_device_is_one_line_usage_error(tmp_path):
    result = run("enhance", "--files-from", "/dev/zero", "-o", tmp_path / "out", *PAPER_FAST)
    assert result.exit_code == 2
    assert "/dev/zero: not a path list (a NUL byte on line 1" in single_line_error(result)
    assert not (tmp_path / "out").exists()
