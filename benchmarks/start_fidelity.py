"""Fidelity to ``paper`` of the ``default`` fit from other starting weights: for trying a new start
(``training/train_initial_weights.py``) before it replaces the shipped one.

For each start (an ``.npz`` written by the training script; ``shipped`` for the package's own), each
set of ``--overrides KEY=VALUE,...`` (repeatable; none: the preset as it is) and each photo,
``default`` is fitted from that start (fp32, with those overrides) and
rendered as ``paper`` is (gamma 0.4, no denoising), at ``--max-side``, and scored in PSNR against
``paper``'s result. The ``paper`` results are the ones ``speed_quality.py`` caches in
``benchmarks/cache/`` (a photo without one is skipped: computing it takes 25 minutes here). One
thread, in this process. Prints one JSON line and writes the figures to ``--output``.

    .venv/bin/python benchmarks/start_fidelity.py --starts shipped,/tmp/start.npz \\
        [--overrides iterations=24,learning_rate=0.007 --overrides frozen_layers=0 ...] [--output FILE]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from speed_quality import FIDELITY_IMAGES, overrides_of

from rrdnet_cli import enhance, evaluate, load_config, weights

import common

# The four photos the committed fidelity figures use: the hardest of the benchmark set.
PHOTOS = "real/lol_low/1.png,real/dicm/01.jpg,synthetic/low/kodim01.png,real/dicm/12.jpg"


def fidelity_from(start: str, photos: dict[str, tuple], overrides: dict) -> dict[str, float]:
    """PSNR from ``paper`` per photo of the ``default`` fit from ``start``."""
    shipped = weights.LEARNED_WEIGHTS
    weights.LEARNED_WEIGHTS = shipped if start == "shipped" else Path(start)
    weights._learned_state.cache_clear()
    try:
        config = load_config("default", device="cpu", precision="fp32", gamma=0.4, denoise="off", **overrides)
        scores = {}
        for name, (rgb, paper) in photos.items():
            result = enhance(common.to_tensor(rgb), config, reflectance=False).result
            scores[name] = round(evaluate.psnr(common.to_array(result), paper), 3)
        return scores
    finally:
        weights.LEARNED_WEIGHTS = shipped
        weights._learned_state.cache_clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=common.DEFAULT_DATA, help="benchmark images folder")
    parser.add_argument("--starts", default="shipped", help="comma-separated .npz files, or shipped")
    parser.add_argument("--images", default=PHOTOS, help=f"comma-separated, under --data (all: {FIDELITY_IMAGES})")
    parser.add_argument(
        "--overrides", type=overrides_of, action="append", help="KEY=VALUE,... of the preset (repeatable)"
    )
    parser.add_argument("--max-side", type=int, default=384)
    parser.add_argument("--paper-steps", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=common.RESULTS / "start_fidelity.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    override_sets = args.overrides or [{}]
    photos, skipped = {}, []
    for name in args.images.split(","):
        rgb = common.load_rgb(args.data / name, args.max_side)
        reference = common.paper_reference(rgb, args.paper_steps, cached_only=True)
        if reference is None:
            skipped.append(name)
        else:
            photos[name] = (rgb, reference[0])
    records = []
    for start in args.starts.split(","):
        for overrides in override_sets:
            scores = fidelity_from(start, photos, overrides)
            values = list(scores.values())
            summary = {"mean": round(statistics.mean(values), 3), "worst": min(values)} if values else {}
            records.append({"start": start, "overrides": overrides, "psnr_vs_paper": scores, **summary})
    common.publish(
        {
            "benchmark": "start_fidelity",
            "overrides": override_sets if len(override_sets) > 1 else override_sets[0],
            "max_side": args.max_side,
            "records": records,
            "skipped_without_paper_reference": skipped,
            "machine": common.machine(jobs=1),
            "arguments": common.arguments_of(args),
        },
        args.output,
    )


if __name__ == "__main__":
    main()
