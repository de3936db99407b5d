"""Parallel batches: how many worker processes and torch threads a run gets, and the workers.

Every core is used and none is oversubscribed: a batch of M files on C cores (the process's
affinity mask, which Slurm's ``--cpus-per-task`` and cgroup cpusets set) runs ``min(M, C)``
worker processes of ``C // worker_count`` intra-op threads each. ``batch.run_batch`` decides
skipping, sharding and naming in the parent, then hands the remaining jobs to ``run_in_workers``;
each worker runs them one at a time through ``jobs.run_job``, the very function the serial loop
uses, so with the same threads per worker the outputs are the serial run's, byte for byte.

Vocabulary (see ``jobs``): ``jobs`` is a list of ``Job``; ``worker_count`` the number of worker
processes, which the user sets with ``--jobs`` (a count or ``auto``, ``worker_setting`` here
before it is resolved); a ``_Worker`` is one such process, and ``pool`` the running ones.

A worker that dies (killed, out of memory) fails only the file it held and is replaced. Ctrl-C
and SIGTERM reach the parent as ``KeyboardInterrupt``: it stops the workers (a worker turns
SIGTERM into the same clean exception, so its temporary files are removed) and removes the
temporaries of any worker that had to be killed. Workers ignore SIGINT: the parent decides. A
worker whose parent dies (even by ``kill -9``) gets SIGTERM too (``_end_with_parent``).

Workers are fresh interpreters (``spawn``), each importing torch again, which takes seconds. Where
it is safe the command forks them instead (``Plan.fork``), which takes milliseconds: see ``plan``
and benchmarks/results/worker_start_1step.json.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, NoReturn, Optional

from . import images, runtime, spawning
from .config import Config
from .errors import naming
from .jobs import (
    FileResult,
    Job,
    OutputOptions,
    Status,
    extra_paths,
    output_path,
    run_job,
    skipped,
)
from .settings import AUTO

# How long a stopped worker gets to remove its temporaries before it is killed.
STOP_GRACE_SECONDS = 10.0
STOPPED_EXIT = 128 + signal.SIGTERM
# Linux's prctl option that asks for a signal when the parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
# How often a worker checks that its parent is alive where no such signal exists.
PARENT_WATCH_SECONDS = 0.5


def available_cores() -> int:
    """Cores this process may run on: its affinity mask where the system has one, else all."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Plan:
    """Worker processes for a batch, torch intra-op threads for each (None: leave torch's), and
    whether the workers are forked from this process rather than started afresh."""

    worker_count: int
    threads: Optional[int]
    fork: bool = False


def plan(
    worker_setting: int | str,
    files: int,
    *,
    cores: int,
    cuda: bool = False,
    in_process: bool = False,
    threads: Optional[int] = None,
    may_fork: bool = False,
) -> Plan:
    """The plan for ``files`` files to enhance on ``cores`` cores.

    ``worker_setting`` is a count or ``auto``: one worker a file up to one a core on the CPU, a
    single process on CUDA or for one file. ``in_process`` (stdin or stdout in the run) forces one.
    More workers than files or than cores are never started (each is a process with torch and a
    photo in memory, and the work is compute-bound: more workers than cores only add memory).
    Each worker gets ``cores // worker_count`` threads (at least 1), capped by ``threads``; a
    single process gets ``threads`` when given, at most ``cores`` (more threads than cores only
    slow a run down, and a number in the tens of thousands crashes torch).

    Workers are forked (``may_fork``: the caller runs no other thread that could hold a lock at
    the fork) only on the CPU with one thread each. A forked child inherits the parent's OpenMP
    state but not its threads: one that runs a parallel region after its parent ran one hangs
    (tests/test_workers.py), and with one thread torch runs none. CUDA does not survive a fork at all.
    """
    if in_process or files <= 1:
        worker_count = 1
    elif worker_setting == AUTO:
        worker_count = 1 if cuda else min(files, cores)
    else:
        worker_count = min(int(worker_setting), files, cores)
    if worker_count == 1:
        return Plan(1, None if threads is None else min(threads, cores))
    share = max(1, cores // worker_count)
    share = min(share, threads) if threads is not None else share
    return Plan(worker_count, share, fork=may_fork and share == 1 and not cuda)


def plan_batch(
    jobs: Sequence[Job],
    config: Config,
    options: OutputOptions,
    *,
    worker_setting: int | str = AUTO,
    threads: Optional[int] = None,
    cores: Optional[int] = None,
    may_fork: bool = False,
) -> Plan:
    """``plan`` for a batch: counts the files left to do (after ``skip_existing``, and not those
    that failed before they could be read) and the device.
    Forking is used only on Linux (elsewhere a fork is unsafe or missing)."""
    pending = [job for job in jobs if job.error is None and not skipped(job, options)]
    in_process = options.stream is not None or any(job.data is not None for job in jobs)
    cuda = runtime.resolve_device(config.device).type == "cuda"
    return plan(
        worker_setting,
        len(pending),
        cores=cores if cores is not None else available_cores(),
        cuda=cuda,
        in_process=in_process,
        threads=threads,
        may_fork=may_fork and sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods(),
    )


# -------------------------------------------------------------------------------- the workers


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


def _end_with_parent(parent: int) -> None:
    """Have this worker sent SIGTERM when its parent dies, even by ``kill -9``, which gives the
    parent no chance to stop it: an orphan would go on fitting for minutes, write its outputs late
    and compete for the cores with a ``--skip-existing`` rerun.

    Linux delivers it at once (``prctl(PR_SET_PDEATHSIG)``); everywhere, and for a parent that
    died before that call, a thread watches for the worker being handed to another parent."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGTERM), *(ctypes.c_ulong(0),) * 3)
        except (OSError, AttributeError, TypeError):
            pass  # no prctl to call: the watch below still ends the worker, a moment later
    threading.Thread(target=_watch_parent, args=(parent,), name="rrdnet-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_WATCH_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(
    connection: Connection, threads: int, parent_end: Optional[Connection] = None, *, parent: Optional[int] = None
) -> None:
    """One worker: set its own process up, then enhance the files it is sent until told to stop.
    ``parent_end``: the parent's end of the pipe, which a forked worker holds too and closes, so
    that it sees the end of the input when the parent is gone. ``parent``: the parent's process
    id; the worker stops when that process dies (``_end_with_parent``)."""
    if parent_end is not None:
        parent_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM (from the parent, a scheduler, or the parent's death) unwinds like Ctrl-C: the atomic
    # writes remove their temporary files on the way out.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if parent is not None:
        _end_with_parent(parent)
    if hasattr(signal, "pthread_sigmask"):  # blocked by the parent while starting us
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already fixed once torch has run parallel work; harmless
    runtime.tune_allocator()
    try:
        while True:
            try:
                task = connection.recv()
            except EOFError:
                return  # the parent is gone
            if task is None:
                _leave()
            job, config, options = task
            connection.send(run_job(job, config, options))
    except KeyboardInterrupt:
        # SIGTERM: the parent (or whoever sent it) knows it from the code. The temporaries are
        # gone already (removed on the way here), so the teardown is skipped as in _leave: on a
        # loaded machine it took seconds, an orphan's seconds once the parent had died.
        _leave(STOPPED_EXIT)
    except (BrokenPipeError, ConnectionError):
        return  # the parent is gone


def _leave(code: int = 0) -> NoReturn:
    """Exit at once, skipping the interpreter's teardown: with torch loaded it takes about half a
    second, which the batch would wait for, and a worker told to stop has nothing left to save."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass  # closed or gone with the parent: nothing to keep
    os._exit(code)


def _death_message(process: multiprocessing.process.BaseProcess) -> str:
    code = process.exitcode
    if code == STOPPED_EXIT:
        how = "stopped by SIGTERM"
    elif code is not None and code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exit code {code}"
    return f"the worker process died ({how}); nothing was saved"


def remove_unfinished(job: Job, options: OutputOptions, since: float) -> None:
    """Delete what a worker killed in the middle of ``job`` may have left: its ``.part`` files, and
    the maps, decomposition and sheet it wrote (modified ``since`` it was given the job) before the
    image, which is written last and whole. A worker that is not killed removes them itself."""
    extras = extra_paths(job, options).values()
    for path in [output_path(job, options), *extras]:
        for temporary in images.temporaries_of(path):
            temporary.unlink(missing_ok=True)
    for path in extras:
        try:
            if path.stat().st_mtime >= since:
                path.unlink()
        except OSError:
            pass  # not there, or a file system gone: nothing of ours to remove


def join_or_kill(process: Any, grace: float) -> None:
    """Wait up to ``grace`` seconds for ``process`` (a ``multiprocessing`` process) to leave, then
    kill it: a worker told to stop that does not leave in time never holds up its parent."""
    process.join(grace)
    if process.is_alive():
        process.kill()
        process.join()


class _Worker:
    def __init__(self, context, threads: int) -> None:
        self.connection, child = context.Pipe()
        forked = context.get_start_method() == "fork"
        target: Callable[..., Any] = _worker_main
        arguments: tuple = (child, threads, self.connection)
        if not forked:  # a fresh interpreter: its imports through spawning.run
            target, arguments = spawning.run, (__name__, _worker_main.__name__, child, threads)
        self.process = context.Process(target=target, args=arguments, kwargs={"parent": os.getpid()}, daemon=True)
        # Started with SIGINT blocked, which the new process inherits, so a Ctrl-C during its
        # start-up cannot print a traceback there (it ignores SIGINT for good once running). Blocked
        # rather than ignored here: a Ctrl-C that arrives meanwhile stays pending for this process
        # and stops the batch once the worker has started, instead of being lost. A forked worker
        # also inherits this process's SIGTERM handler until it sets its own: held back too.
        hold = _main_thread() and hasattr(signal, "pthread_sigmask")
        held = {signal.SIGINT, signal.SIGTERM} if forked else {signal.SIGINT}
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, held) if hold else None
        try:
            self.process.start()
        finally:
            if mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        child.close()
        self.job: Optional[Job] = None
        # When the job was given (wall-clock, as file times are): what is newer, it wrote.
        self.given_at = 0.0

    def give(self, job: Job, config: Config, options: OutputOptions) -> None:
        self.job, self.given_at = job, time.time()
        try:
            self.connection.send((job, config, options))
        except OSError:
            pass  # it died: its sentinel says so, and the file fails as its death

    def stop(self, *, idle: bool = False) -> None:
        """End the worker: an idle one is told to finish, a busy one gets SIGTERM (it then
        removes its temporaries); one still running after a grace period is killed."""
        self.ask_to_stop(idle=idle)
        self.wait()

    def ask_to_stop(self, *, idle: bool) -> None:
        if idle:
            try:
                self.connection.send(None)
            except OSError:
                pass
        elif self.process.is_alive():
            self.process.terminate()

    def wait(self) -> None:
        join_or_kill(self.process, STOP_GRACE_SECONDS)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def run_in_workers(
    jobs: Sequence[Job],
    config: Config,
    options: OutputOptions,
    plan: Plan,
    record: Callable[[FileResult], None],
    on_start: Optional[Callable[[Job], None]] = None,
) -> None:
    """Enhance ``jobs`` in ``plan.worker_count`` processes; ``record`` gets each result as it finishes.

    Skipped files are recorded first, without a worker. A KeyboardInterrupt stops every worker
    and leaves no temporary file behind before it propagates.
    """
    pending = []
    for job in jobs:
        if skipped(job, options):
            if on_start is not None:
                on_start(job)
            record(FileResult(job.source, output_path(job, options), Status.SKIPPED, 0.0))
        else:
            pending.append(job)
    pending.reverse()  # popped from the end: dispatched in the input order
    context = multiprocessing.get_context("fork" if plan.fork else "spawn")
    pool: list[_Worker] = []
    interrupted = False
    try:
        pool = [_Worker(context, plan.threads or 1) for _ in range(min(plan.worker_count, len(pending)))]
        for worker in pool:
            _dispatch(worker, pending, config, options, on_start)
        while any(worker.job is not None for worker in pool):
            busy = [worker for worker in pool if worker.job is not None]
            ready = wait([worker.connection for worker in busy] + [worker.process.sentinel for worker in busy])
            for index, worker in enumerate(pool):
                if worker.job is None or not (worker.connection in ready or worker.process.sentinel in ready):
                    continue
                result = _receive(worker)
                job, worker.job = worker.job, None
                if result is None:  # the worker died: fail its file, clean up after it, replace it
                    worker.stop(idle=True)
                    worker.connection.close()
                    remove_unfinished(job, options, worker.given_at)
                    result = FileResult(
                        job.source, None, Status.FAILED, 0.0, naming(job.name, _death_message(worker.process))
                    )
                    if pending:
                        worker = pool[index] = _Worker(context, plan.threads or 1)
                record(result)
                _dispatch(worker, pending, config, options, on_start)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        _stop_all(pool, options, record if interrupted else None)


def _stop_all(pool: list[_Worker], options: OutputOptions, record) -> None:
    """End every worker. ``record`` (when interrupted) gets the results that arrived meanwhile;
    the files the others held leave no temporary behind."""
    busy = [(worker, worker.job) for worker in pool if worker.job is not None]
    for worker in pool:  # all at once: each exits (or cleans up) while the others do
        worker.ask_to_stop(idle=worker.job is None)
    for worker in pool:
        worker.wait()
    for worker, job in busy:
        result = _receive(worker) if record is not None else None
        if result is not None:
            record(result)
        else:
            remove_unfinished(job, options, worker.given_at)
    for worker in pool:
        worker.connection.close()


def _receive(worker: _Worker) -> Optional[FileResult]:
    try:
        if worker.connection.poll():
            return worker.connection.recv()
    except (EOFError, OSError):
        pass
    return None


def _dispatch(worker: _Worker, pending: list[Job], config: Config, options: OutputOptions, on_start) -> None:
    if not pending:
        return
    job = pending.pop()
    if on_start is not None:
        on_start(job)
    worker.give(job, config, options)
