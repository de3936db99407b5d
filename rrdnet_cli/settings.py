"""The values a user types that the command checks before any heavy import: worker and thread
counts, shards, and the defaults the help shows.

Nothing here imports torch, NumPy or Pillow (and nothing may): ``rrdnet --help`` and a mistyped
option answer in a fraction of torch's import time because the command's option parsing needs
only this module, ``config`` and ``errors``.
"""

from __future__ import annotations

import re

from .errors import UsageError

AUTO = "auto"
THREADS_VARIABLE = "RRDNET_THREADS"
JOBS_VARIABLE = "RRDNET_JOBS"
# The largest --jobs or --threads taken at all (threads are capped at the cores anyway).
MAX_COUNT = 1_000_000
# JPEG and WebP quality of the written results.
DEFAULT_QUALITY = 95


def parse_count(text: object, what: str, *, allow_auto: bool = False) -> int | str:
    """A positive whole number (or ``auto`` where allowed) from an option or the environment."""
    value = str(text).strip()
    if allow_auto and value.lower() == AUTO:
        return AUTO
    # ASCII digits only: str.isdigit() also takes "²", which int() then refuses.
    digits = value.lstrip("0") if re.fullmatch(r"[0-9]+", value) else ""
    if digits and len(digits) <= len(str(MAX_COUNT)) and int(digits) <= MAX_COUNT:
        return int(digits)
    if digits:
        raise UsageError(f"{what} '{value[:40]}{'...' if len(value) > 40 else ''}': at most {MAX_COUNT}")
    expected = "a positive whole number or 'auto'" if allow_auto else "a positive whole number"
    raise UsageError(f"{what} '{str(text)[:200]}': expected {expected}")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)``, with K counted from 0: ``0/3``, ``1/3`` and ``2/3`` cover everything."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"shard '{text}': expected K/N, e.g. 0/4")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise UsageError(f"shard '{text}': N must be at least 1")
    if index >= count:
        raise UsageError(f"shard '{text}': K counts from 0 and must be below N (0 to {count - 1})")
    return index, count
