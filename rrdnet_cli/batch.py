"""Files in, files out: find the inputs, name the outputs, enhance each file, keep going on errors."""

from __future__ import annotations

import glob
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from tqdm import tqdm

from . import decomposition, imageio
from .config import Config
from .errors import RRDNetError, UsageError
from .pipeline import Enhancement, StepCallback, enhance, resolve_device
from .sheet import save_contact_sheet, sheet_title

MAP_NAMES = ("illumination", "illumination_adjusted", "reflectance", "noise")
_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class Job:
    """One input file and its path relative to the folder it was found in (mirrored in the output)."""

    source: Path
    relative: Path


@dataclass(frozen=True)
class OutputOptions:
    output_dir: Path = Path("enhanced")
    suffix: str = ""
    format: Optional[str] = None
    save_maps: bool = False
    quality: int = 95
    save_decomposition: bool = False
    contact_sheet: bool = False


@dataclass
class FileResult:
    source: Path
    output: Optional[Path]
    status: str  # "done" or "failed"
    seconds: float
    error: Optional[str] = None
    # The light of the result: gamma used (chosen per image for gamma "auto"), the result's mean
    # brightness, and the target that gamma "auto" aimed for (None for a fixed gamma).
    gamma: Optional[float] = None
    brightness: Optional[float] = None
    target_brightness: Optional[float] = None


@dataclass
class BatchSummary:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return sum(result.status == "done" for result in self.results)

    @property
    def failed(self) -> int:
        return sum(result.status == "failed" for result in self.results)


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(path for path in candidates if path.is_file() and path.suffix.lower() in imageio.IMAGE_SUFFIXES)


def collect_inputs(inputs: Sequence[str], recursive: bool = False) -> list[Job]:
    """Expand files, folders and glob patterns into jobs, sorted within each input, no duplicates."""
    jobs: list[Job] = []
    seen: set[Path] = set()

    def add(source: Path, relative: Path) -> None:
        key = source.resolve()
        if key not in seen:
            seen.add(key)
            jobs.append(Job(source, relative))

    for text in inputs:
        path = Path(text)
        if path.is_dir():
            images = _images_in(path, recursive)
            if not images:
                hint = "" if recursive else " (use -r/--recursive to include subfolders)"
                raise UsageError(f"{path}: no images found{hint}")
            for image in images:
                add(image, image.relative_to(path))
        elif path.exists():
            add(path, Path(path.name))
        elif _GLOB_CHARACTERS & set(text):
            matches = sorted(Path(match) for match in glob.glob(text, recursive=recursive) if Path(match).is_file())
            if not matches:
                raise UsageError(f"{text}: pattern matches no files")
            for match in matches:
                add(match, Path(match.name))
        else:
            raise UsageError(f"{text}: no such file or folder")
    return jobs


def output_path(job: Job, options: OutputOptions) -> Path:
    extension = imageio.EXTENSIONS[imageio.FORMATS[options.format]] if options.format else job.source.suffix
    return options.output_dir / job.relative.parent / f"{job.relative.stem}{options.suffix}{extension}"


def map_paths(job: Job, options: OutputOptions) -> dict[str, Path]:
    folder = options.output_dir / "maps" / job.relative.parent
    return {name: folder / f"{job.relative.stem}{options.suffix}_{name}.png" for name in MAP_NAMES}


def decomposition_path(job: Job, options: OutputOptions) -> Path:
    folder = options.output_dir / "decompositions" / job.relative.parent
    return folder / f"{job.relative.stem}{options.suffix}{decomposition.SUFFIX}"


def sheet_path(job: Job, options: OutputOptions) -> Path:
    folder = options.output_dir / "sheets" / job.relative.parent
    return folder / f"{job.relative.stem}{options.suffix}_sheet.png"


def check_outputs(jobs: Sequence[Job], options: OutputOptions) -> None:
    """Refuse a run that would write over an input, or write two inputs to the same file."""
    sources = {job.source.resolve(): job for job in jobs}
    claimed: dict[Path, Job] = {}
    for job in jobs:
        destinations = [output_path(job, options)]
        if options.save_maps:
            destinations += map_paths(job, options).values()
        if options.save_decomposition:
            destinations.append(decomposition_path(job, options))
        if options.contact_sheet:
            destinations.append(sheet_path(job, options))
        for destination in destinations:
            key = destination.resolve()
            if key in sources:
                raise UsageError(f"{job.source}: output {destination} would overwrite an input")
            if key in claimed:
                raise UsageError(f"{job.source} and {claimed[key].source} would both write {destination}")
            claimed[key] = job


def save_maps(enhancement: Enhancement, paths: dict[str, Path]) -> None:
    # Noise is signed: stretch it to [0, 1] for viewing, as the reference does.
    noise = enhancement.noise
    noise_view = (noise - noise.min()) / (noise.max() - noise.min()).clamp_min(1e-12)
    maps = {
        "illumination": enhancement.illumination,
        "illumination_adjusted": enhancement.adjusted_illumination,
        "reflectance": enhancement.reflectance,
        "noise": noise_view,
    }
    for name, path in paths.items():
        imageio.save_image(imageio.to_pil(maps[name]), path)


def enhance_file(
    source: str | Path,
    destination: str | Path,
    config: Config,
    *,
    maps: Optional[dict[str, Path]] = None,
    quality: int = 95,
    on_step: Optional[StepCallback] = None,
    decomposition_file: Optional[Path] = None,
    sheet_file: Optional[Path] = None,
) -> Enhancement:
    """Read ``source``, enhance it, write ``destination`` (and the ``maps``, the decomposition
    (``.npz``, see ``decomposition``) and the contact sheet, where paths are given)."""
    loaded = imageio.read_image(source)
    enhancement = enhance(loaded.pixels, config, on_step=on_step)
    imageio.write_like(enhancement.result, Path(destination), loaded, quality=quality)
    if maps:
        save_maps(enhancement, maps)
    if decomposition_file is not None:
        saved = decomposition.Decomposition.from_enhancement(enhancement, loaded, config, Path(source).name)
        decomposition.save(saved, decomposition_file)
    if sheet_file is not None:
        save_contact_sheet(enhancement, sheet_file, sheet_title(Path(source).name, enhancement))
    return enhancement


def run_batch(
    jobs: Sequence[Job],
    config: Config,
    options: OutputOptions,
    *,
    progress: bool = True,
    on_result: Optional[Callable[[FileResult], None]] = None,
) -> BatchSummary:
    """Enhance every job; a failing file is recorded and the batch goes on."""
    check_outputs(jobs, options)
    resolve_device(config.device)  # a bad device is the whole run's error, not each file's
    show = progress and sys.stderr.isatty()
    summary = BatchSummary()
    started = time.perf_counter()
    files_bar = tqdm(total=len(jobs), unit="file", disable=not show or len(jobs) < 2, position=0)
    for job in jobs:
        destination = output_path(job, options)
        steps_bar = tqdm(total=config.iterations, unit="step", desc=job.relative.name, disable=not show, leave=False)

        def on_step(step: int, loss: float) -> None:
            steps_bar.update(step - steps_bar.n)

        file_started = time.perf_counter()
        try:
            maps = map_paths(job, options) if options.save_maps else None
            enhancement = enhance_file(
                job.source,
                destination,
                config,
                maps=maps,
                quality=options.quality,
                on_step=on_step,
                decomposition_file=decomposition_path(job, options) if options.save_decomposition else None,
                sheet_file=sheet_path(job, options) if options.contact_sheet else None,
            )
            result = FileResult(
                job.source,
                destination,
                "done",
                time.perf_counter() - file_started,
                gamma=enhancement.gamma,
                brightness=enhancement.brightness,
                target_brightness=enhancement.target_brightness,
            )
        except (RRDNetError, torch.cuda.OutOfMemoryError, MemoryError) as error:
            message = str(error) if isinstance(error, RRDNetError) else "out of memory"
            if not message.startswith(str(job.source)):
                message = f"{job.source}: {message}"
            result = FileResult(job.source, None, "failed", time.perf_counter() - file_started, message)
        finally:
            steps_bar.close()
        summary.results.append(result)
        files_bar.update()
        if on_result is not None:
            on_result(result)
    files_bar.close()
    summary.seconds = time.perf_counter() - started
    return summary
