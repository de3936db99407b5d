import pytest
import torch
import torch.nn.functional as F

from rrdnet_cli import filters


def _image(height=24, width=31, channels=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, channels, height, width, generator=generator)


def _window_means(x, rows, columns, mode):
    """Each window's mean written out: every offset of a padded copy, summed."""
    padded = F.pad(x, ((columns - 1) // 2, columns // 2, (rows - 1) // 2, rows // 2), mode=mode)
    height, width = x.shape[-2:]
    total = torch.zeros_like(x, dtype=torch.float64)
    for dy in range(rows):
        for dx in range(columns):
            total += padded[..., dy : dy + height, dx : dx + width].double()
    return (total / (rows * columns)).float()


@pytest.mark.parametrize("size", [1, 3, 5, (3, 7), (4, 2)])
@pytest.mark.parametrize("border", ["reflect", "replicate", "constant"])
def test_box_blur_is_the_mean_of_each_window(size, border):
    x = _image()
    rows, columns = (size, size) if isinstance(size, int) else size
    assert torch.allclose(filters.box_blur(x, size, border), _window_means(x, rows, columns, border), atol=1e-6)


def test_box_blur_rejects_an_empty_window():
    with pytest.raises(ValueError, match="at least 1"):
        filters.box_blur(_image(), 0)


def test_gaussian_kernel_is_the_specified_one():
    expected = torch.tensor([0.17820326, 0.21052227, 0.22254894, 0.21052227, 0.17820326])
    assert torch.allclose(filters.gaussian_kernel(5, 3.0), expected, atol=1e-8)
    assert filters.gaussian_kernel(7, 1.5).sum().item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="odd"):
        filters.gaussian_kernel(4, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        filters.gaussian_kernel(5, 0.0)


def test_gaussian_blur_is_a_zero_padded_convolution_per_channel():
    x = _image(channels=3)
    taps = filters.gaussian_kernel(5, 3.0, torch.float64)
    kernel = torch.outer(taps, taps)
    padded = F.pad(x.double(), (2, 2, 2, 2))
    expected = torch.zeros_like(x, dtype=torch.float64)
    for dy in range(5):
        for dx in range(5):
            expected += kernel[dy, dx] * padded[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]]
    assert torch.allclose(filters.gaussian_blur(x, 5, 3.0), expected.float(), atol=1e-6)


def test_guided_filter_by_a_flat_guide_is_a_double_box_mean():
    x = _image(channels=1)
    guide = torch.full_like(x, 0.5)
    once = filters.box_blur(x, 5)
    assert torch.allclose(filters.guided_filter(guide, x, 5, 1e-2), filters.box_blur(once, 5), atol=1e-5)


def test_guided_filter_keeps_an_edge_and_smooths_noise_beside_it():
    generator = torch.Generator().manual_seed(1)
    step = torch.zeros(1, 1, 32, 32)
    step[..., 16:, :] = 1.0
    noisy = step + 0.02 * torch.randn(step.shape, generator=generator)
    smoothed = filters.guided_filter(noisy, noisy, 7, 0.05**2)
    # The step survives (a box blur would ramp it over 7 pixels) ...
    assert smoothed[..., 15, :].mean() < 0.1 and smoothed[..., 16, :].mean() > 0.9
    # ... and the noise on either side of it is reduced.
    assert smoothed[..., 2:12, :].std() < 0.6 * noisy[..., 2:12, :].std()


def test_fast_guided_filter_is_close_to_the_full_one_on_a_smooth_image():
    rows = torch.linspace(0, 1, 64).view(1, 1, 64, 1)
    columns = torch.linspace(0, 1, 48).view(1, 1, 1, 48)
    smooth = 0.2 + 0.5 * rows * columns + 0.1 * torch.sin(6 * columns)
    full = filters.guided_filter(smooth, smooth, 9, 1e-3)
    fast = filters.guided_filter(smooth, smooth, 9, 1e-3, subsample=2)
    assert fast.shape == smooth.shape
    assert (fast - full).abs().max() < 0.02


def test_subsampled_indices_stride_on_multiples_and_keep_one_pixel_of_short_axes():
    assert filters._subsampled_indices(12, 4, torch.device("cpu")).tolist() == [0, 4, 8]
    assert filters._subsampled_indices(3, 4, torch.device("cpu")).tolist() == [0]
    indices = filters._subsampled_indices(14, 4, torch.device("cpu"))
    assert len(indices) == 3 and indices.tolist() == sorted(indices.tolist())
