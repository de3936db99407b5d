"""The RRDNet network: three independent CNN branches fed the same image."""

from __future__ import annotations

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

    def __init__(self) -> None:
        super().__init__()
        self.illumination_net = _branch(1)
        self.reflectance_net = _branch(3)
        self.noise_net = _branch(3)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.maps(image)  # type: ignore[return-value]

    def maps(
        self, image: torch.Tensor, reflectance: bool = True, noise: bool = True, illumination: bool = True
    ) -> tuple[torch.Tensor, ...]:
        """Illumination, reflectance and noise, in that order, where asked: a branch not asked for
        is not run (each is a third of the work)."""
        outputs = []
        if illumination:
            outputs.append(torch.sigmoid(self.illumination_net(image)))
        if reflectance:
            outputs.append(torch.sigmoid(self.reflectance_net(image)))
        if noise:
            outputs.append(torch.tanh(self.noise_net(image)))
        return tuple(outputs)
