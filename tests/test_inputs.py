"""Finding inputs: folders, globs, path lists, stdin, links, shards (``rrdnet_cli.inputs``)."""

import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrdnet_cli import UsageError
from rrdnet_cli.batch import check_outputs
from rrdnet_cli.inputs import collect_inputs, read_path_list, select_shard
from rrdnet_cli.jobs import Job, OutputOptions, output_path

from helpers import write_dark


def relatives(jobs):
    return [str(job.relative) for job in jobs]


def test_folder_lists_images_directly_inside_sorted(tree):
    assert relatives(collect_inputs([str(tree)])) == ["a.jpg", "b.png"]


def test_recursive_folder_keeps_relative_paths(tree):
    assert relatives(collect_inputs([str(tree)], recursive=True)) == ["a.jpg", "b.png", "sub/c.png"]


def test_files_and_globs_without_duplicates(tree):
    jobs = collect_inputs([str(tree / "b.png"), str(tree / "*.png"), str(tree / "b.png")])
    assert relatives(jobs) == ["b.png"]


def test_inputs_that_name_no_image_fail_alone(tmp_path):
    write_dark(tmp_path / "shots" / "a.png")
    (tmp_path / "empty").mkdir()
    given = [tmp_path / "missing.png", tmp_path / "empty", tmp_path / "shots", tmp_path / "*.jpg"]
    jobs = collect_inputs([str(path) for path in given])
    assert [job.source for job in jobs] == [*given[:2], tmp_path / "shots" / "a.png", given[3]]
    errors = [job.error for job in jobs]
    assert errors[0] == f"{given[0]}: no such file or folder" and errors[2] is None
    assert errors[1].startswith(f"{given[1]}: no images found (") and "use -r" in errors[1]
    assert errors[3] == f"{given[3]}: pattern matches no files"
    with pytest.raises(UsageError, match="no inputs given"):
        collect_inputs([])


def test_a_folder_holds_every_format_read(tmp_path):
    for name in ("a.gif", "b.PPM", "c.pgm", "d.ico", "e.png"):
        write_dark(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    assert relatives(collect_inputs([str(tmp_path)])) == ["a.gif", "b.PPM", "c.pgm", "d.ico", "e.png"]


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


def test_closed_stdin_and_input_inside_the_output_folder_say_so(tmp_path):
    with pytest.raises(UsageError, match="stdin is closed"):
        collect_inputs(["-"], stdin=None)
    write_dark(tmp_path / "shots" / "a.png")
    with pytest.raises(UsageError, match="is the output folder or inside it"):
        collect_inputs([str(tmp_path / "shots")], exclude=tmp_path / "shots")


def test_a_name_no_path_can_have_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="embedded null"):
        collect_inputs([str(tmp_path / "a\0b.png")])
    # In a path list, the list is no path list: refused whole as it is read.
    (tmp_path / "list.txt").write_bytes(os.fsencode(str(tmp_path / "a\0b.png")) + b"\n")
    with pytest.raises(UsageError, match="not a path list [(]a NUL byte on line 1"):
        read_path_list(str(tmp_path / "list.txt"))


def test_inputs_the_system_cannot_look_at_fail_alone(tmp_path):
    write_dark(tmp_path / "a.png")
    (tmp_path / "loop1.png").symlink_to("loop2.png")
    (tmp_path / "loop2.png").symlink_to("loop1.png")
    too_long = str(tmp_path / ("x" * 300 + ".png"))
    jobs = collect_inputs([too_long, str(tmp_path / "a.png")], listed=[str(tmp_path / "loop1.png")])
    assert [job.error for job in jobs][1] is None
    assert jobs[0].error == f"{too_long[:200]}...: cannot use this input (File name too long)"
    assert jobs[2].error == f"{tmp_path / 'loop1.png'}: cannot use this input (Too many levels of symbolic links)" + (
        " (path list, line 1)"
    )


# ---------------------------------------------------------------------------------- path lists


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
    (missing,) = collect_inputs([], listed=["missing.png"])
    assert missing.error == "missing.png: no such file or folder (path list, line 1)"


def test_path_list_drops_a_utf8_byte_order_mark(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_dark(tmp_path / "a.png")
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbfa.png\r\n")
    assert read_path_list(str(listing)) == ["a.png"]
    assert relatives(collect_inputs([], listed=read_path_list(str(listing)))) == ["a.png"]


def test_path_list_errors_count_blank_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_dark(tmp_path / "a.png")
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"a.png\n\n  \nmissing.png\n")
    listed = read_path_list(str(listing))
    assert [path.line for path in listed] == [1, 4]
    found, missing = collect_inputs([], listed=listed)
    assert found.error is None and missing.error == "missing.png: no such file or folder (path list, line 4)"


def test_a_device_or_endless_stream_as_path_list_is_refused_quickly(monkeypatch):
    with pytest.raises(UsageError, match="/dev/zero: not a path list \\(a NUL byte on line 1"):
        read_path_list("/dev/zero")
    monkeypatch.setattr("rrdnet_cli.inputs.MAX_PATH_LIST_BYTES", 1 << 20)
    with pytest.raises(UsageError, match="stdin: path list longer than 1 MiB; refused"):
        read_path_list("-", io.BytesIO(b"a.png\n" * 500_000))


# -------------------------------------------------------------------------------------- shards


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


# ----------------------------------------------------------------------------- untrusted trees


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
    again = collect_inputs(
        [str(shots / "zz.png"), str(shots / "." / "zz.png")], on_duplicate=lambda *pair: noted.append(pair)
    )
    assert len(again) == 1 and noted == []


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
