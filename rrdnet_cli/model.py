"""The RRDNet network: three independent CNN branches fed the same image."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional, cast

import torch
from torch import nn


def _branch(out_channels: int) -> nn.Sequential:
    # Layer positions (0, 2, 4, 6, 8) match the reference's state_dict keys, so its weights load.
    # The ReLUs work in place: no convolution needs its own output again (its backward reads its
    # input), so each layer saves a copy of its activations, a sixth of the final pass's time.
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(64, 32, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, out_channels, 3, padding=1),
    )


class RRDNet(nn.Module):
    """Splits an image into illumination, reflectance and noise (robust Retinex).

    Input ``(B, 3, H, W)``; outputs illumination ``(B, 1, H, W)`` in (0, 1), reflectance
    ``(B, 3, H, W)`` in (0, 1) and noise ``(B, 3, H, W)`` in (-1, 1).
    """

    # Five 3x3 convolutions: each output pixel sees 11x11 input pixels.
    receptive_field = 11
    convolutions = 5

    def __init__(self) -> None:
        super().__init__()
        self.illumination_net = _branch(1)
        self.reflectance_net = _branch(3)
        self.noise_net = _branch(3)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.maps(image)  # type: ignore[return-value]

    # A branch alternates convolution and ReLU: its first k convolutions, with their ReLUs, are its
    # first 2k modules, which is how features, maps and parameters_after slice it.
    def _branches(
        self, illumination: bool, reflectance: bool, noise: bool
    ) -> list[tuple[nn.Sequential, Callable[[torch.Tensor], torch.Tensor]]]:
        chosen = [
            (self.illumination_net, torch.sigmoid, illumination),
            (self.reflectance_net, torch.sigmoid, reflectance),
            (self.noise_net, torch.tanh, noise),
        ]
        return [(branch, squash) for branch, squash, asked in chosen if asked]

    def maps(
        self,
        image: torch.Tensor,
        reflectance: bool = True,
        noise: bool = True,
        illumination: bool = True,
        *,
        features: Optional[tuple[torch.Tensor, ...]] = None,
        layers_done: int = 0,
    ) -> tuple[torch.Tensor, ...]:
        """Illumination, reflectance and noise, in that order, where asked: a branch not asked for
        is not run (each is a third of the work).

        With ``features`` (``features(image, layers_done, ...)`` for the same branches), each
        branch starts from them and runs only its convolutions after the first ``layers_done``.
        """
        branches = self._branches(illumination, reflectance, noise)
        inputs = features if features is not None else (image,) * len(branches)
        return tuple(squash(branch[2 * layers_done :](x)) for (branch, squash), x in zip(branches, inputs, strict=True))

    def features(
        self,
        image: torch.Tensor,
        layers: int,
        reflectance: bool = True,
        noise: bool = True,
        illumination: bool = True,
    ) -> tuple[torch.Tensor, ...]:
        """Each asked branch's activations after its first ``layers`` convolutions (and their
        ReLUs), in the order of ``maps``: ``(1, C, H, W)`` each."""
        return tuple(branch[: 2 * layers](image) for branch, _ in self._branches(illumination, reflectance, noise))

    def to_layout(self, layout: torch.memory_format) -> None:
        """Its convolutions' weights in ``layout`` (channels_last or contiguous), in place."""
        # Module.to takes memory_format, but not every torch's type stubs say so (2.13's do not).
        cast(Any, self).to(memory_format=layout)

    def parameters_after(self, layers: int) -> list[nn.Parameter]:
        """The parameters of every branch's convolutions after its first ``layers``."""
        return [
            parameter
            for branch in (self.illumination_net, self.reflectance_net, self.noise_net)
            for parameter in branch[2 * layers :].parameters()
        ]
