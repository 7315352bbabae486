"""What the two TDA adapters share (after Gou et al., ICML 2024, TAO): at every `every`-th sampler step where the
noise level is at most the adapter's threshold, `iters` Adam steps fit an adapted degradation to the measurement
with the clean estimate x̂0 held fixed (detached), and each batch leaves one trace record.

The physical adapter (`adaptation.sampler.tda_physical.PhysicalTDA`) fits the operator's own parameters, the
network adapter (`adaptation.sampler.tda_network.NetworkTDA`) a conv adapter around it; each defines the loss,
what it prepares per batch and what it records.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from adaptation.base import Adapter
from algorithms.base import Reconstruction, Step
from inverse_problems.operators.base import ForwardOperator
from priors.base import Prior


class TDABase(Adapter):
    """The per-step fitting loop of a TDA adapter (the `lr`, `iters`, `every` and `sigma_max` options)."""

    name = "tda"
    kind = ""  # physical | network: recorded with every batch

    def __init__(self, lr: float = 0.02, iters: int = 1, every: int = 1, sigma_max: float = 1.0) -> None:
        super().__init__()
        if iters < 1 or every < 1:
            raise ValueError(f"iters and every must be >= 1, got iters={iters}, every={every}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.lr, self.iters, self.every, self.sigma_max = lr, iters, every, float(sigma_max)
        self.history: list[dict[str, Any]] = []
        self._clear_batch()

    def reset(self) -> None:
        super().reset()
        self._clear_batch()

    def _clear_batch(self) -> None:
        self._base: ForwardOperator | None = None  # the operator the batch's loss degrades through
        self._params: dict[str, nn.Parameter] = {}  # parameters with thresholds of their own (physical)
        self._sigma_max_of: dict[str, float] = {}
        self._opt: torch.optim.Optimizer | None = None
        self._record: dict[str, Any] = {}

    # hooks --------------------------------------------------------------------------------------
    def prepare(self, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> tuple[ForwardOperator, Prior | None]:
        self._clear_batch()
        self._base = operator
        self._record = {"adapter": self.name, "kind": self.kind, "adapting": bool(self.adapting), "steps_adapted": 0,
                        "loss_first": None, "loss_last": None}
        return self._prepare(y, operator), prior

    def _prepare(self, y: Tensor, operator: ForwardOperator) -> ForwardOperator:
        """Set up the batch's fit (`_opt`, ...); returns the operator the solver uses."""
        raise NotImplementedError

    def _loss(self, x0: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def _has_work(self) -> bool:
        return self._opt is not None

    def _after_step(self, x0: Tensor, y: Tensor, sigma: float) -> None:
        """What follows the Adam steps at an adapted step (the physical kind's noise level)."""

    def should_adapt(self, step: Step) -> bool:
        return (self.adapting and self._has_work() and step.index % self.every == 0
                and float(torch.as_tensor(step.sigma).max()) <= self.threshold())

    def threshold(self) -> float:
        """The largest sigma at which anything is adapted."""
        if self._sigma_max_of:
            return max(self._sigma_max_of.values())
        return self.sigma_max

    def on_step(self, step: Step) -> Tensor | None:
        if not self.should_adapt(step):
            return None
        x0 = step.x0.detach()
        y = step.y
        sigma = float(torch.as_tensor(step.sigma).max())
        frozen = [p for k, p in self._params.items() if sigma > self._sigma_max_of.get(k, math.inf)]
        if self._opt is None:  # a noise level only: nothing to step, the loss is recorded as is
            with torch.no_grad():
                loss = self._loss(x0, y)
        else:
            with torch.enable_grad():
                for _ in range(self.iters):
                    loss = self._loss(x0, y)
                    self._opt.zero_grad(set_to_none=True)
                    loss.backward()
                    for p in frozen:  # above its own threshold: Adam skips a parameter without a gradient
                        p.grad = None
                    self._opt.step()
        self._after_step(x0, y, sigma)
        value = float(loss.detach())
        if self._record["loss_first"] is None:
            self._record["loss_first"] = value
        self._record["loss_last"] = value
        self._record["steps_adapted"] += 1
        return None

    def _finish(self, recon: Reconstruction) -> None:
        """The batch's final values into its record (and what the scheme carries)."""

    def refine(self, recon: Reconstruction, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> Reconstruction:
        self._finish(recon)
        self.history.append(self._record)
        recon.trace.append(self._record)
        self._clear_batch()
        return recon


def summary(t: Tensor, limit: int = 256) -> Any:
    """A JSON-friendly value: the list of values (complex as [re, im]) when small, else shape and norm."""
    t = t.detach().cpu()
    if t.numel() > limit:
        return {"shape": list(t.shape), "norm": float(t.abs().pow(2).sum().sqrt())}
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.tolist()
