import math

import torch

from rrdnet_cli import losses

# The normalised 1-D kernel the reference uses (docs/algorithm.md).
SPEC_KERNEL = torch.tensor([0.17820326, 0.21052227, 0.22254894, 0.21052227, 0.17820326])


def test_gray_uses_bt601_weights():
    image = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(losses.gray(image), torch.full((1, 1, 2, 2), 0.299))


def test_gradient_of_a_ramp():
    # x = 0.1 * row: near differences are 0.2 (2 rows apart), far ones 0.4, so g_h = 0.08 everywhere.
    ramp = (0.1 * torch.arange(8.0)).view(1, 1, 8, 1).expand(1, 1, 8, 6)
    grad_h, grad_w = losses.gradient(ramp)
    assert grad_h.shape == grad_w.shape == ramp.shape
    assert torch.allclose(grad_h, torch.full_like(ramp, 0.08))
    assert torch.count_nonzero(grad_w) == 0


def test_gradient_replicates_borders():
    x = torch.rand(1, 2, 9, 7)
    grad_h, _ = losses.gradient(x)
    near = (x[:, :, 2:] - x[:, :, :-2]).abs()
    far = (x[:, :, 4:] - x[:, :, :-4]).abs()
    assert torch.allclose(grad_h[:, :, 0], near[:, :, 0] * far[:, :, 0])
    assert torch.allclose(grad_h[:, :, 4], near[:, :, 3] * far[:, :, 2])


def test_blur_is_the_spec_gaussian_with_zero_padding():
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[0, 0, 4, 4] = 1.0
    response = losses.blur(impulse, 5, 3.0)[0, 0]
    assert torch.allclose(response[2:7, 2:7], torch.outer(SPEC_KERNEL, SPEC_KERNEL), atol=1e-7)
    corner = torch.zeros(1, 1, 9, 9)
    corner[0, 0, 0, 0] = 1.0
    # Zero padding: mass that falls outside the image is lost, not reflected back.
    assert math.isclose(losses.blur(corner, 5, 3.0).sum().item(), SPEC_KERNEL[2:].sum().item() ** 2, rel_tol=1e-5)


def test_normalize01():
    x = torch.tensor([[-2.0, 0.0], [2.0, 6.0]])
    assert torch.equal(losses.normalize01(x), torch.tensor([[0.0, 0.25], [0.5, 1.0]]))


def test_norms_are_sums_not_means():
    illumination = torch.full((1, 1, 6, 6), 0.5)
    noise = torch.full((1, 3, 6, 6), 0.2)
    assert math.isclose(losses.noise_loss(illumination, noise).item(), math.sqrt(108 * 0.01), rel_tol=1e-6)
    image = torch.full((1, 3, 6, 6), 0.3)
    reflectance = torch.full((1, 3, 6, 6), 0.4)
    expected = 108 * abs(0.3 - (0.5 * 0.4 + 0.2))
    assert math.isclose(
        losses.reconstruction_loss(image, illumination, reflectance, noise).item(), expected, rel_tol=1e-5
    )


def test_priors_shapes_and_flat_image():
    image = torch.full((1, 3, 10, 12), 0.2)
    priors = losses.image_priors(image, 5, 3.0)
    for tensor in priors:
        assert tensor.shape == (1, 1, 10, 12)
    # Flat image: no gradient, so the smoothness weights hit their 1 / 1e-4 ceiling.
    assert torch.allclose(priors.weight_h, torch.full_like(priors.weight_h, 1e4))
    assert torch.allclose(priors.max_channel, torch.full_like(priors.max_channel, 0.2))


def test_reflectance_weight_is_not_detached():
    image = torch.rand(1, 3, 10, 10) * 0.5 + 0.1
    priors = losses.image_priors(image, 5, 3.0)
    illumination = torch.full((1, 1, 10, 10), 0.5, requires_grad=True)
    reflectance = torch.rand(1, 3, 10, 10)
    # With fidelity weight 0, only the weight's dependence on L can carry a gradient to L.
    losses.reflectance_loss(image, illumination, reflectance, priors, 0.0).backward()
    assert illumination.grad.abs().sum() > 0
