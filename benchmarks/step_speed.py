"""Seconds per optimisation step and peak memory of the engine at 560x420 on the CPU, against a
loop written the way the published reference code is, measured in the same run.

The bundled example resized to 560x420 (the size of the reference timings in PERF_NOTES). Each
measurement runs in a fresh child process, so its peak RSS and allocator settings are its own;
the preset and the reference-like loop alternate (``--rounds`` times each) so that a noisy
machine slows both alike, and each reports the median of its steps after ``--warmup``. Prints one
JSON line, with the machine it ran on (``common.machine``), and writes it to
benchmarks/results/step_speed.json.

    .venv/bin/python benchmarks/step_speed.py [--config paper] [--steps 10] [--warmup 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
WIDTH, HEIGHT = 560, 420


def _image():
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(ROOT / "examples" / "coffee_dark.png") as opened:
        array = np.asarray(opened.convert("RGB").resize((WIDTH, HEIGHT), Image.BICUBIC), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, config_name: str, steps: int, warmup: int) -> dict:
    """One child's answer: the per-step seconds after warm-up and the peak RSS."""
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    from rrdnet_cli import enhance, load_config, runtime

    import common

    image = _image()
    if kind == "reference":
        durations = common.reference_like_step_seconds(image, warmup + steps)
    else:
        config = load_config(config_name, iterations=warmup + steps, device="cpu")
        runtime.tune_allocator()  # as the rrdnet command does
        stamps = [time.perf_counter()]
        enhance(image, config, on_step=lambda step, loss: stamps.append(time.perf_counter()))
        durations = [after - before for before, after in zip(stamps, stamps[1:])]
    return {"durations": durations[warmup:], "peak_rss_mib": _peak_rss_mib()}


def _child(kind: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--config",
        args.config,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
    ]
    answer = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(answer.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="paper", help="preset or YAML file measured")
    parser.add_argument("--steps", type=int, default=10, help="steps measured per child")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out at the start")
    parser.add_argument("--rounds", type=int, default=2, help="children of each kind, alternating")
    parser.add_argument("--child", choices=("preset", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.config, args.steps, args.warmup)))
        return
    sys.path.insert(0, str(HERE))
    import common

    runs: dict[str, list[dict]] = {"preset": [], "reference": []}
    for _ in range(args.rounds):
        for kind in runs:
            runs[kind].append(_child(kind, args))
    per_step = {
        kind: statistics.median(d for run in answers for d in run["durations"]) for kind, answers in runs.items()
    }
    peak = {kind: max(run["peak_rss_mib"] for run in answers) for kind, answers in runs.items()}
    line = json.dumps(
        {
            "benchmark": "step_speed",
            "config": args.config,
            "size": f"{WIDTH}x{HEIGHT}",
            "machine": common.machine(jobs=1),
            "steps_measured": sum(len(run["durations"]) for run in runs["preset"]),
            "seconds_per_step_median": round(per_step["preset"], 4),
            "projected_seconds_1000_steps": round(per_step["preset"] * 1000, 1),
            "peak_rss_mib": round(peak["preset"], 1),
            "reference_like_seconds_per_step_median": round(per_step["reference"], 4),
            "reference_like_peak_rss_mib": round(peak["reference"], 1),
            "speedup_per_step_vs_reference_like": round(per_step["reference"] / per_step["preset"], 3),
        }
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "step_speed.json").write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
