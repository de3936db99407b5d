"""The first call of the package's spawned processes: batch workers on CUDA or with several threads
each, and ``rrdnet serve``'s fit process.

A spawned process starts by importing the module of its target; for ``workers`` or ``serve`` that
is torch's import, with the garbage collector passing over its 250,000 objects as they are made
(0.15 s). Started through ``run`` instead, whose module imports nothing heavy, the process makes
those imports with the collector held off. The process is the package's own, so its collector is
the package's to set.
"""

from __future__ import annotations

import gc
import importlib
from typing import Any


def run(module: str, function: str, *args: Any, **kwargs: Any) -> Any:
    """Import ``module`` with the garbage collector off, set aside for good what the import made
    (``gc.freeze``: never traversed again), turn the collector back on, then return
    ``module.function(*args, **kwargs)``."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        target = getattr(importlib.import_module(module), function)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
    return target(*args, **kwargs)
