"""One photo from a fresh `rrdnet enhance` while other programs keep the cores busy, under each way
torch's OpenMP threads may wait for work.

GNU OpenMP's threads spin before they sleep (300,000 times by default). With every core free that
saves a wake-up; with other programs on the cores, a spinning thread holds a core that the thread
it waits for needs. This compares GNU OpenMP's default with a short spin (``GOMP_SPINCOUNT=10000``)
and with none (``OMP_WAIT_POLICY=PASSIVE``), with 0, 1 and 2 busy processes (pure Python loops)
beside the command. The settings alternate within every round (their order rotating) and the
figure is the median over the rounds.

Prints one JSON line; the record goes to --output.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

SETTINGS = {
    "default": {},
    "spin_10000": {"GOMP_SPINCOUNT": "10000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}


def seconds_of(command: list[str], environment: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, env=environment, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", type=Path, default=common.DEFAULT_DATA / "synthetic" / "low" / "kodim01.png")
    parser.add_argument("--busy", default="0,1,2", help="comma-separated numbers of busy processes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=common.RESULTS / "contention.json")
    args = parser.parse_args()
    base = {key: value for key, value in os.environ.items() if key not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        command = [*common.rrdnet_command(), "enhance", str(args.photo), "-o", folder, "-q"]
        for busy in [int(count) for count in args.busy.split(",")]:
            loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
            try:
                times: dict[str, list[float]] = {name: [] for name in SETTINGS}
                for round_index in range(args.rounds):
                    names = list(SETTINGS)
                    shift = round_index % len(names)
                    for name in names[shift:] + names[:shift]:
                        times[name].append(seconds_of(command, base | SETTINGS[name]))
            finally:
                for loop in loops:
                    loop.kill()
                    loop.wait()
            medians = {name: round(statistics.median(values), 3) for name, values in times.items()}
            rows.append({"busy_processes": busy, "median_s": medians, "all_s": times})
    record = {
        "benchmark": "contention",
        "photo": args.photo.name,
        "settings": SETTINGS,
        "rows": rows,
        "machine": common.machine(),
        "arguments": common.arguments_of(args),
    }
    common.publish(record, args.output)


if __name__ == "__main__":
    main()
