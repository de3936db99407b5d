"""Adam over a network's parameters, without ``torch.optim.Optimizer``'s start-up cost.

Creating the first ``torch.optim.Adam`` of a process imports ``torch._dynamo`` (its
``__init__`` wraps methods in ``torch._disable_dynamo``), which takes longer than fitting a small
photo. The update itself stays torch's: each step calls the
public functional ``torch.optim.adam.adam`` that ``torch.optim.Adam.step`` calls, with the state
laid out the same way, so the parameters after every step are the ones ``torch.optim.Adam`` (and
``CosineAnnealingLR``, for the cosine schedule) gives, bit for bit on the CPU (tested).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim.adam import adam

BETAS = (0.9, 0.999)
EPSILON = 1e-8


class Adam:
    """Adam with torch's defaults (no weight decay, no AMSGrad) at a constant learning rate, or with
    ``cosine_steps`` > 0 one annealed to 0 over that many steps (``CosineAnnealingLR(T_max=cosine_steps)``)."""

    def __init__(
        self, parameters: Iterable[torch.nn.Parameter], learning_rate: float, *, cosine_steps: int = 0
    ) -> None:
        self.parameters = [parameter for parameter in parameters if parameter.requires_grad]
        self.base_learning_rate = learning_rate
        self.learning_rate = learning_rate
        self.cosine_steps = cosine_steps
        self.steps_taken = 0
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.parameters]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.parameters]
        # torch.optim.Adam keeps the step count as a CPU tensor of the default float type per
        # parameter; its bias corrections are computed from that.
        self.state_steps = [torch.tensor(0.0) for _ in self.parameters]

    def zero_grad(self) -> None:
        for parameter in self.parameters:
            parameter.grad = None

    def step(self) -> None:
        """One update from the gradients the parameters hold (those without one are left)."""
        indices = [index for index, parameter in enumerate(self.parameters) if parameter.grad is not None]
        with torch.no_grad():
            adam(
                [self.parameters[i] for i in indices],
                [grad for i in indices if (grad := self.parameters[i].grad) is not None],
                [self.exp_avgs[i] for i in indices],
                [self.exp_avg_sqs[i] for i in indices],
                [],
                [self.state_steps[i] for i in indices],
                amsgrad=False,
                beta1=BETAS[0],
                beta2=BETAS[1],
                lr=self.learning_rate,
                weight_decay=0.0,
                eps=EPSILON,
                maximize=False,
            )
        self.steps_taken += 1
        if self.cosine_steps:
            self.learning_rate = self._annealed(self.learning_rate)

    def _annealed(self, current: float) -> float:
        # CosineAnnealingLR's recursive form (with eta_min 0), not the closed one: the two differ in
        # the last bits, and the schedule's learning rates are then exactly torch's.
        step, total = self.steps_taken, self.cosine_steps
        if (step - 1 - total) % (2 * total) == 0:
            return current + self.base_learning_rate * (1 - math.cos(math.pi / total)) / 2
        return (1 + math.cos(math.pi * step / total)) / (1 + math.cos(math.pi * (step - 1) / total)) * current
