"""Paper mode against numbers from the published reference implementation."""

from pathlib import Path

import numpy as np
import pytest
import torch

from rrdnet_cli import RRDNet, enhance, load_config

FIXTURE = Path(__file__).parent / "data" / "rrdnet_reference_parity.npz"
# The fixture's provenance and why these tolerances: docs/algorithm.md, "The parity fixture".
TOLERANCES = {10: 1e-4, 50: 5e-3}


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(FIXTURE))


def reference_net(reference) -> RRDNet:
    net = RRDNet()
    state = {
        key[len("init/") :]: torch.from_numpy(value) for key, value in reference.items() if key.startswith("init/")
    }
    net.load_state_dict(state, strict=True)
    return net


@pytest.mark.parametrize("steps", [10, 50])
def test_paper_matches_reference(reference, steps):
    config = load_config("paper", iterations=steps, device="cpu")
    image = torch.from_numpy(reference["input"])
    enhancement = enhance(image, config, net=reference_net(reference))
    tolerance = TOLERANCES[steps]
    for name in ("illumination", "reflectance", "noise", "result"):
        ours = getattr(enhancement, name).numpy()
        np.testing.assert_allclose(ours, reference[f"{name}_{steps}"], rtol=0, atol=tolerance, err_msg=name)
    ours, theirs = enhancement.losses, reference[f"losses_{steps}"]
    if steps == 10:
        np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    else:
        # After 50 steps rounding is amplified (2 % relative, docs/algorithm.md). The noise
        # term is ~1e-2 and oscillates, so it is held to 2 % of the total its weight gives it.
        np.testing.assert_allclose(ours[:, [0, 1, 2, 4]], theirs[:, [0, 1, 2, 4]], rtol=2e-2)
        noise_share = np.abs(ours[:, 3] - theirs[:, 3]) * config.noise_weight / theirs[:, 4]
        assert noise_share.max() < 2e-2
