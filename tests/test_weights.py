"""The shipped meta-learned starting weights: file, format, provenance, and that they help."""

import torch

from rrdnet_cli import RRDNet, load_config, losses, weights
from rrdnet_cli.pipeline import initial_network, loss_terms, run_network

from helpers import dark_tensor


def test_learned_weights_load_into_the_network_and_stay_small():
    net = weights.learned_network()
    assert set(net.state_dict()) == set(RRDNet().state_dict())
    assert weights.LEARNED_WEIGHTS.stat().st_size < 1024 * 1024
    assert all(torch.isfinite(value).all() for value in net.state_dict().values())


def test_learned_weights_do_not_draw_from_the_global_generator():
    torch.manual_seed(7)
    before = torch.get_rng_state()
    first = weights.learned_network().state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    second = weights.learned_network().state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_write_then_read_gives_the_same_weights(tmp_path):
    net = weights.learned_network()
    weights.write(net, tmp_path / "copy.npz")
    again = weights.read(tmp_path / "copy.npz")
    assert all(torch.equal(again[key], value) for key, value in net.state_dict().items())


def test_provenance_names_every_training_photo():
    text = (weights.LEARNED_WEIGHTS.parent / "initial_weights.md").read_text()
    for photo in ("astronaut", "chelsea", "rocket", "hubble_deep_field", "retina", "brick", "grass", "gravel"):
        assert photo in text


def test_presets_choose_their_start():
    assert load_config("default").initial_weights == "learned"
    assert load_config("paper").initial_weights == "random"


def test_learned_start_is_closer_to_a_fit_than_the_random_one():
    # What the weights are for: a dark photo they never saw starts at a lower RRDNet loss.
    image = dark_tensor(48, 64, seed=3)
    config = load_config("default", device="cpu", precision="fp32")
    priors = losses.image_priors(image, config.blur_size, config.blur_sigma)

    def start_loss(initial_weights):
        net = initial_network(config.replace(initial_weights=initial_weights), image)
        with torch.no_grad():
            return loss_terms(image, run_network(net, image, False), priors, config).total.item()

    assert start_loss("learned") < 0.8 * start_loss("random")


def test_a_fit_leaves_the_learned_start_unchanged():
    # The weights are read once per process: fitting a network made from them must not move them.
    from rrdnet_cli import enhance

    before = {key: value.clone() for key, value in weights.learned_network().state_dict().items()}
    enhance(dark_tensor(), load_config("default", iterations=2, device="cpu", optimisation_side=32))
    after = weights.learned_network().state_dict()
    assert all(torch.equal(after[key], value) for key, value in before.items())
    assert all(torch.equal(after[key], value) for key, value in weights.read(weights.LEARNED_WEIGHTS).items())
