"""Speed of the denoiser alone: ``denoise.denoise_signal`` (both copies, the noise estimate given)
on one photo, at each thread count, against an earlier checkout of the package in the same run.

Each (checkout, thread count) is timed in its own fresh process, the two checkouts alternating,
``--rounds`` times; a process times ``--repeats`` calls after one warm-up call and reports their
median. The figure is the median over rounds. The earlier checkout is any folder holding a
``rrdnet_cli`` package (e.g. ``git worktree add /tmp/before <commit>``); it is imported from there by
``PYTHONPATH``. The two checkouts' copies are compared: their largest difference is reported.

    env ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/denoise_speed.py \\
        --baseline-source /tmp/before
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common


def worker(image_path: str, threads: int, repeats: int, save: str) -> dict:
    """Time ``denoise_signal`` in this process; save both copies (``(2, 3, H, W)``) to ``save``."""
    import torch

    from rrdnet_cli import denoise

    torch.set_num_threads(threads)
    image = common.to_tensor(common.load_rgb(Path(image_path)))
    noise = torch.zeros_like(image)
    level = denoise.signal_noise_level(image, noise)
    copies = denoise.denoise_signal(image, noise, denoise.AUTO_STRENGTH, level)
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        denoise.denoise_signal(image, noise, denoise.AUTO_STRENGTH, level)
        durations.append(time.perf_counter() - start)
    np.save(save, torch.cat([copies.gentle, copies.strong]).float().numpy())
    return {"seconds": statistics.median(durations), "module": denoise.__file__}


def main() -> None:
    if common.answer_as_worker(worker, str, int, int, str):
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=common.DEFAULT_DATA, help="benchmark images folder")
    parser.add_argument("--image", default="synthetic/low/kodim01.png", help="photo under --data (768x512)")
    parser.add_argument("--baseline-source", type=Path, help="a checkout whose rrdnet_cli is the baseline")
    parser.add_argument("--threads", default="2,1", help="thread counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=common.RESULTS / "denoise_speed_avx2_emulated.json")
    args = parser.parse_args()
    sources = common.checkouts(args.baseline_source)
    image = args.data / args.image
    records = []
    with tempfile.TemporaryDirectory() as folder:
        saved = {name: str(Path(folder, f"{name}.npy")) for name in sources}
        for threads in (int(count) for count in args.threads.split(",")):
            times: dict[str, list[float]] = {name: [] for name in sources}
            for _ in range(args.rounds):
                for name, source in sources.items():
                    answer = common.run_in_checkout(
                        source, __file__, str(image), str(threads), str(args.repeats), saved[name]
                    )
                    times[name].append(answer["seconds"])
            record = {"threads": threads, **{f"{name}_seconds": statistics.median(times[name]) for name in sources}}
            record.update({f"{name}_rounds": times[name] for name in sources})
            if "baseline" in sources:
                record["speedup"] = round(record["baseline_seconds"] / record["current_seconds"], 3)
                difference = np.abs(np.load(saved["baseline"]) - np.load(saved["current"]))
                record["largest_difference"] = float(difference.max())
            print("  " + json.dumps(record), file=sys.stderr)
            records.append(record)
    size = common.load_rgb(image).shape[1::-1]
    common.publish(
        {
            "image": args.image,
            "size": list(size),
            "records": records,
            "machine": common.machine(jobs=1),
            "arguments": common.arguments_of(args),
        },
        args.output,
    )


if __name__ == "__main__":
    main()
