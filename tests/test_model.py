import torch

from rrdnet_cli import RRDNet


def test_output_shapes_and_ranges():
    torch.manual_seed(0)
    illumination, reflectance, noise = RRDNet()(torch.rand(1, 3, 12, 16))
    assert illumination.shape == (1, 1, 12, 16)
    assert reflectance.shape == noise.shape == (1, 3, 12, 16)
    assert 0 < illumination.min() and illumination.max() < 1
    assert 0 < reflectance.min() and reflectance.max() < 1
    assert -1 < noise.min() and noise.max() < 1


def test_state_dict_uses_reference_layout():
    keys = set(RRDNet().state_dict())
    for branch in ("illumination_net", "reflectance_net", "noise_net"):
        for index in (0, 2, 4, 6, 8):
            assert f"{branch}.{index}.weight" in keys and f"{branch}.{index}.bias" in keys
    assert len(keys) == 30


def test_receptive_field_is_eleven_pixels():
    net = RRDNet().eval()
    image = torch.zeros(1, 3, 31, 31, requires_grad=True)
    net(image)[0][0, 0, 15, 15].backward()
    touched = image.grad.abs().sum(dim=(0, 1)).nonzero()
    assert touched[:, 0].max() - touched[:, 0].min() + 1 == RRDNet.receptive_field
    assert touched[:, 1].max() - touched[:, 1].min() + 1 == RRDNet.receptive_field


def test_maps_runs_only_the_branches_asked_for():
    torch.manual_seed(0)
    net = RRDNet()
    image = torch.rand(1, 3, 12, 16)
    illumination, reflectance, noise = net(image)
    only_illumination, only_noise = net.maps(image, reflectance=False)
    assert torch.equal(illumination, only_illumination) and torch.equal(noise, only_noise)
    assert [x.shape[1] for x in net.maps(image, noise=False)] == [1, 3]
    assert torch.equal(net.maps(image, noise=False)[1], reflectance)
    assert len(net.maps(image, reflectance=False, noise=False)) == 1


def test_maps_from_the_features_of_the_first_layers_are_the_maps():
    torch.manual_seed(0)
    net = RRDNet()
    image = torch.rand(1, 3, 12, 16)
    whole = net.maps(image, noise=False)
    for layers in range(RRDNet.convolutions):
        features = net.features(image, layers, noise=False)
        assert [x.shape[1] for x in features] == [[3, 16, 32, 64, 32][layers]] * 2
        later = net.maps(image, noise=False, features=features, layers_done=layers)
        assert all(torch.equal(a, b) for a, b in zip(later, whole))


def test_parameters_after_the_first_layers():
    net = RRDNet()
    assert len(net.parameters_after(0)) == len(list(net.parameters())) == 30
    later = net.parameters_after(2)
    assert len(later) == 3 * 3 * 2
    assert later[0] is net.illumination_net[4].weight and later[-1] is net.noise_net[8].bias


def test_to_layout_moves_the_weights_and_keeps_the_outputs():
    torch.manual_seed(0)
    net, image = RRDNet(), torch.rand(1, 3, 12, 16)
    before = net(image)
    net.to_layout(torch.channels_last)
    weights = [parameter for parameter in net.parameters() if parameter.dim() == 4]
    assert len(weights) == 15
    assert all(weight.is_contiguous(memory_format=torch.channels_last) for weight in weights)
    assert not all(weight.is_contiguous() for weight in weights)
    for old, new in zip(before, net(image), strict=True):
        torch.testing.assert_close(old, new)
    net.to_layout(torch.contiguous_format)
    assert all(weight.is_contiguous() for weight in weights)
