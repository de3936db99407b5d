"""Worker processes: the plan (workers, threads, fork), and running jobs in them (``rrdnet_cli.workers``)."""

import io
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rrdnet_cli import images, workers
from rrdnet_cli.batch import run_batch
from rrdnet_cli.inputs import collect_inputs
from rrdnet_cli.jobs import Job, OutputOptions, Status, extra_paths
from rrdnet_cli.workers import Plan, available_cores, plan, plan_batch, remove_unfinished

from helpers import write_dark


@pytest.mark.parametrize(
    "worker_setting, files, cores, extra, expected",
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
        (4, 8, 2, {}, Plan(2, 1)),
        (1000, 8, 2, {}, Plan(2, 1)),
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
def test_worker_and_thread_arithmetic(worker_setting, files, cores, extra, expected):
    assert plan(worker_setting, files, cores=cores, **extra) == expected


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
    assert plan_batch(jobs[:1], tiny_config, stream, worker_setting=4, threads=2) == Plan(1, 2)
    # An input that failed before it could be read needs no worker.
    with_missing = collect_inputs([str(tmp_path / "in" / "b.png"), str(tmp_path / "gone.png")])
    assert plan_batch(with_missing, tiny_config, OutputOptions(tmp_path / "out")) == Plan(1, None)


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


def test_temporaries_of_a_file_are_found_and_only_they(tmp_path):
    target = tmp_path / "a.png"
    with images.atomic_output(target) as temporary:
        assert images.temporaries_of(target) == [temporary]
        assert images.temporaries_of(tmp_path / "a.pn") == []
    assert images.temporaries_of(target) == []


# ---------------------------------------------------------------------------- worker processes


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
    summary = run_batch(
        [jobs[0], doomed, *jobs[1:]],
        tiny_config,
        OutputOptions(tmp_path / "workers"),
        on_result=finished.append,
        plan=plan,
    )
    assert summary.results == finished and len(finished) == 4
    assert (summary.done, summary.failed) == (3, 1)
    (failure,) = [result for result in finished if result.status is Status.FAILED]
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
from rrdnet_cli.batch import run_batch
from rrdnet_cli.inputs import collect_inputs
from rrdnet_cli.jobs import OutputOptions
from rrdnet_cli.workers import Plan

torch.set_num_threads(2)
image = torch.rand(1, 16, 128, 128)
torch.nn.functional.conv2d(image, torch.rand(16, 16, 3, 3), padding=1).sum().item()  # OpenMP threads now run
folder = Path(sys.argv[1])
config = load_config("paper", iterations=3, device="cpu")
jobs = collect_inputs([str(folder / "in")])
summary = run_batch(jobs, config, OutputOptions(folder / "out"), plan=Plan(2, 1, fork=True))
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
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
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


def test_a_worker_whose_parent_is_gone_stops_itself():
    # The watch behind the parent-death signal (the only guard off Linux, and for a parent that
    # died before the signal was asked for): SIGTERM to itself once its parent is not its parent.
    script = (
        "import os, signal\n"
        "from rrdnet_cli import workers\n"
        "signal.signal(signal.SIGTERM, lambda *a: os._exit(43))\n"
        "workers._watch_parent(os.getppid() + 1)\n"
        "os._exit(0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert result.returncode == 43


def test_what_a_killed_worker_wrote_for_its_file_is_removed(tmp_path):
    options = OutputOptions(tmp_path / "out", save_maps=True, save_decomposition=True)
    old, new = Job(tmp_path / "old.png", Path("old.png")), Job(tmp_path / "new.png", Path("new.png"))
    for job in (old, new):
        for path in extra_paths(job, options).values():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"written")
    given_at = time.time() + 10  # the old job's files were all written before the job was given
    for path in extra_paths(old, options).values():
        os.utime(path, (given_at - 60, given_at - 60))
    for path in extra_paths(new, options).values():
        os.utime(path, (given_at + 1, given_at + 1))
    part = tmp_path / "out" / ".new.png.abcd1234.part"
    part.write_bytes(b"half")
    for job in (old, new):
        remove_unfinished(job, options, given_at)
    left = sorted(str(path.relative_to(tmp_path / "out")) for path in (tmp_path / "out").rglob("*") if path.is_file())
    assert left == sorted(str(path.relative_to(tmp_path / "out")) for path in extra_paths(old, options).values())
