"""The command as scripts and schedulers run it: separate processes, shell pipes, signals."""

import json
import multiprocessing
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from helpers import PAPER_FAST, cli_command, cli_environment, write_dark

# Generous: these only bound how long a broken run can hang the suite, nothing is timed.
PROCESS_LIMIT = 240


def start(*args, folder: Path, name: str) -> tuple[subprocess.Popen, Path, Path]:
    stdout, stderr = folder / f"{name}.stdout", folder / f"{name}.stderr"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        process = subprocess.Popen(cli_command(*args), stdout=out, stderr=err, env=cli_environment())
    return process, stdout, stderr


def wait_for(condition, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + PROCESS_LIMIT
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def leftovers(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.endswith(".part") or path.name.startswith(".")]


def assert_resume_finishes(tmp_path: Path, names: list[str], finished: dict[str, int], *options) -> None:
    """A --skip-existing rerun into tmp_path/out skips the ``finished`` files untouched, does the rest."""
    out = tmp_path / "out"
    process, stdout, stderr = start(
        "enhance",
        tmp_path / "in",
        "-o",
        out,
        "--skip-existing",
        "--json",
        *options,
        *PAPER_FAST,
        folder=tmp_path,
        name="second",
    )
    assert process.wait(PROCESS_LIMIT) == 0, stderr.read_text()
    records = [json.loads(line) for line in stdout.read_text().splitlines()]
    statuses = {Path(record["input"]).name: record["status"] for record in records[:-1]}
    assert statuses == {name: "skipped" if name in finished else "done" for name in names}
    assert sorted(path.name for path in out.iterdir()) == names
    assert {name: (out / name).stat().st_mtime_ns for name in finished} == finished


def test_three_shards_in_parallel_cover_a_folder_exactly_once(tmp_path):
    for index in range(9):
        write_dark(tmp_path / "in" / f"img{index}.png", 24, 24, seed=index)
    runs = [
        start(
            "enhance",
            tmp_path / "in",
            "-o",
            tmp_path / "out",
            "--shard",
            f"{shard}/3",
            "--json",
            "-q",
            *PAPER_FAST,
            folder=tmp_path,
            name=f"shard{shard}",
        )
        for shard in range(3)
    ]
    shares = []
    for process, stdout, stderr in runs:
        assert process.wait(PROCESS_LIMIT) == 0, stderr.read_text()
        records = [json.loads(line) for line in stdout.read_text().splitlines()]
        assert records[-1]["type"] == "summary" and records[-1]["done"] == 3
        shares.append({record["input"] for record in records[:-1] if record["status"] == "done"})
    assert all(not (a & b) for a in shares for b in shares if a is not b)
    inputs = sorted(path.name for path in (tmp_path / "in").iterdir())
    assert sorted(Path(name).name for share in shares for name in share) == inputs
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == inputs
    for path in (tmp_path / "out").iterdir():
        with Image.open(path) as image:
            assert image.size == (24, 24)


def test_ctrl_c_stops_cleanly_and_skip_existing_finishes(tmp_path):
    names = [f"img{index}.png" for index in range(4)]
    for index, name in enumerate(names):
        write_dark(tmp_path / "in" / name, 32, 32, seed=index)
    out = tmp_path / "out"
    slow = ["--config", "paper", "--iterations", "40", "--device", "cpu"]
    process, _, stderr = start("enhance", tmp_path / "in", "-o", out, *slow, folder=tmp_path, name="first")
    wait_for(lambda: out.is_dir() and any(path.suffix == ".png" for path in out.iterdir()), process, "the first output")
    process.send_signal(signal.SIGINT)
    assert process.wait(PROCESS_LIMIT) == 130
    message = stderr.read_text()
    assert "rrdnet: error: interrupted after" in message and "--skip-existing" in message
    assert "Traceback" not in message
    assert leftovers(out) == []
    finished = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    assert finished and set(finished) <= set(names)
    for name in finished:
        with Image.open(out / name) as image:
            image.load()  # a complete file, not a partial one

    assert_resume_finishes(tmp_path, names, finished)


def test_sigterm_stops_cleanly_too(tmp_path):
    source = write_dark(tmp_path / "a.png", 32, 32)
    endless = ["--config", "paper", "--iterations", "100000", "--device", "cpu", "-v"]
    process, _, stderr = start("enhance", source, "-o", tmp_path / "out", *endless, folder=tmp_path, name="run")
    wait_for(lambda: "iterations: 100000" in stderr.read_text(), process, "the run to start")
    process.send_signal(signal.SIGTERM)
    assert process.wait(PROCESS_LIMIT) == 128 + signal.SIGTERM, stderr.read_text()
    assert "rrdnet: error: interrupted" in stderr.read_text(), stderr.read_text()
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []


def test_shell_pipe(tmp_path):
    source = write_dark(tmp_path / "a.jpg", 36, 44)
    enhance = shlex.join(cli_command("enhance", "-", "-o", "-", *PAPER_FAST))
    command = f"cat {shlex.quote(str(source))} | {enhance} > {shlex.quote(str(tmp_path / 'b.png'))}"
    completed = subprocess.run(command, shell=True, env=cli_environment(), capture_output=True, timeout=PROCESS_LIMIT)
    assert completed.returncode == 0, completed.stderr.decode()
    with Image.open(tmp_path / "b.png") as image:
        assert image.format == "PNG" and image.size == (44, 36)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("rrdnet: error:")]


def test_a_reader_gone_from_the_json_pipe_does_not_stop_the_batch(tmp_path):
    sources = [write_dark(tmp_path / f"{name}.png", 32, 32) for name in "abc"]
    process = subprocess.Popen(
        cli_command("enhance", *sources, "-o", tmp_path / "out", "--json", "-q", *PAPER_FAST),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_environment(),
    )
    first = json.loads(process.stdout.readline())  # like `| head -n1`
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(PROCESS_LIMIT) == 1
    assert first["status"] == "done"
    assert error_lines(stderr) == ["rrdnet: error: stdout: cannot write (Broken pipe); JSON lines dropped"]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]


@pytest.mark.parametrize(
    "redirect, code, message",
    [
        (">&-", 1, "rrdnet: error: stdout: cannot write (stdout is closed)"),
        ("<&-", 2, "rrdnet: error: '-': stdin is closed, there is no image to read"),
    ],
)
def test_closed_standard_streams_are_one_line_errors(tmp_path, redirect, code, message):
    source = write_dark(tmp_path / "a.png", 32, 32)
    command = (
        f"{shlex.join(cli_command('enhance', '-', '-o', '-', *PAPER_FAST))} < {shlex.quote(str(source))} {redirect}"
    )
    completed = subprocess.run(
        command, shell=True, env=cli_environment(), stderr=subprocess.PIPE, timeout=PROCESS_LIMIT
    )
    assert completed.returncode == code
    assert error_lines(completed.stderr.decode()) == [message]


@pytest.mark.parametrize("command", [["config", "show"], ["eval", "shots"], ["eval", "shots", "--json", "-"]])
def test_a_closed_stdout_fails_what_prints_for_programs(tmp_path, command):
    write_dark(tmp_path / "shots" / "a.png", 32, 32)
    shell = shlex.join(cli_command(*command)) + " >&-"
    completed = subprocess.run(
        shell, shell=True, env=cli_environment(), cwd=tmp_path, stderr=subprocess.PIPE, timeout=PROCESS_LIMIT
    )
    assert completed.returncode == 1
    assert error_lines(completed.stderr.decode()) == ["rrdnet: error: stdout: cannot write (stdout is closed)"]


def test_a_closed_stderr_silences_the_run_but_spoils_nothing(tmp_path):
    write_dark(tmp_path / "a.png", 32, 32)
    command = shlex.join(cli_command("enhance", "a.png", "missing.png", "-o", "out", *PAPER_FAST)) + " 2>&-"
    completed = subprocess.run(command, shell=True, env=cli_environment(), cwd=tmp_path, timeout=PROCESS_LIMIT)
    # The missing file's failure goes unsaid, but it is still the exit code; the image is whole.
    assert completed.returncode == 1
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["a.png"]
    with Image.open(tmp_path / "out" / "a.png") as written:
        written.load()


@pytest.mark.parametrize("command", [["enhance", "dark.png"], ["relight", "dark.npz", "-o", "x.png", "--gamma", "0.5"]])
def test_ctrl_c_during_start_up_is_one_line_and_exit_130(tmp_path, command):
    # Deterministic: SIGINT arrives while the command imports torch, as a Ctrl-C in the first seconds.
    script = (
        "import os, signal, sys\n"
        "class Hook:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, Hook())\n"
        "from rrdnet_cli.cli import main\n"
        "try:\n"
        f"    main({command!r})\n"
        "finally:\n"
        "    print('torch' in sys.modules)\n"  # held back: the import ran to its end first
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], env=cli_environment(), capture_output=True, timeout=PROCESS_LIMIT, cwd=tmp_path
    )
    assert completed.returncode == 130
    assert completed.stderr.decode() == "rrdnet: error: interrupted\n"
    assert completed.stdout.decode() == "True\n"


@pytest.mark.parametrize(
    "args, code",
    [
        (["--help"], 0),
        (["--version"], 0),
        (["enhance", "--help"], 0),
        (["serve", "--help"], 0),
        (["config", "show", "--config", "paper", "--iterations", "5"], 0),
        (["enhance", "--jobs", "many", "a.png"], 2),
        (["enhance", "--shard", "3/2", "a.png"], 2),
        (["enhance", "--no-such-option"], 2),
        (["enhance", "--config", "no-such-preset", "a.png"], 2),
        (["enhance"], 2),
    ],
)
def test_help_version_and_option_errors_import_nothing_heavy(tmp_path, args, code):
    # -X importtime lists every module the process imported, on stderr, one line each.
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", *cli_command(*args)[1:]],
        env=cli_environment(),
        capture_output=True,
        text=True,
        timeout=PROCESS_LIMIT,
        cwd=tmp_path,
    )
    assert completed.returncode == code, completed.stderr[-2000:]
    imported = {
        line.split("|")[-1].strip() for line in completed.stderr.splitlines() if line.startswith("import time:")
    }
    assert "rrdnet_cli.cli" in imported  # the listing works
    heavy = {"torch", "numpy", "PIL", "skimage", "scipy", "tqdm", "rrdnet_cli.jobs"}
    assert not heavy & imported


# ------------------------------------------------------------------- --jobs: worker processes


def json_records(stdout: Path) -> tuple[list[dict], dict]:
    records = [json.loads(line) for line in stdout.read_text().splitlines()]
    for record in records:
        record.pop("seconds")
        if record.get("output"):
            record["output"] = Path(record["output"]).name
    return records[:-1], records[-1]


def test_two_workers_give_what_one_process_gives(tmp_path):
    # Shard 0/2 of 8 files: 4 files, of which one is corrupt and one is already done.
    for index in range(8):
        write_dark(tmp_path / "in" / f"img{index}.png", 32, 32, seed=index)
    (tmp_path / "in" / "img2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    results = {}
    for name, jobs in [("one", ["--jobs", "1", "--threads", "1"]), ("two", ["--jobs", "2", "--threads", "1"])]:
        out = tmp_path / name
        write_dark(out / "img4.png", 32, 32, seed=99)
        done_before = (out / "img4.png").read_bytes()
        args = [
            "enhance",
            tmp_path / "in",
            "-o",
            out,
            "--shard",
            "0/2",
            "--skip-existing",
            "--json",
            *jobs,
            *PAPER_FAST,
        ]
        process, stdout, stderr = start(*args, folder=tmp_path, name=name)
        assert process.wait(PROCESS_LIMIT) == 1, stderr.read_text()
        assert (out / "img4.png").read_bytes() == done_before
        assert stderr.read_text().count("rrdnet: error: ") == 1 and "img2.png" in stderr.read_text()
        results[name] = json_records(stdout)
        assert leftovers(out) == []
    (lines_one, summary_one), (lines_two, summary_two) = results["one"], results["two"]
    assert sorted(map(json.dumps, lines_one)) == sorted(map(json.dumps, lines_two))
    assert (
        summary_one
        == summary_two
        == {"type": "summary", "files": 4, "done": 2, "skipped": 1, "failed": 1, "interrupted": False}
    )
    names = sorted(path.name for path in (tmp_path / "one").iterdir())
    assert names == ["img0.png", "img4.png", "img6.png"]
    assert sorted(path.name for path in (tmp_path / "two").iterdir()) == names
    for name in ["img0.png", "img6.png"]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def children(process: subprocess.Popen) -> list[int]:
    # Linux's list of a process's children that are workers (forked or spawned), not
    # multiprocessing's resource tracker.
    try:
        listed = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
    except OSError:
        return []
    return [
        int(pid) for pid in listed.split() if b"resource_tracker" not in read_or_empty(Path(f"/proc/{pid}/cmdline"))
    ]


def read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_gone(workers: list[int], seconds: float = 5) -> None:
    # The parent joined its workers before exiting; a moment's grace for the system to show it.
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers), [(pid, read_or_empty(Path(f"/proc/{pid}/stat"))) for pid in workers]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_ctrl_c_stops_the_workers_cleanly_and_skip_existing_finishes(tmp_path):
    names = [f"img{index}.png" for index in range(6)]
    for index, name in enumerate(names):
        write_dark(tmp_path / "in" / name, 32, 32, seed=index)
    out = tmp_path / "out"
    slow = ["--jobs", "2", "--config", "paper", "--iterations", "300", "--device", "cpu", "-v"]
    stdout, stderr = tmp_path / "first.stdout", tmp_path / "first.stderr"
    with open(stdout, "wb") as out_file, open(stderr, "wb") as err_file:
        # Its own process group, so that the SIGINT goes to every process as a terminal's Ctrl-C does.
        process = subprocess.Popen(
            cli_command("enhance", tmp_path / "in", "-o", out, *slow),
            stdout=out_file,
            stderr=err_file,
            env=cli_environment(),
            start_new_session=True,
        )
    wait_for(lambda: out.is_dir() and any(path.suffix == ".png" for path in out.iterdir()), process, "the first output")
    workers = children(process)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(PROCESS_LIMIT) == 130, stderr.read_text()
    message = stderr.read_text()
    assert "rrdnet: error: interrupted after" in message and "--skip-existing" in message
    assert "Traceback" not in message and message.count("rrdnet: error:") == 1, message
    assert leftovers(out) == []
    assert workers, "no worker process was found while the batch ran"
    assert_gone(workers)
    finished = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    assert finished and set(finished) <= set(names)

    assert_resume_finishes(tmp_path, names, finished, "--jobs", "2")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_sigterm_stops_the_workers_too(tmp_path):
    for index in range(2):
        write_dark(tmp_path / "in" / f"img{index}.png", 32, 32, seed=index)
    endless = ["--jobs", "2", "--config", "paper", "--iterations", "100000", "--device", "cpu", "-v"]
    process, _, stderr = start(
        "enhance", tmp_path / "in", "-o", tmp_path / "out", *endless, folder=tmp_path, name="run"
    )
    wait_for(lambda: "iterations: 100000" in stderr.read_text() and len(children(process)) >= 2, process, "the workers")
    workers = children(process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(PROCESS_LIMIT) == 128 + signal.SIGTERM, stderr.read_text()
    message = stderr.read_text()
    assert "rrdnet: error: interrupted" in message and "Traceback" not in message, message
    assert_gone(workers)
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []


def test_idle_workers_are_all_told_to_stop_before_any_is_waited_for(monkeypatch):
    # Each worker's exit then overlaps the others' instead of adding up at the end of a batch.
    from rrdnet_cli import workers

    events = []
    ask, wait = workers._Worker.ask_to_stop, workers._Worker.wait
    monkeypatch.setattr(
        workers._Worker, "ask_to_stop", lambda self, idle: events.append(("ask", idle)) or ask(self, idle=idle)
    )
    monkeypatch.setattr(workers._Worker, "wait", lambda self: events.append(("wait", None)) or wait(self))
    started = [workers._Worker(multiprocessing.get_context("spawn"), 1) for _ in range(2)]
    # A spawned worker imports torch before it can hear anything: on a loaded machine that outlasts
    # the stop's grace, and the kill it then gets says nothing about the order tested here.
    deadline = time.monotonic() + 120
    while not all(catches_sigterm(worker.process.pid) for worker in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers._stop_all(started, None, None)
    assert events == [("ask", True), ("ask", True), ("wait", None), ("wait", None)]
    # Exit code 0: each left by itself when told, none had to be killed.
    assert [worker.process.exitcode for worker in started] == [0, 0]


def catches_sigterm(pid: int) -> bool:
    # Bit 15 of SigCgt: a SIGTERM handler is installed (a worker has started its main function).
    for line in read_or_empty(Path(f"/proc/{pid}/status")).decode().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


# A batch run through the Python API with two workers of a chosen start method.
API_BATCH = """
import sys
from pathlib import Path
from rrdnet_cli import load_config
from rrdnet_cli.batch import run_batch
from rrdnet_cli.inputs import collect_inputs
from rrdnet_cli.jobs import OutputOptions
from rrdnet_cli.workers import Plan
config = load_config("paper", iterations=100000, device="cpu")
plan = Plan(2, 1, fork=sys.argv[3] == "fork")
run_batch(collect_inputs([sys.argv[1]]), config, OutputOptions(Path(sys.argv[2])), plan=plan)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("how", ["cli", "fork", "spawn"])
def test_workers_end_when_their_parent_is_killed(tmp_path, how):
    for index in range(3):
        write_dark(tmp_path / "in" / f"img{index}.png", 32, 32, seed=index)
    out = tmp_path / "out"
    if how == "cli":
        endless = ["--jobs", "2", "--config", "paper", "--iterations", "100000", "--device", "cpu", "-q"]
        command = cli_command("enhance", tmp_path / "in", "-o", out, *endless)
    else:
        command = [sys.executable, "-c", API_BATCH, str(tmp_path / "in"), str(out), how]
    process = subprocess.Popen(command, env=cli_environment(), stderr=subprocess.DEVNULL)
    workers = []
    try:
        wait_for(
            lambda: len(children(process)) >= 2 and all(map(catches_sigterm, children(process))), process, "the workers"
        )
        workers = children(process)
        time.sleep(0.5)  # into the fit
        process.kill()  # kill -9: the parent can tell no one
        process.wait(PROCESS_LIMIT)
        # At once where prctl works; otherwise within the watch's half second. The bound is
        # generous only for a machine loaded by other work.
        assert_gone(workers, seconds=15)
    finally:
        for pid in filter(alive, workers):  # only when the test failed: leave no orphan behind
            os.kill(pid, signal.SIGKILL)
    # Stopped by SIGTERM, the workers removed their temporaries and wrote nothing.
    if out.exists():
        assert list(out.rglob("*.png")) == [] and leftovers(out) == []


# The real entry, with each job reporting the collector's state as it starts.
WATCH_COLLECTOR = """
import gc, json, sys
from rrdnet_cli import cli, jobs
record, arguments = sys.argv[1], sys.argv[2:]
original = jobs.run_job
def watched(*args, **kwargs):
    with open(record, "a") as file:
        file.write(json.dumps({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}) + "\\n")
    return original(*args, **kwargs)
jobs.run_job = watched
sys.argv = ["rrdnet", *arguments]
cli.run()
"""


def test_the_command_works_with_the_collector_on_and_its_imports_set_aside(tmp_path):
    # cli.run holds the garbage collector off through the imports, then freezes what they made
    # and turns it back on: the photos' own garbage is collected as usual.
    source = write_dark(tmp_path / "dark.png")
    record = tmp_path / "collector.jsonl"
    arguments = ["enhance", source, "-o", tmp_path / "out", "--jobs", "1", *PAPER_FAST]
    done = subprocess.run(
        [sys.executable, "-c", WATCH_COLLECTOR, record, *arguments],
        capture_output=True,
        env=cli_environment(),
        timeout=PROCESS_LIMIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    states = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(states) == 1
    assert states[0]["enabled"] is True
    assert states[0]["frozen"] > 10_000  # torch's objects, at the least
    assert (tmp_path / "out" / "dark.png").is_file()


def test_the_command_exits_with_mains_code_after_delivering_its_output(tmp_path):
    # The `rrdnet` entry ends the process at once after main (cli.run): nothing buffered may be lost.
    source = write_dark(tmp_path / "dark.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    done = subprocess.run(
        cli_command("enhance", source, broken, "-o", tmp_path / "out", "--json", *PAPER_FAST),
        capture_output=True,
        env=cli_environment(),
        timeout=PROCESS_LIMIT,
        check=False,
    )
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert done.returncode == 1  # one file failed
    assert sorted(record["status"] for record in records if record["type"] == "file") == ["done", "failed"]
    assert records[-1]["type"] == "summary" and records[-1]["failed"] == 1
    assert (tmp_path / "out" / "dark.png").is_file()
    assert "broken.png" in done.stderr.decode()
    version = subprocess.run(cli_command("--version"), capture_output=True, env=cli_environment(), check=False)
    assert version.returncode == 0 and version.stdout.decode().startswith("rrdnet, version")
