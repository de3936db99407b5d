"""Helpers the test files share: tiny seeded synthetic images (never ../shared), CLI runners.

Imported as ``from helpers import ...``; fixtures live in ``conftest.py``."""

import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# Command-line options for a quick run: two Adam steps on the CPU, with the default preset
# (DEFAULT_FAST) or the paper preset (PAPER_FAST).
DEFAULT_FAST = ["--iterations", "2", "--device", "cpu"]
PAPER_FAST = ["--config", "paper", *DEFAULT_FAST]


def run(*args):
    """``rrdnet ARGS`` in this process (Click's CliRunner); stderr is kept apart from stdout."""
    from click.testing import CliRunner

    from rrdnet_cli.cli import main

    return CliRunner().invoke(main, [str(arg) for arg in args])


def dark_array(height: int = 40, width: int = 48, seed: int = 0) -> np.ndarray:
    """A dim, textured RGB uint8 image: a gradient with blobs and noise, mean around 0.1."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = 0.05 + 0.1 * x[..., None] * np.array([1.0, 0.8, 0.6]) + 0.05 * (y[..., None] > 0.5)
    noise = rng.normal(0, 0.01, (height, width, 3))
    return np.clip((base + noise) * 255, 0, 255).astype(np.uint8)


def dark_tensor(height: int = 40, width: int = 48, seed: int = 0) -> torch.Tensor:
    array = dark_array(height, width, seed).astype(np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def write_dark(path: Path, height: int = 40, width: int = 48, seed: int = 0, **save_options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(dark_array(height, width, seed)).save(path, **save_options)
    return path


def crafted_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels but holds no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


REPO_ROOT = Path(__file__).resolve().parent.parent


def cli_command(*args) -> list[str]:
    """``rrdnet ARGS`` as a subprocess command line that works installed or from the checkout."""
    return [sys.executable, "-m", "rrdnet_cli", *map(str, args)]


def cli_environment() -> dict[str, str]:
    environment = dict(os.environ)
    # Tiny images: one thread each keeps parallel test processes from fighting over the cores.
    environment["OMP_NUM_THREADS"] = "1"
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), environment.get("PYTHONPATH")]))
    return environment
