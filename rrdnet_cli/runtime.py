"""Process-level and hardware facts the pipeline relies on: the device, allocator tuning, bf16 support.

Everything here is a safe no-op where it does not apply (non-glibc C libraries, no CUDA, CPUs
without native bf16), so callers never need to check the platform themselves. Allocator tuning
changes the whole process, so the library never does it by itself: the ``rrdnet`` command calls
``tune_allocator`` at its entry, and a program using the API may call it too (see the README).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import re
import threading
from collections.abc import Mapping

import torch

from .errors import UsageError

# glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_allocator_lock = threading.Lock()
_allocator_tuned: bool | None = None


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit CUDA request never falls back to the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if not match:
        raise UsageError(f"device '{name}': expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UsageError(f"device '{name}': CUDA is not available on this machine")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise UsageError(f"device '{name}': only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device(name)


def tune_allocator() -> bool:
    """Keep freed memory inside the process instead of returning it to the kernel (glibc only).

    Every optimisation step frees and re-allocates the same large activation buffers. By default
    glibc serves blocks over 128 KiB with ``mmap`` and unmaps them on ``free``, so each step pays
    for fresh zeroed pages (page faults then dominate a step). Serving blocks up to 32 MiB (glibc's
    largest threshold) from the heap, never trimmed, makes the allocator reuse the buffers. Larger
    blocks (a large photo's full-size maps) are still mapped and returned when freed: kept in the
    heap they left holes that the next, differently sized maps did not fit (a 12 MP photo's peak
    was up to 300 MB higher, varying from run to run). One arena for all threads: otherwise each
    thread that allocates (the noise estimate's workers, torch's) keeps its own arena's peak, which no
    other thread can reuse (on a 12 MP photo about 500 MB more at the peak). Returns whether it
    applied.
    """
    global _allocator_tuned
    with _allocator_lock:
        if _allocator_tuned is not None:
            return _allocator_tuned
        _allocator_tuned = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                # mallopt returns 1 on success; both must apply for the reuse to happen.
                trimmed = _mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
                mapped_above = _mallopt(_M_MMAP_THRESHOLD, 32 << 20)
                _mallopt(_M_ARENA_MAX, 1)
            except (OSError, AttributeError):
                return False
            _allocator_tuned = bool(trimmed and mapped_above)
        return _allocator_tuned


def _mallopt(parameter: int, value: int) -> int:
    """glibc's ``mallopt(parameter, value)``; the one place that changes the process allocator."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(parameter, value)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast is natively supported *and* faster than fp32 on ``device``.

    CPU: only with AVX-512 BF16 (or AMX) instructions that oneDNN may use (``ONEDNN_MAX_CPU_ISA``
    can forbid them); elsewhere oneDNN emulates bf16 and it is 10-40 times slower than fp32.
    CUDA: compute capability 8.0 (Ampere) or newer.
    """
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        if not torch.backends.mkldnn.is_available() or not onednn_may_use_bf16(os.environ):
            return False
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        for name in checks:
            check = getattr(torch.cpu, name, None)
            if check is not None:
                try:
                    if check():
                        return True
                except RuntimeError:
                    pass
        return False
    return False


def onednn_may_use_bf16(environment: Mapping[str, str]) -> bool:
    """False when ``ONEDNN_MAX_CPU_ISA`` (or its old name ``DNNL_MAX_CPU_ISA``) caps oneDNN below the
    first instruction sets with bf16 (``AVX512_CORE_BF16``, the AMX ones, AVX10): the CPU's own
    flags then no longer say what runs. Used to emulate an AVX2 CPU on a newer one."""
    cap = environment.get("ONEDNN_MAX_CPU_ISA") or environment.get("DNNL_MAX_CPU_ISA") or "ALL"
    cap = cap.strip().upper()
    return cap in ("ALL", "DEFAULT") or any(part in cap for part in ("BF16", "AMX", "AVX10", "FP16"))


def preferred_memory_format(device: torch.device, bf16: bool) -> torch.memory_format:
    """The tensor layout the network runs fastest in on ``device``, with bf16 autocast or not.

    channels_last lets oneDNN run the 3x3 convolutions without layout reorders, which pays in bf16,
    on CUDA and on AVX-512 CPUs; in fp32 on CPUs below AVX-512 (AVX2 laptops and servers) the plain
    layout runs faster. The numbers differ only by float rounding.
    """
    if device.type != "cpu" or bf16:
        return torch.channels_last
    capability = torch.backends.cpu.get_cpu_capability()
    return torch.channels_last if capability.startswith("AVX512") else torch.contiguous_format
