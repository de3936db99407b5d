"""The command as scripts and schedulers run it: separate processes, shell pipes, signals."""

import json
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


def test_three_shards_in_parallel_cover_a_folder_exactly_once(tmp_path):
    for index in range(9):
        write_dark(tmp_path / "in" / f"img{index}.png", 24, 24, seed=index)
    runs = [
        start("enhance", tmp_path / "in", "-o", tmp_path / "out", "--shard", f"{shard}/3", "--json", "-q", *PAPER_FAST, folder=tmp_path, name=f"shard{shard}")
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

    process, stdout, stderr = start("enhance", tmp_path / "in", "-o", out, "--skip-existing", "--json", *PAPER_FAST, folder=tmp_path, name="second")
    assert process.wait(PROCESS_LIMIT) == 0, stderr.read_text()
    records = [json.loads(line) for line in stdout.read_text().splitlines()]
    statuses = {Path(record["input"]).name: record["status"] for record in records[:-1]}
    assert statuses == {name: "skipped" if name in finished else "done" for name in names}
    assert sorted(path.name for path in out.iterdir()) == names
    assert {name: (out / name).stat().st_mtime_ns for name in finished} == finished


def test_sigterm_stops_cleanly_too(tmp_path):
    source = write_dark(tmp_path / "a.png", 32, 32)
    endless = ["--config", "paper", "--iterations", "1000000", "--device", "cpu", "-v"]
    process, _, stderr = start("enhance", source, "-o", tmp_path / "out", *endless, folder=tmp_path, name="run")
    wait_for(lambda: "iterations: 1000000" in stderr.read_text(), process, "the run to start")
    process.send_signal(signal.SIGTERM)
    assert process.wait(PROCESS_LIMIT) == 128 + signal.SIGTERM
    assert "rrdnet: error: interrupted" in stderr.read_text()
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []


def test_shell_pipe(tmp_path):
    source = write_dark(tmp_path / "a.jpg", 36, 44)
    command = f"cat {shlex.quote(str(source))} | {shlex.join(cli_command('enhance', '-', '-o', '-', *PAPER_FAST))} > {shlex.quote(str(tmp_path / 'b.png'))}"
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
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_environment(),
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
    command = f"{shlex.join(cli_command('enhance', '-', '-o', '-', *PAPER_FAST))} < {shlex.quote(str(source))} {redirect}"
    completed = subprocess.run(command, shell=True, env=cli_environment(), stderr=subprocess.PIPE, timeout=PROCESS_LIMIT)
    assert completed.returncode == code
    assert error_lines(completed.stderr.decode()) == [message]


def test_ctrl_c_during_start_up_is_one_line_and_exit_130(tmp_path):
    # Deterministic: SIGINT arrives while torch is being imported, as a Ctrl-C in the first seconds.
    script = (
        "import os, signal, sys\n"
        "class Hook:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, Hook())\n"
        "from rrdnet_cli.cli import main\n"
        "main(['--version'])\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], env=cli_environment(), capture_output=True, timeout=PROCESS_LIMIT)
    assert completed.returncode == 130
    assert completed.stderr.decode() == "rrdnet: error: interrupted\n"
