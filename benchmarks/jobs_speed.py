"""Photos per minute of `rrdnet enhance` with one worker process and with several (`--jobs`).

Runs the command as a subprocess on a folder of photos (default: the 8 synthetic low-light images,
copied to a temporary folder), alternating `--jobs 1`, `--jobs 2` and `--jobs auto` for
`--rounds` rounds so that they share the machine's noise, and reports photos per minute and the
ratios to `--jobs 1`. Prints one JSON line and writes benchmarks/results/jobs_speed.json.

A setting ``JOBSxTHREADS`` also passes ``--threads``: ``1x1`` against ``1`` measures how far one
process gains from its second thread, which bounds what ``--jobs 2`` can gain over ``--jobs 1``
(``jobs_2_ceiling``: two one-thread workers with nothing shared, 2 × t(1 thread, 2 threads) /
t(1 thread, 1 thread)). The setting ``halves`` measures that bound directly: two separate
``--jobs 1 --threads 1`` commands at once, each on half of the photos, which is what two workers
could do at best if nothing coordinated them.

A setting ending in ``:NAME`` runs the package of another checkout, given as ``--checkout
NAME=PATH`` (say, a ``git worktree`` of an earlier commit): the code before and after a change,
timed in the same rounds. Or this checkout's package under another interpreter, given as
``--interpreter NAME=PYTHON`` (a virtual environment with another build of torch, the package
installed in it): that torch's figures and its own yardstick beside this one's.

    .venv/bin/python benchmarks/jobs_speed.py                          # 8 photos, default preset
    .venv/bin/python benchmarks/jobs_speed.py --iterations 2 --limit 3 # a smoke run
    .venv/bin/python benchmarks/jobs_speed.py --jobs "auto:before,auto" --checkout before=../rrdnet-before
    .venv/bin/python benchmarks/jobs_speed.py --limit 1 --jobs "1,1:cpu" --interpreter cpu=../cpu-venv/bin/python
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DEFAULT_DATA, REPO, RESULTS, machine, publish, yardstick


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "synthetic" / "low", help="folder of photos")
    parser.add_argument("--limit", type=int, default=8, help="photos taken from the folder (sorted)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the settings")
    parser.add_argument(
        "--jobs",
        default="1,2,auto",
        help="comma-separated --jobs settings, each JOBS[xTHREADS][@CONFIG][:CHECKOUT] (that config, else "
        "--config; that checkout's package, else this one's); the first is the baseline",
    )
    parser.add_argument(
        "--checkout",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a checkout whose package the settings ending in :NAME run",
    )
    parser.add_argument(
        "--interpreter",
        action="append",
        default=[],
        metavar="NAME=PYTHON",
        help="an interpreter (another environment's torch) under which the settings ending in :NAME run",
    )
    parser.add_argument("--config", help="passed to rrdnet enhance")
    parser.add_argument("--iterations", type=int, help="passed to rrdnet enhance")
    parser.add_argument("--device", default="cpu", help="passed to rrdnet enhance")
    parser.add_argument("--output", type=Path, default=RESULTS / "jobs_speed.json")
    return parser.parse_args(argv)


def run_once(
    photos: Path,
    output: Path,
    setting: str,
    passed: list[str],
    checkouts: dict[str, Path],
    interpreters: dict[str, str],
) -> float:
    """One timed run of ``setting``: ``JOBS[xTHREADS][@CONFIG][:NAME]`` (that config instead of
    --config; the package of ``checkouts[NAME]`` instead of this one, or ``interpreters[NAME]``
    instead of this interpreter), or ``halves[@CONFIG]``: two one-thread commands at once on
    ``photos/../half-0`` and ``half-1``."""
    shutil.rmtree(output, ignore_errors=True)
    setting, _, name = setting.partition(":")
    package_root = checkouts.get(name, REPO)
    python = interpreters.get(name, sys.executable)
    jobs, _, config = setting.partition("@")
    jobs, _, threads = jobs.partition("x")
    if config:
        passed = [*passed, "--config", config]
    if jobs == "halves":
        runs = [
            (photos.parent / f"half-{index}", output / str(index), ["--jobs", "1", "--threads", "1"])
            for index in range(2)
        ]
    else:
        runs = [(photos, output, ["--jobs", jobs] + (["--threads", threads] if threads else []))]
    environment = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")]))
    )
    environment.pop("RRDNET_JOBS", None)
    environment.pop("RRDNET_THREADS", None)
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [python, "-m", "rrdnet_cli", "enhance", str(folder), "-o", str(into), "-q", *options, *passed],
            env=environment,
            # The checkout's own folder: `python -m` puts it first on the path (and a relative
            # config path is read there).
            cwd=package_root,
        )
        for folder, into, options in runs
    ]
    for process in processes:
        if process.wait() != 0:
            raise subprocess.CalledProcessError(process.returncode, process.args)
    return time.perf_counter() - started


def _named_path(text: str) -> tuple[str, Path]:
    name, _, path = text.partition("=")
    if not name or not path or not Path(path, "rrdnet_cli").is_dir():
        raise SystemExit(f"--checkout {text}: expected NAME=PATH of a checkout holding rrdnet_cli/")
    return name, Path(path).resolve()


def _with_config(setting: str, config: str) -> str:
    """``setting`` with ``@config`` before any ``:CHECKOUT``."""
    head, colon, checkout = setting.partition(":")
    return f"{head}@{config}{colon}{checkout}"


def _named_interpreter(text: str) -> tuple[str, str]:
    name, _, python = text.partition("=")
    if not name or not python or not os.access(python, os.X_OK):
        raise SystemExit(f"--interpreter {text}: expected NAME=PYTHON of an executable interpreter")
    return name, python


def _describe_interpreter(python: str) -> dict:
    """The interpreter and the version of its torch."""
    found = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
    return {"python": python, "torch": found.stdout.strip() or None}


def _describe_checkout(path: Path) -> dict:
    """Where a checkout is and, when it is a git checkout, its commit."""
    found = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    return {"path": str(path), "commit": found.stdout.strip() if found.returncode == 0 else None}


def _medians(yardsticks: list[dict]) -> dict:
    return {key: round(statistics.median(y[key] for y in yardsticks), 4) for key in yardsticks[0]}


def jobs_2_ceiling(per_minute: dict[str, float]) -> dict:
    """``{"jobs_2_ceiling": {config: ratio}}`` for every config measured as ``1x1`` and ``1``, and
    ``{"jobs_2_ceiling_measured": {config: ratio}}`` for every config measured as ``halves`` and ``1``."""
    found: dict[str, dict[str, float]] = {}
    for setting, rate in per_minute.items():
        jobs, _, config = setting.partition("@")
        whole = per_minute.get("1" + (f"@{config}" if config else ""))
        if jobs == "1x1" and whole:
            found.setdefault("jobs_2_ceiling", {})[config or "default"] = round(2 * rate / whole, 3)
        if jobs == "halves" and whole:
            found.setdefault("jobs_2_ceiling_measured", {})[config or "default"] = round(rate / whole, 3)
    return found


def main(argv=None) -> dict:
    arguments = parse_arguments(argv)
    settings = arguments.jobs.split(",")
    passed = ["--device", arguments.device]
    checkouts = dict(_named_path(text) for text in arguments.checkout)
    interpreters = dict(_named_interpreter(text) for text in arguments.interpreter)
    settings = [
        setting if "@" in setting or not arguments.config else _with_config(setting, arguments.config)
        for setting in settings
    ]
    for setting in settings:
        name = setting.partition(":")[2]
        if name and name not in checkouts and name not in interpreters:
            raise SystemExit(f"setting {setting}: no --checkout {name}=PATH nor --interpreter {name}=PYTHON given")
    if arguments.iterations is not None:
        passed += ["--iterations", str(arguments.iterations)]
    sources = sorted(path for path in arguments.data.iterdir() if path.is_file())[: arguments.limit]
    seconds: dict[str, list[float]] = {setting: [] for setting in settings}
    yardsticks = [yardstick()]
    other_yardsticks = {name: [yardstick(python)] for name, python in interpreters.items()}
    with tempfile.TemporaryDirectory(prefix="rrdnet-jobs-") as folder:
        photos = Path(folder) / "photos"
        photos.mkdir()
        for index, source in enumerate(sources):
            shutil.copy(source, photos / source.name)
            half = Path(folder) / f"half-{index % 2}"
            half.mkdir(exist_ok=True)
            shutil.copy(source, half / source.name)
        for round_number in range(arguments.rounds):
            # Alternate the order every round, so that no setting always runs first.
            order = settings if round_number % 2 == 0 else list(reversed(settings))
            for setting in order:
                timed = run_once(photos, Path(folder) / "out", setting, passed, checkouts, interpreters)
                seconds[setting].append(timed)
    yardsticks.append(yardstick())
    for name, python in interpreters.items():
        other_yardsticks[name].append(yardstick(python))
    per_minute = {setting: 60 * len(sources) / statistics.median(times) for setting, times in seconds.items()}
    baseline = settings[0]
    report = {
        "benchmark": "jobs_speed",
        "photos": len(sources),
        "data": str(arguments.data),
        "options": passed,
        "rounds": arguments.rounds,
        "checkouts": {name: _describe_checkout(path) for name, path in checkouts.items()},
        "interpreters": {name: _describe_interpreter(python) for name, python in interpreters.items()},
        "seconds": {setting: [round(value, 2) for value in times] for setting, times in seconds.items()},
        "photos_per_minute": {setting: round(value, 2) for setting, value in per_minute.items()},
        "ratio_to_jobs_" + baseline: {
            setting: round(value / per_minute[baseline], 3) for setting, value in per_minute.items()
        },
        "seconds_per_photo": {
            setting: round(statistics.median(times) / len(sources), 3) for setting, times in seconds.items()
        },
        # common.YARDSTICK before and after the rounds, to compare machines.
        "yardstick": _medians(yardsticks),
        # The same yardstick under each --interpreter (its own torch).
        "yardstick_by_interpreter": {name: _medians(runs) for name, runs in other_yardsticks.items()},
        "cpu": machine(jobs=None),  # each setting names its own jobs
    }
    report.update(jobs_2_ceiling(per_minute))
    publish(report, arguments.output)
    return report


if __name__ == "__main__":
    main()
