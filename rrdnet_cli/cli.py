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
from .config import AUTO_BRIGHTNESS, DEFAULT_PRESET, load_config, preset_names
from .decomposition import relight_file
from .errors import ConfigError, RRDNetError, UsageError
from .evaluate import evaluate_folder, format_table

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


class GammaType(click.ParamType):
    """A gamma on the command line: a number, or 'auto' (chosen per image for a target brightness)."""

    name = "G|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or value == "auto":
            return value
        try:
            return float(value)
        except ValueError:
            self.fail(f"'{value}' is not a number or 'auto'", param, ctx)


GAMMA = GammaType()
BRIGHTNESS_HELP = "Pick gamma per image so the result's mean brightness is T (0-1); implies --gamma auto."


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
        click.option(
            "--gamma",
            type=GAMMA,
            help=f"Illumination exponent (smaller is brighter), or 'auto': the gamma that gives the target brightness (default {AUTO_BRIGHTNESS}).",
        ),
        click.option("--brightness", type=float, metavar="T", help=BRIGHTNESS_HELP),
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
@click.option("--save-decomposition", is_flag=True, help="Also save L, R, N and the input to OUTPUT_DIR/decompositions/<stem>.npz (for rrdnet relight).")
@click.option("--contact-sheet", is_flag=True, help="Also write OUTPUT_DIR/sheets/<stem>_sheet.png: the maps side by side and the loss curves.")
@config_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bars and no summary; errors only.")
@click.option("-v", "--verbose", is_flag=True, help="Print the config and one line per file.")
@click.pass_context
def enhance(
    ctx, inputs, output_dir, recursive, output_format, suffix, save_maps, save_decomposition, contact_sheet,
    config_name, quiet, verbose, **overrides,
):
    """Enhance INPUT images (files, folders or glob patterns)."""
    config = load_config(config_name, **overrides)
    jobs = collect_inputs(inputs, recursive)
    options = OutputOptions(
        output_dir, suffix, output_format, save_maps, save_decomposition=save_decomposition, contact_sheet=contact_sheet
    )
    if verbose:
        click.echo(config.to_yaml().rstrip(), err=True)

    def report(result: FileResult) -> None:
        if result.status == "failed":
            _error(result.error)
        elif verbose:
            light = f"gamma {result.gamma:.3g}, brightness {result.brightness:.3f}, "
            if result.target_brightness is not None and abs(result.brightness - result.target_brightness) > 0.01:
                light += f"target {result.target_brightness:.3f} out of reach, "
            tqdm.write(f"rrdnet: {result.source} -> {result.output} ({light}{result.seconds:.1f} s)", file=sys.stderr)

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


@main.command()
@click.argument("decomposition_file", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Image to write (format from its extension).")
@click.option("--gamma", type=GAMMA, help="Illumination exponent, or 'auto' (the target brightness of the saved config).")
@click.option("--brightness", type=float, metavar="T", help="Pick the gamma that gives mean brightness T (0-1).")
@click.option("-q", "--quiet", is_flag=True, help="No summary line.")
def relight(decomposition_file, output, gamma, brightness, quiet):
    """Render a new result from a saved decomposition FILE (enhance --save-decomposition), instantly."""
    if gamma is None and brightness is None:
        raise click.UsageError("give --gamma G|auto or --brightness T")
    enhancement = relight_file(decomposition_file, output, gamma=gamma, brightness=brightness)
    if not quiet:
        light = f"gamma {enhancement.gamma:.3g}, brightness {enhancement.brightness:.3f}"
        target = enhancement.target_brightness
        if target is not None and abs(enhancement.brightness - target) > 0.01:
            light += f"; target {target:.3f} out of reach"
        click.echo(f"rrdnet: {decomposition_file} -> {output} ({light})", err=True)


@main.command("eval")
@click.argument("enhanced_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--reference", "reference_dir", type=click.Path(path_type=Path, file_okay=False), metavar="GT_DIR", help="Ground truths, matched by relative path and stem: adds PSNR and SSIM.")
@click.option("--json", "json_file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True), metavar="FILE", help="Also write every score as JSON to FILE ('-': stdout, instead of the table).")
@click.pass_context
def eval_command(ctx, enhanced_dir, reference_dir, json_file):
    """Measure the images in ENHANCED_DIR: NIQE and mean brightness, and PSNR/SSIM with --reference."""
    report = evaluate_folder(enhanced_dir, reference_dir)
    for row in report.failed:
        _error(row.error)
    notes = sorted({row.note for row in report.rows if row.note})
    for note in notes:
        click.echo(f"rrdnet: note: {note}; NIQE left out for the smaller files", err=True)
    if json_file is not None and str(json_file) == "-":
        click.echo(report.to_json())
    else:
        click.echo(format_table(report))
        if json_file is not None:
            report.write_json(json_file)
    ctx.exit(EXIT_FAILED if report.failed else 0)
