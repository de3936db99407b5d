"""Measuring results: PSNR and SSIM against a reference (as computed and GT-mean aligned), NIQE and
mean brightness; matching a folder of results to a folder of references.

PSNR and SSIM are scikit-image's (``skimage.metrics``) on RGB in [0, 1]. SSIM uses the original
paper's settings (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, population covariances),
computed per channel and averaged. "GT-mean aligned" scores first scale the result so its mean
equals the reference's (then clip to [0, 1]), as LLFlow-style low-light evaluations report: the
amount of brightening is a choice (gamma), and this separates it from the other errors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from . import images
from .errors import InputError, RRDNetError, UsageError, cannot_write, printable
from .niqe import MIN_SIDE as NIQE_MIN_SIDE
from .niqe import niqe

# rrdnet enhance's own side outputs inside an output folder: not results to evaluate.
SIDE_FOLDERS = frozenset({"maps", "sheets", "decompositions"})
SSIM_SIGMA = 1.5
# skimage's Gaussian SSIM window: 2 * int(3.5 * sigma + 0.5) + 1 pixels wide.
SSIM_MIN_SIDE = 2 * int(3.5 * SSIM_SIGMA + 0.5) + 1
METRICS = ("psnr", "psnr_gtmean", "ssim", "ssim_gtmean", "niqe", "brightness")


def psnr(result: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of ``result`` against ``reference``, both ``(H, W, 3)`` in [0, 1]."""
    if np.array_equal(result, reference):
        return math.inf
    return float(peak_signal_noise_ratio(reference, result, data_range=1.0))


def ssim(result: np.ndarray, reference: np.ndarray) -> float:
    """SSIM of ``result`` against ``reference``, both ``(H, W, 3)`` in [0, 1]."""
    if min(result.shape[:2]) < SSIM_MIN_SIDE:
        raise InputError(
            f"image is {result.shape[1]}x{result.shape[0]} pixels; SSIM needs at least {SSIM_MIN_SIDE}x{SSIM_MIN_SIDE}"
        )
    return float(
        structural_similarity(
            reference,
            result,
            channel_axis=2,
            data_range=1.0,
            gaussian_weights=True,
            sigma=SSIM_SIGMA,
            use_sample_covariance=False,
        )
    )


def gt_mean_aligned(result: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``result`` ``(H, W, 3)`` scaled so its mean equals ``reference``'s, clipped to [0, 1]."""
    mean = result.mean()
    if mean == 0:
        return result
    return np.clip(result * (reference.mean() / mean), 0.0, 1.0)


@dataclass
class Scores:
    """The measurements of one result. Reference metrics are ``None`` without a reference; NIQE
    is ``None`` for images smaller than it needs (``note`` says so); ``error`` marks a failed file."""

    name: str
    brightness: Optional[float] = None
    niqe: Optional[float] = None
    psnr: Optional[float] = None
    psnr_gtmean: Optional[float] = None
    ssim: Optional[float] = None
    ssim_gtmean: Optional[float] = None
    reference: Optional[str] = None
    note: Optional[str] = None
    error: Optional[str] = None


def score_images(name: str, result: np.ndarray, reference: Optional[np.ndarray] = None) -> Scores:
    """Every metric for ``result`` ``(H, W, 3)`` in [0, 1] (and ``reference``, same shape)."""
    scores = Scores(name, brightness=float(result.mean()))
    if min(result.shape[:2]) >= NIQE_MIN_SIDE:
        scores.niqe = niqe(result)
    else:
        scores.note = f"NIQE needs at least {NIQE_MIN_SIDE}x{NIQE_MIN_SIDE} pixels"
    if reference is not None:
        if reference.shape != result.shape:
            raise InputError(
                f"{name}: result is {result.shape[1]}x{result.shape[0]}, reference "
                f"{reference.shape[1]}x{reference.shape[0]}"
            )
        aligned = gt_mean_aligned(result, reference)
        scores.psnr, scores.psnr_gtmean = psnr(result, reference), psnr(aligned, reference)
        scores.ssim, scores.ssim_gtmean = ssim(result, reference), ssim(aligned, reference)
    return scores


def read_rgb(path: Path) -> np.ndarray:
    """The image at ``path`` as ``(H, W, 3)`` float64 in [0, 1], upright.

    Files are decoded as 8-bit RGB; the levels are recovered exactly (k / 255 in float64, not the
    float32 the pipeline uses), so scores match hand computations to the last digit.
    """
    pixels = images.read_image(path).pixels
    levels = np.round(pixels[0].permute(1, 2, 0).double().numpy() * 255.0)
    return levels / 255.0


def _images_under(folder: Path, skip_side_folders: bool) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if skip_side_folders and len(relative.parts) > 1 and relative.parts[0] in SIDE_FOLDERS:
            continue
        if path.is_file() and path.suffix.lower() in images.READ_SUFFIXES:
            found.append(path)
    return found


def match_files(enhanced_dir: Path, reference_dir: Optional[Path] = None) -> list[tuple[Path, Path, Optional[Path]]]:
    """``(relative path, result, reference)`` for every image under ``enhanced_dir``.

    Walks subfolders, leaving out rrdnet's side outputs (``maps/``, ``sheets/``,
    ``decompositions/`` at the top). A reference matches by relative folder and stem, any
    extension (``a/x.jpg`` ↔ ``a/x.png``). A result without a reference, or with two, is an error;
    references without a result are ignored (a subset may be evaluated).
    """
    if not enhanced_dir.is_dir():
        raise UsageError(f"{enhanced_dir}: not a folder")
    results = _images_under(enhanced_dir, skip_side_folders=True)
    if not results:
        raise UsageError(f"{enhanced_dir}: no images found")
    if reference_dir is None:
        return [(path.relative_to(enhanced_dir), path, None) for path in results]
    if not reference_dir.is_dir():
        raise UsageError(f"{reference_dir}: not a folder")
    references: dict[Path, list[Path]] = {}
    for path in _images_under(reference_dir, skip_side_folders=False):
        references.setdefault(path.relative_to(reference_dir).with_suffix(""), []).append(path)
    matched: list[tuple[Path, Path, Optional[Path]]] = []
    for path in results:
        relative = path.relative_to(enhanced_dir)
        candidates = references.get(relative.with_suffix(""), [])
        if not candidates:
            raise UsageError(f"{path}: no reference {relative.with_suffix('.*')} under {reference_dir}")
        if len(candidates) > 1:
            names = ", ".join(candidate.name for candidate in candidates)
            raise UsageError(f"{path}: several references match ({names})")
        matched.append((relative, path, candidates[0]))
    return matched


@dataclass
class Report:
    """Per-file scores and their means (over the files where each metric exists)."""

    rows: list[Scores] = field(default_factory=list)
    with_reference: bool = False

    @property
    def failed(self) -> list[Scores]:
        return [row for row in self.rows if row.error]

    def means(self) -> dict[str, Optional[float]]:
        means = {}
        for metric in METRICS:
            values = [getattr(row, metric) for row in self.rows if getattr(row, metric) is not None]
            means[metric] = float(np.mean(values)) if values else None
        return means

    def to_dict(self) -> dict:
        def clean(value):
            # Identical images have infinite PSNR; JSON has no infinity, so it becomes null.
            return None if isinstance(value, float) and not math.isfinite(value) else value

        rows = [{key: clean(value) for key, value in asdict(row).items()} for row in self.rows]
        return {
            "files": rows,
            "mean": {key: clean(value) for key, value in self.means().items()},
            "count": len(self.rows) - len(self.failed),
            "failed": len(self.failed),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def write_json(self, path: Path) -> None:
        try:
            with images.atomic_output(Path(path)) as temporary:
                temporary.write_text(self.to_json() + "\n", encoding="utf-8")
        except OSError as error:
            raise cannot_write(path, error) from None


def evaluate(pairs: Iterable[tuple[Path, Path, Optional[Path]]]) -> Report:
    """Score each ``(relative, result, reference)``; a file that cannot be scored is recorded."""
    report = Report()
    for relative, result_path, reference_path in pairs:
        report.with_reference = report.with_reference or reference_path is not None
        try:
            result = read_rgb(result_path)
            reference = read_rgb(reference_path) if reference_path is not None else None
            scores = score_images(str(relative), result, reference)
        except RRDNetError as error:
            # Named once, by its path: the file's own errors name it so, score_images by its relative name.
            message = str(error).removeprefix(f"{relative}: ")
            scores = Scores(
                str(relative), error=message if str(result_path) in message else f"{result_path}: {message}"
            )
        scores.reference = None if reference_path is None else str(reference_path)
        report.rows.append(scores)
    return report


def check_report_path(
    report: Path, pairs: Iterable[tuple[Path, Path, Optional[Path]]], folders: Iterable[Path]
) -> None:
    """Refuse a report path that would replace an image being scored, or any image in the
    ``folders`` (a reference left unmatched is still someone's file), before anything is scored."""
    if str(report) == "-":
        return
    target = images.real_path(report)
    inputs = {images.real_path(path) for _, result, reference in pairs for path in (result, reference) if path}
    inside = any(target.is_relative_to(images.real_path(folder)) for folder in folders)
    if target in inputs or (inside and target.exists() and target.suffix.lower() in images.READ_SUFFIXES):
        raise UsageError(
            f"{report}: the JSON report would overwrite an image being evaluated; give another --json path"
        )
    if inside and target.suffix.lower() in images.READ_SUFFIXES:
        raise UsageError(
            f"{report}: the JSON report would be an image file name inside a folder being evaluated; "
            "give another --json path"
        )


def evaluate_folder(
    enhanced_dir: str | Path, reference_dir: str | Path | None = None, *, report: str | Path | None = None
) -> Report:
    """Match and score every result under ``enhanced_dir`` (see ``match_files``); ``report``, the
    path the caller will write the JSON to, is checked first (``check_report_path``)."""
    reference = None if reference_dir is None else Path(reference_dir)
    pairs = match_files(Path(enhanced_dir), reference)
    if report is not None:
        check_report_path(Path(report), pairs, [Path(enhanced_dir)] + ([reference] if reference is not None else []))
    return evaluate(pairs)


def _cell(value: Optional[float], digits: int) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def format_table(report: Report) -> str:
    """A plain-text table: one line per file, then the means."""
    columns = [("psnr", "PSNR", 2), ("psnr_gtmean", "PSNR-GT", 2), ("ssim", "SSIM", 4), ("ssim_gtmean", "SSIM-GT", 4)]
    columns = (columns if report.with_reference else []) + [("niqe", "NIQE", 3), ("brightness", "bright", 3)]
    good = [row for row in report.rows if not row.error]
    label = f"mean ({len(good)} files)"
    names = [printable(row.name) for row in good]  # a name may hold a newline: one row still
    width = max([len(name) for name in names] + [len(label), len("file")])
    lines = ["  ".join([f"{'file':<{width}}"] + [f"{title:>8}" for _, title, _ in columns])]
    for name, row in zip(names, good, strict=True):
        lines.append("  ".join([f"{name:<{width}}"] + [f"{_cell(getattr(row, key), d):>8}" for key, _, d in columns]))
    means = report.means()
    lines.append("  ".join([f"{label:<{width}}"] + [f"{_cell(means[key], d):>8}" for key, _, d in columns]))
    return "\n".join(lines)
