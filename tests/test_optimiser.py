"""Our Adam against torch.optim.Adam: the same parameters after every step."""

import subprocess
import sys

import pytest
import torch

from rrdnet_cli.model import RRDNet
from rrdnet_cli.optimiser import Adam


def _fit(make_optimiser, steps: int, *, skip_branch_at: int = -1) -> list[torch.Tensor]:
    torch.manual_seed(3)
    net = RRDNet()
    image = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(5))
    optimiser, schedule = make_optimiser(net)
    snapshots = []
    for step in range(steps):
        optimiser.zero_grad()
        # A step whose loss does not reach a branch leaves that branch without gradients, as the
        # default's fit does for the noise branch: such parameters must not move.
        maps = net.maps(image, noise=step != skip_branch_at)
        sum(map.square().mean() for map in maps).backward()
        optimiser.step()
        if schedule is not None:
            schedule.step()
        snapshots.append(torch.cat([p.detach().flatten() for p in net.parameters()]).clone())
    return snapshots


@pytest.mark.parametrize("cosine", [False, True])
def test_steps_equal_torch_adam_bit_for_bit(cosine):
    steps = 7

    def ours(net):
        return Adam(net.parameters(), 0.01, cosine_steps=steps if cosine else 0), None

    def torchs(net):
        optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps) if cosine else None
        return optimiser, schedule

    for mine, reference in zip(_fit(ours, steps, skip_branch_at=2), _fit(torchs, steps, skip_branch_at=2)):
        assert torch.equal(mine, reference)


def test_learning_rate_follows_torch_cosine_schedule_past_its_end():
    net = torch.nn.Linear(2, 1)
    reference = torch.optim.Adam(net.parameters(), lr=0.5)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(reference, T_max=4)
    ours = Adam(net.parameters(), 0.5, cosine_steps=4)
    for _ in range(11):  # through the minimum and back up, where torch's formula changes branch
        net(torch.ones(2)).sum().backward()
        reference.step()
        schedule.step()
        ours.step()
        assert ours.learning_rate == reference.param_groups[0]["lr"]


def test_fitting_does_not_import_torch_dynamo():
    # What the optimiser exists for: torch.optim's first Adam of a process imports torch._dynamo
    # (seconds). Run in a fresh interpreter, since this one may have imported it already.
    code = (
        "import sys, torch\n"
        "from rrdnet_cli import enhance, load_config\n"
        "image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))\n"
        "enhance(image, load_config('default', iterations=2, device='cpu', optimisation_side=16))\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
