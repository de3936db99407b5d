"""Inputs: files, folders, glob patterns, path lists (``--files-from``) and standard input, made into
the list of ``Job`` a batch runs, and its shards.

``select_shard`` splits the sorted input list the same way in every process, so independent
processes given the same inputs share a folder without overlap.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, Optional

from . import images
from .errors import InputError, UsageError, os_failure
from .jobs import STDIN, Job

_GLOB_CHARACTERS = frozenset("*?[")


def _inside(path: Path, folder: Optional[Path]) -> bool:
    return folder is not None and images.real_path(path).is_relative_to(folder)


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
                    elif _is_file(entry):
                        files.append(path)
        except OSError as error:  # unreadable, vanished, or a path too long for the system
            unlisted.append((current, error))
    return files, unlisted


def _is_file(entry: os.DirEntry) -> bool:
    """Whether a folder entry is a file to consider; an entry that cannot be followed (a loop of
    symbolic links) counts as one, so that reading it fails alone, naming it, and the folder's other
    files are still found."""
    try:
        return entry.is_file()
    except OSError:
        return True


def _images_in(folder: Path, recursive: bool, exclude: Optional[Path]) -> tuple[list[Path], list[tuple[Path, OSError]]]:
    files, unlisted = _files_in(folder, recursive)
    found = sorted(path for path in files if path.suffix.lower() in images.READ_SUFFIXES and not _inside(path, exclude))
    return found, sorted(unlisted, key=lambda item: item[0])


def _listed_relative(path: Path) -> Path:
    # A listed relative path is mirrored in the output, so that `find` lists keep their tree;
    # paths that would climb out of the output folder keep only their name.
    if path.is_absolute() or ".." in path.parts:
        return Path(path.name)
    return path


# A path list longer than this is no list of paths (a device, a binary file given by mistake).
MAX_PATH_LIST_BYTES = 256 * 1024 * 1024
_UTF8_BOM = b"\xef\xbb\xbf"


class ListedPath(str):
    """A path read from a path list, with the line it was on (blank lines counted), so that an
    error about it names the line an editor shows."""

    line: int

    def __new__(cls, text: str, line: int) -> ListedPath:
        listed = super().__new__(cls, text)
        listed.line = line
        return listed


def _read_list(stream: BinaryIO, name: str) -> bytes:
    """All of ``stream``, refused as soon as it holds a NUL (no path has one: ``/dev/zero``, a
    binary file) or outgrows ``MAX_PATH_LIST_BYTES`` (an endless stream)."""
    data = bytearray()
    while chunk := stream.read(1 << 20):
        if b"\0" in chunk:
            line = data.count(b"\n") + chunk[: chunk.index(b"\0")].count(b"\n") + 1
            raise UsageError(f"{name}: not a path list (a NUL byte on line {line}; paths are one per line)")
        data += chunk
        if len(data) > MAX_PATH_LIST_BYTES:
            raise UsageError(f"{name}: path list longer than {MAX_PATH_LIST_BYTES >> 20} MiB; refused")
    return bytes(data)


def read_path_list(name: str, stdin: Optional[BinaryIO] = None) -> list[ListedPath]:
    """The paths listed one per line in the file ``name`` (``-``: ``stdin``); blank lines skipped,
    a UTF-8 byte-order mark and CRLF line ends dropped. Each path is a ``ListedPath`` that knows
    its line."""
    shown = "stdin" if name == "-" else name
    try:
        if name == "-":
            if stdin is None:
                raise UsageError("--files-from -: stdin is closed, there is no path list to read")
            data = _read_list(stdin, shown)
        else:
            # Opened as given: a FIFO or a shell's <(find ...) is a list being written now.
            with open(name, "rb") as handle:
                data = _read_list(handle, shown)
    except OSError as error:
        raise os_failure(UsageError, name, "cannot read the path list", error) from None
    if data.startswith(_UTF8_BOM):  # what Windows editors put first; never part of a name
        data = data[len(_UTF8_BOM) :]
    # Bytes, decoded as the file system does, so that any file name survives the round trip.
    lines = [os.fsdecode(line.rstrip(b"\r")) for line in data.split(b"\n")]
    paths = [ListedPath(line, number) for number, line in enumerate(lines, start=1) if line.strip()]
    if not paths:
        raise UsageError(f"{shown}: the path list is empty")
    return paths


class _Collected:
    """The jobs found so far, each input file once (by resolved path), in the order found.

    When several inputs are one file (``a.png`` and a symbolic link to it), the file is enhanced
    once, under the name of the input that is not a link if there is one (else the first found);
    ``aliases`` maps each resolved file to the other inputs that named it.
    """

    def __init__(self, recursive: bool, exclude: Optional[Path]) -> None:
        self.recursive = recursive
        self.excluded = images.real_path(exclude) if exclude is not None else None
        self.jobs: list[Job] = []
        self.seen: dict[Path, int] = {}
        self.aliases: dict[Path, list[Path]] = {}

    def add(self, source: Path, relative: Path) -> None:
        key = images.real_path(source)
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

    def fail(self, source: Path, message: str) -> None:
        """A job that fails with ``message``: an input that names no image fails alone, as an
        unreadable file does, and the batch goes on with the others."""
        self.jobs.append(Job(source, Path(source.name), error=message))

    def add_folder(self, path: Path) -> None:
        found, unlisted = _images_in(path, self.recursive, self.excluded)
        if not found and not unlisted:
            if _inside(path, self.excluded):
                raise UsageError(
                    f"{path}: no images to enhance: the folder is the output folder or inside it, "
                    "whose files are never taken as inputs; give another -o"
                )
            hint = "" if self.recursive else " (use -r/--recursive to include subfolders)"
            self.fail(path, f"{path}: no images found ({', '.join(sorted(images.READ_SUFFIXES))}){hint}")
        for image in found:
            self.add(image, image.relative_to(path))
        self._add_unlisted(unlisted, path)

    def _add_unlisted(self, unlisted: list[tuple[Path, OSError]], root: Path) -> None:
        """A failing job for each folder under ``root`` that could not be listed."""
        for folder, error in unlisted:
            message = str(os_failure(InputError, folder, "cannot list the folder", error))
            self.jobs.append(Job(folder, folder.relative_to(root), error=message))

    def add_stdin(self, stdin: Optional[BinaryIO]) -> None:
        if stdin is None:
            raise UsageError("'-': stdin is closed, there is no image to read")
        if any(job.data is not None for job in self.jobs):
            raise UsageError("'-' (stdin) can be given once, as the only source of stdin")
        self.jobs.append(Job(STDIN, Path("stdin"), data=images.read_stream(stdin, "stdin")))

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
            self.fail(Path(pattern), f"{pattern}: pattern matches no files")
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


def _shortened(text: str) -> str:
    # A name can be thousands of characters long (the point of a "too long" error): shown cut.
    return text if len(text) <= 200 else f"{text[:200]}..."


def _kind(text: str) -> str:
    """``"folder"``, ``"file"`` (anything else that exists), ``"missing"`` (nothing there), or why
    the system cannot look at it (a name too long, a loop of links, a folder it may not enter); a
    name no path can have (a NUL) is a usage error."""
    try:
        return "folder" if stat.S_ISDIR(os.stat(text).st_mode) else "file"
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError as error:
        return f"cannot use this input ({error.strerror or error})"
    except ValueError as error:
        raise UsageError(f"{text[:200]!r}: cannot use this input ({error})") from None


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

    ``listed`` paths (from a path list) are taken literally, never as patterns; errors name their
    line (``ListedPath.line``, else the position in ``listed``). ``-`` reads one
    image from ``stdin``. Files under ``exclude`` (the output folder) are never picked up from a
    folder, so a re-run does not enhance its own outputs. A folder that cannot be listed becomes a
    job that fails (``Job.error``). Inputs that are one file through a symbolic link are enhanced
    once (see ``_Collected``); ``on_duplicate(input, kept)`` hears of each one left out. An input
    that names no image (a missing file, a pattern that matches none, a folder without images)
    becomes a job that fails with that message, so the others still run.
    """
    collected = _Collected(recursive, exclude)
    for text in inputs:
        path = Path(text)
        if text == "-":
            collected.add_stdin(stdin)
        elif (kind := _kind(text)) == "folder":
            collected.add_folder(path)
        elif kind == "file":
            collected.add(path, Path(path.name))
        elif kind == "missing" and _GLOB_CHARACTERS & set(text):
            collected.add_pattern(text)
        else:
            collected.fail(path, f"{_shortened(text)}: {'no such file or folder' if kind == 'missing' else kind}")
    for position, text in enumerate(listed, start=1):
        number = getattr(text, "line", position)
        path = Path(text)
        if (kind := _kind(text)) == "folder":
            collected.add_folder(path)
        elif kind == "file":
            collected.add(path, _listed_relative(path))
        else:
            problem = "no such file or folder" if kind == "missing" else kind
            collected.fail(path, f"{_shortened(text)}: {problem} (path list, line {number})")
    if not collected.jobs:
        raise UsageError("no inputs given")
    if on_duplicate is not None:
        for dropped, kept in collected.duplicates():
            on_duplicate(dropped, kept)
    return collected.jobs


def select_shard(jobs: Sequence[Job], index: int, count: int) -> list[Job]:
    """Every ``count``-th job of the list sorted by path, starting at position ``index``.

    Sorting first makes the split depend only on the set of inputs, so processes given the same
    inputs in any order take disjoint shares that together cover all of them.
    """
    ordered = sorted(jobs, key=lambda job: str(job.source))
    return [job for position, job in enumerate(ordered) if position % count == index]
