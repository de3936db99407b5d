"""A large photo's time and peak memory: ``enhance()`` on a benchmark photo enlarged to 12 MP, against
an earlier checkout of the package in the same run.

Each (checkout, round) runs in its own fresh process, so its peak resident memory (VmHWM) is its
own; the checkouts alternate, ``--rounds`` times, and the figure is the median over rounds. Timed as
``rrdnet enhance`` runs a photo without maps: ``enhance(image, config, reflectance=False)``, decode
and encode excluded, with the command's allocator tuning. The earlier checkout is any folder holding
a ``rrdnet_cli`` package (e.g. ``git worktree add /tmp/before <commit>``), imported from there by
``PYTHONPATH``; the results' largest difference is reported, in 8-bit levels.

    env ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/large_speed.py \\
        --baseline-source /tmp/before --output benchmarks/results/large_speed_avx2_emulated.json
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


def worker(image_path: str, width: int, height: int, save: str) -> dict:
    """Time ``enhance()`` on the photo enlarged to ``width`` x ``height``; save its 8-bit result."""
    from PIL import Image

    from rrdnet_cli import enhance, images, load_config, runtime

    runtime.tune_allocator()  # as the rrdnet command does
    with Image.open(image_path) as opened:
        enlarged = np.asarray(opened.convert("RGB").resize((width, height), Image.BICUBIC)).copy()
    image = common.to_tensor(enlarged)
    del enlarged
    config = load_config("default", device="cpu")
    start = time.perf_counter()
    enhancement = enhance(image, config, reflectance=False)
    seconds = time.perf_counter() - start
    peak = common.peak_rss_mib()
    # The 8-bit levels a written file would hold, as the checkout's own encoder makes them.
    np.save(save, images.to_array(enhancement.result))
    return {"seconds": seconds, "peak_rss_mib": peak}


def main() -> None:
    if common.answer_as_worker(worker, str, int, int, str):
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=common.DEFAULT_DATA, help="benchmark images folder")
    parser.add_argument("--image", default="synthetic/low/kodim01.png", help="photo under --data, enlarged")
    parser.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT it is enlarged to")
    parser.add_argument("--baseline-source", type=Path, help="a checkout whose rrdnet_cli is the baseline")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path, default=common.RESULTS / "large_speed.json")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.lower().split("x"))
    sources = common.checkouts(args.baseline_source)
    machine = common.machine(jobs=1)
    runs: dict[str, list[dict]] = {name: [] for name in sources}
    with tempfile.TemporaryDirectory() as folder:
        saved = {name: str(Path(folder, f"{name}.npy")) for name in sources}
        for _ in range(args.rounds):
            for name, source in sources.items():
                answer = common.run_in_checkout(
                    source, __file__, str(args.data / args.image), str(width), str(height), saved[name]
                )
                print("  " + json.dumps({name: answer}), file=sys.stderr)
                runs[name].append(answer)
        record: dict = {"image": args.image, "size": [width, height]}
        for name, answers in runs.items():
            record[name] = {
                "seconds": round(statistics.median(answer["seconds"] for answer in answers), 3),
                "peak_rss_mib": round(statistics.median(answer["peak_rss_mib"] for answer in answers), 1),
                "rounds": answers,
            }
        if "baseline" in sources:
            record["speedup"] = round(record["baseline"]["seconds"] / record["current"]["seconds"], 3)
            difference = np.abs(np.load(saved["baseline"]).astype(np.int16) - np.load(saved["current"]))
            record["largest_difference_levels"] = int(difference.max())
            record["share_of_values_differing"] = float(np.mean(difference > 0))
    common.publish(
        {
            **record,
            "sources": {name: str(source) for name, source in sources.items()},
            "machine": machine,
            "arguments": common.arguments_of(args),
        },
        args.output,
    )


if __name__ == "__main__":
    main()
