"""One job: an input, where its outputs go, and enhancing it (``run_job``).

Vocabulary of the batch modules: a *job* is one input to enhance (``Job``), and ``jobs`` is always
a list of them; the processes that run jobs in parallel are *workers* (``workers.py``), and how
many of them is a ``worker_count`` (the user's ``--jobs`` option). A file's outcome is a
``FileResult`` with a ``Status``.

Every output is renamed into place only once complete, the enhanced image last (after its maps),
so its existence means the job is done and ``skip_existing`` redoes only what is missing.
"""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Optional

import torch

from . import decomposition, images
from .config import Config
from .errors import OptimisationError, OutputError, RRDNetError, UsageError, naming
from .light import LightChoice
from .pipeline import StepCallback, enhance
from .result import Enhancement
from .settings import DEFAULT_QUALITY
from .sheet import save_contact_sheet, sheet_title

MAP_NAMES = ("illumination", "illumination_adjusted", "reflectance", "noise", "denoised_away")
# The source of the job read from standard input, and the output written to standard output.
STDIN = Path("-")


class Status(str, enum.Enum):
    """What became of a job; the value is the word JSON lines carry."""

    DONE = "done"
    SKIPPED = "skipped"  # skip_existing: its outputs were all there
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    """One input and its path relative to the folder it was found in (mirrored in the output).

    ``data`` holds the encoded image when it came from standard input (``source`` is then ``-``).
    ``error`` marks an input that failed before it could be read (a folder that cannot be listed):
    the batch reports it as a failed file and goes on.
    """

    source: Path
    relative: Path
    data: Optional[bytes] = field(default=None, repr=False)
    error: Optional[str] = None

    @property
    def name(self) -> str:
        """How messages call this input."""
        return "stdin" if self.data is not None else str(self.source)


@dataclass(frozen=True)
class OutputOptions:
    output_dir: Path = Path("enhanced")
    suffix: str = ""
    format: Optional[str] = None
    save_maps: bool = False
    quality: int = DEFAULT_QUALITY
    save_decomposition: bool = False
    contact_sheet: bool = False
    # Leave inputs whose output already exists alone (resuming); otherwise outputs are replaced.
    skip_existing: bool = False
    # Write the single result here (standard output) instead of into output_dir.
    stream: Optional[BinaryIO] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # A separator in the suffix would move outputs to other folders, even out of output_dir.
        if any(character in self.suffix for character in {"/", os.sep, os.altsep or "/", "\0"}):
            raise UsageError(f"suffix {self.suffix[:200]!r} cannot contain a path separator or NUL")


@dataclass
class FileResult:
    source: Path
    output: Optional[Path]
    status: Status
    seconds: float
    error: Optional[str] = None
    # The light of a done file: the gamma used, the result's brightness, the target of gamma "auto".
    light: Optional[LightChoice] = None

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "type": "file",
            "input": str(self.source),
            "output": None if self.output is None else str(self.output),
            "status": self.status.value,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }
        if self.light is not None:
            record["gamma"] = self.light.gamma
            record["exposure"] = self.light.exposure
            if self.light.local:
                # The local light's gain varies across the photo: the one at the key describes it.
                record["key_gain"] = self.light.key_gain
            record["brightness"] = self.light.brightness
            if self.light.target is not None:
                record["target_brightness"] = self.light.target
                record["brightness_reached"] = self.light.reached
        return record


def output_path(job: Job, options: OutputOptions) -> Path:
    if options.stream is not None:
        return STDIN
    if options.format:
        extension = images.EXTENSIONS[images.FORMATS[options.format]]
    elif job.data is None and job.source.suffix.lower().lstrip(".") in images.FORMATS:
        extension = job.source.suffix
    else:
        extension = ".png"
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


def extra_paths(job: Job, options: OutputOptions) -> dict[str, Path]:
    """Every file besides the image that ``job`` writes: maps by name, "decomposition", "sheet"."""
    paths = map_paths(job, options) if options.save_maps else {}
    if options.save_decomposition:
        paths["decomposition"] = decomposition_path(job, options)
    if options.contact_sheet:
        paths["sheet"] = sheet_path(job, options)
    return paths


def stretched(values: torch.Tensor) -> torch.Tensor:
    """``values`` (any shape) min-max stretched to [0, 1] for viewing."""
    return (values - values.min()) / (values.max() - values.min()).clamp_min(1e-12)


def save_maps(enhancement: Enhancement, paths: dict[str, Path], written: list[Path]) -> None:
    """Write each asked map to its path, adding the path to ``written`` once it is there."""
    # Noise and what the denoising removed are signed: stretch them to [0, 1] for viewing, as the
    # reference does for the noise.
    maps = {
        "illumination": enhancement.illumination,
        "illumination_adjusted": enhancement.adjusted_illumination,
        "reflectance": enhancement.reflectance,
        "noise": stretched(enhancement.noise),
        "denoised_away": stretched(enhancement.removed_for("--save-maps")),
    }
    for name, path in paths.items():
        pixels = maps[name]
        # None only for the reflectance of a fit asked not to make it, which no saved map does.
        assert pixels is not None, f"the {name} map was not computed"
        images.save_image(images.to_pil(pixels), path)
        written.append(path)


def _enhance_checked(
    loaded: images.LoadedImage, config: Config, on_step: Optional[StepCallback], extras: dict[str, Path]
) -> Enhancement:
    # Only the extra files show the reflectance: without them the final pass skips that branch.
    reflectance = any(key in extras for key in ("reflectance", "decomposition", "sheet"))
    enhancement = enhance(loaded.pixels, config, on_step=on_step, reflectance=reflectance)
    for name in ("result", "illumination", "reflectance", "noise"):
        value = getattr(enhancement, name)
        if value is not None and not torch.isfinite(value).all():
            raise OptimisationError(f"the {name} holds NaN or infinite values; nothing was saved")
    return enhancement


def _write_outputs(
    enhancement: Enhancement,
    loaded: images.LoadedImage,
    destination: Path,
    extras: dict[str, Path],
    quality: int,
    config: Config,
    name: str,
) -> None:
    """Write the ``extra_paths`` files, then the image.

    The image comes last: its existence is what marks the input finished for skip_existing. When a
    write fails or the run is stopped, the files already written for this input are removed: a
    file that fails leaves no output.
    """
    written: list[Path] = []
    try:
        maps = {key: path for key, path in extras.items() if key in MAP_NAMES}
        if maps:
            save_maps(enhancement, maps, written)
        if "decomposition" in extras:
            saved = decomposition.Decomposition.from_enhancement(enhancement, loaded, config, name)
            decomposition.save(saved, extras["decomposition"])
            written.append(extras["decomposition"])
        if "sheet" in extras:
            save_contact_sheet(enhancement, extras["sheet"], sheet_title(name, enhancement))
            written.append(extras["sheet"])
        images.write_like(enhancement.result, destination, loaded, quality=quality)
    except BaseException:
        for path in written:
            try:
                path.unlink()
            except OSError:
                pass  # gone already, or its folder went with the disk: nothing left to remove
        raise


def enhance_file(
    source: str | Path,
    destination: str | Path,
    config: Config,
    *,
    maps: Optional[dict[str, Path]] = None,
    quality: int = DEFAULT_QUALITY,
    on_step: Optional[StepCallback] = None,
    decomposition_file: Optional[Path] = None,
    sheet_file: Optional[Path] = None,
) -> Enhancement:
    """Read ``source``, enhance it, write ``destination`` (and the ``maps``, the decomposition
    (``.npz``, see ``decomposition``) and the contact sheet, where paths are given)."""
    loaded = images.read_image(source)
    extras = dict(maps or {})
    if decomposition_file is not None:
        extras["decomposition"] = Path(decomposition_file)
    if sheet_file is not None:
        extras["sheet"] = Path(sheet_file)
    enhancement = _enhance_checked(loaded, config, on_step, extras)
    _write_outputs(enhancement, loaded, Path(destination), extras, quality, config, Path(source).name)
    return enhancement


def _write_stream(enhancement: Enhancement, loaded: images.LoadedImage, options: OutputOptions) -> None:
    image_format = images.FORMATS[options.format or "png"]
    # Encoded whole before the first byte goes out: a failed encoding writes nothing.
    data = images.encode_like(enhancement.result, loaded, image_format, quality=options.quality)
    images.write_fully(options.stream, data, "stdout")


def _finished(destination: Path, extras: dict[str, Path]) -> bool:
    # isfile, not exists: a folder where the image should be is no finished output.
    return all(os.path.isfile(path) for path in [destination, *extras.values()])


def _check_free(job: Job, destination: Path, extras: dict[str, Path]) -> None:
    """Refuse an output path taken by something other than a file (a folder, a device, ...)."""
    for path in [destination, *extras.values()]:
        if os.path.exists(path) and not os.path.isfile(path):
            raise OutputError(naming(job.name, f"output {path} exists and is not a file"))


def skipped(job: Job, options: OutputOptions) -> bool:
    """Whether ``skip_existing`` leaves ``job`` alone: its outputs are all there."""
    return (
        options.skip_existing
        and options.stream is None
        and _finished(output_path(job, options), extra_paths(job, options))
    )


def run_job(job: Job, config: Config, options: OutputOptions, on_step: Optional[StepCallback] = None) -> FileResult:
    """Enhance one job and write its outputs; a failure is returned as a ``FAILED`` result, not raised.

    What the serial loop and every worker process run, so both write the same bytes.
    """
    if job.error is not None:
        return FileResult(job.source, None, Status.FAILED, 0.0, job.error)
    destination = output_path(job, options)
    extras = extra_paths(job, options)
    started = time.perf_counter()
    try:
        if options.stream is None:
            _check_free(job, destination, extras)
            if skipped(job, options):
                return FileResult(job.source, destination, Status.SKIPPED, 0.0)
        if job.data is not None:
            loaded = images.decode_image(job.data, job.name)
        else:
            loaded = images.read_image(job.source)
        enhancement = _enhance_checked(loaded, config, on_step, extras)
        if options.stream is not None:
            _write_stream(enhancement, loaded, options)
        else:
            _write_outputs(enhancement, loaded, destination, extras, options.quality, config, job.relative.name)
    except (RRDNetError, torch.cuda.OutOfMemoryError, MemoryError) as error:
        message = naming(job.name, str(error) if isinstance(error, RRDNetError) else "out of memory")
        return FileResult(job.source, None, Status.FAILED, time.perf_counter() - started, message)
    except Exception as error:  # an unforeseen bug, maybe one photo's: it fails that file, not the batch
        message = naming(job.name, f"internal error: {type(error).__name__}: {error}")
        return FileResult(job.source, None, Status.FAILED, time.perf_counter() - started, message)
    return FileResult(
        job.source,
        destination,
        Status.DONE,
        time.perf_counter() - started,
        light=enhancement.light,
    )
