import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from rrdnet_cli import OutputError, UsageError, images, losses, workers
from rrdnet_cli.batch import (
    BatchSummary,
    FileResult,
    Job,
    OutputOptions,
    check_outputs,
    collect_inputs,
    enhance_file,
    map_paths,
    output_path,
    parse_shard,
    read_path_list,
    run_batch,
    select_shard,
)
from rrdnet_cli.errors import Interrupted
from rrdnet_cli.workers import Plan, available_cores, parse_count, plan, plan_batch

from rrdnet_cli.light import LightChoice

from helpers import write_dark


@pytest.fixture
def tree(tmp_path):
    write_dark(tmp_path / "in" / "b.png")
    write_dark(tmp_path / "in" / "a.jpg")
    write_dark(tmp_path / "in" / "sub" / "c.png")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    return tmp_path / "in"


def relatives(jobs):
    return [str(job.relative) for job in jobs]


def test_folder_lists_images_directly_inside_sorted(tree):
    assert relatives(collect_inputs([str(tree)])) == ["a.jpg", "b.png"]


def test_recursive_folder_keeps_relative_paths(tree):
    assert relatives(collect_inputs([str(tree)], recursive=True)) == ["a.jpg", "b.png", "sub/c.png"]


def test_files_and_globs_without_duplicates(tree):
    jobs = collect_inputs([str(tree / "b.png"), str(tree / "*.png"), str(tree / "b.png")])
    assert relatives(jobs) == ["b.png"]


def test_missing_input_and_empty_folder(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        collect_inputs([str(tmp_path / "missing.png")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images found"):
        collect_inputs([str(tmp_path / "empty")])
    with pytest.raises(UsageError, match="matches no files"):
        collect_inputs([str(tmp_path / "*.png")])


def test_output_names():
    job = Job(Path("/x/sub/photo.JPG"), Path("sub/photo.JPG"))
    assert output_path(job, OutputOptions(Path("out"))) == Path("out/sub/photo.JPG")
    assert output_path(job, OutputOptions(Path("out"), suffix="_rr", format="png")) == Path("out/sub/photo_rr.png")
    assert output_path(job, OutputOptions(Path("out"), format="jpg")) == Path("out/sub/photo.jpg")
    maps = map_paths(job, OutputOptions(Path("out")))
    assert maps["noise"] == Path("out/maps/sub/photo_noise.png")


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
    summary = run_batch(collect_inputs([str(tmp_path / "in")]), tiny_config, OutputOptions(tmp_path / "out"), on_result=seen.append)
    assert (summary.done, summary.failed) == (1, 1)
    assert [result.status for result in seen] == ["failed", "done"]
    assert "bad.png" in seen[0].error
    assert (tmp_path / "out" / "good.png").exists() and not (tmp_path / "out" / "bad.png").exists()


# ------------------------------------------------------------------------ sharding and lists


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text("abc/", min_size=1, max_size=6), unique=True, max_size=30), st.integers(1, 7), st.randoms())
def test_shards_cover_every_input_exactly_once_in_any_order(names, count, random):
    jobs = [Job(Path(name), Path(name)) for name in names]
    shuffled = list(jobs)
    random.shuffle(shuffled)
    shares = [select_shard(jobs, index, count) for index in range(count)]
    assert sorted(job.source for share in shares for job in share) == sorted(job.source for job in jobs)
    assert [select_shard(shuffled, index, count) for index in range(count)] == shares
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


@pytest.mark.parametrize("text, expected", [("0/1", (0, 1)), ("2/3", (2, 3)), (" 4 / 10 ", (4, 10))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text, needle", [("3/3", "counts from 0"), ("1/0", "at least 1"), ("a/b", "expected K/N"), ("-1/3", "expected K/N"), ("2", "expected K/N")])
def test_bad_shards_are_usage_errors(text, needle):
    with pytest.raises(UsageError, match=needle):
        parse_shard(text)


def test_path_list_skips_blank_lines_and_carriage_returns(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"a.png\r\n\n  \nsub dir/b.jpg\n")
    assert read_path_list(str(listing)) == ["a.png", "sub dir/b.jpg"]
    assert read_path_list("-", io.BytesIO(b"x.png\n")) == ["x.png"]
    listing.write_bytes(b"\n\n")
    with pytest.raises(UsageError, match="empty"):
        read_path_list(str(listing))
    with pytest.raises(UsageError, match="cannot read"):
        read_path_list(str(tmp_path / "missing.txt"))


def test_listed_paths_keep_their_tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_dark(tmp_path / "shots" / "a" / "x.png")
    write_dark(tmp_path / "shots" / "b" / "x.png")
    jobs = collect_inputs([], listed=["shots/a/x.png", "shots/b/x.png", str(tmp_path / "shots" / "a" / "x.png")])
    assert relatives(jobs) == ["shots/a/x.png", "shots/b/x.png"]
    check_outputs(jobs, OutputOptions(Path("out")))
    with pytest.raises(UsageError, match="line 1"):
        collect_inputs([], listed=["missing.png"])


def test_output_folder_inside_the_input_is_not_an_input(tree):
    write_dark(tree / "enhanced" / "a.png")
    jobs = collect_inputs([str(tree)], recursive=True, exclude=tree / "enhanced")
    assert relatives(jobs) == ["a.jpg", "b.png", "sub/c.png"]


def test_stdin_is_one_job_named_stdin(tmp_path):
    jobs = collect_inputs(["-"], stdin=io.BytesIO(b"bytes"))
    assert jobs[0].data == b"bytes" and jobs[0].name == "stdin"
    assert output_path(jobs[0], OutputOptions(tmp_path)) == tmp_path / "stdin.png"
    with pytest.raises(UsageError, match="stdin"):
        collect_inputs(["-", "-"], stdin=io.BytesIO(b"bytes"))
    with pytest.raises(UsageError, match="takes exactly one image"):
        check_outputs(jobs * 2, OutputOptions(stream=io.BytesIO()))
    for extra in ("save_maps", "save_decomposition", "contact_sheet"):
        with pytest.raises(UsageError, match="cannot be written to stdout"):
            check_outputs(jobs, OutputOptions(stream=io.BytesIO(), **{extra: True}))


def test_unknown_extension_gets_png_output():
    job = Job(Path("/x/photo.jfif"), Path("photo.jfif"))
    assert output_path(job, OutputOptions(Path("out"))) == Path("out/photo.png")


# ------------------------------------------------------------------------- results and json


def test_json_records():
    done = FileResult(Path("a.png"), Path("out/a.png"), "done", 1.23456, light=LightChoice(0.4, 0.25))
    failed = FileResult(Path("b.png"), None, "failed", 0.5, "b.png: file is empty")
    assert done.to_json() == {"type": "file", "input": "a.png", "output": "out/a.png", "status": "done", "seconds": 1.235, "error": None, "gamma": 0.4, "exposure": 1.0, "brightness": 0.25}
    assert "gamma" not in failed.to_json() and failed.to_json()["output"] is None
    summary = BatchSummary([done, failed, FileResult(Path("c.png"), Path("out/c.png"), "skipped", 0.0)], 2.0)
    assert summary.to_json() == {"type": "summary", "files": 3, "done": 1, "skipped": 1, "failed": 1, "seconds": 2.0, "interrupted": False}
    json.dumps(summary.to_json())


# ------------------------------------------------------------------------ running, resuming


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
    assert [result.status for result in resumed.results] == ["skipped", "done", "done"]
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
    assert [result.status for result in resumed.results] == ["skipped", "done", "done"]
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
        assert status == "failed" and f"side{side}.png: image is {side}x{side} pixels" in error and "5x5" in error
        assert not (tmp_path / "out" / f"side{side}.png").exists()
    assert statuses["side5.png"][0] == "done"


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


def test_nan_loss_fails_the_file_and_saves_nothing(tmp_path, tiny_config, monkeypatch):
    write_dark(tmp_path / "in" / "a.png")
    monkeypatch.setattr(losses, "noise_loss", lambda illumination, noise: (illumination * noise).sum() * float("nan"))
    summary = run_batch(collect_inputs([str(tmp_path / "in")]), tiny_config, OutputOptions(tmp_path / "out"))
    result = summary.results[0]
    assert result.status == "failed" and "a.png" in result.error and "loss became nan" in result.error
    assert list((tmp_path / "out").iterdir()) == []


def test_non_finite_result_is_never_saved(tmp_path, tiny_config, monkeypatch):
    from rrdnet_cli import batch

    real_enhance = batch.enhance

    def poisoned(image, config, **options):
        enhancement = real_enhance(image, config, **options)
        enhancement.result[0, 0, 0, 0] = float("nan")
        return enhancement

    monkeypatch.setattr(batch, "enhance", poisoned)
    write_dark(tmp_path / "in" / "a.png")
    summary = run_batch(collect_inputs([str(tmp_path / "in")]), tiny_config, OutputOptions(tmp_path / "out"))
    assert summary.failed == 1 and "NaN" in summary.results[0].error
    assert not (tmp_path / "out" / "a.png").exists()


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
        run_batch(collect_inputs([str(tmp_path / "in")]), tiny_config, OutputOptions(tmp_path / "out"), on_result=stop_after_first)
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


# ------------------------------------------------------------------- issue 13: untrusted trees


def test_a_symlink_and_its_file_are_one_job_under_the_real_name(tmp_path):
    write_dark(tmp_path / "shots" / "zz.png")
    (tmp_path / "shots" / "aa.png").symlink_to("zz.png")  # sorts first
    outside = write_dark(tmp_path / "elsewhere" / "x.png")
    (tmp_path / "shots" / "link1.png").symlink_to(outside)
    (tmp_path / "shots" / "link2.png").symlink_to(outside)
    noted = []
    jobs = collect_inputs([str(tmp_path / "shots")], on_duplicate=lambda *pair: noted.append(pair))
    assert relatives(jobs) == ["zz.png", "link1.png"]
    shots = tmp_path / "shots"
    assert sorted(noted) == [(shots / "aa.png", shots / "zz.png"), (shots / "link2.png", shots / "link1.png")]
    # The same file spelled twice is one job, and no note.
    noted.clear()
    again = collect_inputs([str(shots / "zz.png"), str(shots / "." / "zz.png")], on_duplicate=lambda *pair: noted.append(pair))
    assert len(again) == 1 and noted == []


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
    failure = next(result for result in summary.results if result.status == "failed")
    assert failure.error == f"{locked}: cannot list the folder (Permission denied)"
    assert (tmp_path / "out" / "a.png").exists()


def test_a_recursive_pattern_reports_the_folders_it_could_not_list(tmp_path, monkeypatch):
    import os

    write_dark(tmp_path / "in" / "a.png", 32, 32)
    write_dark(tmp_path / "in" / "deep" / "locked" / "b.png", 32, 32)
    locked = tmp_path / "in" / "deep" / "locked"
    real_scandir = os.scandir

    def scandir(path):
        if Path(os.path.abspath(path)) == locked:  # glob lists relative paths
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.chdir(tmp_path)
    # glob itself passes over the locked folder in silence; the batch must not.
    jobs = collect_inputs(["in/**/*.png"], recursive=True)
    assert [job.source for job in jobs if job.error is None] == [Path("in/a.png")]
    assert [job.error for job in jobs if job.error is not None] == [
        "in/deep/locked: cannot list the folder (Permission denied)"
    ]
    # Only a pattern that reaches into subfolders looks there; one that matches nothing in the
    # folders it could read, and could not read one, is not "no files".
    assert [job.source for job in collect_inputs(["in/*.png"], recursive=True)] == [Path("in/a.png")]
    assert len(collect_inputs(["in/deep/**/*.png"], recursive=True)) == 1


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
    failure = next(result for result in summary.results if result.status == "failed")
    assert failure.error.endswith(": cannot list the folder (File name too long)")


def test_skip_existing_fails_a_folder_at_the_output_path(tmp_path, tiny_config):
    source = write_dark(tmp_path / "a.png", 32, 32)
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    for skip_existing in (True, False):
        summary = run_batch(collect_inputs([str(source)]), tiny_config, OutputOptions(tmp_path / "out", skip_existing=skip_existing))
        assert summary.failed == 1 and summary.skipped == 0
        assert summary.results[0].error == f"{source}: output {tmp_path / 'out' / 'a.png'} exists and is not a file"
    assert (tmp_path / "out" / "a.png").is_dir()


@pytest.mark.parametrize("suffix", ["/../../escaped", "_a/b", "x\0y"])
def test_suffixes_with_separators_are_refused(suffix):
    with pytest.raises(UsageError, match="suffix .* cannot contain a path separator or NUL"):
        OutputOptions(Path("out"), suffix=suffix)


def test_every_output_stays_inside_the_output_folder(tmp_path):
    source = write_dark(tmp_path / "a.png")
    for relative in ("../a.png", "/tmp/a.png", "x/../../a.png"):
        with pytest.raises(UsageError, match="outside the output folder"):
            check_outputs([Job(source, Path(relative))], OutputOptions(tmp_path / "out"))


def test_closed_stdin_and_input_inside_the_output_folder_say_so(tmp_path):
    with pytest.raises(UsageError, match="stdin is closed"):
        collect_inputs(["-"], stdin=None)
    write_dark(tmp_path / "shots" / "a.png")
    with pytest.raises(UsageError, match="is the output folder or inside it"):
        collect_inputs([str(tmp_path / "shots")], exclude=tmp_path / "shots")


@pytest.mark.parametrize("name, reason", [("x" * 300 + ".png", "File name too long"), ("a\0b.png", "embedded null")])
def test_inputs_the_system_refuses_to_name_are_usage_errors(tmp_path, name, reason):
    with pytest.raises(UsageError, match=reason):
        collect_inputs([str(tmp_path / name)])
    (tmp_path / "list.txt").write_bytes(os.fsencode(str(tmp_path / name)) + b"\n")
    with pytest.raises(UsageError, match=f"line 1[)]: cannot use this input [(]{reason}"):
        collect_inputs([], listed=read_path_list(str(tmp_path / "list.txt")))


# ------------------------------------------------------------------------------- worker processes


@pytest.mark.parametrize(
    "jobs, files, cores, extra, expected",
    [
        ("auto", 8, 4, {}, Plan(4, 1)),
        ("auto", 3, 8, {}, Plan(3, 2)),
        ("auto", 2, 5, {}, Plan(2, 2)),
        ("auto", 1, 8, {}, Plan(1, None)),
        ("auto", 0, 8, {}, Plan(1, None)),
        ("auto", 8, 4, {"cuda": True}, Plan(1, None)),
        ("auto", 8, 4, {"in_process": True, "threads": 3}, Plan(1, 3)),
        ("auto", 8, 16, {"threads": 2}, Plan(8, 2)),
        (4, 2, 8, {}, Plan(2, 4)),
        (4, 8, 2, {}, Plan(4, 1)),
        (2, 8, 4, {"cuda": True}, Plan(2, 2)),
        (1, 8, 4, {"threads": 2}, Plan(1, 2)),
        # Forked only with one thread a worker, on the CPU, and never a single process.
        ("auto", 8, 4, {"may_fork": True}, Plan(4, 1, fork=True)),
        ("auto", 3, 8, {"may_fork": True}, Plan(3, 2)),
        ("auto", 3, 8, {"may_fork": True, "threads": 1}, Plan(3, 1, fork=True)),
        (2, 8, 2, {"may_fork": True, "cuda": True}, Plan(2, 1)),
        ("auto", 1, 8, {"may_fork": True}, Plan(1, None)),
    ],
)
def test_worker_and_thread_arithmetic(jobs, files, cores, extra, expected):
    assert plan(jobs, files, cores=cores, **extra) == expected


def test_cores_come_from_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 64)
    assert available_cores() == 3
    monkeypatch.delattr(workers.os, "sched_getaffinity", raising=False)
    assert available_cores() == 64


def test_plan_counts_only_the_files_left_to_do(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(workers, "available_cores", lambda: 8)
    for name in ("a.png", "b.png", "c.png"):
        write_dark(tmp_path / "in" / name)
    write_dark(tmp_path / "out" / "a.png")
    jobs = collect_inputs([str(tmp_path / "in")])
    assert plan_batch(jobs, tiny_config, OutputOptions(tmp_path / "out")) == Plan(3, 2)
    assert plan_batch(jobs, tiny_config, OutputOptions(tmp_path / "out", skip_existing=True)) == Plan(2, 4)
    stream = OutputOptions(stream=io.BytesIO())
    assert plan_batch(jobs[:1], tiny_config, stream, workers=4, threads=2) == Plan(1, 2)


def test_workers_are_forked_only_where_asked_and_on_linux(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(workers, "available_cores", lambda: 2)
    for name in ("a.png", "b.png"):
        write_dark(tmp_path / "in" / name)
    jobs = collect_inputs([str(tmp_path / "in")])
    options = OutputOptions(tmp_path / "out")
    assert plan_batch(jobs, tiny_config, options) == Plan(2, 1)
    monkeypatch.setattr(workers.sys, "platform", "linux")
    assert plan_batch(jobs, tiny_config, options, may_fork=True) == Plan(2, 1, fork=True)
    monkeypatch.setattr(workers.sys, "platform", "darwin")
    assert plan_batch(jobs, tiny_config, options, may_fork=True) == Plan(2, 1)


@pytest.mark.parametrize("text, expected", [("1", 1), (" 12 ", 12), ("auto", "auto"), ("AUTO", "auto")])
def test_counts(text, expected):
    assert parse_count(text, "--jobs", allow_auto=True) == expected


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "x", "", "auto"])
def test_bad_counts_are_usage_errors(text):
    with pytest.raises(UsageError, match="--threads '.*': expected a positive whole number$"):
        parse_count(text, "--threads")


def test_temporaries_of_a_file_are_found_and_only_they(tmp_path):
    target = tmp_path / "a.png"
    with images.atomic_output(target) as temporary:
        assert images.temporaries_of(target) == [temporary]
        assert images.temporaries_of(tmp_path / "a.pn") == []
    assert images.temporaries_of(target) == []


class _DiesWhenUnpickled:
    """A job's payload that ends the worker process receiving it, as a crash would."""

    def __reduce__(self):
        return (os._exit, (9,))


@pytest.mark.parametrize("fork", [False, True] if "fork" in multiprocessing.get_all_start_methods() else [False])
def test_workers_write_what_one_process_writes_and_outlive_a_dead_worker(tmp_path, tiny_config, fork):
    for index in range(3):
        write_dark(tmp_path / "in" / f"{index}.png", 32, 32, seed=index)
    jobs = collect_inputs([str(tmp_path / "in")])
    serial = run_batch(jobs, tiny_config, OutputOptions(tmp_path / "serial"))  # this process: 1 thread
    doomed = Job(tmp_path / "doomed.png", Path("doomed.png"), data=_DiesWhenUnpickled())
    finished = []
    plan = Plan(2, 1, fork=fork)
    summary = run_batch([jobs[0], doomed, *jobs[1:]], tiny_config, OutputOptions(tmp_path / "workers"), on_result=finished.append, plan=plan)
    assert summary.results == finished and len(finished) == 4
    assert (summary.done, summary.failed) == (3, 1)
    (failure,) = [result for result in finished if result.status == "failed"]
    assert failure.error == "stdin: the worker process died (exit code 9); nothing was saved"
    assert sorted(path.name for path in (tmp_path / "workers").iterdir()) == ["0.png", "1.png", "2.png"]
    for result in serial.results:
        name = result.output.name
        assert (tmp_path / "workers" / name).read_bytes() == result.output.read_bytes()


# Run in a process of its own: a fork that goes wrong hangs, and only a process can be killed.
_FORK_AFTER_PARALLEL_WORK = """
import sys
from pathlib import Path

import torch

from rrdnet_cli import load_config
from rrdnet_cli.batch import OutputOptions, collect_inputs, run_batch
from rrdnet_cli.workers import Plan

torch.set_num_threads(2)
image = torch.rand(1, 16, 128, 128)
torch.nn.functional.conv2d(image, torch.rand(16, 16, 3, 3), padding=1).sum().item()  # OpenMP threads now run
folder = Path(sys.argv[1])
config = load_config("paper", iterations=3, device="cpu")
summary = run_batch(collect_inputs([str(folder / "in")]), config, OutputOptions(folder / "out"), plan=Plan(2, 1, fork=True))
print(summary.done, summary.failed)
"""


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_one_thread_workers_forked_after_parallel_work_finish(tmp_path):
    # A child forked after its parent ran an OpenMP region hangs at its first parallel region;
    # workers are forked only with one thread, which torch runs without any.
    for index in range(2):
        write_dark(tmp_path / "in" / f"{index}.png", 32, 32, seed=index)
    process = subprocess.Popen(
        [sys.executable, "-c", _FORK_AFTER_PARALLEL_WORK, str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("the forked workers hung")
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().split() == ["2", "0"]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["0.png", "1.png"]


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_forked_workers_leave_when_the_parent_is_gone():
    # Each forked worker holds copies of the parent's pipe ends; it must close its own, or it would
    # wait for work forever once the parent has died.
    started = [workers._Worker(multiprocessing.get_context("fork"), 1) for _ in range(3)]
    for worker in started:
        worker.connection.close()  # what the parent's death does
    for worker in started:
        worker.process.join(10)
    assert [worker.process.exitcode for worker in started] == [0, 0, 0]


def test_extra_files_do_not_change_the_image(tmp_path):
    # Without maps, decomposition or sheet the final pass skips the reflectance branch.
    from rrdnet_cli import load_config

    config = load_config("default", iterations=4, optimisation_side=32, device="cpu")
    write_dark(tmp_path / "in" / "a.png")
    jobs = collect_inputs([str(tmp_path / "in")])
    run_batch(jobs, config, OutputOptions(tmp_path / "plain"))
    run_batch(jobs, config, OutputOptions(tmp_path / "full", save_maps=True, contact_sheet=True))
    assert (tmp_path / "full" / "maps" / "a_reflectance.png").is_file()
    assert (tmp_path / "plain" / "a.png").read_bytes() == (tmp_path / "full" / "a.png").read_bytes()
