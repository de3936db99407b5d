"""Seconds per optimisation step and peak memory of the engine at 560x420 on the CPU.

Runs the chosen preset (default: paper) for a few steps on the bundled example resized to
560x420, in a fresh child process so its peak RSS is its own. Prints one JSON line and writes it
to benchmarks/results/step_speed.json.

    .venv/bin/python benchmarks/step_speed.py [--config paper] [--steps 12] [--warmup 2]
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

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WIDTH, HEIGHT = 560, 420


def measure(config_name: str, steps: int, warmup: int) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from rrdnet_cli import enhance, load_config

    with Image.open(ROOT / "examples" / "coffee_dark.png") as opened:
        array = np.asarray(opened.convert("RGB").resize((WIDTH, HEIGHT), Image.BICUBIC), dtype=np.float32) / 255
    image = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()
    config = load_config(config_name, iterations=warmup + steps, device="cpu")
    stamps = [time.perf_counter()]
    enhance(image, config, on_step=lambda step, loss: stamps.append(time.perf_counter()))
    durations = [after - before for before, after in zip(stamps, stamps[1:])][warmup:]
    per_step = statistics.median(durations)
    return {
        "benchmark": "step_speed",
        "config": config_name,
        "size": f"{WIDTH}x{HEIGHT}",
        "threads": torch.get_num_threads(),
        "steps_measured": len(durations),
        "seconds_per_step_median": round(per_step, 4),
        "seconds_per_step_min": round(min(durations), 4),
        "projected_seconds_1000_steps": round(per_step * 1000, 1),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="paper")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.config, args.steps, args.warmup)))
        return
    command = [sys.executable, __file__, "--child", "--config", args.config, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    child = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    line = child.stdout.strip().splitlines()[-1]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "step_speed.json").write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
