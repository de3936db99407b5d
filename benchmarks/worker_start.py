"""What starting the workers costs: a batch with forked workers against the same with spawned ones.

`rrdnet enhance` forks its workers where that is safe (Linux, CPU, one thread each: see
`rrdnet_cli/workers.py`); a spawned worker is a fresh interpreter that imports torch again. This
runs one batch of photos through `run_batch` with the two kinds of `--jobs 2` workers in turn, for
`--rounds` rounds from one process (which has imported torch, as the command has), and reports
the median seconds of each and what forking saved. Prints one JSON line and writes
benchmarks/results/worker_start.json.

    .venv/bin/python benchmarks/worker_start.py                          # 8 photos, default preset
    .venv/bin/python benchmarks/worker_start.py --iterations 1 --limit 2 # the start alone, nearly
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

# A spawned worker imports this script again (as ``__mp_main__``) before it runs: nothing heavy up
# here, so that it starts as the command's own workers do (whose main module imports no torch).


def parse_arguments(argv=None) -> argparse.Namespace:
    from common import DEFAULT_DATA, RESULTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "synthetic" / "low", help="folder of photos")
    parser.add_argument("--limit", type=int, default=8, help="photos taken from the folder (sorted)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two kinds")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one thread each")
    parser.add_argument("--config", default="default", help="preset or YAML file")
    parser.add_argument("--iterations", type=int, help="override the preset's steps")
    parser.add_argument("--output", type=Path, default=RESULTS / "worker_start.json")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    from rrdnet_cli import load_config
    from rrdnet_cli.batch import run_batch
    from rrdnet_cli.inputs import collect_inputs
    from rrdnet_cli.jobs import OutputOptions
    from rrdnet_cli.workers import Plan

    from common import machine, publish

    arguments = parse_arguments(argv)
    overrides = {"iterations": arguments.iterations} if arguments.iterations is not None else {}
    config = load_config(arguments.config, device="cpu", **overrides)
    sources = sorted(path for path in arguments.data.iterdir() if path.is_file())[: arguments.limit]
    jobs = collect_inputs([str(path) for path in sources])
    seconds: dict[str, list[float]] = {"fork": [], "spawn": []}
    with tempfile.TemporaryDirectory(prefix="rrdnet-start-") as folder:
        for round_number in range(arguments.rounds):
            order = ["fork", "spawn"] if round_number % 2 == 0 else ["spawn", "fork"]
            for kind in order:
                output = Path(folder) / "out"
                shutil.rmtree(output, ignore_errors=True)
                started = time.perf_counter()
                summary = run_batch(
                    jobs, config, OutputOptions(output), plan=Plan(arguments.workers, 1, fork=kind == "fork")
                )
                seconds[kind].append(round(time.perf_counter() - started, 2))
                if summary.failed:
                    raise SystemExit(f"{summary.failed} photos failed with {kind}ed workers")
    median = {kind: statistics.median(times) for kind, times in seconds.items()}
    report = {
        "benchmark": "worker_start",
        "photos": len(sources),
        "data": str(arguments.data),
        "config": arguments.config,
        "iterations": config.iterations,
        "rounds": arguments.rounds,
        "seconds": seconds,
        "median_seconds": {kind: round(value, 2) for kind, value in median.items()},
        "saved_seconds": round(median["spawn"] - median["fork"], 2),
        "spawn_over_fork": round(median["spawn"] / median["fork"], 3),
        "machine": machine(jobs=arguments.workers) | {"torch_threads": 1},
    }
    publish(report, arguments.output)
    return report


if __name__ == "__main__":
    main()
