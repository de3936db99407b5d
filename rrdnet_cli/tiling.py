"""Run a convolutional network over a large image in overlapping tiles, with the same result.

A stack of 3x3 convolutions with zero padding is exact away from the window's edge: an output
pixel depends only on inputs within the receptive-field radius, and zero padding corrupts one more
pixel per layer from the edge inwards. So each tile is computed on a window that extends ``margin``
(= radius) pixels beyond it on every side that is not an image border, and only the tile's own
pixels are kept. Where a window reaches the image border it stops there, so the network sees the
same zero padding as on the whole image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import torch


class Tile(NamedTuple):
    """Rows/columns ``[top, bottom) x [left, right)`` of the output, computed on a larger window."""

    top: int
    bottom: int
    left: int
    right: int
    window_top: int
    window_bottom: int
    window_left: int
    window_right: int


def _spans(length: int, tile_size: int) -> list[tuple[int, int]]:
    # Equal-ish tiles rather than full tiles plus a sliver: no tiny, inefficient last tile.
    count = max(1, -(-length // tile_size))
    bounds = [round(index * length / count) for index in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def tiles(height: int, width: int, tile_size: int, margin: int) -> Iterator[Tile]:
    """Tiles of at most ``tile_size`` pixels a side covering ``height x width``, with windows."""
    for top, bottom in _spans(height, tile_size):
        for left, right in _spans(width, tile_size):
            yield Tile(
                top,
                bottom,
                left,
                right,
                max(0, top - margin),
                min(height, bottom + margin),
                max(0, left - margin),
                min(width, right + margin),
            )


def forward_tiled(
    network: Callable[[torch.Tensor], Sequence[torch.Tensor]],
    image: torch.Tensor,
    tile_size: int,
    margin: int,
) -> tuple[torch.Tensor, ...]:
    """``network(image)`` computed tile by tile; ``image`` ``(B, C, H, W)``.

    ``network`` returns a sequence of ``(B, C_k, H, W)`` maps (same height and width as its input)
    whose pixels depend only on inputs within ``margin`` pixels. Peak memory is that of one
    window's activations plus the outputs. ``tile_size`` 0, or an image no larger than a tile,
    gives one ordinary call.
    """
    height, width = image.shape[-2:]
    if tile_size == 0 or (height <= tile_size and width <= tile_size):
        return tuple(network(image))
    outputs: list[torch.Tensor] | None = None
    for tile in tiles(height, width, tile_size, margin):
        window = image[..., tile.window_top : tile.window_bottom, tile.window_left : tile.window_right]
        pieces = network(window)
        if outputs is None:
            outputs = [
                torch.empty((*piece.shape[:-2], height, width), dtype=piece.dtype, device=piece.device)
                for piece in pieces
            ]
        rows = slice(tile.top - tile.window_top, tile.bottom - tile.window_top)
        columns = slice(tile.left - tile.window_left, tile.right - tile.window_left)
        for output, piece in zip(outputs, pieces):
            output[..., tile.top : tile.bottom, tile.left : tile.right] = piece[..., rows, columns]
    assert outputs is not None
    return tuple(outputs)
