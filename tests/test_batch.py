from pathlib import Path

import pytest

from rrdnet_cli import UsageError
from rrdnet_cli.batch import Job, OutputOptions, check_outputs, collect_inputs, map_paths, output_path, run_batch

from conftest import write_dark


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
