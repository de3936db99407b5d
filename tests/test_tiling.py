"""The tiled final pass equals the untiled one: tiles overlap by the receptive-field radius."""

import pytest
import torch

from rrdnet_cli import RRDNet
from rrdnet_cli.pipeline import decompose
from rrdnet_cli.tiling import forward_tiled, tiles


def _net() -> RRDNet:
    torch.manual_seed(3)
    net = RRDNet()
    # Larger-than-default biases push activations away from zero, so every ReLU and every
    # zero-padded border matters and a too-small overlap shows up as a clear difference.
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(3.0)
    return net


@pytest.mark.parametrize("tile_size", [16, 17, 24, 40])
def test_tiled_equals_untiled(tile_size):
    image = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    net = _net()
    whole = decompose(net, image, 0)
    tiled = decompose(net, image, tile_size)
    for expected, got in zip(whole, tiled):
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_too_small_overlap_is_detected():
    # Guards the test itself: with one pixel less overlap the tiles visibly disagree.
    image = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    net = _net()
    with torch.no_grad():
        whole = net(image)
        short = forward_tiled(net, image, 16, RRDNet.receptive_field // 2 - 1)
    assert max((a - b).abs().max().item() for a, b in zip(whole, short)) > 1e-4


def test_tiles_cover_image_once():
    covered = torch.zeros(37, 50, dtype=torch.int32)
    for tile in tiles(37, 50, 16, 5):
        covered[tile.top : tile.bottom, tile.left : tile.right] += 1
        assert tile.window_top == max(0, tile.top - 5) and tile.window_bottom == min(37, tile.bottom + 5)
        assert tile.bottom - tile.top <= 16 and tile.right - tile.left <= 16
    assert bool((covered == 1).all())
