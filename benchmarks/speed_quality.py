"""Speed and fidelity of the ``default`` preset against ``paper``.

For each chosen image:
  * fidelity, at a reduced size (``--max-side``, since a 1000-step paper run at full size takes
    15-25 minutes here): PSNR/SSIM of ``default`` against ``paper`` (paper outputs are cached in
    ``benchmarks/cache/``) and, for the synthetic pairs, of both against the ground truth;
  * speed, at full size: ``default``'s time and peak RSS, and ``paper``'s projected time (its
    measured seconds per step x its steps, measured in the same run), plus the seconds per step of
    a reference-like loop (the published code's maths and habits: priors recomputed each step,
    default allocator, contiguous layout) to show paper mode's per-step speed-up.
Plus one synthetic 12-megapixel image (a benchmark photo upscaled): time and peak RSS.

With ``--baseline KEY=VALUE,...`` (e.g. ``iterations=200,initial_weights=random,gamma=0.4,denoise=off``:
the settings of an earlier default, as overrides of the preset, passed to ``load_config`` as they
are) it also compares that baseline with the preset at full size on ``--compare-images``, the two
alternating photo by photo (and which goes first alternating too) so both share the machine's
noise: per photo the fresh-process seconds, the in-batch ('again') seconds, their ratio and peak
RSS; and the baseline's fidelity to ``paper`` beside the preset's. ``--precision fp32`` forces
the fp32 path everywhere (as on CPUs without native bf16). ``--cached-only`` skips fidelity images
whose ``paper`` reference is not cached yet (one takes 7-25 minutes here).

Every record carries the machine it ran on (``common.machine``: CPU model and features, usable
cores, torch threads, jobs).

Every measured case runs in a fresh subprocess, so peak RSS is its own and process-wide settings
(allocator tuning) do not leak between cases. Prints one JSON line; the full record goes to
``benchmarks/results/speed_quality.json``.

    python benchmarks/speed_quality.py [--images N|PATHS] [--speed-images N|PATHS] [--max-side 384]
        [--baseline K=V,... --compare-images N|PATHS] [--precision fp32] [--cached-only] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from rrdnet_cli import evaluate  # noqa: E402

import common  # noqa: E402

RESULTS = HERE / "results" / "speed_quality.json"
# The 8 synthetic pairs and one photo of each real set (a paper run takes 7-8 minutes at 384 px).
FIDELITY_IMAGES = ",".join(
    [f"synthetic/low/kodim0{number}.png" for number in range(1, 9)] + ["real/lol_low/1.png", "real/dicm/01.jpg"]
)


# ----------------------------------------------------------------------------------------------
# Worker side: one case per process.


def _input_rgb(spec: dict) -> np.ndarray:
    rgb = common.load_rgb(Path(spec["image"]), spec.get("max_side"))
    if spec.get("upscale_to"):
        from PIL import Image

        width, height = spec["upscale_to"]
        rgb = np.asarray(Image.fromarray(rgb).resize((width, height), Image.BICUBIC)).copy()
    return rgb


def _worker_enhance(spec: dict) -> dict:
    import torch

    from rrdnet_cli import enhance, load_config, runtime

    runtime.tune_allocator()  # as the rrdnet command does
    rgb = _input_rgb(spec)
    image = common.to_tensor(rgb)
    del rgb
    config = load_config(spec["preset"], device="cpu", **spec.get("overrides", {}))
    start = time.perf_counter()
    # As `rrdnet enhance` without maps, decompositions or sheets: no reflectance at full size.
    enhancement = enhance(image, config, reflectance=False)
    seconds = time.perf_counter() - start
    if spec.get("save"):
        np.save(spec["save"], common.to_array(enhancement.result))
    answer = {"seconds": seconds, "steps": enhancement.steps, "peak_rss_mib": common.peak_rss_mib()}
    if spec.get("again"):
        # The same image once more in this process: what each image after the first of a batch
        # costs (the first pays one-off costs: lazy imports, first allocations, oneDNN's kernel set-up).
        start = time.perf_counter()
        enhance(image, config, reflectance=False)
        answer["seconds_again"] = time.perf_counter() - start
    return {
        **answer,
        "width": image.shape[-1],
        "height": image.shape[-2],
        "threads": torch.get_num_threads(),
    }


def _worker_paper_steps(spec: dict) -> dict:
    """Seconds per step of the paper preset (median of the steps after the first)."""
    from rrdnet_cli import enhance, load_config, runtime

    runtime.tune_allocator()  # as the rrdnet command does
    image = common.to_tensor(_input_rgb(spec))
    stamps = []
    config = load_config("paper", device="cpu", iterations=spec["steps"] + 1)
    start = time.perf_counter()
    enhance(image, config, on_step=lambda step, loss: stamps.append(time.perf_counter()))
    total = time.perf_counter() - start
    durations = np.diff(stamps)
    per_step = float(np.median(durations))
    # What a run costs besides its steps (priors, first step's warm-up, final pass).
    overhead = total - per_step * len(stamps)
    return {"seconds_per_step": per_step, "overhead_seconds": overhead, "peak_rss_mib": common.peak_rss_mib()}


def _worker_reference_steps(spec: dict) -> dict:
    """Seconds per step of a loop written the way the published code is (median after the first)."""
    durations = common.reference_like_step_seconds(common.to_tensor(_input_rgb(spec)), spec["steps"] + 1)
    return {"seconds_per_step": float(np.median(durations[1:])), "peak_rss_mib": common.peak_rss_mib()}


WORKERS = {
    "enhance": _worker_enhance,
    "paper_steps": _worker_paper_steps,
    "reference_steps": _worker_reference_steps,
}


def run_case(spec: dict) -> dict:
    """Run one case in a fresh interpreter and return its JSON answer."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"case {spec} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# Driver side.


def choose_images(data: Path, selection: str) -> list[Path]:
    """``selection``: a count (synthetic pairs first, then real photos) or comma-separated paths."""
    everything = sorted((data / "synthetic" / "low").glob("*.png"))
    everything += sorted((data / "real" / "lol_low").glob("*.png"))
    everything += sorted((data / "real" / "dicm").glob("*.jpg"))
    if selection.isdigit():
        return everything[: int(selection)]
    return [data / name.strip() for name in selection.split(",") if name.strip()]


def ground_truth(data: Path, image: Path) -> Path | None:
    truth = data / "synthetic" / "high" / image.name
    return truth if image.parent == data / "synthetic" / "low" and truth.is_file() else None


# Fidelity judges the fit: every result is rendered the paper's way (its fixed gamma, no denoising),
# so the default's own light choice and denoising do not count as distance from paper.
PAPER_RENDERING = {"gamma": 0.4, "denoise": "off"}


def fidelity(image: Path, data: Path, args: argparse.Namespace, workdir: Path) -> dict | None:
    """The preset's (and the baseline's) PSNR/SSIM from ``paper``'s result at ``--max-side``;
    ``None`` with ``--cached-only`` when ``paper``'s result is not cached."""
    rgb = common.load_rgb(image, args.max_side)
    started = time.perf_counter()
    reference = common.paper_reference(rgb, args.paper_steps, cached_only=args.cached_only)
    if reference is None:
        print(
            f"  skipped: no cached paper reference ({args.paper_steps} steps, {rgb.shape[1]}x{rgb.shape[0]})",
            file=sys.stderr,
        )
        return None
    paper, paper_seconds, cached = reference
    if not cached:
        print(f"  paper reference computed in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    record = {"image": str(image.relative_to(data)), "size": [rgb.shape[1], rgb.shape[0]]}
    truth_path = ground_truth(data, image)
    truth = None if truth_path is None else common.load_rgb(truth_path, args.max_side).astype(np.float32) / 255.0
    results = {"paper": paper}
    for name, overrides in runs_compared(args).items():
        save = workdir / f"{name}.npy"
        answer = run_case(
            {
                "kind": "enhance",
                "preset": args.preset,
                "overrides": {**overrides, **PAPER_RENDERING},
                "image": str(image),
                "max_side": args.max_side,
                "save": str(save),
            }
        )
        results[name] = np.load(save)
        record[f"{name}_seconds"] = answer["seconds"]
        record[f"{name}_steps"] = answer["steps"]
        record[f"{name}_psnr_vs_paper"] = evaluate.psnr(results[name], paper)
        record[f"{name}_ssim_vs_paper"] = evaluate.ssim(results[name], paper)
    if truth is not None:
        for name, result in results.items():
            aligned = evaluate.gt_mean_aligned(result, truth)
            record[f"{name}_psnr_vs_gt"] = evaluate.psnr(result, truth)
            record[f"{name}_ssim_vs_gt"] = evaluate.ssim(result, truth)
            record[f"{name}_psnr_vs_gt_mean_aligned"] = evaluate.psnr(aligned, truth)
            record[f"{name}_ssim_vs_gt_mean_aligned"] = evaluate.ssim(aligned, truth)
    return record


def runs_compared(args: argparse.Namespace) -> dict[str, dict]:
    """``{"default": overrides}`` (the preset, with ``--precision``), plus ``"baseline"`` with ``--baseline``."""
    precision = {"precision": args.precision} if args.precision else {}
    runs = {"default": dict(precision)}
    if args.baseline is not None:
        runs["baseline"] = {**args.baseline, **precision}
    return runs


def compare(index: int, image: Path, data: Path, args: argparse.Namespace) -> dict:
    """Baseline and preset on one photo at full size, each in a fresh process and once more in it;
    the order alternates with ``index`` so neither always runs first."""
    runs = list(runs_compared(args).items())
    order = runs if index % 2 == 0 else runs[::-1]
    answers = {}
    for name, overrides in order:
        answers[name] = run_case(
            {"kind": "enhance", "preset": args.preset, "overrides": overrides, "image": str(image), "again": True}
        )
    default, baseline = answers["default"], answers["baseline"]
    record = {
        "image": str(image.relative_to(data)),
        "size": [default["width"], default["height"]],
        "first": order[0][0],
    }
    for name, answer in answers.items():
        record.update(
            {
                f"{name}_seconds": answer["seconds"],
                f"{name}_seconds_in_batch": answer["seconds_again"],
                f"{name}_steps": answer["steps"],
                f"{name}_peak_rss_mib": answer["peak_rss_mib"],
            }
        )
    record["ratio"] = baseline["seconds"] / default["seconds"]
    record["ratio_in_batch"] = baseline["seconds_again"] / default["seconds_again"]
    return record


def speed(image: Path, data: Path, args: argparse.Namespace) -> dict:
    default = run_case(
        {
            "kind": "enhance",
            "preset": args.preset,
            "overrides": runs_compared(args)["default"],
            "image": str(image),
            "again": True,
        }
    )
    paper = run_case({"kind": "paper_steps", "image": str(image), "steps": args.timing_steps})
    record = {
        "image": str(image.relative_to(data)),
        "size": [default["width"], default["height"]],
        "default_seconds": default["seconds"],
        "default_seconds_in_batch": default["seconds_again"],
        "default_steps": default["steps"],
        "default_peak_rss_mib": default["peak_rss_mib"],
        "paper_seconds_per_step": paper["seconds_per_step"],
        "paper_projected_seconds": paper["seconds_per_step"] * args.paper_steps + paper["overhead_seconds"],
    }
    if args.reference_baseline:
        reference = run_case({"kind": "reference_steps", "image": str(image), "steps": args.timing_steps})
        record["reference_like_seconds_per_step"] = reference["seconds_per_step"]
        record["paper_step_speedup_vs_reference_like"] = reference["seconds_per_step"] / paper["seconds_per_step"]
    record["speedup_vs_paper"] = record["paper_projected_seconds"] / default["seconds"]
    return record


def summarise(
    fidelity_records: list[dict], speed_records: list[dict], compare_records: list[dict], large: dict | None, args
) -> dict:
    summary: dict = {
        "preset": args.preset,
        "precision": args.precision or "preset's",
        "baseline": args.baseline,
        "fidelity_max_side": args.max_side,
        "fidelity_images": len(fidelity_records),
        "speed_images": len(speed_records),
        "compare_images": len(compare_records),
    }
    names = list(runs_compared(args))
    for name in names if fidelity_records else []:
        values = [r[f"{name}_psnr_vs_paper"] for r in fidelity_records]
        summary[f"{name}_psnr_vs_paper_mean"] = statistics.fmean(values)
        summary[f"{name}_psnr_vs_paper_worst"] = min(values)
        summary[f"{name}_ssim_vs_paper_mean"] = statistics.fmean(r[f"{name}_ssim_vs_paper"] for r in fidelity_records)
    paired = [r for r in fidelity_records if "default_psnr_vs_gt" in r]
    for key in ("psnr_vs_gt", "psnr_vs_gt_mean_aligned", "ssim_vs_gt", "ssim_vs_gt_mean_aligned") if paired else ():
        for name in names + ["paper"]:
            summary[f"{name}_{key}_mean"] = statistics.fmean(r[f"{name}_{key}"] for r in paired)
    if compare_records:
        for key in ("ratio", "ratio_in_batch"):
            values = [r[key] for r in compare_records]
            summary[f"compare_{key}_mean"] = statistics.fmean(values)
            summary[f"compare_{key}_min"] = min(values)
            summary[f"compare_{key}_max"] = max(values)
        for name in names:
            summary[f"compare_{name}_seconds_mean"] = statistics.fmean(r[f"{name}_seconds"] for r in compare_records)
            summary[f"compare_{name}_seconds_in_batch_mean"] = statistics.fmean(
                r[f"{name}_seconds_in_batch"] for r in compare_records
            )
            summary[f"compare_{name}_peak_rss_mib_max"] = max(r[f"{name}_peak_rss_mib"] for r in compare_records)
    if speed_records:
        summary["default_seconds_mean"] = statistics.fmean(r["default_seconds"] for r in speed_records)
        summary["default_seconds_max"] = max(r["default_seconds"] for r in speed_records)
        summary["default_seconds_in_batch_mean"] = statistics.fmean(
            r["default_seconds_in_batch"] for r in speed_records
        )
        summary["speedup_vs_paper_mean"] = statistics.fmean(r["speedup_vs_paper"] for r in speed_records)
        summary["speedup_vs_paper_min"] = min(r["speedup_vs_paper"] for r in speed_records)
        summary["default_peak_rss_mib_max"] = max(r["default_peak_rss_mib"] for r in speed_records)
        if args.reference_baseline:
            summary["paper_step_speedup_vs_reference_like_mean"] = statistics.fmean(
                r["paper_step_speedup_vs_reference_like"] for r in speed_records
            )
    if large:
        summary["large_size"] = large["size"]
        summary["large_seconds"] = large["seconds"]
        summary["large_peak_rss_mib"] = large["peak_rss_mib"]
        if "baseline" in large:
            summary["large_baseline_seconds"] = large["baseline"]["seconds"]
            summary["large_baseline_peak_rss_mib"] = large["baseline"]["peak_rss_mib"]
            summary["large_speedup"] = round(large["baseline"]["seconds"] / large["seconds"], 3)
    return {key: (round(value, 3) if isinstance(value, float) else value) for key, value in summary.items()}


def overrides_of(text: str) -> dict:
    """``"iterations=200,gamma=0.4,denoise=off"`` -> ``{"iterations": 200, "gamma": 0.4, "denoise": "off"}``."""
    overrides = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise argparse.ArgumentTypeError(f"{item!r}: expected KEY=VALUE")
        for kind in (int, float):
            try:
                overrides[key.strip()] = kind(value)
                break
            except ValueError:
                continue
        else:
            overrides[key.strip()] = value.strip()
    return overrides


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=common.DEFAULT_DATA, help="benchmark images folder")
    parser.add_argument("--preset", default="default", help="preset (or YAML) measured against paper")
    parser.add_argument(
        "--images",
        "--fidelity-images",
        dest="images",
        default=FIDELITY_IMAGES,
        help="fidelity images: a count or comma-separated paths under --data (0: none)",
    )
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="skip fidelity images whose paper reference is not cached (never compute one)",
    )
    parser.add_argument(
        "--speed-images", default="8", help="full-size timing images against paper: a count or paths (0: none)"
    )
    parser.add_argument(
        "--baseline",
        type=overrides_of,
        metavar="K=V,...",
        help="an earlier default as overrides of --preset, e.g. iterations=200,gamma=0.4: "
        "compared with the preset on --compare-images",
    )
    parser.add_argument(
        "--compare-images", default="8", help="full-size images of the baseline comparison: a count or paths"
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16", "auto"),
        help="force this precision on the preset and the baseline (fp32: as on CPUs without native bf16)",
    )
    parser.add_argument("--max-side", type=int, default=384, help="longer side for the fidelity part")
    parser.add_argument("--paper-steps", type=int, default=1000, help="steps of the paper preset")
    parser.add_argument("--timing-steps", type=int, default=5, help="paper steps timed per image")
    parser.add_argument(
        "--no-reference-baseline",
        dest="reference_baseline",
        action="store_false",
        help="skip timing the reference-like loop",
    )
    parser.add_argument(
        "--large",
        default="synthetic/low/kodim01.png",
        help="photo upscaled to --large-size for the large-image case ('' to skip)",
    )
    parser.add_argument("--large-size", default="4000x3000", help="WIDTHxHEIGHT of the large case")
    parser.add_argument(
        "--output", "--results", dest="results", type=Path, default=RESULTS, help="where the full record goes"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.worker and not args.data.is_dir():
        parser.error(f"{args.data}: no such folder (use --data)")
    return args


def check_configs(args: argparse.Namespace) -> None:
    """Load every config the run will use now, so an unknown key fails in one line (exit 2)
    before anything is measured."""
    from rrdnet_cli import load_config
    from rrdnet_cli.errors import ConfigError

    for name, overrides in runs_compared(args).items():
        try:
            load_config(args.preset, device="cpu", **overrides)
        except ConfigError as error:
            print(f"speed_quality.py: {name} ({args.preset} with {overrides}): {error}", file=sys.stderr)
            sys.exit(2)


def measure_all(args: argparse.Namespace) -> tuple[list, list, list, dict | None]:
    fidelity_records, speed_records, compare_records, large = [], [], [], None
    with tempfile.TemporaryDirectory() as scratch:
        for image in choose_images(args.data, args.images) if args.images != "0" else []:
            print(f"fidelity {image.name} ...", file=sys.stderr)
            record = fidelity(image, args.data, args, Path(scratch))
            if record is not None:
                fidelity_records.append(record)
                print("  " + json.dumps(record), file=sys.stderr)
    for image in choose_images(args.data, args.speed_images) if args.speed_images != "0" else []:
        print(f"speed {image.name} ...", file=sys.stderr)
        speed_records.append(speed(image, args.data, args))
        print("  " + json.dumps(speed_records[-1]), file=sys.stderr)
    if args.baseline is not None:
        for index, image in enumerate(choose_images(args.data, args.compare_images)):
            print(f"compare {image.name} ...", file=sys.stderr)
            compare_records.append(compare(index, image, args.data, args))
            print("  " + json.dumps(compare_records[-1]), file=sys.stderr)
    if args.large:
        width, height = (int(side) for side in args.large_size.lower().split("x"))
        print(f"large {width}x{height} ...", file=sys.stderr)
        # With --baseline the baseline runs on the large photo too, first, in the same run.
        records = {}
        for name, overrides in reversed(list(runs_compared(args).items())):
            answer = run_case(
                {
                    "kind": "enhance",
                    "preset": args.preset,
                    "overrides": overrides,
                    "image": str(args.data / args.large),
                    "upscale_to": [width, height],
                }
            )
            records[name] = {"image": args.large, "size": [width, height], **answer}
            print(f"  {name}: " + json.dumps(records[name]), file=sys.stderr)
        large = records["default"]
        if "baseline" in records:
            large["baseline"] = records["baseline"]
    return fidelity_records, speed_records, compare_records, large


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(WORKERS[spec["kind"]](spec)))
        return 0
    check_configs(args)
    machine = common.machine(jobs=1)
    fidelity_records, speed_records, compare_records, large = measure_all(args)
    summary = summarise(fidelity_records, speed_records, compare_records, large, args)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "summary": summary,
        "machine": machine,
        "fidelity": fidelity_records,
        "speed": speed_records,
        "compare": compare_records,
        "large": large,
        "arguments": common.arguments_of(args, leave_out=("worker",)),
    }
    args.results.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({**summary, "machine": machine}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
