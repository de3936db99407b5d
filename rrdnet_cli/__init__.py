"""rrdnet: brighten under-exposed photos with zero-shot RRDNet (robust Retinex decomposition).

The public API. Every name below but the exceptions is imported on first use (PEP 562), so that
importing the package alone is cheap (no torch): the ``rrdnet`` command must be able to guard its
start-up (torch's import) against Ctrl-C, and a program pays for torch only when it uses it.

    from rrdnet_cli import enhance_file, load_config
    enhance_file("dark.jpg", "bright.jpg", load_config("default"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, InputError, Interrupted, OptimisationError, OutputError, RRDNetError, UsageError

# Public name -> (module, the name there).
_LAZY = {
    # One image tensor, the network, the result.
    "enhance": ("pipeline", "enhance"),
    "Enhancement": ("result", "Enhancement"),
    "RRDNet": ("model", "RRDNet"),
    # Configuration.
    "Config": ("config", "Config"),
    "load_config": ("config", "load_config"),
    # Files: reading and writing images like their source.
    "LoadedImage": ("images", "LoadedImage"),
    "read_image": ("images", "read_image"),
    "decode_image": ("images", "decode_image"),
    "write_like": ("images", "write_like"),
    "encode_like": ("images", "encode_like"),
    "enhance_file": ("jobs", "enhance_file"),
    # Batches.
    "collect_inputs": ("inputs", "collect_inputs"),
    "select_shard": ("inputs", "select_shard"),
    "Job": ("jobs", "Job"),
    "OutputOptions": ("jobs", "OutputOptions"),
    "FileResult": ("jobs", "FileResult"),
    "Status": ("jobs", "Status"),
    "run_job": ("jobs", "run_job"),
    "BatchSummary": ("batch", "BatchSummary"),
    "run_batch": ("batch", "run_batch"),
    "Plan": ("workers", "Plan"),
    "plan_batch": ("workers", "plan_batch"),
    # Saved decompositions and relighting.
    "Decomposition": ("decomposition", "Decomposition"),
    "load_decomposition": ("decomposition", "load"),
    "save_decomposition": ("decomposition", "save"),
    "relight": ("decomposition", "relight"),
    "relight_file": ("decomposition", "relight_file"),
    # Scores (rrdnet eval).
    "evaluate_folder": ("evaluate", "evaluate_folder"),
    "Report": ("evaluate", "Report"),
    # The process-wide allocator setting the command makes at its entry (a caller's choice).
    "tune_allocator": ("runtime", "tune_allocator"),
}

# Written out (not built from _LAZY) so that tools read it; a test keeps the two in step.
__all__ = [
    "ConfigError",
    "InputError",
    "Interrupted",
    "OptimisationError",
    "OutputError",
    "RRDNetError",
    "UsageError",
    "enhance",
    "Enhancement",
    "RRDNet",
    "Config",
    "load_config",
    "LoadedImage",
    "read_image",
    "decode_image",
    "write_like",
    "encode_like",
    "enhance_file",
    "collect_inputs",
    "select_shard",
    "Job",
    "OutputOptions",
    "FileResult",
    "Status",
    "run_job",
    "BatchSummary",
    "run_batch",
    "Plan",
    "plan_batch",
    "Decomposition",
    "load_decomposition",
    "save_decomposition",
    "relight",
    "relight_file",
    "evaluate_folder",
    "Report",
    "tune_allocator",
]
__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports these
    from .batch import BatchSummary, run_batch
    from .config import Config, load_config
    from .decomposition import Decomposition, relight, relight_file
    from .decomposition import load as load_decomposition
    from .decomposition import save as save_decomposition
    from .evaluate import Report, evaluate_folder
    from .images import LoadedImage, decode_image, encode_like, read_image, write_like
    from .inputs import collect_inputs, select_shard
    from .jobs import FileResult, Job, OutputOptions, Status, enhance_file, run_job
    from .model import RRDNet
    from .pipeline import enhance
    from .result import Enhancement
    from .runtime import tune_allocator
    from .workers import Plan, plan_batch


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
        globals()[name] = value  # found directly from now on
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
