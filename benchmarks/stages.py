"""Where one photo's time goes: ``rrdnet enhance`` stage by stage, for one 768x512 photo.

Stages (each the time spent in the package's public function, less the stages it calls):
  * ``imports``: torch, then the package's modules the command loads before its first photo;
  * ``decode``: ``images.read_image``;
  * ``fit``: ``pipeline.optimise`` (the Adam steps);
  * ``full_resolution_pass``: ``pipeline.decompose`` (the network over every pixel);
  * ``denoise``: ``denoise.denoise_signal``;
  * ``light_and_render``: ``result.from_maps`` less its denoise (the light search and the render);
  * ``encode``: ``images.write_like``;
  * ``other``: the rest of the photo's time (the start weights, the final loss row, ...).

The functions are wrapped wherever the package's modules hold them, around the real per-photo path
(``jobs.enhance_file`` with the preset), so the breakdown follows the code as it changes; a
function that no longer exists is listed under ``missing``, never guessed. A stage's first call in
a process includes what it imports on first use: ``first_imports`` names those packages.

Measured: (a) ``fresh``: a new interpreter that times its own start, imports and first photo
(``launch_to_photo``: from its launch to that photo written, what a one-photo command costs less
its exit); (b) ``warm``: the same photo again in that process
(``--warm`` times); (c) ``command``: the wall time of the real command ``rrdnet enhance PHOTO -o TMP
--jobs 1`` in a fresh process. (a) and (c) alternate, ``--rounds`` times; every figure is the
median. Records the machine (CPU features, cores, threads, jobs, instruction-set caps, load) and
``common.YARDSTICK`` (a torch import and fixed convolutions) before and after, to compare machines.

``--precision fp32`` forces the fp32 path (as on CPUs without native bf16); ``--avx2`` re-runs the
script with torch and oneDNN capped to AVX2 (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``),
emulating an AVX2 CPU on a newer one. Prints one JSON line and writes
``benchmarks/results/stages_<kind>.json``, kind being ``avx512_bf16`` (bf16 fits), ``fp32`` (an
AVX-512 CPU forced to fp32), ``avx2``, ... as the run found the machine.

    python benchmarks/stages.py [--image PHOTO] [--rounds 3] [--warm 2] [--precision fp32] [--avx2]
        [--threads N] [--config PRESET] [--note TEXT] [--output FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The child process times its own imports: nothing heavy above this line, nor in the child's path
# before its clock starts (``common`` imports torch, so only the driver imports it).
HERE = Path(__file__).resolve().parent
# The benchmark photos lie in shared/ beside the repository (or beside the folder of its worktrees).
PHOTO = Path("shared", "data", "synthetic", "low", "kodim01.png")
DEFAULT_IMAGE = next((up / PHOTO for up in HERE.parents[1:3] if (up / PHOTO).is_file()), HERE.parents[1] / PHOTO)
AVX2_CAPS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# Stage -> (module of the package, function). Wrapped in every module of the package that holds it.
STAGES = {
    "decode": ("images", "read_image"),
    "fit": ("pipeline", "optimise"),
    "full_resolution_pass": ("pipeline", "decompose"),
    "denoise": ("denoise", "denoise_signal"),
    "light_and_render": ("result", "from_maps"),
    "encode": ("images", "write_like"),
}
# What the command imports before its first photo (cli.py's own and the enhance command's).
PACKAGE_MODULES = ("cli", "runtime", "workers", "batch", "inputs", "jobs")


# ----------------------------------------------------------------------------------------------
# Child side: one fresh process.


def _packages(modules) -> set[str]:
    """The top-level packages among module names, less the standard library's."""
    return {name.split(".")[0] for name in modules} - set(sys.stdlib_module_names) - {"__main__"}


class StageClock:
    """Exclusive seconds per stage: a stage called inside another is taken out of the outer one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.first_imports: dict[str, list[str]] = {}
        self._stack: list[list] = []  # [stage, seconds spent in stages it called]
        self._named: set[str] = set()

    def wrap(self, stage: str, function):
        def timed(*args, **kwargs):
            before = set(sys.modules)
            self._stack.append([stage, 0.0])
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                _, inner = self._stack.pop()
                self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed - inner
                self.calls[stage] = self.calls.get(stage, 0) + 1
                if self._stack:
                    self._stack[-1][1] += elapsed
                # Named once, by the innermost stage that imported them.
                new = _packages(sys.modules) - _packages(before)
                if new - self._named:
                    self.first_imports.setdefault(stage, []).extend(sorted(new - self._named))
                    self._named |= new

        return functools.wraps(function)(timed)

    def take(self) -> dict:
        taken = {"seconds": self.seconds, "calls": self.calls}
        self.seconds, self.calls = {}, {}
        return taken


def install(clock: StageClock) -> list[str]:
    """Wrap every stage's function in all loaded modules of the package; the stages not found."""
    import importlib

    missing = []
    for stage, (module_name, name) in STAGES.items():
        try:
            original = getattr(importlib.import_module(f"rrdnet_cli.{module_name}"), name)
        except (ImportError, AttributeError):
            missing.append(f"{stage} ({module_name}.{name})")
            continue
        wrapped = clock.wrap(stage, original)
        for module in list(sys.modules.values()):
            if getattr(module, "__name__", "").startswith("rrdnet_cli") and getattr(module, name, None) is original:
                setattr(module, name, wrapped)
    return missing


def photo(clock: StageClock, image: Path, folder: Path, config) -> dict:
    from rrdnet_cli import jobs

    start = time.perf_counter()
    jobs.enhance_file(image, folder / f"out{image.suffix}", config)
    total = time.perf_counter() - start
    taken = clock.take()
    taken["seconds"]["other"] = total - sum(taken["seconds"].values())
    taken["total"] = total
    return taken


def child(spec: dict) -> dict:
    start = time.perf_counter()
    # The interpreter's own start (seen from the driver's launch; both read the same wall clock).
    interpreter_seconds = time.time() - spec["launched"]
    import torch

    torch_seconds = time.perf_counter() - start
    import importlib

    for name in PACKAGE_MODULES:
        importlib.import_module(f"rrdnet_cli.{name}")
    package_seconds = time.perf_counter() - start - torch_seconds
    from rrdnet_cli import load_config, pipeline, runtime

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    runtime.tune_allocator()  # as the command does at its start
    overrides = {"precision": spec["precision"]} if spec["precision"] else {}
    config = load_config(spec["config"], **overrides)
    clock = StageClock()
    missing = install(clock)
    with tempfile.TemporaryDirectory() as folder:
        fresh = photo(clock, Path(spec["image"]), Path(folder), config)
        fresh["seconds"] = {
            "interpreter_start": interpreter_seconds,
            "imports_torch": torch_seconds,
            "imports_package": package_seconds,
            **fresh["seconds"],
        }
        # From the launch to the first photo written: what a one-photo command costs, less its exit.
        fresh["launch_to_photo"] = interpreter_seconds + time.perf_counter() - start
        warm = [photo(clock, Path(spec["image"]), Path(folder), config) for _ in range(spec["warm"])]
    device = runtime.resolve_device(config.device)
    use_bf16 = getattr(pipeline, "use_bf16", None)
    return {
        "fresh": fresh,
        "warm": warm,
        "missing": missing,
        "first_imports": clock.first_imports,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16": bool(use_bf16(config, device)) if use_bf16 is not None else None,
        "precision": config.precision,
        "config": spec["config"],
    }


# ----------------------------------------------------------------------------------------------
# Driver side.


def environment() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])))


def run_child(spec: dict) -> dict:
    spec = {**spec, "launched": time.time()}
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=environment(),
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the timed process failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_command(args: argparse.Namespace, rrdnet: list[str]) -> float:
    options = ["--jobs", "1", "-q"]
    options += ["--config", args.config] if args.config != "default" else []
    options += ["--precision", args.precision] if args.precision else []
    options += ["--threads", str(args.threads)] if args.threads else []
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        completed = subprocess.run(
            [*rrdnet, "enhance", str(args.image), "-o", folder, *options],
            capture_output=True,
            text=True,
            env=environment(),
            check=False,
        )
        seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"rrdnet enhance failed:\n{completed.stderr[-3000:]}")
    return seconds


def medians(records: list[dict]) -> dict[str, float]:
    stages = sorted({stage for record in records for stage in record})
    return {stage: round(statistics.median(record.get(stage, 0.0) for record in records), 4) for stage in stages}


def kind_of(answer: dict, args: argparse.Namespace) -> str:
    """``avx512_bf16`` when the fit ran in bf16; ``fp32`` for an AVX-512 CPU forced to fp32;
    else the instruction set torch ran (``avx2``, ``avx512``, ``default``)."""
    capability = answer["cpu_capability"].lower()
    if answer["bf16"]:
        return "avx512_bf16"
    if args.precision == "fp32" and capability.startswith("avx512"):
        return "fp32"
    return capability


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="the photo (default: kodim01, 768x512)")
    parser.add_argument("--config", default="default", help="preset or YAML file")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes (and commands) timed")
    parser.add_argument("--warm", type=int, default=2, help="photos after the first in each fresh process")
    parser.add_argument("--precision", choices=["fp32"], help="force fp32 (as on CPUs without native bf16)")
    parser.add_argument("--avx2", action="store_true", help="emulate an AVX2 CPU: re-run under the AVX2 caps")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, as the command)")
    parser.add_argument("--note", help="recorded with the figures (e.g. what else loaded the machine)")
    parser.add_argument("--output", type=Path, help="default: benchmarks/results/stages_<kind>.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_arguments(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return None
    if args.avx2 and any(os.environ.get(name) != value for name, value in AVX2_CAPS.items()):
        # The caps must be set before torch loads: in this process (the machine record) and every child.
        script = [sys.executable, str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv)]
        os.execve(sys.executable, script, {**os.environ, **AVX2_CAPS})
    if not args.image.is_file():
        raise SystemExit(f"{args.image}: no such photo (--image)")
    import torch

    import common

    if args.threads:
        torch.set_num_threads(args.threads)
    machine = common.machine(jobs=1)
    rrdnet = common.rrdnet_command()
    spec = {
        "image": str(args.image.resolve()),
        "config": args.config,
        "precision": args.precision,
        "threads": args.threads,
        "warm": args.warm,
    }
    answers, commands, yardsticks = [], [], [common.yardstick()]
    for round_number in range(args.rounds):  # alternating which goes first
        if round_number % 2:
            commands.append(run_command(args, rrdnet))
            answers.append(run_child(spec))
        else:
            answers.append(run_child(spec))
            commands.append(run_command(args, rrdnet))
    yardsticks.append(common.yardstick())
    first = answers[0]
    fresh = [
        {
            **answer["fresh"]["seconds"],
            "photo_total": answer["fresh"]["total"],
            "launch_to_photo": answer["fresh"]["launch_to_photo"],
        }
        for answer in answers
    ]
    warm = [{**photo["seconds"], "photo_total": photo["total"]} for answer in answers for photo in answer["warm"]]
    from PIL import Image

    with Image.open(args.image) as opened:
        size = list(opened.size)
    kind = kind_of(first, args)
    record = {
        "benchmark": "stages",
        "kind": kind,
        "image": str(args.image),
        "size": size,
        "config": args.config,
        "precision": first["precision"],
        "bf16": first["bf16"],
        "rounds": args.rounds,
        "warm_photos": len(warm),
        "fresh_seconds": medians(fresh),
        "warm_seconds": medians(warm) if warm else None,
        "command_seconds": round(statistics.median(commands), 4),
        # common.YARDSTICK before and after the rounds: the command over a plain torch import.
        "yardstick": medians(yardsticks),
        "command_over_torch_import": round(statistics.median(commands) / medians(yardsticks)["import_torch"], 3),
        "command_line": [*rrdnet, "enhance", "PHOTO", "-o", "TMP", "--jobs", "1", "-q"]
        + (["--precision", args.precision] if args.precision else []),
        "calls_per_photo": first["fresh"]["calls"],
        "first_imports": first["first_imports"],
        "missing": first["missing"],
        "samples": {"fresh": fresh, "warm": warm, "command": commands},
        "note": args.note,
        "machine": {**machine, "torch_threads": first["torch_threads"]},
    }
    if hasattr(os, "getloadavg"):
        record["machine"]["load_average_end"] = [round(value, 2) for value in os.getloadavg()]
    common.publish(record, args.output or common.RESULTS / f"stages_{kind}.json")
    return record


if __name__ == "__main__":
    main()
