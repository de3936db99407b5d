"""The ``rrdnet`` command line: parse, load the config, call one function, report.

The only module that imports Click. Every error reaches the user as one line on stderr:
exit 2 for usage and config errors, 1 when a file failed, 130 when interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from . import __version__
from .batch import FileResult, OutputOptions, collect_inputs, run_batch
from .config import DEFAULT_PRESET, load_config, preset_names
from .errors import ConfigError, RRDNetError, UsageError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _error(message: str) -> None:
    # tqdm.write keeps a progress bar intact when one is on screen.
    tqdm.write(f"rrdnet: error: {message}", file=sys.stderr)


class OneLineErrors(click.Group):
    """A group whose errors are single lines with meaningful exit codes, never tracebacks."""

    def main(self, args=None, prog_name=None, **extra):
        extra.pop("standalone_mode", None)
        try:
            code = super().main(args, prog_name or "rrdnet", standalone_mode=False, **extra)
        except click.UsageError as error:
            _error(error.format_message())
            code = EXIT_USAGE
        except click.ClickException as error:
            _error(error.format_message())
            code = error.exit_code
        except (ConfigError, UsageError) as error:
            _error(str(error))
            code = EXIT_USAGE
        except RRDNetError as error:
            _error(str(error))
            code = EXIT_FAILED
        except (KeyboardInterrupt, click.Abort):
            _error("interrupted")
            code = EXIT_INTERRUPTED
        sys.exit(code if isinstance(code, int) else 0)


def config_options(command):
    """Options shared by every command that builds a config; None means 'keep the file's value'."""
    options = [
        click.option(
            "--config",
            "config_name",
            metavar="FILE|PRESET",
            help=f"YAML file or preset name ({', '.join(preset_names())}); default: {DEFAULT_PRESET}.",
        ),
        click.option("--iterations", type=int, help="Adam steps (overrides the config)."),
        click.option("--gamma", type=float, help="Illumination exponent; smaller is brighter."),
        click.option("--lr", "learning_rate", type=float, help="Adam learning rate."),
        click.option("--seed", type=int, help="Seed of the initial weights."),
        click.option("--device", help="auto (CUDA when available), cpu, cuda or cuda:N."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rrdnet")
def main() -> None:
    """Brighten under-exposed photos with zero-shot RRDNet."""


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("enhanced"),
    show_default=True,
    help="Folder for the results; input folder structure is mirrored inside it.",
)
@click.option("-r", "--recursive", is_flag=True, help="Walk subfolders of input folders.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["png", "jpg", "webp", "tiff"]),
    help="Output format (default: same as the input).",
)
@click.option("--suffix", default="", help="Text added to each output file's stem.")
@click.option("--save-maps", is_flag=True, help="Also write illumination, adjusted illumination, reflectance and noise to OUTPUT_DIR/maps/.")
@config_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bars and no summary; errors only.")
@click.option("-v", "--verbose", is_flag=True, help="Print the config and one line per file.")
@click.pass_context
def enhance(ctx, inputs, output_dir, recursive, output_format, suffix, save_maps, config_name, quiet, verbose, **overrides):
    """Enhance INPUT images (files, folders or glob patterns)."""
    config = load_config(config_name, **overrides)
    jobs = collect_inputs(inputs, recursive)
    options = OutputOptions(output_dir, suffix, output_format, save_maps)
    if verbose:
        click.echo(config.to_yaml().rstrip(), err=True)

    def report(result: FileResult) -> None:
        if result.status == "failed":
            _error(result.error)
        elif verbose:
            tqdm.write(f"rrdnet: {result.source} -> {result.output} ({result.seconds:.1f} s)", file=sys.stderr)

    summary = run_batch(jobs, config, options, progress=not quiet, on_result=report)
    if not quiet:
        click.echo(f"rrdnet: {summary.done} done, {summary.failed} failed in {summary.seconds:.1f} s", err=True)
    ctx.exit(EXIT_FAILED if summary.failed else 0)


@main.group("config")
def config_group() -> None:
    """Inspect configurations."""


@config_group.command("show")
@config_options
def config_show(config_name, **overrides):
    """Print the effective config as YAML (save it to reproduce a run)."""
    click.echo(load_config(config_name, **overrides).to_yaml(), nl=False)
