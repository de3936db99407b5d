"""training/train_initial_weights.py, the script that makes the learned start: its averaging and
snapshots, on a few tiny meta-iterations."""

import importlib.util
from pathlib import Path

import torch

from rrdnet_cli import weights

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "train_initial_weights.py"
TINY = ["--iterations", "2", "--inner-steps", "1", "--side", "24", "--noise-map", "zero", "--precision", "fp32"]


def load_script():
    spec = importlib.util.spec_from_file_location("train_initial_weights", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(script, *extra):
    # The script seeds torch's global generator, as a program may; the test process's is kept.
    with torch.random.fork_rng(devices=[]):
        return script.train(script.arguments([*TINY, *extra])).state_dict()


def test_average_from_writes_the_mean_of_the_starts(tmp_path):
    script = load_script()
    last = train(script, "--output", str(tmp_path / "last.npz"), "--snapshot-every", "2")
    averaged = train(script, "--average-from", "0", "--output", str(tmp_path / "mean.npz"), "--snapshot-every", "1")
    first = weights.read(tmp_path / "mean.1.npz")  # after one meta-iteration the mean is that start
    # Without --average-from the last start is written, as the snapshot after it says.
    assert all(torch.equal(value, weights.read(tmp_path / "last.2.npz")[key]) for key, value in last.items())
    moved = 0.0
    for key, value in averaged.items():
        torch.testing.assert_close(value, (first[key] + last[key]) / 2, rtol=0, atol=1e-6)
        moved = max(moved, (last[key] - first[key]).abs().max().item())
    assert moved > 1e-4  # the two starts differ, so the mean is not either of them


def test_darkest_and_brightest_bound_the_exposure():
    import numpy as np

    script = load_script()
    photos = [np.full((40, 60, 3), 0.8)]
    rng = np.random.default_rng(0)
    darkest = max(script.dark_task(rng, photos, 24, (0.001, 0.002))[0].mean().item() for _ in range(5))
    brightest = min(script.dark_task(rng, photos, 24, (0.3, 0.35))[0].mean().item() for _ in range(5))
    assert darkest < 0.1 < brightest


def test_the_cosine_inner_schedule_anneals_after_the_first_step():
    script = load_script()

    def start(schedule, inner_steps):
        # One meta-iteration with a whole outer step: the start becomes the inner fit's result.
        options = ["--iterations", "1", "--outer-step", "1.0", "--inner-steps", inner_steps]
        return train(script, *options, "--inner-schedule", schedule)

    # The first step is taken at the full rate either way; over two steps the cosine takes its
    # second at half the rate, so it ends between one step and two constant ones.
    one_constant, one_cosine = start("constant", "1"), start("cosine", "1")
    assert all(torch.equal(one_constant[key], one_cosine[key]) for key in one_constant)
    two_constant, two_cosine = start("constant", "2"), start("cosine", "2")
    assert any(not torch.equal(two_constant[key], two_cosine[key]) for key in two_constant)
    assert any(not torch.equal(one_cosine[key], two_cosine[key]) for key in one_cosine)


def test_frozen_layers_are_neither_fitted_nor_moved_by_the_outer_step():
    script = load_script()
    options = ["--iterations", "1", "--outer-step", "1.0", "--inner-steps", "2"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # train() draws the first stage's random start from this seed
        from rrdnet_cli.model import RRDNet

        start = RRDNet().state_dict()
    held = train(script, *options, "--frozen-layers", "2")
    for key, value in held.items():
        branch, layer = key.split(".")[:2]
        # The noise branch is not run (--noise-map zero), so it keeps its start too.
        assert torch.equal(value, start[key]) == (int(layer) < 4 or branch == "noise_net"), key
