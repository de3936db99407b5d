"""The ``rrdnet`` command line: parse, load the config, call one function, report.

The only module that imports Click. Every error reaches the user as one line on stderr:
exit 2 for usage and config errors, 1 when a file failed, 130 when interrupted (143 on SIGTERM),
70 for an internal error (a bug: any other exception, never shown as a traceback).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import __version__, settings
from .config import DEFAULT_PRESET, load_config, preset_names
from .errors import ConfigError, Interrupted, OutputError, RRDNetError, UsageError, printable

# Everything above is light: help, the version and option errors never import torch, NumPy or
# Pillow (tests/test_processes.py). A command imports the modules it uses when it runs
# (_importing_heavy_modules).
if TYPE_CHECKING:
    from tqdm import tqdm

    from .batch import BatchSummary
    from .jobs import FileResult, Job

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70  # EX_SOFTWARE
# The signal that stopped the run, for the conventional exit code 128 + its number.
_stopping_signal = signal.SIGINT
_NOT_INSTALLED = object()
# Whether ``run`` turned the garbage collector off for the imports (_settle_collector).
_collector_held = False


def _say(line: str) -> None:
    """One line on stderr for people. A progress bar on screen is tqdm's, and tqdm.write keeps it
    intact; with tqdm not imported there is none, and it is not imported just to print a line.
    With stderr closed (``2>&-``) nothing is said: tqdm would write to stdout instead."""
    if sys.stderr is None:
        return
    line = printable(line)
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    else:
        click.echo(line, err=True)


def _print(text: str, newline: bool = True) -> None:
    """What a command prints for programs, on stdout: a closed stdout fails the command (exit 1)
    instead of dropping it without a word."""
    if sys.stdout is None:
        raise OutputError("stdout: cannot write (stdout is closed)")
    click.echo(text, nl=newline)


def _error(message: str) -> None:
    _say(f"rrdnet: error: {message}")


@contextlib.contextmanager
def _importing_heavy_modules() -> Iterator[None]:
    """Around a command's imports of torch and the core: hold SIGINT back, then deliver it; and
    where ``run`` held the garbage collector off, settle it (``_settle_collector``).

    torch's import takes seconds, and a Ctrl-C in the middle of it would end in a traceback (even
    a RecursionError) or leave a module half imported. Held back, it arrives after the imports as
    a KeyboardInterrupt, which the command reports as one line and exit 130 like any other.
    """
    hold = hasattr(signal, "pthread_sigmask") and signal.SIGINT not in signal.pthread_sigmask(
        signal.SIG_BLOCK, {signal.SIGINT}
    )
    try:
        yield
    finally:
        _settle_collector()
        if hold:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _settle_collector() -> None:
    """Set aside for good every object the imports made (``gc.freeze``), then turn the garbage
    collector back on, if ``run`` turned it off.

    torch's import makes about 250,000 objects, none of them garbage, and the collector's passes
    over them, while they are made and at each full collection after, took 0.15 s of a one-photo
    command. Frozen, they are never traversed again; what the command allocates afterwards is
    collected as usual. The price: the few cycles the imports leave unreachable (about 7,000
    objects) are never freed. Process-wide, so only the command's entry does it: ``main``, as tests
    and callers invoke it, leaves the collector alone.
    """
    global _collector_held
    if _collector_held:
        _collector_held = False
        gc.freeze()
        gc.enable()


def _interrupt_on_sigterm(signum, frame):
    # Slurm and kill send SIGTERM: stop as cleanly as on Ctrl-C, with no partial file left.
    global _stopping_signal
    _stopping_signal = signal.SIGTERM
    raise KeyboardInterrupt


def _interrupted_message(error: BaseException) -> str:
    summary = getattr(error, "summary", None) or getattr(error.__cause__, "summary", None)
    if summary is None:
        return "interrupted"
    return f"interrupted after {summary.done} done; rerun with --skip-existing to do only the rest"


class _Stopped(Exception):
    """A KeyboardInterrupt or an EPIPE carried past Click, which would print a blank line for the
    first and exit silently for the second."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _silence_stdout() -> None:
    """Point stdout at /dev/null after it failed, so that no later write or the flush at exit
    raises again (what Python's documentation recommends for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass  # no usable stdout at all: nothing will flush it either


def _stdout_failed(error: OSError) -> str:
    _silence_stdout()
    return f"stdout: cannot write ({error.strerror or error})"


class OneLineErrors(click.Group):
    """A group whose errors are single lines with meaningful exit codes, never tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as error:
            raise _Stopped(error) from error
        except OSError as error:
            if error.errno != errno.EPIPE:
                raise
            raise _Stopped(error) from error

    def main(self, args=None, prog_name=None, **extra):
        global _stopping_signal
        extra.pop("standalone_mode", None)
        _stopping_signal = signal.SIGINT
        previous_handler = _NOT_INSTALLED
        try:
            try:
                previous_handler = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
            except ValueError:
                pass  # not the main thread, where only signals can be set
            code = super().main(args, prog_name or "rrdnet", standalone_mode=False, **extra)
        except click.UsageError as error:
            _error(error.format_message())
            code = EXIT_USAGE
        except click.ClickException as error:
            _error(error.format_message())
            code = error.exit_code
        except (ConfigError, UsageError) as error:
            _error(_named_as_typed(str(error)))
            code = EXIT_USAGE
        except RRDNetError as error:
            _error(str(error))
            code = EXIT_FAILED
        except _Stopped as stopped:
            if isinstance(stopped.error, OSError):
                _error(_stdout_failed(stopped.error))
                code = EXIT_FAILED
            else:
                _error(_interrupted_message(stopped.error))
                code = 128 + _stopping_signal
        except (KeyboardInterrupt, click.Abort) as error:
            _error(_interrupted_message(error))
            code = 128 + _stopping_signal
        except Exception as error:  # a bug: still one line, never a traceback
            _error(f"internal error: {type(error).__name__}: {error}")
            code = EXIT_INTERNAL
        finally:
            if previous_handler is not _NOT_INSTALLED and previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)
        sys.exit(code if isinstance(code, int) else 0)


def run() -> None:
    """The ``rrdnet`` command: ``main`` with the garbage collector off until the command's imports
    are done (``_settle_collector``), then a quick exit.

    With torch loaded, the interpreter's own exit (tearing down thousands of modules and objects)
    takes about half a second, a fifth of a one-photo command. By the time ``main`` returns every
    output is written and closed and every worker joined, so the process flushes its two streams
    and ends at once with ``main``'s exit code. Only this entry point does so: ``main`` itself, as
    tests and callers invoke it, exits normally.
    """
    global _collector_held
    _hold_closed_stderr()
    if gc.isenabled():
        _collector_held = True
        gc.disable()
    try:
        main()
        code: object = 0
    except SystemExit as done:
        code = done.code
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken pipe: nothing left to deliver
    os._exit(code if isinstance(code, int) else (0 if code is None else EXIT_FAILED))


def _hold_closed_stderr() -> None:
    """Put /dev/null on a closed stderr's descriptor (``2>&-``). Nothing is said then, but the
    descriptor would otherwise go to the next file opened, an output image say, and receive
    whatever a library prints to stderr."""
    try:
        os.fstat(2)
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        if devnull != 2:
            os.dup2(devnull, 2)
            os.close(devnull)


def _named_as_typed(message: str) -> str:
    """A config error about a command-line value (``option: key 'learning_rate': ...``) naming
    the option as the user typed it (``--lr: ...``)."""
    match = re.fullmatch(r"option: key '(\w+)': (.*)", message, re.DOTALL)
    if match is None:
        return message
    for command in main.commands.values():
        for parameter in command.params:
            if parameter.name == match[1] and parameter.opts:
                return f"{parameter.opts[0]}: {match[2]}"
    return message


def _exit_code(failed: int) -> int:
    """The rule every command shares: 1 when any file failed, else 0."""
    return EXIT_FAILED if failed else 0


class Reporter:
    """Everything the enhance command tells the user: per-file lines, the summary, the exit code.

    JSON lines (``--json``) go to stdout as each file finishes; all that is meant for people goes
    to stderr: errors always, one line per file with ``--verbose``, the summary unless ``--quiet``.
    """

    def __init__(self, *, json_lines: bool, quiet: bool, verbose: bool) -> None:
        self.json_lines, self.quiet, self.verbose = json_lines, quiet, verbose
        self.failed = 0
        self.stdout_failed = False

    def config(self, config) -> None:
        if self.verbose:
            click.echo(config.to_yaml().rstrip(), err=True)

    def _emit(self, record: dict) -> None:
        if not self.json_lines or self.stdout_failed:
            return
        try:
            if sys.stdout is None:  # closed when the program started
                raise OSError(errno.EBADF, "stdout is closed")
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()  # scripts reading the pipe see each file as it finishes
        except OSError as error:
            # A reader gone (`| head -n1`) must not stop the batch: the images are files.
            self.stdout_failed = True
            _error(f"{_stdout_failed(error)}; JSON lines dropped")

    def duplicate(self, dropped: Path, kept: Path) -> None:
        if not self.quiet:
            _say(f"rrdnet: note: {dropped} is the same file as {kept} (a symbolic link); enhanced once, as {kept}")

    def file(self, result: FileResult) -> None:
        from .jobs import Status

        self._emit(result.to_json())
        if result.status is Status.FAILED:
            self.failed += 1
            _error(result.error or f"{result.source}: failed")
        elif self.verbose:
            if result.status is Status.SKIPPED:
                what = "skipped, output exists"
            elif result.light is not None:
                what = f"{result.light.describe()}, {result.seconds:.1f} s"
            else:
                what = f"{result.seconds:.1f} s"
            _say(f"rrdnet: {result.source} -> {result.output} ({what})")

    def interrupted(self, summary: BatchSummary | None) -> None:
        if summary is not None:
            self._emit(summary.to_json())

    def summary(self, summary: BatchSummary) -> None:
        self._emit(summary.to_json())
        if not self.quiet:
            skipped = f", {summary.skipped} skipped" if summary.skipped else ""
            click.echo(
                f"rrdnet: {summary.done} done, {summary.failed} failed{skipped} in {summary.seconds:.1f} s", err=True
            )

    @property
    def exit_code(self) -> int:
        return _exit_code(self.failed + self.stdout_failed)


class Progress:
    """Progress bars on stderr, over files (when more than one) and over each file's steps.

    Driven by the batch's ``on_start``/``on_step``/``on_result`` callbacks; does nothing when
    ``enabled`` is False (``--quiet``, or stderr is not a terminal).
    """

    def __init__(self, enabled: bool, files: int, steps: int) -> None:
        self.enabled, self.files, self.steps = enabled, files, steps
        self.files_bar: tqdm | None = None
        self.steps_bar: tqdm | None = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self._end_steps()
        if self.files_bar is not None:
            self.files_bar.close()

    def start_file(self, job: Job) -> None:
        from tqdm import tqdm

        if self.files_bar is None:
            self.files_bar = tqdm(total=self.files, unit="file", disable=not self.enabled or self.files < 2, position=0)
        self._end_steps()
        if self.steps:
            self.steps_bar = tqdm(
                total=self.steps, unit="step", desc=job.relative.name, disable=not self.enabled, leave=False
            )

    def step(self, step: int, loss: float) -> None:
        if self.steps_bar is not None:
            self.steps_bar.update(step - self.steps_bar.n)

    def _end_steps(self) -> None:
        if self.steps_bar is not None:
            self.steps_bar.close()
            self.steps_bar = None

    def then(self, report: Callable[[FileResult], None]) -> Callable[[FileResult], None]:
        """An ``on_result`` that closes the file's bars, then calls ``report``."""

        def on_result(result: FileResult) -> None:
            self._end_steps()
            if self.files_bar is not None:
                self.files_bar.update()
            report(result)

        return on_result


class NumberOrKeyword(click.ParamType):
    """A number, or one of a few keywords: a gamma ('auto': chosen per image for a target
    brightness) or a denoise strength ('auto', 'off')."""

    def __init__(self, metavar: str, keywords: tuple[str, ...]) -> None:
        self.name, self.keywords = metavar, keywords

    def get_metavar(self, param, ctx=None):
        # Click would show the name upper-cased ('G|AUTO'), not the keywords' own spelling.
        return self.name

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        if str(value).lower() in self.keywords:
            return str(value).lower()
        try:
            return float(value)
        except ValueError:
            accepted = " or ".join(f"'{keyword}'" for keyword in self.keywords)
            self.fail(f"'{value}' is not a number or {accepted}", param, ctx)


class Integer(click.ParamType):
    """A whole number in ASCII digits, quoted short in errors (Click's own quotes all of a
    5000-digit value, and Python refuses to convert more than about 4300 digits)."""

    name = "integer"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if re.fullmatch(r"[+-]?[0-9]{1,100}", text):
            return int(text)
        quoted = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
        self.fail(f"'{quoted}' is not a whole number of at most 100 digits", param, ctx)


INTEGER = Integer()
GAMMA = NumberOrKeyword("G|auto", ("auto",))
DENOISE = NumberOrKeyword("auto|off|STRENGTH", ("auto", "off"))
DENOISE_HELP = (
    "Denoise where the light was raised: 'auto', 'off', or a STRENGTH (multiple of the noise level "
    "estimated from the image)."
)
BRIGHTNESS = NumberOrKeyword("T|auto", ("auto",))
BRIGHTNESS_HELP = (
    "The result's mean brightness T (0-1), reached per image; 'auto': chosen by the scene. Implies --gamma auto."
)


def config_options(command):
    """Options shared by every command that builds a config; None means 'keep the file's value'."""
    options = [
        click.option(
            "--config",
            "config_name",
            metavar="FILE|PRESET",
            help=f"YAML file or preset name ({', '.join(preset_names())}); default: {DEFAULT_PRESET}.",
        ),
        click.option("--iterations", type=INTEGER, help="Adam steps (overrides the config)."),
        click.option(
            "--gamma",
            type=GAMMA,
            help="Illumination exponent, the paper's rendering (smaller is brighter), or 'auto': the light "
            "chosen per image as the config's tone_mapping says.",
        ),
        click.option("--brightness", type=BRIGHTNESS, help=BRIGHTNESS_HELP),
        click.option("--denoise", type=DENOISE, help=DENOISE_HELP),
        click.option("--lr", "learning_rate", type=float, help="Adam learning rate."),
        click.option("--seed", type=INTEGER, help="Seed of the initial weights."),
        click.option("--device", help="auto (CUDA when available), cpu, cuda or cuda:N."),
        click.option(
            "--tile",
            "tile_size",
            type=click.IntRange(min=0),
            metavar="N",
            help="Full-resolution pass in overlapping tiles of N px, to bound memory (0: the whole image at once).",
        ),
        click.option(
            "--precision",
            type=click.Choice(["auto", "fp32", "bf16"]),
            help="Network arithmetic while fitting; auto: bf16 where the hardware runs it natively.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rrdnet")
def main() -> None:
    """Brighten under-exposed photos with zero-shot RRDNet."""


def _shard_option(ctx, param, value):
    return settings.parse_shard(value) if value is not None else None


@main.command()
@click.argument("inputs", nargs=-1, metavar="[INPUT]...")
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(path_type=Path, file_okay=False, allow_dash=True),
    default=Path("enhanced"),
    show_default=True,
    help="Folder for the results; input folder structure is mirrored inside it. '-': write the one image to stdout.",
)
@click.option("-r", "--recursive", is_flag=True, help="Walk subfolders of input folders.")
@click.option(
    "--files-from",
    metavar="FILE",
    help="Also enhance the paths listed in FILE, one per line ('-': read the list from stdin).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["png", "jpg", "webp", "tiff", "bmp"]),
    help="Output format (default: same as the input; PNG for stdin and stdout).",
)
@click.option(
    "--quality",
    type=click.IntRange(1, 100),
    default=settings.DEFAULT_QUALITY,
    show_default=True,
    help="JPEG and WebP quality.",
)
@click.option("--suffix", default="", help="Text added to each output file's stem.")
@click.option(
    "--save-maps",
    is_flag=True,
    help="Also write illumination, adjusted illumination, reflectance, noise and what the denoising removed to "
    "OUTPUT_DIR/maps/.",
)
@click.option(
    "--skip-existing/--overwrite",
    default=False,
    help="Skip inputs whose output already exists, to resume a run; --overwrite (the default) redoes them.",
)
@click.option(
    "--shard",
    metavar="K/N",
    callback=_shard_option,
    help="Process only part K of N (K from 0 to N-1) of the sorted input list, e.g. for Slurm arrays.",
)
@click.option("--json", "json_lines", is_flag=True, help="Print one JSON line per file to stdout, then a summary line.")
@click.option(
    "--jobs",
    "worker_setting",
    default=settings.AUTO,
    show_default=True,
    envvar=settings.JOBS_VARIABLE,
    metavar="N|auto",
    callback=lambda ctx, param, value: _count_option(ctx, param, value, allow_auto=True),
    help="Worker processes; auto: one a file up to one a core (one on CUDA); each gets its share of the cores "
    f"as threads (env {settings.JOBS_VARIABLE}).",
)
@click.option(
    "--threads",
    metavar="N",
    envvar=settings.THREADS_VARIABLE,
    callback=lambda ctx, param, value: _count_option(ctx, param, value),
    help=f"Torch threads of a single-process run, and the most each worker gets (env {settings.THREADS_VARIABLE}).",
)
@click.option(
    "--save-decomposition",
    is_flag=True,
    help="Also save L, R, N and the input to OUTPUT_DIR/decompositions/<stem>.npz (for rrdnet relight).",
)
@click.option(
    "--contact-sheet",
    is_flag=True,
    help="Also write OUTPUT_DIR/sheets/<stem>_sheet.png: the maps side by side and the loss curves.",
)
@config_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bars and no summary; errors only.")
@click.option("-v", "--verbose", is_flag=True, help="Print the config and one line per file.")
@click.pass_context
def enhance(
    ctx,
    inputs,
    output_dir,
    recursive,
    files_from,
    output_format,
    quality,
    suffix,
    save_maps,
    save_decomposition,
    contact_sheet,
    skip_existing,
    shard,
    json_lines,
    worker_setting,
    threads,
    config_name,
    quiet,
    verbose,
    **overrides,
):
    """Enhance INPUT images (files, folders, glob patterns, or '-' for one image on stdin)."""
    config = load_config(config_name, **overrides)
    to_stdout = str(output_dir) == "-"
    _check_arguments(inputs, files_from, to_stdout, json_lines)
    with _importing_heavy_modules():
        from . import runtime, workers
        from .batch import run_batch
        from .jobs import OutputOptions
    # Process-wide, so done here at the program's entry and never by the library itself.
    runtime.tune_allocator()
    reporter = Reporter(json_lines=json_lines, quiet=quiet, verbose=verbose)
    jobs = _gather_jobs(inputs, recursive, files_from, shard, to_stdout, output_dir, reporter.duplicate)
    stream = getattr(sys.stdout, "buffer", None) if to_stdout else None
    if to_stdout and stream is None:
        raise OutputError("stdout: cannot write (stdout is closed)")
    options = OutputOptions(
        output_dir,
        suffix,
        output_format,
        save_maps,
        quality,
        save_decomposition=save_decomposition,
        contact_sheet=contact_sheet,
        skip_existing=skip_existing,
        stream=stream,
    )
    # Workers may be forked from this process: no other thread here holds a lock they need (a
    # progress bar's monitor thread takes only tqdm's own), and see workers.plan.
    plan = workers.plan_batch(jobs, config, options, worker_setting=worker_setting, threads=threads, may_fork=True)
    cores = workers.available_cores()
    available = f"{cores} core{'s' if cores != 1 else ''} available: using at most {cores}"
    if threads is not None and threads > cores and not quiet:
        click.echo(f"rrdnet: note: {threads} threads asked for, {available}", err=True)
    if worker_setting != settings.AUTO and int(worker_setting) > cores and not quiet:
        click.echo(f"rrdnet: note: {worker_setting} workers asked for, {available}", err=True)
    _use_threads(ctx, plan)
    reporter.config(config)
    steps = config.iterations if plan.worker_count == 1 else 0  # workers report no steps
    on_screen = not quiet and sys.stderr is not None and sys.stderr.isatty()
    with Progress(on_screen, len(jobs), steps) as progress:
        try:
            summary = run_batch(
                jobs,
                config,
                options,
                on_start=progress.start_file,
                on_step=progress.step,
                on_result=progress.then(reporter.file),
                plan=plan,
            )
        except Interrupted as error:
            reporter.interrupted(error.summary)
            raise
    reporter.summary(summary)
    ctx.exit(reporter.exit_code)


def _count_option(ctx, param, value, allow_auto=False):
    if value is None:
        return None
    from_environment = ctx.get_parameter_source(param.name) == click.core.ParameterSource.ENVIRONMENT
    what = param.envvar if from_environment else param.opts[0]
    return settings.parse_count(value, what, allow_auto=allow_auto)


def _use_threads(ctx, plan) -> None:
    """A single-process run's torch threads, for this command only (workers set their own)."""
    if plan.worker_count == 1 and plan.threads is not None:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(plan.threads)
        ctx.call_on_close(lambda: torch.set_num_threads(previous))


def _check_arguments(inputs, files_from, to_stdout, json_lines) -> None:
    """The checks of the enhance command's arguments that need no file opened (nor torch imported)."""
    if not inputs and not files_from:
        raise click.UsageError("no inputs given")
    if to_stdout and json_lines:
        raise click.UsageError("--json and '-o -' would both write to stdout; choose one")
    if files_from == "-" and "-" in inputs:
        raise click.UsageError("stdin can hold the image or the path list, not both")


def _gather_jobs(inputs, recursive, files_from, shard, to_stdout, output_dir, on_duplicate=None) -> list[Job]:
    """The jobs the enhance command's arguments name."""
    with _importing_heavy_modules():
        from .inputs import collect_inputs, read_path_list, select_shard

    stdin = getattr(sys.stdin, "buffer", None)
    listed = read_path_list(files_from, stdin) if files_from else []
    jobs = collect_inputs(
        inputs,
        recursive,
        listed=listed,
        stdin=stdin,
        exclude=None if to_stdout else output_dir,
        on_duplicate=on_duplicate,
    )
    return select_shard(jobs, *shard) if shard is not None else jobs


@main.group("config")
def config_group() -> None:
    """Inspect configurations."""


@config_group.command("show")
@config_options
def config_show(config_name, **overrides):
    """Print the effective config as YAML (save it to reproduce a run)."""
    _print(load_config(config_name, **overrides).to_yaml(), newline=False)


@main.command()
@click.argument("decomposition_file", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Image to write (format from its extension).",
)
@click.option("--gamma", type=GAMMA, help="Illumination exponent, or 'auto' (rendered as the saved config says).")
@click.option("--brightness", type=BRIGHTNESS, help="The result's mean brightness T (0-1), or 'auto'.")
@click.option("--denoise", type=DENOISE, help=DENOISE_HELP + " Default: the saved config's.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line.")
def relight(decomposition_file, output, gamma, brightness, denoise, quiet):
    """Render a new result from a saved decomposition FILE (enhance --save-decomposition), instantly."""
    if gamma is None and brightness is None:
        raise click.UsageError("give --gamma G|auto or --brightness T")
    with _importing_heavy_modules():
        from . import runtime
        from .decomposition import relight_file
    runtime.tune_allocator()
    enhancement = relight_file(
        decomposition_file,
        output,
        gamma=gamma,
        brightness=brightness,
        denoise=denoise,
        on_note=lambda note: _say(f"rrdnet: note: {note}"),
    )
    if not quiet:
        _say(f"rrdnet: {decomposition_file} -> {output} ({enhancement.light.describe()})")


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; any other than the loopback lets other machines use the page (there is no login).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on (0: any free one).",
)
@click.option(
    "--max-upload-mb",
    type=click.FloatRange(0, min_open=True),
    default=50,
    show_default=True,
    help="Largest file accepted, in megabytes.",
)
@click.option(
    "--max-megapixels",
    type=click.FloatRange(0, min_open=True),
    default=50,
    show_default=True,
    help="Largest image accepted.",
)
@click.option(
    "--fits",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Photos fitted at once (each in its own process); the others wait in a queue.",
)
@click.option(
    "--queue",
    "queue_size",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Photos that may wait for a fit; more are refused until some are done.",
)
@config_options
def serve(host, port, max_upload_mb, max_megapixels, fits, queue_size, config_name, **overrides):
    """Open a local web page to drop photos in, compare before and after, and set the light live."""
    config = load_config(config_name, **overrides)
    try:
        with _importing_heavy_modules():
            import torch

            from . import runtime
            from . import serve as server
    except ImportError as error:
        missing = (error.name or "").split(".")[0]
        if missing not in ("starlette", "uvicorn"):
            raise
        raise UsageError(
            f"rrdnet serve needs the serve extra: pip install 'rrdnet-cli[serve]' ({missing} is missing)"
        ) from None
    runtime.tune_allocator()
    limits = server.Limits(round(max_upload_mb * server.MEGABYTE), round(max_megapixels * 1e6), fits, queue_size)

    def ready(url: str) -> None:
        if not server.is_loopback(host):
            click.echo(
                f"rrdnet: warning: listening on {host}: anyone who can reach this machine can use the page", err=True
            )
        click.echo(f"rrdnet: serving on {url} (Ctrl-C to stop)", err=True)

    # This process only relights previews, small tensors for which more threads mostly spin against
    # the fit processes (which set their own): one thread answered the sliders about twice as fast.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        server.serve(config, host=host, port=port, limits=limits, on_ready=ready)
    finally:
        torch.set_num_threads(previous)
    click.echo("rrdnet: stopped; temporary files removed", err=True)


@main.command("eval")
@click.argument("enhanced_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--reference",
    "reference_dir",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="GT_DIR",
    help="Ground truths, matched by relative path and stem: adds PSNR and SSIM.",
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    metavar="FILE",
    help="Also write every score as JSON to FILE ('-': stdout, instead of the table).",
)
@click.pass_context
def eval_command(ctx, enhanced_dir, reference_dir, json_file):
    """Measure the images in ENHANCED_DIR: NIQE and mean brightness, and PSNR/SSIM with --reference."""
    with _importing_heavy_modules():
        from .evaluate import evaluate_folder, format_table

    report = evaluate_folder(enhanced_dir, reference_dir, report=json_file)
    for row in report.failed:
        _error(row.error)
    notes = sorted({row.note for row in report.rows if row.note})
    for note in notes:
        click.echo(f"rrdnet: note: {note}; NIQE left out for the smaller files", err=True)
    if json_file is not None and str(json_file) == "-":
        _print(report.to_json())
    else:
        if json_file is not None:
            report.write_json(json_file)
        _print(format_table(report))
    ctx.exit(_exit_code(len(report.failed)))
