"""How fast the command answers when it has no photo to enhance: ``rrdnet --help``, ``--version``
and an option error, against ``python -c "import torch"`` timed in the same run.

Each case runs in a fresh process, the cases alternating within every round (the order rotating
from round to round, so all share the machine's noise); the figure is the median over the rounds.
The target: ``rrdnet --help`` in under a fifth of torch's import. Also records whether ``--help``
imported torch at all (``-X importtime``), and the bare interpreter's start (``python -c pass``)
as the floor. Prints one JSON line; the record goes to ``benchmarks/results/startup.json``.

    python benchmarks/startup.py [--rounds 7] [--note TEXT] [--output FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common

TARGET_RATIO = 0.2


def cases() -> dict[str, tuple[list[str], int]]:
    """Case name -> (command line, the exit code it must end with)."""
    rrdnet = common.rrdnet_command()
    return {
        "rrdnet_help": ([*rrdnet, "--help"], 0),
        "rrdnet_version": ([*rrdnet, "--version"], 0),
        "rrdnet_option_error": ([*rrdnet, "enhance", "--jobs", "many", "photo.png"], 2),
        "import_torch": ([sys.executable, "-c", "import torch"], 0),
        "python_bare": ([sys.executable, "-c", "pass"], 0),
    }


def seconds_of(command: list[str], code: int) -> float:
    start = time.perf_counter()
    completed = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    seconds = time.perf_counter() - start
    if completed.returncode != code:
        raise RuntimeError(f"{command} exited {completed.returncode}, not {code}:\n{completed.stderr.decode()[-2000:]}")
    return seconds


def imported_by(command: list[str]) -> set[str]:
    """Every module the Python command imports (``-X importtime`` through the environment)."""
    environment = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    return {line.split("|")[-1].strip() for line in completed.stderr.splitlines() if line.startswith("import time:")}


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="fresh processes per case")
    parser.add_argument("--note", help="recorded with the figures (e.g. what else loaded the machine)")
    parser.add_argument("--output", type=Path, default=common.RESULTS / "startup.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_arguments(argv)
    machine = common.machine(jobs=1)
    commands = cases()
    names = list(commands)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(2):  # warm the page cache: the first runs read every module from disk
        for command, code in commands.values():
            seconds_of(command, code)
    for round_number in range(args.rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(seconds_of(*commands[name]))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    help_modules = imported_by(commands["rrdnet_help"][0])
    ratio = medians["rrdnet_help"] / medians["import_torch"]
    record = {
        "benchmark": "startup",
        "rounds": args.rounds,
        "command": commands["rrdnet_help"][0][:-1],
        "median_seconds": {name: round(value, 4) for name, value in medians.items()},
        "help_over_import_torch": round(ratio, 4),
        "version_over_import_torch": round(medians["rrdnet_version"] / medians["import_torch"], 4),
        "option_error_over_import_torch": round(medians["rrdnet_option_error"] / medians["import_torch"], 4),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio < TARGET_RATIO,
        "help_imports_torch": "torch" in help_modules,
        "help_imported_modules": len(help_modules),
        "samples_seconds": {name: [round(value, 4) for value in values] for name, values in samples.items()},
        "note": args.note,
        "machine": machine,
    }
    if hasattr(os, "getloadavg"):
        record["machine"]["load_average_end"] = [round(value, 2) for value in os.getloadavg()]
    common.publish(record, args.output)
    return record


if __name__ == "__main__":
    main()
