"""Running a list of jobs: whole-run output checks, failures, resuming, interruption (``rrdnet_cli.batch``)."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rrdnet_cli import OutputError, UsageError, jobs, losses
from rrdnet_cli.batch import BatchSummary, check_outputs, run_batch
from rrdnet_cli.errors import Interrupted
from rrdnet_cli.images import read_image
from rrdnet_cli.inputs import collect_inputs
from rrdnet_cli.jobs import FileResult, Job, OutputOptions, Status

from helpers import write_dark


def test_writing_over_an_input_is_refused(tree):
    jobs = collect_inputs([str(tree)])
    with pytest.raises(UsageError, match="overwrite an input"):
        check_outputs(jobs, OutputOptions(tree))


def test_two_inputs_to_one_output_is_refused(tmp_path):
    write_dark(tmp_path / "x.png")
    write_dark(tmp_path / "x.jpg")
    jobs = collect_inputs([str(tmp_path)])
    with pytest.raises(UsageError, match="both write"):
        check_outputs(jobs, OutputOptions(tmp_path / "out", format="png"))


def test_batch_goes_on_after_a_bad_file(tmp_path, tiny_config):
    write_dark(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "bad.png").write_bytes(b"not really a png")
    seen = []
    summary = run_batch(
        collect_inputs([str(tmp_path / "in")]), tiny_config, OutputOptions(tmp_path / "out"), on_result=seen.append
    )
    assert (summary.done, summary.failed) == (1, 1)
    assert [result.status for result in seen] == [Status.FAILED, Status.DONE]
    assert "bad.png" in seen[0].error
    assert (tmp_path / "out" / "good.png").exists() and not (tmp_path / "out" / "bad.png").exists()


def test_summary_counts_each_status_as_json():
    results = [
        FileResult(Path("a.png"), Path("out/a.png"), Status.DONE, 1.0),
        FileResult(Path("b.png"), None, Status.FAILED, 0.5, "b.png: file is empty"),
        FileResult(Path("c.png"), Path("out/c.png"), Status.SKIPPED, 0.0),
    ]
    summary = BatchSummary(results, 2.0)
    assert summary.to_json() == {
        "type": "summary",
        "files": 3,
        "done": 1,
        "skipped": 1,
        "failed": 1,
        "seconds": 2.0,
        "interrupted": False,
    }
    json.dumps(summary.to_json())


def test_skip_existing_does_only_what_is_missing(tmp_path, tiny_config):
    for name in ("a.png", "b.png", "c.png"):
        write_dark(tmp_path / "in" / name)
    jobs = collect_inputs([str(tmp_path / "in")])
    options = OutputOptions(tmp_path / "out", save_maps=True)
    run_batch(jobs, tiny_config, options)
    (tmp_path / "out" / "b.png").unlink()
    (tmp_path / "out" / "maps" / "c_noise.png").unlink()
    stamps = {path: path.stat().st_mtime_ns for path in (tmp_path / "out").rglob("*.png")}
    resumed = run_batch(jobs, tiny_config, OutputOptions(tmp_path / "out", save_maps=True, skip_existing=True))
    assert [result.status for result in resumed.results] == [Status.SKIPPED, Status.DONE, Status.DONE]
    assert (tmp_path / "out" / "b.png").exists() and (tmp_path / "out" / "maps" / "c_noise.png").exists()
    assert (tmp_path / "out" / "a.png").stat().st_mtime_ns == stamps[tmp_path / "out" / "a.png"]
    overwritten = run_batch(jobs, tiny_config, options)
    assert overwritten.done == 3


def test_skip_existing_redoes_an_input_whose_decomposition_or_sheet_is_missing(tmp_path, tiny_config):
    for name in ("a.png", "b.png", "c.png"):
        write_dark(tmp_path / "in" / name)
    jobs = collect_inputs([str(tmp_path / "in")])
    options = OutputOptions(tmp_path / "out", save_decomposition=True, contact_sheet=True)
    first = run_batch(jobs, tiny_config, options)
    assert first.done == 3
    (tmp_path / "out" / "decompositions" / "b.npz").unlink()
    (tmp_path / "out" / "sheets" / "c_sheet.png").unlink()
    resumed = run_batch(jobs, tiny_config, OutputOptions(**{**vars(options), "skip_existing": True}))
    assert [result.status for result in resumed.results] == [Status.SKIPPED, Status.DONE, Status.DONE]
    assert (tmp_path / "out" / "decompositions" / "b.npz").exists()
    assert (tmp_path / "out" / "sheets" / "c_sheet.png").exists()


def test_extra_outputs_are_claimed_like_images(tmp_path):
    # Two inputs with one stem in different formats would share a decomposition file.
    write_dark(tmp_path / "in" / "x.png")
    write_dark(tmp_path / "in" / "x.jpg")
    jobs = collect_inputs([str(tmp_path / "in")])
    check_outputs(jobs, OutputOptions(tmp_path / "out"))
    with pytest.raises(UsageError, match="would both write .*x.npz"):
        check_outputs(jobs, OutputOptions(tmp_path / "out", save_decomposition=True))


def test_tiny_images_are_refused_and_the_batch_goes_on(tmp_path, tiny_config):
    (tmp_path / "in").mkdir()
    for side in (1, 3, 5):
        Image.fromarray(np.full((side, side, 3), 40, np.uint8)).save(tmp_path / "in" / f"side{side}.png")
    summary = run_batch(collect_inputs([str(tmp_path / "in")]), tiny_config, OutputOptions(tmp_path / "out"))
    statuses = {result.source.name: (result.status, result.error) for result in summary.results}
    for side in (1, 3):
        status, error = statuses[f"side{side}.png"]
        assert status is Status.FAILED and f"side{side}.png: image is {side}x{side} pixels" in error and "5x5" in error
        assert not (tmp_path / "out" / f"side{side}.png").exists()
    assert statuses["side5.png"][0] is Status.DONE


def test_nan_loss_fails_the_file_and_saves_nothing(tmp_path, tiny_config, monkeypatch):
    write_dark(tmp_path / "in" / "a.png")
    monkeypatch.setattr(losses, "noise_loss", lambda illumination, noise: (illumination * noise).sum() * float("nan"))
    summary = run_batch(collect_inputs([str(tmp_path / "in")]), tiny_config, OutputOptions(tmp_path / "out"))
    result = summary.results[0]
    assert result.status is Status.FAILED and "a.png" in result.error and "loss became nan" in result.error
    assert list((tmp_path / "out").iterdir()) == []


def test_unwritable_output_folder_fails_once_up_front(tmp_path, tiny_config):
    write_dark(tmp_path / "in" / "a.png")
    (tmp_path / "file").write_text("a regular file")
    with pytest.raises(OutputError, match="file/out: output folder cannot be written"):
        run_batch(collect_inputs([str(tmp_path / "in")]), tiny_config, OutputOptions(tmp_path / "file" / "out"))


def test_interruption_keeps_finished_files_and_leaves_no_partial(tmp_path, tiny_config):
    for name in ("a.png", "b.png", "c.png"):
        write_dark(tmp_path / "in" / name)

    def stop_after_first(result):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted) as caught:
        run_batch(
            collect_inputs([str(tmp_path / "in")]),
            tiny_config,
            OutputOptions(tmp_path / "out"),
            on_result=stop_after_first,
        )
    assert isinstance(caught.value, KeyboardInterrupt)
    assert caught.value.summary.done == 1 and caught.value.summary.interrupted
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.png"]


def test_stream_output_writes_one_encoded_image(tmp_path, tiny_config):
    stream = io.BytesIO()
    jobs = collect_inputs(["-"], stdin=io.BytesIO(write_dark(tmp_path / "a.jpg").read_bytes()))
    summary = run_batch(jobs, tiny_config, OutputOptions(format="webp", stream=stream))
    assert summary.done == 1
    with Image.open(io.BytesIO(stream.getvalue())) as written:
        assert written.format == "WEBP" and written.size == (48, 40)


def test_an_unlistable_subfolder_fails_alone(tmp_path, tiny_config, monkeypatch):
    import os

    write_dark(tmp_path / "in" / "a.png", 32, 32)
    write_dark(tmp_path / "in" / "locked" / "b.png", 32, 32)
    locked = tmp_path / "in" / "locked"
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    jobs = collect_inputs([str(tmp_path / "in")], recursive=True)
    summary = run_batch(jobs, tiny_config, OutputOptions(tmp_path / "out"))
    assert (summary.done, summary.failed) == (1, 1)
    failure = next(result for result in summary.results if result.status is Status.FAILED)
    assert failure.error == f"{locked}: cannot list the folder (Permission denied)"
    assert (tmp_path / "out" / "a.png").exists()


def test_a_path_too_long_for_the_system_fails_alone(tmp_path, tiny_config, monkeypatch):
    import os

    write_dark(tmp_path / "in" / "a.png", 32, 32)
    monkeypatch.chdir(tmp_path / "in")
    for _ in range(18):  # 18 x 251 bytes: past PATH_MAX (4096) as a path from tmp_path
        os.mkdir("d" * 250)
        os.chdir("d" * 250)
    monkeypatch.chdir(tmp_path)
    summary = run_batch(collect_inputs(["in"], recursive=True), tiny_config, OutputOptions(tmp_path / "out"))
    assert (summary.done, summary.failed) == (1, 1)
    failure = next(result for result in summary.results if result.status is Status.FAILED)
    assert failure.error.endswith(": cannot list the folder (File name too long)")


def test_skip_existing_fails_a_folder_at_the_output_path(tmp_path, tiny_config):
    source = write_dark(tmp_path / "a.png", 32, 32)
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    for skip_existing in (True, False):
        summary = run_batch(
            collect_inputs([str(source)]), tiny_config, OutputOptions(tmp_path / "out", skip_existing=skip_existing)
        )
        assert summary.failed == 1 and summary.skipped == 0
        assert summary.results[0].error == f"{source}: output {tmp_path / 'out' / 'a.png'} exists and is not a file"
    assert (tmp_path / "out" / "a.png").is_dir()


def test_every_output_stays_inside_the_output_folder(tmp_path):
    source = write_dark(tmp_path / "a.png")
    for relative in ("../a.png", "/tmp/a.png", "x/../../a.png"):
        with pytest.raises(UsageError, match="outside the output folder"):
            check_outputs([Job(source, Path(relative))], OutputOptions(tmp_path / "out"))


def test_an_unforeseen_error_fails_its_file_and_the_batch_goes_on(tmp_path, tiny_config, monkeypatch):
    for name in ("a.png", "b.png"):
        write_dark(tmp_path / "in" / name, seed=ord(name[0]))
    real_enhance = jobs.enhance

    def breaks_on_a(pixels, *args, **kwargs):
        if pixels.mean() == read_image(tmp_path / "in" / "a.png").pixels.mean():
            raise RuntimeError("a bug this photo finds")
        return real_enhance(pixels, *args, **kwargs)

    monkeypatch.setattr(jobs, "enhance", breaks_on_a)
    summary = run_batch(collect_inputs([str(tmp_path / "in")]), tiny_config, OutputOptions(tmp_path / "out"))
    assert (summary.done, summary.failed) == (1, 1)
    (failed,) = [result for result in summary.results if result.status is Status.FAILED]
    assert failed.error == f"{tmp_path / 'in' / 'a.png'}: internal error: RuntimeError: a bug this photo finds"
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["b.png"]
