"""Quality of the light level and of the rendering, against other ways to brighten a photo.

    python benchmarks/quality.py [--data ../shared/data] [--config PRESET] [--iterations N]
                                 [--max-side 384] [--limit N] [--targets 0.3,0.35,...]
                                 [--floors 0.2,0.3] [--sweep KEY=V1,V2 ...] [--sets real]
                                 [--output FILE]

For every image of ``synthetic/low`` (paired with ``synthetic/high``) and of ``real/*`` (``real/lol_low``
paired with ``real/lol_high``, the captured ground truth, where it holds the same name) it fits
the decomposition once (cached in ``benchmarks/cache/`` as a saved decomposition, keyed by the
pixels and every config value that affects the fit), then renders it several ways; only the
rendering changes, so every RRDNet variant shares one decomposition (fitted as the preset's own
rendering fits it: under the local light ``default``'s final pass carries the illumination from
the fit's copy, so the paper-style renderings below read that light too):

* ``default``: the ``--config`` preset's own rendering (``rrdnet_cli.result.from_maps`` with that
  config's render-time settings, ``RENDER_KEYS``: what ``rrdnet enhance`` writes);
* ``fixed_0.4``: the paper's rendering of the same fit: gamma 0.4, denoising off;
* ``auto`` and ``target_T``: gamma "auto" for ``--auto-brightness`` and for each of ``--targets``;
  ``floor_F``: gamma "auto" with other lower ends of its gamma range (``--floors``);
* ``sweep ...``: each combination of ``--sweep`` (render-time settings only);
* peers, on the same photos (``peers.py``; the optional extra ``[benchmarks]``): ``input`` (the
  dark photo itself), ``gamma_curve`` (one global ``x ** p``, ``p`` bisected to the mean brightness
  of ``default``'s result), ``clahe`` (OpenCV CLAHE on Lab's L, clip limit 2, 8x8 tiles) and
  ``zero_dce_pp`` (Zero-DCE++ with the weights of the MIT-licensed wheel neuro-low-light 0.1.0),
  ``lime`` and ``lime_bm3d`` (LIME from its paper, without and with its BM3D step: ``lime.py``;
  cached in ``benchmarks/cache/``). SCI is not among them: no installable package ships its weights.

Each rendering is rounded to 8 bits, as a written file is, and scored with ``rrdnet_cli.evaluate``
(PSNR, SSIM raw and GT-mean aligned against the reference; NIQE twice: ``niqe``, scikit-video's
variant that ``rrdnet eval`` prints, and ``niqe_basicsr``, BasicSR's MATLAB-like one that most papers
report (``niqe_basicsr.py``; left out when BasicSR is not installed); mean brightness). ``default``
is compared with every other rendering image by image: the mean paired difference and its standard
error, for both NIQEs on the real photos and SSIM and GT-mean-aligned PSNR on the synthetic pairs.
Each rendering also records the share of its pixels newly clipped to 8-bit white; each target of
the sweep, over the photos darker than it, the largest miss of the target and the largest share
newly clipped (the targets: within 0.01, at most 0.5 %).

How each rendering treats colour and blacks (``colour.py``, definitions also written in the JSON):
``hue_shift``, the chroma-weighted CIELAB hue shift from the input in degrees, and ``black_lift``,
the mean output luma where the input's luma is below 0.01 (pixel-weighted over a set). Real
captured pairs: ``real_pairs`` summarises PSNR and SSIM (raw and GT-mean aligned) over the real
photos that have a ground truth (LOL's), for every rendering.

Prints one JSON line and writes it, indented, to ``benchmarks/results/quality.json``. The sweep
over targets is what chose the package's default target (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
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
sys.path.insert(0, str(REPO / "benchmarks"))

import colour  # noqa: E402
import niqe_basicsr  # noqa: E402
import peers  # noqa: E402

from rrdnet_cli import decomposition, images, light, weights  # noqa: E402
from rrdnet_cli.config import AUTO_BRIGHTNESS, DEFAULT_PRESET, FIELDS, ConfigError, load_config  # noqa: E402
from rrdnet_cli.evaluate import score_images  # noqa: E402
from rrdnet_cli.pipeline import enhance  # noqa: E402
from rrdnet_cli.result import from_maps  # noqa: E402

import common  # noqa: E402

FIXED_GAMMA = 0.4
TIE_DB = 0.1
TIE_NIQE = 0.05
# Config keys that change the rendering only, not the fit: the ones --sweep may vary, left out of
# the cache key. Keys this rrdnet_cli does not have yet are harmless here (and gamma_floor is
# applied by this script while the package lacks it: render_config).
RENDER_KEYS = ("gamma", "brightness", "denoise", "gamma_floor", "tone_mapping")
LIGHT_KEYS = RENDER_KEYS + ("device",)
# The paper's rendering: its fixed gamma, no denoising (keys the config lacks are left out).
PAPER_RENDERING = {"gamma": FIXED_GAMMA, "denoise": "off"}
SUMMARY_METRICS = (
    "psnr",
    "psnr_gtmean",
    "ssim",
    "ssim_gtmean",
    "niqe",
    "niqe_basicsr",
    "brightness",
    "gamma",
    "hue_shift",
)
REPORTED = ("input", "fixed_0.4", "auto", "default", "gamma_curve", "clahe", "zero_dce_pp", "lime", "lime_bm3d")
SETS = ("synthetic", "real")
# default against every other rendering, image by image: which metrics, per set.
PAIRED_METRICS = {"synthetic": ("ssim", "psnr_gtmean"), "real": ("niqe", "niqe_basicsr")}
LOWER_IS_BETTER = {"niqe", "niqe_basicsr"}


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


def white(array: np.ndarray) -> np.ndarray:
    """Where ``array``'s (``to_array``'s) brightest channel is 8-bit white, ``(H, W)``."""
    return array.max(axis=2) >= 1.0


def newly_clipped(array: np.ndarray, white_before: np.ndarray) -> float:
    """Share of the pixels that are 8-bit white in ``array`` but were not (``white_before``, the
    input's ``white``): at most 0.5 % is allowed."""
    return float(np.mean(white(array) & ~white_before))


@functools.lru_cache(maxsize=1)
def learned_weights_digest() -> str:
    """The shipped start's SHA-256, read once per run rather than once per photo."""
    return hashlib.sha256(weights.LEARNED_WEIGHTS.read_bytes()).hexdigest()


def cached_decomposition(loaded, name: str, config, cache: Path) -> tuple[decomposition.Decomposition, float, bool]:
    """The decomposition of ``loaded``: from the cache, or fitted now (seconds, whether cached)."""
    fit_settings = {key: value for key, value in config.to_dict().items() if key not in LIGHT_KEYS}
    # The final pass depends on the rendering: the local light's may be carried from the fit's copy.
    fit_settings["light_follows_scene"] = config.light_follows_scene
    if config.initial_weights == "learned":
        # The shipped start is no setting: fits made from earlier weights must not be reused.
        fit_settings["learned_weights"] = learned_weights_digest()
    digest = hashlib.sha256(
        loaded.pixels.numpy().tobytes() + json.dumps(fit_settings, sort_keys=True).encode()
    ).hexdigest()[:16]
    height, width = loaded.pixels.shape[-2:]
    path = cache / f"{Path(name).stem}-{width}x{height}-{digest}{decomposition.SUFFIX}"
    if path.is_file():
        return decomposition.load(path), 0.0, True
    started = time.perf_counter()
    # Fitted as the preset renders, so that its own rendering of the decomposition is what
    # ``rrdnet enhance`` writes (the other renderings share that decomposition).
    enhancement = enhance(loaded.pixels, config)
    seconds = time.perf_counter() - started
    saved = decomposition.Decomposition.from_enhancement(enhancement, loaded, config, name)
    decomposition.save(saved, path)
    return saved, seconds, False


def render_config(saved: decomposition.Decomposition, config, floor: float | None = None):
    """``(pixels, gamma, reached)`` of ``config``'s rendering of ``saved``: the one call of the
    package's renderer, so an API change is adapted here only. ``floor`` replaces the config's
    ``gamma_floor`` (the ``--floors`` study)."""
    if floor is not None:
        config = config.replace(gamma_floor=floor)
    maps = (saved.image, saved.illumination, saved.reflectance, saved.noise, saved.losses)
    result = from_maps(
        *maps,
        config.gamma,
        config.brightness,
        gamma_floor=config.gamma_floor,
        denoise=config.denoise,
        tone_mapping=config.tone_mapping,
    )
    reached = result.light.reached if result.light.target is not None else None
    return result.result, result.gamma, reached


def produce(saved: decomposition.Decomposition, setting: dict, rendered: dict[str, torch.Tensor]):
    """``(pixels, gamma or exponent, reached)`` of one rendering ``setting`` (see ``rendering_modes``);
    ``rendered``: the pixels of the renderings before it (the gamma curve matches one's brightness)."""
    kind = setting["kind"]
    if kind == "input":
        return saved.image, None, None
    if kind == "config":
        return render_config(saved, setting["config"], setting.get("floor"))
    if kind == "gamma_curve":
        pixels, exponent = peers.gamma_curve(saved.image, light.mean_brightness(rendered[setting["match"]]))
        return pixels, exponent, None
    if kind == "clahe":
        return peers.clahe(saved.image), None, None
    if kind == "zero_dce_pp":
        return peers.zero_dce_pp(saved.image), None, None
    if kind == "cached_peer":
        return peers.cached(setting["peer"], saved.image, setting["cache"]), None, None
    raise ValueError(f"unknown rendering {kind}")


def paired(rows: dict[str, list[dict]], mode: str, baseline: str, metric: str = "niqe") -> dict:
    """``metric`` of ``mode`` minus ``baseline``, image by image (images where either lacks it are
    left out): mean, its standard error, and on how many images ``mode`` scored better."""
    pairs = [
        (a[metric], b[metric])
        for a, b in zip(rows[mode], rows[baseline])
        if a[metric] is not None and b[metric] is not None
    ]
    differences = np.array([a - b for a, b in pairs], dtype=np.float64)
    if not len(differences):
        return {"mean": None, "standard_error": None, "better_on": 0, "images": 0}
    error = differences.std(ddof=1) / math.sqrt(len(differences)) if len(differences) > 1 else math.nan
    better = differences < 0 if metric in LOWER_IS_BETTER else differences > 0
    return {
        "mean": round(float(differences.mean()), 4),
        "standard_error": None if math.isnan(error) else round(float(error), 4),
        "better_on": int(better.sum()),
        "images": len(differences),
    }


def paired_niqe(rows: dict[str, list[dict]], mode: str, baseline: str = "fixed_0.4") -> dict:
    return paired(rows, mode, baseline, "niqe")


def default_against_others(rows: dict[str, dict[str, list[dict]]], others: list[str]) -> dict:
    """``{set: {other: {metric: paired(default - other)}}}``, metrics per set from PAIRED_METRICS."""
    return {
        set_name: {
            other: {metric: paired(by_mode, "default", other, metric) for metric in PAIRED_METRICS[set_name]}
            for other in others
            if other != "default"
        }
        for set_name, by_mode in rows.items()
    }


def summarise(rows: list[dict]) -> dict:
    summary = {"count": len(rows)}
    for metric in SUMMARY_METRICS:
        values = [row[metric] for row in rows if row.get(metric) is not None]
        summary[metric] = round(float(np.mean(values)), 4) if values else None
    # Pixel-weighted: every input pixel darker than colour.BLACK_LUMA counts once.
    black = sum(row.get("black_pixels", 0) for row in rows)
    lifted = sum(row["black_lift"] * row["black_pixels"] for row in rows if row.get("black_lift") is not None)
    summary["black_lift"] = round(lifted / black, 4) if black else None
    # The same per photo, then the mean over the photos that have such pixels (each photo counts once).
    per_photo = [row["black_lift"] for row in rows if row.get("black_lift") is not None]
    summary["black_lift_per_photo"] = round(float(np.mean(per_photo)), 4) if per_photo else None
    return summary


def real_pairs(by_mode: dict[str, list[dict]], modes) -> dict:
    """For every rendering in ``modes``: its scores over the real photos that have a ground truth."""
    summary = {}
    for mode in modes:
        rows = [row for row in by_mode[mode] if row["paired"]]
        summary[mode] = {
            "count": len(rows),
            **{
                metric: round(float(np.mean([row[metric] for row in rows])), 4) if rows else None
                for metric in ("psnr", "ssim", "psnr_gtmean", "ssim_gtmean")
            },
        }
    return summary


def images_of(data: Path, limit: int, sets=SETS) -> dict[str, list[tuple[str, Path, Path | None]]]:
    """``{set: [(name, low, reference or None)]}`` for ``sets``, at most ``limit`` per folder (0: all).

    Real photos are paired with the ground truth where one exists: ``real/<folder>_low/<name>``
    with ``real/<folder>_high/<name>`` (LOL's captured pairs)."""

    def first(paths):
        paths = sorted(path for path in paths if path.suffix.lower() in images.IMAGE_SUFFIXES)
        return paths[:limit] if limit else paths

    synthetic = [
        (f"synthetic/{path.name}", path, data / "synthetic" / "high" / path.name)
        for path in first((data / "synthetic" / "low").iterdir())
    ]

    def truth(folder: Path, path: Path) -> Path | None:
        if not folder.name.endswith("_low"):
            return None
        reference = folder.with_name(folder.name[: -len("_low")] + "_high") / path.name
        return reference if reference.is_file() else None

    real = []
    for folder in sorted(
        path for path in (data / "real").iterdir() if path.is_dir() and not path.name.endswith("_high")
    ):
        real += [(f"real/{folder.name}/{path.name}", path, truth(folder, path)) for path in first(folder.iterdir())]
    return {name: pictures for name, pictures in {"synthetic": synthetic, "real": real}.items() if name in sets}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=common.DEFAULT_DATA)
    parser.add_argument("--config", default=DEFAULT_PRESET, help="preset name or YAML file")
    parser.add_argument("--iterations", type=int, help="Adam steps (default: the config's)")
    parser.add_argument("--max-side", type=int, default=384, help="downscale longer side to this (0: full size)")
    parser.add_argument("--limit", type=int, default=0, help="at most N images per folder (0: all)")
    parser.add_argument("--targets", default="0.3,0.35,0.4,0.45,0.5,0.55,0.6", help="brightness targets to sweep")
    parser.add_argument("--auto-brightness", type=float, default=AUTO_BRIGHTNESS, help="target of gamma auto")
    parser.add_argument("--floors", default="", help="other lowest gammas to try for gamma auto, e.g. 0.2,0.3")
    parser.add_argument(
        "--sweep",
        nargs="+",
        default=[],
        metavar="KEY=V1,V2",
        help=f"render-time settings ({', '.join(RENDER_KEYS)}) to vary around --config's rendering; every "
        "combination is rendered from the same decomposition, e.g. brightness=0.4,0.5 denoise=off,auto",
    )
    parser.add_argument("--sets", default=",".join(SETS), help="which sets to score: synthetic, real or both")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "cache")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "quality.json")
    return parser.parse_args()


def _numbers(text: str) -> list[float]:
    return sorted({float(part) for part in text.split(",") if part.strip()})


def _value(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def sweep_settings(items: list[str], config) -> dict[str, dict]:
    """``{name: setting}`` for every combination of ``--sweep KEY=V1,V2 ...``: the config with the
    combination applied (checked now, so a bad value fails before any fit); a ``gamma_floor`` the
    config cannot hold yet goes to ``render_config`` as ``floor``."""
    axes = []
    for item in items:
        key, _, values = item.partition("=")
        if key not in RENDER_KEYS or not values:
            raise ConfigError(f"--sweep {item}: expected KEY=V1,V2,... with KEY one of {', '.join(RENDER_KEYS)}")
        axes.append([(key, _value(value.strip())) for value in values.split(",") if value.strip()])
    settings = {}
    for combination in itertools.product(*axes):
        values = dict(combination)
        floor = values.pop("gamma_floor") if "gamma_floor" in values and "gamma_floor" not in FIELDS else None
        name = "sweep " + " ".join(
            f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}" for key, value in combination
        )
        try:
            varied = config.replace(**values)
        except ConfigError as error:
            raise ConfigError(f"--sweep {name[6:]}: {error}") from None
        settings[name] = {"kind": "config", "config": varied, "floor": floor, "values": dict(combination)}
    return settings


def rendering_modes(arguments: argparse.Namespace, config, targets: list[float], floors: list[float]) -> dict:
    """Every rendering scored, by name (see the module's docstring), in order: ``default`` comes
    before ``gamma_curve``, which matches its brightness."""
    paper_style = {key: value for key, value in PAPER_RENDERING.items() if key in FIELDS}
    modes = {
        "input": {"kind": "input"},
        "default": {"kind": "config", "config": config},
        "fixed_0.4": {"kind": "config", "config": config.replace(**paper_style)},
        "auto": {"kind": "config", "config": config.replace(brightness=arguments.auto_brightness)},
        "gamma_curve": {"kind": "gamma_curve", "match": "default"},
        "clahe": {"kind": "clahe"},
        "zero_dce_pp": {"kind": "zero_dce_pp"},
        "lime": {"kind": "cached_peer", "peer": "lime", "cache": arguments.cache},
        "lime_bm3d": {"kind": "cached_peer", "peer": "lime_bm3d", "cache": arguments.cache},
    }
    modes.update(
        {f"target_{target:g}": {"kind": "config", "config": config.replace(brightness=target)} for target in targets}
    )
    modes.update(
        {
            f"floor_{floor:g}": {
                "kind": "config",
                "config": config.replace(brightness=arguments.auto_brightness),
                "floor": floor,
            }
            for floor in floors
        }
    )
    modes.update(sweep_settings(arguments.sweep, config))
    return modes


def score_all(arguments: argparse.Namespace, config, modes: dict) -> tuple[dict, list[float]]:
    """``{set: {mode: [row per image]}}`` and the seconds of each fit computed (not cached)."""
    rows: dict[str, dict[str, list[dict]]] = {}
    fit_seconds = []
    for set_name, pictures in images_of(arguments.data, arguments.limit, arguments.sets).items():
        rows[set_name] = {mode: [] for mode in modes}
        for name, low_path, reference_path in pictures:
            loaded = load_picture(low_path, arguments.max_side)
            reference = None
            if reference_path is not None:
                reference = to_array(load_picture(reference_path, arguments.max_side).pixels)
            saved, seconds, cached = cached_decomposition(loaded, name, config, arguments.cache)
            if not cached:
                fit_seconds.append(seconds)
            rendered = {}
            before = to_array(saved.image)
            white_before = white(before)  # once per photo, for every rendering
            for mode, setting in modes.items():
                pixels, gamma, reached = produce(saved, setting, rendered)
                rendered[mode] = pixels
                array = to_array(pixels)
                scores = score_images(name, array, reference).__dict__
                scores["niqe_basicsr"] = niqe_basicsr.niqe(array) if niqe_basicsr.available() else None
                scores["newly_clipped"] = newly_clipped(array, white_before)
                scores["hue_shift"] = colour.hue_shift(before, array)
                scores["black_lift"], scores["black_pixels"] = colour.black_lift(before, array)
                rows[set_name][mode].append(
                    {**scores, "gamma": gamma, "reached": reached, "paired": reference is not None}
                )
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


def _change(summary: dict | None, mode: str, baseline: str, metric: str, digits: int) -> float | None:
    """Mean ``metric`` of ``mode`` minus ``baseline``'s (None when either has none, e.g. NIQE on
    pictures smaller than it needs, or the set was not scored)."""
    if summary is None:
        return None
    a, b = summary[mode][metric], summary[baseline][metric]
    return None if a is None or b is None else round(a - b, digits)


def target_misses(rows: dict, target: float) -> dict:
    """Over every image darker than ``target`` (in both sets): the largest distance of the
    result's brightness from it, and the largest share of pixels newly clipped to white."""
    mode = f"target_{target:g}"
    darker = [
        (row, by_mode[mode][index])
        for by_mode in rows.values()
        for index, row in enumerate(by_mode["input"])
        if row["brightness"] < target
    ]
    return {
        "images_darker": len(darker),
        "worst_brightness_miss": round(
            max((abs(result["brightness"] - target) for _, result in darker), default=0.0), 4
        ),
        "worst_newly_clipped": round(max((result["newly_clipped"] for _, result in darker), default=0.0), 4),
    }


def build_record(arguments, config, rows: dict, modes: dict, targets: list[float], floors: list[float]) -> dict:
    summary = {
        set_name: {mode: summarise(mode_rows) for mode, mode_rows in by_mode.items()}
        for set_name, by_mode in rows.items()
    }

    def of(set_name: str, mode: str, metric: str) -> float | None:  # None for a set not scored (--sets)
        return summary[set_name][mode][metric] if set_name in summary else None

    sweep = {
        f"{target:g}": {
            "synthetic_psnr": of("synthetic", f"target_{target:g}", "psnr"),
            "synthetic_psnr_gtmean": of("synthetic", f"target_{target:g}", "psnr_gtmean"),
            "real_niqe": of("real", f"target_{target:g}", "niqe"),
            "real_niqe_basicsr": of("real", f"target_{target:g}", "niqe_basicsr"),
            **target_misses(rows, target),
        }
        for target in targets
    }
    synthetic, real = summary.get("synthetic"), summary.get("real")
    real_rows = rows.get("real", {})
    psnr_gain, niqe_change = (
        _change(synthetic, "auto", "fixed_0.4", "psnr", 3),
        _change(real, "auto", "fixed_0.4", "niqe", 4),
    )
    return {
        "benchmark": "quality",
        "config": arguments.config,
        "iterations": config.iterations,
        "max_side": arguments.max_side,
        "limit": arguments.limit,
        "images": {set_name: len(by_mode["input"]) for set_name, by_mode in rows.items()},
        "default_rendering": {key: getattr(config, key) for key in RENDER_KEYS if hasattr(config, key)},
        "auto_brightness": arguments.auto_brightness,
        "best_target": best_target(sweep, targets),
        # Share of images whose auto target was reachable (the others render at the brightest gamma).
        "auto_target_reached": {
            set_name: round(float(np.mean([row["reached"] for row in by_mode["auto"]])), 3)
            for set_name, by_mode in rows.items()
        },
        "definitions": {
            **colour.DEFINITIONS,
            "real_pairs": "PSNR and SSIM (rrdnet_cli.evaluate) over the real photos with a captured ground truth "
            "(real/lol_low against real/lol_high), at --max-side",
        },
        "synthetic": {mode: synthetic[mode] for mode in REPORTED} if synthetic else None,
        "real": {mode: real[mode] for mode in REPORTED} if real else None,
        "real_pairs": real_pairs(real_rows, REPORTED) if real_rows else None,
        # default minus each other rendering, image by image (better_on: images where default wins).
        "default_against": default_against_others(rows, list(REPORTED)),
        "sweep": sweep,
        "settings_sweep": {
            name: {"settings": modes[name]["values"], **{set_name: summary[set_name][name] for set_name in summary}}
            for name in modes
            if name.startswith("sweep ")
        },
        "goals": {
            "psnr_gain_db": psnr_gain,
            "auto_beats_fixed_by_2db": psnr_gain is not None and psnr_gain >= 2.0,
            "niqe_change_real": niqe_change,
            "auto_no_worse_niqe_real": niqe_change is not None and niqe_change <= 0,
            "niqe_change_real_paired": paired_niqe(real_rows, "auto") if real_rows else None,
        },
        "floors": {
            f"{floor:g}": {
                "synthetic_psnr_gain_db": _change(synthetic, f"floor_{floor:g}", "fixed_0.4", "psnr", 3),
                "niqe_change_real_paired": paired_niqe(real_rows, f"floor_{floor:g}") if real_rows else None,
            }
            for floor in floors
        },
        "per_file": rows,
    }


def main() -> None:
    arguments = parse_arguments()
    absent = peers.missing()
    if absent:
        print(
            f"quality.py: the peers need the optional extra [benchmarks] ({peers.INSTALL_HINT}); "
            f"missing: {', '.join(absent)}",
            file=sys.stderr,
        )
        sys.exit(2)
    if not niqe_basicsr.available():
        print("quality.py: BasicSR's NIQE left out (pip install --no-deps basicsr==1.4.2)", file=sys.stderr)
    arguments.sets = tuple(name.strip() for name in arguments.sets.split(",") if name.strip())
    if not arguments.sets or set(arguments.sets) - set(SETS):
        print(f"quality.py: --sets: choose from {', '.join(SETS)}", file=sys.stderr)
        sys.exit(2)
    try:
        config = load_config(arguments.config, iterations=arguments.iterations, device=arguments.device)
        targets = sorted(set(_numbers(arguments.targets)) | {arguments.auto_brightness})
        floors = _numbers(arguments.floors)
        modes = rendering_modes(arguments, config, targets, floors)
    except ConfigError as error:
        print(f"quality.py: {error}", file=sys.stderr)
        sys.exit(2)
    started = time.perf_counter()
    rows, fit_seconds = score_all(arguments, config, modes)
    record = build_record(arguments, config, rows, modes, targets, floors)
    record["fits"] = {
        "computed": len(fit_seconds),
        "mean_seconds": round(float(np.mean(fit_seconds)), 1) if fit_seconds else None,
    }
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["machine"] = common.machine(jobs=1)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({key: value for key, value in record.items() if key != "per_file"}))


if __name__ == "__main__":
    main()
