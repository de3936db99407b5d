"""Files in, files out: find the inputs, name the outputs, enhance each file, keep going on errors.

Batches are safe to interrupt and to resume: every output is renamed into place only once complete,
the enhanced image last (after its maps), so its existence means the file is done and
``skip_existing`` redoes only what is missing. ``select_shard`` splits the sorted input list the
same way in every process, so independent processes share a folder without overlap.
"""

from __future__ import annotations

import glob
import os
import re
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Optional, Sequence

import torch

from . import decomposition, images
from .config import Config
from .errors import (
    InputError,
    Interrupted,
    OptimisationError,
    OutputError,
    RRDNetError,
    UsageError,
    naming,
    os_failure,
)
from .light import LightChoice
from .pipeline import StepCallback, enhance, resolve_device
from .result import Enhancement
from .sheet import save_contact_sheet, sheet_title

if TYPE_CHECKING:
    from .workers import Plan

MAP_NAMES = ("illumination", "illumination_adjusted", "reflectance", "noise", "denoised_away")
STDIN = Path("-")
_GLOB_CHARACTERS = frozenset("*?[")


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
    quality: int = images.DEFAULT_QUALITY
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
    status: str  # "done", "skipped" (output existed) or "failed"
    seconds: float
    error: Optional[str] = None
    # The light of a done file: the gamma used, the result's brightness, the target of gamma "auto".
    light: Optional[LightChoice] = None

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "type": "file",
            "input": str(self.source),
            "output": None if self.output is None else str(self.output),
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }
        if self.light is not None:
            record["gamma"] = self.light.gamma
            record["exposure"] = self.light.exposure
            record["brightness"] = self.light.brightness
            if self.light.target is not None:
                record["target_brightness"] = self.light.target
        return record


@dataclass
class BatchSummary:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def _count(self, status: str) -> int:
        return sum(result.status == status for result in self.results)

    @property
    def done(self) -> int:
        return self._count("done")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def failed(self) -> int:
        return self._count("failed")

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "summary",
            "files": len(self.results),
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
        }


# -------------------------------------------------------------------------------------- inputs


def _inside(path: Path, folder: Optional[Path]) -> bool:
    return folder is not None and path.resolve().is_relative_to(folder)


def _files_in(folder: Path, recursive: bool) -> tuple[list[Path], list[tuple[Path, OSError]]]:
    """The files directly inside ``folder`` (with ``recursive``, in its subfolders too; symbolic
    links to folders are not followed), and each folder that could not be listed with its error."""
    files: list[Path] = []
    unlisted: list[tuple[Path, OSError]] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    path = current / entry.name
                    if recursive and entry.is_dir(follow_symlinks=False):
                        pending.append(path)
                    elif entry.is_file():
                        files.append(path)
        except OSError as error:  # unreadable, vanished, or a path too long for the system
            unlisted.append((current, error))
    return files, unlisted


def _images_in(folder: Path, recursive: bool, exclude: Optional[Path]) -> tuple[list[Path], list[tuple[Path, OSError]]]:
    files, unlisted = _files_in(folder, recursive)
    found = sorted(path for path in files if path.suffix.lower() in images.IMAGE_SUFFIXES and not _inside(path, exclude))
    return found, sorted(unlisted, key=lambda item: item[0])


def _listed_relative(path: Path) -> Path:
    # A listed relative path is mirrored in the output, so that `find` lists keep their tree;
    # paths that would climb out of the output folder keep only their name.
    if path.is_absolute() or ".." in path.parts:
        return Path(path.name)
    return path


def read_path_list(name: str, stdin: Optional[BinaryIO] = None) -> list[str]:
    """The paths listed one per line in the file ``name`` (``-``: ``stdin``); blank lines skipped."""
    try:
        if name == "-":
            if stdin is None:
                raise UsageError("--files-from -: stdin is closed, there is no path list to read")
            data = stdin.read()
        else:
            data = Path(name).read_bytes()
    except OSError as error:
        raise os_failure(UsageError, name, "cannot read the path list", error) from None
    # Bytes, decoded as the file system does, so that any file name survives the round trip.
    lines = [os.fsdecode(line.rstrip(b"\r")) for line in data.split(b"\n")]
    paths = [line for line in lines if line.strip()]
    if not paths:
        raise UsageError(f"{'stdin' if name == '-' else name}: the path list is empty")
    return paths


class _Collected:
    """The jobs found so far, each input file once (by resolved path), in the order found.

    When several inputs are one file (``a.png`` and a symbolic link to it), the file is enhanced
    once, under the name of the input that is not a link if there is one (else the first found);
    ``aliases`` maps each resolved file to the other inputs that named it.
    """

    def __init__(self, recursive: bool, exclude: Optional[Path]) -> None:
        self.recursive = recursive
        self.excluded = exclude.resolve() if exclude is not None else None
        self.jobs: list[Job] = []
        self.seen: dict[Path, int] = {}
        self.aliases: dict[Path, list[Path]] = {}

    def add(self, source: Path, relative: Path) -> None:
        key = source.resolve()
        if key not in self.seen:
            self.seen[key] = len(self.jobs)
            self.jobs.append(Job(source, relative))
            return
        kept = self.jobs[self.seen[key]]
        if kept.source == source:
            return
        if kept.source.is_symlink() and not source.is_symlink():
            self.jobs[self.seen[key]] = Job(source, relative)
            source = kept.source
        self.aliases.setdefault(key, []).append(source)

    def add_folder(self, path: Path) -> None:
        found, unlisted = _images_in(path, self.recursive, self.excluded)
        if not found and not unlisted:
            raise UsageError(self._nothing_in(path))
        for image in found:
            self.add(image, image.relative_to(path))
        self._add_unlisted(unlisted, path)

    def _add_unlisted(self, unlisted: list[tuple[Path, OSError]], root: Path) -> None:
        """A failing job for each folder under ``root`` that could not be listed."""
        for folder, error in unlisted:
            message = str(os_failure(InputError, folder, "cannot list the folder", error))
            self.jobs.append(Job(folder, folder.relative_to(root), error=message))

    def _nothing_in(self, path: Path) -> str:
        if _inside(path, self.excluded):
            return (
                f"{path}: no images to enhance: the folder is the output folder or inside it, "
                "whose files are never taken as inputs; give another -o"
            )
        hint = "" if self.recursive else " (use -r/--recursive to include subfolders)"
        suffixes = ", ".join(sorted(images.IMAGE_SUFFIXES))
        return f"{path}: no images found ({suffixes}){hint}"

    def add_stdin(self, stdin: Optional[BinaryIO]) -> None:
        if stdin is None:
            raise UsageError("'-': stdin is closed, there is no image to read")
        if any(job.data is not None for job in self.jobs):
            raise UsageError("'-' (stdin) can be given once, as the only source of stdin")
        self.jobs.append(Job(STDIN, Path("stdin"), data=stdin.read()))

    def duplicates(self) -> list[tuple[Path, Path]]:
        """``(input, the input enhanced in its place)`` for each input that was the same file as
        another, when a symbolic link made them so."""
        pairs = []
        for key, others in self.aliases.items():
            kept = self.jobs[self.seen[key]].source
            pairs += [(other, kept) for other in others if other.is_symlink() or kept.is_symlink()]
        return pairs

    def add_pattern(self, pattern: str) -> None:
        matches = sorted(Path(match) for match in glob.glob(pattern, recursive=self.recursive) if Path(match).is_file())
        # glob passes over folders it cannot list without a word; a recursive pattern's files
        # could be in any folder under its literal start, so each such folder there fails as a job.
        root, unlisted = Path(), []
        if self.recursive and "**" in pattern:
            root = _literal_start(pattern)
            unlisted = sorted(_files_in(root, recursive=True)[1], key=lambda item: item[0])
        if not matches and not unlisted:
            raise UsageError(f"{pattern}: pattern matches no files")
        for match in matches:
            self.add(match, Path(match.name))
        self._add_unlisted(unlisted, root)


def _literal_start(pattern: str) -> Path:
    """The folder a glob pattern starts from: its parts before the first with a glob character."""
    parts = []
    for part in Path(pattern).parts[:-1]:
        if _GLOB_CHARACTERS & set(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _kind(text: str, where: str = "") -> Optional[str]:
    """``"folder"``, ``"file"`` (anything else that exists) or None (nothing there) for an input;
    a name the system refuses (too long, a NUL, a loop of links) is a usage error naming it."""
    try:
        return "folder" if stat.S_ISDIR(os.stat(text).st_mode) else "file"
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise UsageError(f"{text[:200]!r}{where}: cannot use this input ({reason})") from None


def collect_inputs(
    inputs: Sequence[str],
    recursive: bool = False,
    *,
    listed: Sequence[str] = (),
    stdin: Optional[BinaryIO] = None,
    exclude: Optional[Path] = None,
    on_duplicate: Optional[Callable[[Path, Path], None]] = None,
) -> list[Job]:
    """Expand files, folders and glob patterns into jobs, sorted within each input, no duplicates.

    ``listed`` paths (from a path list) are taken literally, never as patterns. ``-`` reads one
    image from ``stdin``. Files under ``exclude`` (the output folder) are never picked up from a
    folder, so a re-run does not enhance its own outputs. A folder that cannot be listed becomes a
    job that fails (``Job.error``). Inputs that are one file through a symbolic link are enhanced
    once (see ``_Collected``); ``on_duplicate(input, kept)`` hears of each one left out.
    """
    collected = _Collected(recursive, exclude)
    for text in inputs:
        path = Path(text)
        if text == "-":
            collected.add_stdin(stdin)
        elif (kind := _kind(text)) == "folder":
            collected.add_folder(path)
        elif kind is not None:
            collected.add(path, Path(path.name))
        elif _GLOB_CHARACTERS & set(text):
            collected.add_pattern(text)
        else:
            raise UsageError(f"{text}: no such file or folder")
    for number, text in enumerate(listed, start=1):
        path = Path(text)
        if (kind := _kind(text, f" (path list, line {number})")) == "folder":
            collected.add_folder(path)
        elif kind is not None:
            collected.add(path, _listed_relative(path))
        else:
            raise UsageError(f"{text}: no such file or folder (path list, line {number})")
    if not collected.jobs:
        raise UsageError("no inputs given")
    if on_duplicate is not None:
        for dropped, kept in collected.duplicates():
            on_duplicate(dropped, kept)
    return collected.jobs


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)``, with K counted from 0: ``0/3``, ``1/3`` and ``2/3`` cover everything."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"shard '{text}': expected K/N, e.g. 0/4")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise UsageError(f"shard '{text}': N must be at least 1")
    if index >= count:
        raise UsageError(f"shard '{text}': K counts from 0 and must be below N (0 to {count - 1})")
    return index, count


def select_shard(jobs: Sequence[Job], index: int, count: int) -> list[Job]:
    """Every ``count``-th job of the list sorted by path, starting at position ``index``.

    Sorting first makes the split depend only on the set of inputs, so processes given the same
    inputs in any order take disjoint shares that together cover all of them.
    """
    ordered = sorted(jobs, key=lambda job: str(job.source))
    return [job for position, job in enumerate(ordered) if position % count == index]


# ------------------------------------------------------------------------------------- outputs


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


def check_outputs(jobs: Sequence[Job], options: OutputOptions) -> None:
    """Refuse a run that would write over an input, or write two inputs to the same file."""
    if options.stream is not None:
        if len(jobs) != 1:
            raise UsageError(f"output '-' (stdout) takes exactly one image; {len(jobs)} inputs were given")
        if options.save_maps or options.save_decomposition or options.contact_sheet:
            raise UsageError(
                "maps, decompositions and contact sheets cannot be written to stdout: give an output folder"
            )
        return
    jobs = [job for job in jobs if job.error is None]
    sources = {job.source.resolve(): job for job in jobs if job.data is None}
    claimed: dict[Path, Job] = {}
    for job in jobs:
        for destination in [output_path(job, options), *extra_paths(job, options).values()]:
            if not _confined(destination, options.output_dir):
                raise UsageError(f"{job.name}: output {destination} would be outside the output folder {options.output_dir}")
            key = destination.resolve()
            if key in sources:
                raise UsageError(f"{job.name}: output {destination} would overwrite an input")
            if key in claimed:
                raise UsageError(f"{job.name} and {claimed[key].name} would both write {destination}")
            claimed[key] = job


def _confined(path: Path, folder: Path) -> bool:
    """Whether ``path`` names something strictly inside ``folder`` (as written, before links)."""
    relative = os.path.relpath(os.path.normpath(os.path.abspath(path)), os.path.normpath(os.path.abspath(folder)))
    return relative != os.curdir and relative != os.pardir and not relative.startswith(os.pardir + os.sep)


def prepare_output_dir(options: OutputOptions) -> None:
    """Create the output folder and prove it writable, so that a bad ``-o`` fails once, up front."""
    if options.stream is not None:
        return
    folder = options.output_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".rrdnet-probe-"):
            pass
    except OSError as error:
        raise os_failure(OutputError, folder, "output folder cannot be written", error) from None


# ------------------------------------------------------------------------------------- running


def stretched(values: torch.Tensor) -> torch.Tensor:
    """``values`` (any shape) min-max stretched to [0, 1] for viewing."""
    return (values - values.min()) / (values.max() - values.min()).clamp_min(1e-12)


def save_maps(enhancement: Enhancement, paths: dict[str, Path]) -> None:
    # Noise and what the denoising removed are signed: stretch them to [0, 1] for viewing, as the
    # reference does for the noise.
    maps = {
        "illumination": enhancement.illumination,
        "illumination_adjusted": enhancement.adjusted_illumination,
        "reflectance": enhancement.reflectance,
        "noise": stretched(enhancement.noise),
        "denoised_away": stretched(enhancement.removed),
    }
    for name, path in paths.items():
        images.save_image(images.to_pil(maps[name]), path)


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

    The image comes last: its existence is what marks the input finished for skip_existing.
    """
    maps = {key: path for key, path in extras.items() if key in MAP_NAMES}
    if maps:
        save_maps(enhancement, maps)
    if "decomposition" in extras:
        saved = decomposition.Decomposition.from_enhancement(enhancement, loaded, config, name)
        decomposition.save(saved, extras["decomposition"])
    if "sheet" in extras:
        save_contact_sheet(enhancement, extras["sheet"], sheet_title(name, enhancement))
    images.write_like(enhancement.result, destination, loaded, quality=quality)


def enhance_file(
    source: str | Path,
    destination: str | Path,
    config: Config,
    *,
    maps: Optional[dict[str, Path]] = None,
    quality: int = images.DEFAULT_QUALITY,
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
    return options.skip_existing and options.stream is None and _finished(output_path(job, options), extra_paths(job, options))


def _run_job(job: Job, config: Config, options: OutputOptions, on_step: Optional[StepCallback]) -> FileResult:
    if job.error is not None:
        return FileResult(job.source, None, "failed", 0.0, job.error)
    destination = output_path(job, options)
    extras = extra_paths(job, options)
    started = time.perf_counter()
    try:
        if options.stream is None:
            _check_free(job, destination, extras)
            if skipped(job, options):
                return FileResult(job.source, destination, "skipped", 0.0)
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
        return FileResult(job.source, None, "failed", time.perf_counter() - started, message)
    return FileResult(
        job.source,
        destination,
        "done",
        time.perf_counter() - started,
        light=enhancement.light,
    )


def run_batch(
    jobs: Sequence[Job],
    config: Config,
    options: OutputOptions,
    *,
    on_start: Optional[Callable[[Job], None]] = None,
    on_step: Optional[StepCallback] = None,
    on_result: Optional[Callable[[FileResult], None]] = None,
    plan: Optional["Plan"] = None,
) -> BatchSummary:
    """Enhance every job; a failing file is recorded and the batch goes on.

    ``on_start(job)``, ``on_step(step, total_loss)`` and ``on_result(result)`` let the caller
    report progress; the batch itself prints nothing. Ctrl-C raises ``Interrupted`` carrying the
    summary so far; no partial file is left behind. A ``plan`` (``workers.plan_batch``) of more
    than one worker runs the files in that many processes (``on_step`` is then not called and
    results come in the order they finish); otherwise they run here, one after the other.
    """
    check_outputs(jobs, options)
    resolve_device(config.device)  # a bad device is the whole run's error, not each file's
    if jobs:
        prepare_output_dir(options)
    summary = BatchSummary()
    started = time.perf_counter()

    def record(result: FileResult) -> None:
        summary.results.append(result)
        if on_result is not None:
            on_result(result)

    try:
        if plan is not None and plan.workers > 1:
            from .workers import run_in_workers

            run_in_workers(jobs, config, options, plan, record, on_start)
        else:
            for job in jobs:
                if on_start is not None:
                    on_start(job)
                record(_run_job(job, config, options, on_step))
    except KeyboardInterrupt:
        summary.interrupted = True
        raise Interrupted(summary) from None
    finally:
        summary.seconds = time.perf_counter() - started
    return summary
