"""RRDNet starting weights: the meta-learned set the ``default`` preset fits from, and its file format.

The weights are stored as a plain ``.npz`` of float32 arrays keyed like ``RRDNet.state_dict()``
(no pickle, so loading runs no code). How they were made, from which photos under which licences,
is in ``data/initial_weights.md``; ``training/train_initial_weights.py`` remakes them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError
from .model import RRDNet

LEARNED_WEIGHTS = Path(__file__).resolve().parent / "data" / "initial_weights.npz"


def read(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from an ``.npz`` written by ``write``."""
    with np.load(path, allow_pickle=False) as arrays:
        return {key: torch.from_numpy(arrays[key].astype(np.float32)) for key in arrays.files}


def write(net: RRDNet, path: str | Path) -> None:
    arrays = {key: value.detach().cpu().float().numpy() for key, value in net.state_dict().items()}
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


@functools.lru_cache(maxsize=1)
def _learned_state() -> dict[str, torch.Tensor]:
    # Read once per process, not once per photo of a batch; load_state_dict copies, so the
    # cached tensors are never changed.
    return read(LEARNED_WEIGHTS)


def learned_network() -> RRDNet:
    """A fresh RRDNet holding the shipped meta-learned starting weights.

    Built inside a fork of the CPU generator: the constructor's random draws are overwritten at
    once, and they must not move the caller's global RNG.
    """
    with torch.random.fork_rng(devices=[]):
        net = RRDNet()
    try:
        net.load_state_dict(_learned_state())
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ConfigError(f"initial_weights 'learned': cannot load {LEARNED_WEIGHTS} ({error})") from None
    return net
