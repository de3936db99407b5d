"""Speed of the final full-resolution pass by tile size (``tile_size``, ``--tile``).

The pass runs the fitted illumination branch over every pixel, in overlapping tiles: a larger tile
wastes less work on the overlap, a smaller one keeps its activations (64 channels a pixel in the
widest layer) closer to the CPU's caches. This times ``pipeline.decompose`` as ``default`` runs it
(illumination only, channels_last, the shipped start weights) on photos of the sizes the package
meets: the benchmark photos (600x400, 640x480, 768x512) and the 1 MP copy on which a larger photo's
pass runs (``final_pass_pixels``). Tile sizes alternate within each round; the figure is the
fastest of the rounds (the machine is shared); each result is also compared with the untiled pass.

    .venv/bin/python benchmarks/tile_speed.py
    env ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/tile_speed.py \\
        --output benchmarks/results/tile_speed_xeon_avx2_emulated.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from rrdnet_cli import pipeline, runtime, weights

import common

PHOTOS = ("real/lol_low/1.png", "real/dicm/01.jpg", "synthetic/low/kodim01.png")
# What a large photo's pass runs on: about final_pass_pixels (1 MP) at 3:2.
LARGE_PASS = (816, 1224)


def photos(data: Path) -> dict[str, torch.Tensor]:
    images = {}
    for name in PHOTOS:
        image = common.to_tensor(common.load_rgb(data / name))
        images[f"{name} ({image.shape[-1]}x{image.shape[-2]})"] = image
    kodak = images[next(iter(key for key in images if "kodim01" in key))]
    large = torch.nn.functional.interpolate(kodak, size=LARGE_PASS, mode="bilinear", align_corners=False)
    images[f"kodim01 upscaled ({LARGE_PASS[1]}x{LARGE_PASS[0]})"] = large.clamp(0.0, 1.0).contiguous()
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=common.DEFAULT_DATA, help="benchmark images folder")
    parser.add_argument("--tiles", default="256,320,384,448,512", help="tile sizes, comma-separated")
    parser.add_argument("--threads", default="2,1", help="torch thread counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=common.RESULTS / "tile_speed.json")
    args = parser.parse_args()
    runtime.tune_allocator()
    tile_sizes = [int(size) for size in args.tiles.split(",")]
    net = weights.learned_network()
    net.to_layout(torch.channels_last)
    images = photos(args.data)
    before = common.yardstick()
    # Recorded before the runs set their own thread counts (each run records its own).
    machine = common.machine()
    runs = []
    for threads in (int(count) for count in args.threads.split(",")):
        torch.set_num_threads(threads)
        for name, image in images.items():
            untiled = pipeline.decompose(net, image, 0, reflectance=False, noise=False)[0]
            seconds: dict[int, list[float]] = {size: [] for size in tile_sizes}
            largest_difference = 0.0
            for _ in range(args.rounds):
                for size in tile_sizes:
                    start = time.perf_counter()
                    tiled = pipeline.decompose(net, image, size, reflectance=False, noise=False)[0]
                    seconds[size].append(time.perf_counter() - start)
                    largest_difference = max(largest_difference, (tiled - untiled).abs().max().item())
            fastest = {size: round(min(times), 4) for size, times in seconds.items()}
            run = {
                "threads": threads,
                "photo": name,
                "seconds": fastest,
                "relative_to_largest_tile": {
                    size: round(value / fastest[max(tile_sizes)], 3) for size, value in fastest.items()
                },
                "largest_difference_from_untiled": largest_difference,
                "rounds": {size: [round(value, 4) for value in times] for size, times in seconds.items()},
            }
            print("  " + json.dumps({key: run[key] for key in ("threads", "photo", "seconds")}), file=sys.stderr)
            runs.append(run)
    record = {
        "benchmark": "tile_speed",
        "what": "pipeline.decompose, illumination branch only, channels_last, fastest of the rounds (seconds)",
        "machine": machine,
        "yardstick_before": before,
        "yardstick_after": common.yardstick(),
        "runs": runs,
    }
    common.publish(record, args.output)


if __name__ == "__main__":
    main()
