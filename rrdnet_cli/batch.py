"""A batch: check a list of jobs' outputs as a whole, run the jobs, keep going on errors.

Finding the inputs is ``inputs``' work, one job ``jobs``', and running jobs in parallel
``workers``'. A batch is safe to interrupt and to resume (see ``jobs``: an output exists only once
complete).
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from . import images
from .config import Config
from .errors import Interrupted, OutputError, UsageError, os_failure
from .jobs import (
    FileResult,
    Job,
    OutputOptions,
    Status,
    extra_paths,
    output_path,
    run_job,
)
from .pipeline import StepCallback
from .runtime import resolve_device
from .workers import Plan, run_in_workers


@dataclass
class BatchSummary:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def _count(self, status: Status) -> int:
        return sum(result.status == status for result in self.results)

    @property
    def done(self) -> int:
        return self._count(Status.DONE)

    @property
    def skipped(self) -> int:
        return self._count(Status.SKIPPED)

    @property
    def failed(self) -> int:
        return self._count(Status.FAILED)

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
    sources = {images.real_path(job.source): job for job in jobs if job.data is None}
    claimed: dict[Path, Job] = {}
    for job in jobs:
        for destination in [output_path(job, options), *extra_paths(job, options).values()]:
            if not _confined(destination, options.output_dir):
                raise UsageError(
                    f"{job.name}: output {destination} would be outside the output folder {options.output_dir}"
                )
            key = images.real_path(destination)
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
        mode = os.stat(folder).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # nothing there yet (or a file on the way: mkdir says so)
    except OSError as error:  # a loop of links, a name too long: no folder can be made there
        raise UsageError(f"{folder}: cannot use as the output folder ({error.strerror or error})") from None
    if mode is not None and not stat.S_ISDIR(mode):
        raise UsageError(f"{folder}: not a folder (it is {images.describe_file_type(mode)}); -o takes a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".rrdnet-probe-"):
            pass
    except OSError as error:
        raise os_failure(OutputError, folder, "output folder cannot be written", error) from None


def run_batch(
    jobs: Sequence[Job],
    config: Config,
    options: OutputOptions,
    *,
    on_start: Optional[Callable[[Job], None]] = None,
    on_step: Optional[StepCallback] = None,
    on_result: Optional[Callable[[FileResult], None]] = None,
    plan: Optional[Plan] = None,
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
    if any(job.error is None for job in jobs):
        prepare_output_dir(options)
    summary = BatchSummary()
    started = time.perf_counter()

    def record(result: FileResult) -> None:
        summary.results.append(result)
        if on_result is not None:
            on_result(result)

    try:
        if plan is not None and plan.worker_count > 1:
            run_in_workers(jobs, config, options, plan, record, on_start)
        else:
            for job in jobs:
                if on_start is not None:
                    on_start(job)
                record(run_job(job, config, options, on_step))
    except KeyboardInterrupt:
        summary.interrupted = True
        raise Interrupted(summary) from None
    finally:
        summary.seconds = time.perf_counter() - started
    return summary
