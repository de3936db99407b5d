"""One job: output names, results and their JSON, enhancing a file (``rrdnet_cli.jobs``)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rrdnet_cli import OutputError, UsageError, images, jobs
from rrdnet_cli.jobs import (
    FileResult,
    Job,
    OutputOptions,
    Status,
    enhance_file,
    map_paths,
    output_path,
    run_job,
)
from rrdnet_cli.light import LightChoice

from helpers import write_dark


def test_output_names():
    job = Job(Path("/x/sub/photo.JPG"), Path("sub/photo.JPG"))
    assert output_path(job, OutputOptions(Path("out"))) == Path("out/sub/photo.JPG")
    assert output_path(job, OutputOptions(Path("out"), suffix="_rr", format="png")) == Path("out/sub/photo_rr.png")
    assert output_path(job, OutputOptions(Path("out"), format="jpg")) == Path("out/sub/photo.jpg")
    maps = map_paths(job, OutputOptions(Path("out")))
    assert maps["noise"] == Path("out/maps/sub/photo_noise.png")


def test_unknown_extension_gets_png_output():
    job = Job(Path("/x/photo.jfif"), Path("photo.jfif"))
    assert output_path(job, OutputOptions(Path("out"))) == Path("out/photo.png")


@pytest.mark.parametrize("suffix", ["/../../escaped", "_a/b", "x\0y"])
def test_suffixes_with_separators_are_refused(suffix):
    with pytest.raises(UsageError, match="suffix .* cannot contain a path separator or NUL"):
        OutputOptions(Path("out"), suffix=suffix)


def test_file_results_as_json():
    done = FileResult(Path("a.png"), Path("out/a.png"), Status.DONE, 1.23456, light=LightChoice(0.4, 0.25))
    failed = FileResult(Path("b.png"), None, Status.FAILED, 0.5, "b.png: file is empty")
    assert done.to_json() == {
        "type": "file",
        "input": "a.png",
        "output": "out/a.png",
        "status": "done",
        "seconds": 1.235,
        "error": None,
        "gamma": 0.4,
        "exposure": 1.0,
        "brightness": 0.25,
    }
    assert "gamma" not in failed.to_json() and failed.to_json()["output"] is None
    assert json.loads(json.dumps(failed.to_json()))["status"] == "failed"
    assert "key_gain" not in done.to_json()
    local = LightChoice(1.0, 0.4, None, key=-1.2, key_gain=6.25)
    assert FileResult(Path("a.png"), Path("out/a.png"), Status.DONE, 1.0, light=local).to_json()["key_gain"] == 6.25
    assert "brightness_reached" not in done.to_json()


@pytest.mark.parametrize(("brightness", "reached"), [(0.42, True), (0.3, False)])
def test_a_target_brightness_says_whether_it_was_reached(brightness, reached):
    asked = LightChoice(0.4, brightness, target=0.42)
    record = FileResult(Path("a.png"), Path("out/a.png"), Status.DONE, 1.0, light=asked).to_json()
    assert record["target_brightness"] == 0.42 and record["brightness_reached"] is reached


def test_run_job_returns_each_status_and_never_raises(tmp_path, tiny_config):
    source = write_dark(tmp_path / "a.png", 32, 32)
    options = OutputOptions(tmp_path / "out")
    done = run_job(Job(source, Path("a.png")), tiny_config, options)
    assert done.status is Status.DONE and done.output == tmp_path / "out" / "a.png" and done.output.is_file()
    assert done.light is not None and done.seconds > 0
    again = run_job(Job(source, Path("a.png")), tiny_config, OutputOptions(tmp_path / "out", skip_existing=True))
    assert again.status is Status.SKIPPED and again.to_json()["status"] == "skipped"
    (tmp_path / "bad.png").write_bytes(b"not an image")
    bad = run_job(Job(tmp_path / "bad.png", Path("bad.png")), tiny_config, options)
    assert bad.status is Status.FAILED and bad.error.startswith(f"{tmp_path / 'bad.png'}: ") and bad.output is None
    unlisted = run_job(Job(tmp_path, Path("x"), error="x: cannot list the folder"), tiny_config, options)
    assert (unlisted.status, unlisted.error) == (Status.FAILED, "x: cannot list the folder")
    assert [status.value for status in Status] == ["done", "skipped", "failed"]


@pytest.mark.parametrize("value", [0, 255])
def test_all_black_and_all_white_images_have_no_nan(tmp_path, tiny_config, value):
    Image.fromarray(np.full((24, 32, 3), value, np.uint8)).save(tmp_path / "flat.png")
    enhancement = enhance_file(tmp_path / "flat.png", tmp_path / "out.png", tiny_config)
    for name in ("result", "illumination", "reflectance", "noise"):
        assert torch.isfinite(getattr(enhancement, name)).all(), name
    assert np.isfinite(enhancement.losses).all()
    written = np.asarray(Image.open(tmp_path / "out.png"), dtype=int)
    # NaN would have been written as 0: white must stay white, black must stay (nearly) black.
    if value == 255:
        assert written.min() >= 250
    else:
        assert written.max() <= 5


def test_non_finite_result_is_never_saved(tmp_path, tiny_config, monkeypatch):
    real_enhance = jobs.enhance

    def poisoned(image, config, **options):
        enhancement = real_enhance(image, config, **options)
        enhancement.result[0, 0, 0, 0] = float("nan")
        return enhancement

    monkeypatch.setattr(jobs, "enhance", poisoned)
    source = write_dark(tmp_path / "in" / "a.png")
    result = run_job(Job(source, Path("a.png")), tiny_config, OutputOptions(tmp_path / "out"))
    assert result.status is Status.FAILED and "NaN" in result.error
    assert not (tmp_path / "out" / "a.png").exists()


def test_extra_files_do_not_change_the_image(tmp_path):
    # Without maps, decomposition or sheet the final pass skips the reflectance branch.
    from rrdnet_cli import load_config

    config = load_config("default", iterations=4, optimisation_side=32, device="cpu")
    job = Job(write_dark(tmp_path / "in" / "a.png"), Path("a.png"))
    run_job(job, config, OutputOptions(tmp_path / "plain"))
    run_job(job, config, OutputOptions(tmp_path / "full", save_maps=True, contact_sheet=True))
    assert (tmp_path / "full" / "maps" / "a_reflectance.png").is_file()
    assert (tmp_path / "plain" / "a.png").read_bytes() == (tmp_path / "full" / "a.png").read_bytes()


@pytest.mark.parametrize(
    "failure", [OutputError("out/a.png: cannot write (No space left on device)"), KeyboardInterrupt()]
)
def test_a_file_that_fails_or_is_stopped_leaves_none_of_its_outputs(tmp_path, tiny_config, monkeypatch, failure):
    job = Job(write_dark(tmp_path / "in" / "a.png"), Path("a.png"))
    options = OutputOptions(tmp_path / "out", save_maps=True, save_decomposition=True, contact_sheet=True)

    def image_write_fails(*args, **kwargs):
        # The maps, decomposition and sheet are written by now: the image comes last.
        assert len(list((tmp_path / "out").rglob("*.*"))) == 7
        raise failure

    monkeypatch.setattr(images, "write_like", image_write_fails)
    if isinstance(failure, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            run_job(job, tiny_config, options)
    else:
        result = run_job(job, tiny_config, options)
        assert result.status is Status.FAILED and "No space left" in result.error
    assert [path for path in (tmp_path / "out").rglob("*") if path.is_file()] == []
