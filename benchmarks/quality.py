"""Quality of the light level: fixed gamma 0.4 against gamma "auto", on the shared benchmark data.

    python benchmarks/quality.py [--data ../shared/data] [--config PRESET] [--iterations N]
                                 [--max-side 384] [--limit N] [--targets 0.3,0.35,...]

For every image of ``synthetic/low`` (paired with ``synthetic/high``) and of ``real/*`` it fits
the decomposition once (cached in ``benchmarks/cache/`` as a saved decomposition, keyed by the
pixels and every config value that affects the fit), then renders it with gamma 0.4, with gamma
"auto" (the target brightness ``--auto-brightness``, default the package's) and with each target
of ``--targets``: only the recombination changes, so every variant shares one decomposition.
Each rendering is rounded to 8 bits, as a written file is, and scored with ``rrdnet_cli.evaluate``
(PSNR, SSIM raw and GT-mean aligned against the reference; NIQE; mean brightness). With
``--floors``, gamma "auto" is also rendered with other lower ends of its gamma range, to show
what the package's floor (``light.GAMMA_MIN``) trades.

Prints one JSON line and writes it, indented, to ``benchmarks/results/quality.json``. The sweep
over targets is what chose the package's default target (README, "Light level").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rrdnet_cli import decomposition, images, light  # noqa: E402
from rrdnet_cli.config import AUTO_BRIGHTNESS, DEFAULT_PRESET, load_config  # noqa: E402
from rrdnet_cli.evaluate import score_images  # noqa: E402
from rrdnet_cli.pipeline import enhance  # noqa: E402

FIXED_GAMMA = 0.4
TIE_DB = 0.1
TIE_NIQE = 0.05
# Config keys that change the recombination only, not the fit: left out of the cache key.
LIGHT_KEYS = ("gamma", "brightness", "device")
SUMMARY_METRICS = ("psnr", "psnr_gtmean", "ssim", "ssim_gtmean", "niqe", "brightness", "gamma")


def load_picture(path: Path, max_side: int) -> images.LoadedImage:
    """Read ``path``; downscale (Lanczos) to ``max_side`` and round to 8 bits, a photo in its own right."""
    loaded = images.read_image(path)
    height, width = loaded.pixels.shape[-2:]
    if max_side and max(height, width) > max_side:
        picture = images.to_pil(loaded.pixels)
        scale = max_side / max(height, width)
        picture = picture.resize((round(width * scale), round(height * scale)), Image.Resampling.LANCZOS)
        array = np.asarray(picture, dtype=np.float32) / 255.0
        loaded.pixels = torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)
        loaded.alpha = None
    return loaded


def to_array(pixels: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` in [0, 1] -> ``(H, W, 3)`` float64 rounded to 8-bit levels, as a written PNG."""
    return np.round(pixels[0].permute(1, 2, 0).double().clamp(0, 1).numpy() * 255.0) / 255.0


def cached_decomposition(loaded, name: str, config, cache: Path) -> tuple[decomposition.Decomposition, float, bool]:
    """The decomposition of ``loaded``: from the cache, or fitted now (seconds, whether cached)."""
    fit_settings = {key: value for key, value in config.to_dict().items() if key not in LIGHT_KEYS}
    digest = hashlib.sha256(
        loaded.pixels.numpy().tobytes() + json.dumps(fit_settings, sort_keys=True).encode()
    ).hexdigest()[:16]
    height, width = loaded.pixels.shape[-2:]
    path = cache / f"{Path(name).stem}-{width}x{height}-{digest}{decomposition.SUFFIX}"
    if path.is_file():
        return decomposition.load(path), 0.0, True
    started = time.perf_counter()
    enhancement = enhance(loaded.pixels, config.replace(gamma=FIXED_GAMMA))
    seconds = time.perf_counter() - started
    saved = decomposition.Decomposition.from_enhancement(enhancement, loaded, config, name)
    decomposition.save(saved, path)
    return saved, seconds, False


def render(saved: decomposition.Decomposition, mode: dict):
    """``(pixels, gamma, reached)`` of one rendering: ``{"gamma": G}``, ``{"brightness": T}``, or
    ``{"brightness": T, "floor": F}`` (gamma auto searched over [F, light.GAMMA_MAX])."""
    if "floor" in mode:
        choice = light.gamma_for_brightness(
            saved.image, saved.illumination, saved.noise, mode["brightness"], gamma_range=(mode["floor"], light.GAMMA_MAX)
        )
        pixels = light.render_choice(saved.image, saved.illumination, saved.noise, choice)[0]
    else:
        relit = decomposition.relight(saved, **mode)
        pixels, choice = relit.result, relit.light
    return pixels, choice.gamma, None if choice.target is None else choice.reached


def paired_niqe(rows: dict[str, list[dict]], mode: str, baseline: str = "fixed_0.4") -> dict:
    """NIQE of ``mode`` minus ``baseline``, image by image: mean, its standard error, and on how
    many images ``mode`` scored better (lower)."""
    differences = np.array([a["niqe"] - b["niqe"] for a, b in zip(rows[mode], rows[baseline])])
    error = differences.std(ddof=1) / math.sqrt(len(differences)) if len(differences) > 1 else math.nan
    return {
        "mean": round(float(differences.mean()), 4),
        "standard_error": round(float(error), 4),
        "better_on": int((differences < 0).sum()),
        "images": len(differences),
    }


def summarise(rows: list[dict]) -> dict:
    summary = {"count": len(rows)}
    for metric in SUMMARY_METRICS:
        values = [row[metric] for row in rows if row.get(metric) is not None]
        summary[metric] = round(float(np.mean(values)), 4) if values else None
    return summary


def images_of(data: Path, limit: int) -> dict[str, list[tuple[str, Path, Path | None]]]:
    """``{set: [(name, low, reference or None)]}``, at most ``limit`` per folder (0: all)."""
    def first(paths):
        paths = sorted(path for path in paths if path.suffix.lower() in images.IMAGE_SUFFIXES)
        return paths[:limit] if limit else paths

    synthetic = [
        (f"synthetic/{path.name}", path, data / "synthetic" / "high" / path.name)
        for path in first((data / "synthetic" / "low").iterdir())
    ]
    real = []
    for folder in sorted(path for path in (data / "real").iterdir() if path.is_dir()):
        real += [(f"real/{folder.name}/{path.name}", path, None) for path in first(folder.iterdir())]
    return {"synthetic": synthetic, "real": real}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--config", default=DEFAULT_PRESET, help="preset name or YAML file")
    parser.add_argument("--iterations", type=int, help="Adam steps (default: the config's)")
    parser.add_argument("--max-side", type=int, default=384, help="downscale longer side to this (0: full size)")
    parser.add_argument("--limit", type=int, default=0, help="at most N images per folder (0: all)")
    parser.add_argument("--targets", default="0.3,0.35,0.4,0.45,0.5,0.55,0.6", help="brightness targets to sweep")
    parser.add_argument("--auto-brightness", type=float, default=AUTO_BRIGHTNESS, help="target of gamma auto")
    parser.add_argument("--floors", default="", help="other lowest gammas to try for gamma auto, e.g. 0.2,0.3")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "cache")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "quality.json")
    return parser.parse_args()


def _numbers(text: str) -> list[float]:
    return sorted({float(part) for part in text.split(",") if part.strip()})


def rendering_modes(arguments: argparse.Namespace, targets: list[float], floors: list[float]) -> dict:
    """Every rendering scored, by name: the input itself, gamma 0.4, gamma auto, the sweeps."""
    modes = {"input": None, "fixed_0.4": {"gamma": FIXED_GAMMA}, "auto": {"brightness": arguments.auto_brightness}}
    modes.update({f"target_{target:g}": {"brightness": target} for target in targets})
    modes.update({f"floor_{floor:g}": {"brightness": arguments.auto_brightness, "floor": floor} for floor in floors})
    return modes


def score_all(arguments: argparse.Namespace, config, modes: dict) -> tuple[dict, list[float]]:
    """``{set: {mode: [row per image]}}`` and the seconds of each fit computed (not cached)."""
    rows: dict[str, dict[str, list[dict]]] = {}
    fit_seconds = []
    for set_name, pictures in images_of(arguments.data, arguments.limit).items():
        rows[set_name] = {mode: [] for mode in modes}
        for name, low_path, reference_path in pictures:
            loaded = load_picture(low_path, arguments.max_side)
            reference = None
            if reference_path is not None:
                reference = to_array(load_picture(reference_path, arguments.max_side).pixels)
            saved, seconds, cached = cached_decomposition(loaded, name, config, arguments.cache)
            if not cached:
                fit_seconds.append(seconds)
            for mode, setting in modes.items():
                if setting is None:
                    pixels, gamma, reached = loaded.pixels, None, None
                else:
                    pixels, gamma, reached = render(saved, setting)
                scores = score_images(name, to_array(pixels), reference).__dict__
                rows[set_name][mode].append({**scores, "gamma": gamma, "reached": reached})
            print(f"{name}: fitted in {seconds:.0f} s" if not cached else f"{name}: cached", file=sys.stderr)
    return rows, fit_seconds


def best_target(sweep: dict, targets: list[float]) -> float:
    """The default target the sweep argues for.

    Targets beyond what a decomposition can reach all render at the same gamma and tie, so the
    choice is: among the targets within TIE_DB of the best synthetic PSNR, those within TIE_NIQE
    of their best real NIQE; of these the lowest (the gentlest brightening).
    """
    def psnr_of(target):
        return sweep[f"{target:g}"]["synthetic_psnr"] or -math.inf

    def niqe_of(target):
        return sweep[f"{target:g}"]["real_niqe"] or math.inf

    best_psnr = max(psnr_of(target) for target in targets)
    by_psnr = [target for target in targets if psnr_of(target) >= best_psnr - TIE_DB]
    best_niqe = min(niqe_of(target) for target in by_psnr)
    return min(target for target in by_psnr if niqe_of(target) <= best_niqe + TIE_NIQE)


def main() -> None:
    arguments = parse_arguments()
    config = load_config(arguments.config, iterations=arguments.iterations, device=arguments.device)
    targets = sorted(set(_numbers(arguments.targets)) | {arguments.auto_brightness})
    floors = _numbers(arguments.floors)
    started = time.perf_counter()
    rows, fit_seconds = score_all(arguments, config, rendering_modes(arguments, targets, floors))

    summary = {set_name: {mode: summarise(mode_rows) for mode, mode_rows in by_mode.items()} for set_name, by_mode in rows.items()}
    sweep = {
        f"{target:g}": {
            "synthetic_psnr": summary["synthetic"][f"target_{target:g}"]["psnr"],
            "synthetic_psnr_gtmean": summary["synthetic"][f"target_{target:g}"]["psnr_gtmean"],
            "real_niqe": summary["real"][f"target_{target:g}"]["niqe"],
        }
        for target in targets
    }
    synthetic, real = summary["synthetic"], summary["real"]
    record = {
        "benchmark": "quality",
        "config": arguments.config,
        "iterations": config.iterations,
        "max_side": arguments.max_side,
        "limit": arguments.limit,
        "images": {set_name: len(by_mode["input"]) for set_name, by_mode in rows.items()},
        "auto_brightness": arguments.auto_brightness,
        "best_target": best_target(sweep, targets),
        # Share of images whose auto target was reachable (the others render at the brightest gamma).
        "auto_target_reached": {
            set_name: round(float(np.mean([row["reached"] for row in by_mode["auto"]])), 3)
            for set_name, by_mode in rows.items()
        },
        "synthetic": {mode: synthetic[mode] for mode in ("input", "fixed_0.4", "auto")},
        "real": {mode: real[mode] for mode in ("input", "fixed_0.4", "auto")},
        "sweep": sweep,
        "goals": {
            "psnr_gain_db": round(synthetic["auto"]["psnr"] - synthetic["fixed_0.4"]["psnr"], 3),
            "auto_beats_fixed_by_2db": synthetic["auto"]["psnr"] - synthetic["fixed_0.4"]["psnr"] >= 2.0,
            "niqe_change_real": round(real["auto"]["niqe"] - real["fixed_0.4"]["niqe"], 4),
            "auto_no_worse_niqe_real": real["auto"]["niqe"] <= real["fixed_0.4"]["niqe"],
            "niqe_change_real_paired": paired_niqe(rows["real"], "auto"),
        },
        "floors": {
            f"{floor:g}": {
                "synthetic_psnr_gain_db": round(synthetic[f"floor_{floor:g}"]["psnr"] - synthetic["fixed_0.4"]["psnr"], 3),
                "niqe_change_real_paired": paired_niqe(rows["real"], f"floor_{floor:g}"),
            }
            for floor in floors
        },
        "fits": {"computed": len(fit_seconds), "mean_seconds": round(float(np.mean(fit_seconds)), 1) if fit_seconds else None},
        "seconds": round(time.perf_counter() - started, 1),
        "per_file": rows,
    }
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(record, indent=1) + "\n")
    line = {key: value for key, value in record.items() if key != "per_file"}
    print(json.dumps(line))




if __name__ == "__main__":
    main()
