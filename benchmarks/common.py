"""Benchmark helpers: reading the shared images, cached paper references, the machine's description.

Image metrics are ``rrdnet_cli.evaluate``'s (the ones ``rrdnet eval`` prints), never a second copy.

Used by the benchmark scripts only; the package never imports this.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
# ../shared/data beside the repository, or beside the folder of worktrees a worktree sits in.
DEFAULT_DATA = next(
    (
        folder / "shared" / "data"
        for folder in (REPO.parent, REPO.parent.parent)
        if (folder / "shared" / "data").is_dir()
    ),
    REPO.parent / "shared" / "data",
)
CACHE = Path(__file__).resolve().parent / "cache"
RESULTS = Path(__file__).resolve().parent / "results"
# CPU features that decide the fast paths (bf16 autocast is native with AVX-512 BF16 or AMX).
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
# Environment variables that cap the instruction sets torch's kernels and oneDNN use.
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def machine(jobs: int | None = 1) -> dict:
    """What a figure was measured on, recorded with every benchmark run (JSON key ``"machine"``).

    CPU model and the ``CPU_FEATURES`` it has (from ``/proc/cpuinfo``; ``None`` where that file is
    missing), the logical cores this process may use (its affinity mask, not the host's count), torch's
    intra-op threads, the concurrent jobs the benchmark ran (1: one image at a time), the instruction
    sets torch dispatches to and any ``ISA_CAPS`` set (an emulated older CPU), and the load
    average when the run began (the project's machine is shared, so single timings are noisy).
    """
    import torch

    model, flags = None, None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:  # the first processor's block is enough: the cores are alike
                key, _, value = (part.strip() for part in line.partition(":"))
                if not key:
                    break
                if key == "model name":
                    model = value
                elif key in ("flags", "Features"):  # x86, Arm
                    flags = set(value.split())
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count()
    try:
        load = [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {
        "cpu": model or platform.processor() or None,
        "features": None if flags is None else {feature: feature in flags for feature in CPU_FEATURES},
        "logical_cores": cores,
        "torch_threads": torch.get_num_threads(),
        "jobs": jobs,
        # What torch and oneDNN may use (an AVX2 CPU is emulated on a newer one by capping both).
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "isa_caps": {name: os.environ[name] for name in ISA_CAPS if name in os.environ},
        "load_average": load,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


# A plain-torch yardstick: what any torch program costs on this machine, so that figures from
# machines of different speeds can be compared (as ratios to it). Run in a fresh interpreter: the
# import of torch, then 20 forward and backward passes of a stack of 3x3 convolutions (3-16-32-64-32-1
# channels, RRDNet's branch) on a 128x128 image in fp32, after one untimed pass.
YARDSTICK = """
import json, time
start = time.perf_counter()
import torch
imported = time.perf_counter()
layers = []
for a, b in ((3, 16), (16, 32), (32, 64), (64, 32), (32, 1)):
    layers += [torch.nn.Conv2d(a, b, 3, padding=1), torch.nn.ReLU()]
net = torch.nn.Sequential(*layers[:-1])
image = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
def passes(count):
    for _ in range(count):
        net.zero_grad()
        net(image).square().mean().backward()
passes(1)
before = time.perf_counter()
passes(20)
print(json.dumps({"import_torch": imported - start, "conv_passes": time.perf_counter() - before}))
"""


def yardstick(python: str | None = None) -> dict:
    """Seconds of ``YARDSTICK`` in a fresh interpreter (with this process's environment, so an
    emulated CPU's caps apply): ``import_torch`` and ``conv_passes``. ``python``: that interpreter
    (another environment's torch) instead of this one."""
    import json
    import subprocess
    import sys

    command = [python or sys.executable, "-c", YARDSTICK]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return {key: round(value, 4) for key, value in json.loads(completed.stdout.strip().splitlines()[-1]).items()}


def run_in_checkout(source: Path, script: str, *arguments: str) -> dict:
    """``python SCRIPT --worker ARGUMENTS`` in a fresh interpreter that imports ``rrdnet_cli`` from
    the checkout ``source`` (and ``common`` from here): the JSON of its last printed line."""
    import json
    import os
    import subprocess
    import sys

    environment = {**os.environ, "PYTHONPATH": f"{source}{os.pathsep}{Path(__file__).resolve().parent}"}
    command = [sys.executable, script, "--worker", *arguments]
    output = subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def answer_as_worker(worker: Callable[..., dict], *types: Callable[[str], Any]) -> bool:
    """The other end of ``run_in_checkout``: when this process was started as ``SCRIPT --worker
    ARGUMENTS``, call ``worker`` with the arguments, each converted by its ``types`` entry, print
    its answer as one JSON line and return True; otherwise return False."""
    import json
    import sys

    if sys.argv[1:2] != ["--worker"] or len(sys.argv) != 2 + len(types):
        return False
    print(json.dumps(worker(*(kind(value) for kind, value in zip(types, sys.argv[2:])))))
    return True


def checkouts(baseline_source: Path | None) -> dict[str, Path]:
    """The checkouts a same-run comparison times: ``{"current": REPO}``, after
    ``{"baseline": baseline_source}`` when one is given (a folder holding a ``rrdnet_cli``)."""
    current = {"current": REPO}
    return current if baseline_source is None else {"baseline": baseline_source.resolve(), **current}


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rrdnet_command() -> list[str]:
    """The ``rrdnet`` command as users run it: the console script installed beside this
    interpreter, else ``python -m rrdnet_cli`` (a checkout without the install)."""
    script = Path(sys.executable).with_name("rrdnet")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "rrdnet_cli"]


def arguments_of(args, leave_out: tuple[str, ...] = ()) -> dict[str, str]:
    """A script's parsed command line as a record's ``"arguments"``: every value as text."""
    return {key: str(value) for key, value in vars(args).items() if key not in leave_out}


def publish(record: dict, output: Path) -> None:
    """Print ``record`` as one JSON line and write it to ``output`` (a results file)."""
    print(json.dumps(record))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2) + "\n")


def load_rgb(path: Path, max_side: int | None = None) -> np.ndarray:
    """8-bit RGB ``(H, W, 3)``, downscaled (Lanczos) so its longer side is at most ``max_side``.

    The downscaled picture is rounded back to 8 bits, so it is an ordinary photo in its own right.
    """
    with Image.open(path) as opened:
        picture = opened.convert("RGB")
        if max_side and max(picture.size) > max_side:
            scale = max_side / max(picture.size)
            size = (max(5, round(picture.width * scale)), max(5, round(picture.height * scale)))
            picture = picture.resize(size, Image.LANCZOS)
        return np.asarray(picture).copy()


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` float32 in [0, 1], contiguous as the command's decoder
    hands it over (a permuted view would be copied inside enhance: one more full-size copy at the
    peak of a large photo's memory)."""
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).contiguous().float().div_(255.0)


def to_array(image: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` -> ``(H, W, 3)`` float32 (not quantised: fidelity is judged unrounded)."""
    return image[0].permute(1, 2, 0).contiguous().numpy().astype(np.float32)


def cache_path(kind: str, rgb: np.ndarray, settings: dict) -> Path:
    digest = hashlib.sha256(rgb.tobytes() + json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return CACHE / f"{kind}-{rgb.shape[1]}x{rgb.shape[0]}-{digest}.npz"


def paper_reference(
    rgb: np.ndarray, steps: int, seed: int = 0, cached_only: bool = False
) -> tuple[np.ndarray, float, bool] | None:
    """The ``paper`` preset's result for ``rgb`` (cached: it takes minutes).

    Returns ``(result (H, W, 3), seconds it took when computed, whether it came from the cache)``;
    ``None`` when ``cached_only`` and it is not in the cache (nothing is computed then).
    """
    import time

    from rrdnet_cli import enhance, load_config

    settings = {"preset": "paper", "iterations": steps, "seed": seed, "version": 1}
    path = cache_path("paper", rgb, settings)
    if path.is_file():
        stored = np.load(path)
        return stored["result"], float(stored["seconds"]), True
    if cached_only:
        return None
    config = load_config("paper", iterations=steps, seed=seed, device="cpu")
    start = time.perf_counter()
    enhancement = enhance(to_tensor(rgb), config)
    seconds = time.perf_counter() - start
    result = to_array(enhancement.result)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, result=result, seconds=seconds)
    return result, seconds, False


def reference_like_step_seconds(image: torch.Tensor, steps: int) -> list[float]:
    """Seconds of each of ``steps`` Adam steps of a loop written the way the published code is.

    Same maths as the ``paper`` preset (the parity test pins that), without its speed-ups: the
    image-only loss weights recomputed every step, contiguous (NCHW) tensors, and whatever
    allocator the process has (run it in a fresh process to get glibc's default).
    """
    import time

    from rrdnet_cli import RRDNet, load_config, losses
    from rrdnet_cli.pipeline import loss_terms

    config = load_config("paper", device="cpu")
    torch.manual_seed(config.seed)
    net = RRDNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    durations = []
    for _ in range(steps):
        start = time.perf_counter()
        priors = losses.image_priors(image, config.blur_size, config.blur_sigma)
        total = loss_terms(image, net(image), priors, config).total
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        durations.append(time.perf_counter() - start)
    return durations
