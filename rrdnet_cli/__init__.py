"""rrdnet: brighten under-exposed photos with zero-shot RRDNet (robust Retinex decomposition).

The names below are imported on first use (PEP 562), so that importing the package alone is
cheap: the ``rrdnet`` command must be able to guard its start-up (torch's import) against Ctrl-C.
"""

import importlib

from .errors import ConfigError, InputError, OptimisationError, OutputError, RRDNetError, UsageError

_LAZY = {"Config": "config", "load_config": "config", "RRDNet": "model", "enhance": "pipeline", "Enhancement": "result"}

__all__ = [
    "Config",
    "ConfigError",
    "Enhancement",
    "InputError",
    "OptimisationError",
    "OutputError",
    "RRDNet",
    "RRDNetError",
    "UsageError",
    "enhance",
    "load_config",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
