"""What the default's rendering adds to a photo's time, against an earlier checkout in the same run.

For each photo, in one process: the default's fit with the paper's rendering (``PLAIN``: gamma
0.4, one light for the whole photo, no denoising; each checkout's own ``default`` fit), then the
default's rendering of those same maps (``result.from_maps``: the light that follows the scene,
the denoiser, the search for the light), then the whole default photo (``enhance`` with
``default``: its own final pass, which under the local light is carried from the fit's copy, and
its rendering). They alternate photo by photo, so a machine that slows down for a while slows all
three; the share is the median rendering over the median plain photo, and ``default_over_plain``
what the whole default photo takes beyond the plain one (negative: less). Each (checkout, thread
count) runs in its own fresh process, the checkouts alternating, ``--rounds`` times; the figure is
the median over rounds. One thread is what each worker of a folder run has, two what a one-photo
command has on a 2-core machine.

    env ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/render_share.py \\
        --baseline-source /tmp/before --output benchmarks/results/render_share_avx2_emulated.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import common

# What turns the default into the paper's rendering of the same fit.
PLAIN = {"gamma": 0.4, "tone_mapping": "global", "denoise": "off"}


def worker(paths: list[str], threads: int, repeats: int) -> dict:
    """Median seconds of the plain-rendered photo and of the default's rendering, in this process."""
    import torch

    from rrdnet_cli import enhance, load_config, runtime
    from rrdnet_cli.result import from_maps

    runtime.tune_allocator()  # as the rrdnet command does
    torch.set_num_threads(threads)
    plain, default = load_config("default", device="cpu", **PLAIN), load_config("default", device="cpu")
    options = {
        "gamma_floor": default.gamma_floor,
        "denoise": default.denoise,
        "tone_mapping": default.tone_mapping,
        "removed": False,
    }
    images = [common.to_tensor(common.load_rgb(Path(path))) for path in paths]
    enhance(images[0], plain, reflectance=False)  # one-off costs: lazy imports, kernel set-up
    photos, renders, wholes = [], [], []
    for _ in range(repeats):
        for image in images:
            start = time.perf_counter()
            fitted = enhance(image, plain, reflectance=False)
            photos.append(time.perf_counter() - start)
            start = time.perf_counter()
            maps = (fitted.image, fitted.illumination, None, fitted.noise, fitted.losses)
            from_maps(*maps, default.gamma, default.brightness, fitted.steps, **options)
            renders.append(time.perf_counter() - start)
            start = time.perf_counter()
            enhance(image, default, reflectance=False)
            wholes.append(time.perf_counter() - start)
    return {
        "photo_seconds": statistics.median(photos),
        "render_seconds": statistics.median(renders),
        "default_photo_seconds": statistics.median(wholes),
    }


def main() -> None:
    if common.answer_as_worker(worker, json.loads, int, int):
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=common.DEFAULT_DATA, help="benchmark images folder")
    parser.add_argument("--images", default="synthetic/low", help="folder under --data (768x512 photos)")
    parser.add_argument("--limit", type=int, default=4, help="photos taken from it (sorted)")
    parser.add_argument("--baseline-source", type=Path, help="a checkout whose rrdnet_cli is the baseline")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="passes over the photos in a process")
    parser.add_argument("--output", type=Path, default=common.RESULTS / "render_share.json")
    args = parser.parse_args()
    sources = common.checkouts(args.baseline_source)
    paths = sorted((args.data / args.images).iterdir())[: args.limit]
    records = []
    for threads in (int(count) for count in args.threads.split(",")):
        answers: dict[str, list[dict]] = {name: [] for name in sources}
        for _ in range(args.rounds):
            for name, source in sources.items():
                listed = json.dumps([str(path) for path in paths])
                answers[name].append(common.run_in_checkout(source, __file__, listed, str(threads), str(args.repeats)))
        record: dict = {"threads": threads}
        for name, rounds in answers.items():
            photo = statistics.median(answer["photo_seconds"] for answer in rounds)
            render = statistics.median(answer["render_seconds"] for answer in rounds)
            record[name] = {"photo_seconds": round(photo, 4), "render_seconds": round(render, 4)}
            record[name]["render_share"] = round(render / photo, 3)
            # The whole default photo (its own final pass and rendering) against the same fit
            # rendered the paper's way: what the default's rendering adds in the end.
            whole = statistics.median(answer["default_photo_seconds"] for answer in rounds)
            record[name]["default_photo_seconds"] = round(whole, 4)
            record[name]["default_over_plain"] = round(whole / photo - 1, 3)
            record[name]["rounds"] = rounds
        print("  " + json.dumps({key: value for key, value in record.items()}), file=sys.stderr)
        records.append(record)
    common.publish(
        {
            "images": [str(path.relative_to(args.data)) for path in paths],
            "records": records,
            "sources": {name: str(source) for name, source in sources.items()},
            "machine": common.machine(jobs=1),
            "arguments": common.arguments_of(args),
        },
        args.output,
    )


if __name__ == "__main__":
    main()
