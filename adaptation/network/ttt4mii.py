"""Test-time training of the `uvi-lite` interpolator (TTT4MII: Zhang, Lei, Zheng, Chen, Xie, "Test Time Training for
4D Medical Image Interpolation"), on the acquired frames of the batch only.

Each adapter trains one part of a copy of the network (the pretrained weights are never changed in place;
AdaptedAlgorithm puts them back after the batch) with Adam for `steps` steps on a self-supervised loss, then installs
the copy for the batch's prediction:

- `ttt-rot`: L = CE(h(pool(f(rot_k x))), k), rotation prediction by the jointly trained head h (adaptive pooling,
  any frame size); updates the feature extractor f only (flow and refinement networks frozen).
- `ttt-mae`: L = sum_masked (d(f(x * (1 - M))) - x)^2 / |M|, pixel-space masked autoencoding of the acquired frames,
  a random `mask_ratio` (0.75; the paper's 0.8 as an option) of patch x patch cells masked, the target x without
  gradient; updates f (the head d frozen), so the gradient reaches the features the refinement uses.
- `ttt-flow`: the registration loss of each acquired pair that brackets missing frames (-NCC_9 + Charbonnier both
  ways + squared flow gradients); updates the flow network.

The schemes (adaptation/schemes.py) decide the start of each batch: `online` resets the weights *and* Adam's moments
to the pretrained state every batch; `minibatch` carries both from the previous batch; `naive` adapts on every batch
first, then predicts with the result frozen. Both travel in the adapter's `carried` state.
"""
from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from adaptation.base import Adapter
from algorithms.base import Reconstruction
from algorithms.networks.uvi import (UviLite, acquired_frames, acquired_pairs, mae_loss, patch_mask,
                                     registration_loss, rotation_loss)
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.random import SampleGenerators, item_seed
from priors.base import Prior


def optimiser_state(opt: torch.optim.Optimizer) -> dict[str, Tensor]:
    """Adam's per-parameter state as flat tensors {"opt.<index>.<key>"} (so a scheme can carry or reset it)."""
    return {f"opt.{i}.{k}": torch.as_tensor(v).detach().clone() for i, s in opt.state_dict()["state"].items()
            for k, v in s.items()}


def load_optimiser_state(opt: torch.optim.Optimizer, carried: dict[str, Tensor]) -> None:
    """Restore what `optimiser_state` flattened (nothing when it holds no optimiser entries)."""
    state: dict[int, dict[str, Tensor]] = {}
    for key, v in carried.items():
        if key.startswith("opt."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v.clone()
    if state:
        opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


class InterpTTT(Adapter):
    """Base: adapt `part` of a copy of uvi-lite's network on `loss(net, y, operator, generator)`, install it."""

    name = "ttt"
    part = "features"  # the UviLite submodule trained: features (f) or flow
    interpolator = True  # wraps only uvi-lite (the adapter battery builds that case for it)

    def __init__(self, lr: float = 1e-3, iters: int = 5, seed: int = 0) -> None:
        super().__init__()
        if not lr > 0 or iters < 0:
            raise ValueError(f"{self.name} needs lr > 0 and iters >= 0, got lr={lr}, iters={iters}")
        self.lr, self.iters, self.seed = lr, iters, seed
        self.history: list[dict[str, Any]] = []
        self._record: dict[str, Any] = {}

    def network(self) -> UviLite:
        net = getattr(self.algorithm, "net", None)
        if not isinstance(net, UviLite):
            raise ValueError(f"{self.name} adapts the uvi-lite interpolator; use it as --algo uvi-lite+{self.name}")
        return net

    def loss(self, net: UviLite, y: Tensor, operator: ForwardOperator, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def trainable(self, net: UviLite) -> nn.Module:
        """The submodule of the batch's copy `net` that the adapter's optimiser steps (default: `part`)."""
        return getattr(net, self.part)

    def batch_generator(self, step: int) -> torch.Generator:
        """One generator for the step, seeded from the samples' own seeds (the run's) and the adapter's seed."""
        g = self.generator
        seeds = [x.initial_seed() for x in g.generators] if isinstance(g, SampleGenerators) else \
            ([g.initial_seed()] if isinstance(g, torch.Generator) else [])
        return torch.Generator().manual_seed(item_seed(self.name, self.seed, step, *seeds))

    def prepare(self, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> tuple[ForwardOperator, Prior | None]:
        start = time.perf_counter()
        net = copy.deepcopy(self.network()).requires_grad_(False)
        part: nn.Module = self.trainable(net)
        if self.carried:
            part.load_state_dict({k[5:]: v for k, v in self.carried.items() if k.startswith("part.")})
        params = list(part.parameters())
        opt = torch.optim.Adam(params, lr=self.lr)
        load_optimiser_state(opt, self.carried)
        self._record = {"adapter": self.name, "adapting": bool(self.adapting), "steps": 0, "loss_first": None,
                        "loss_last": None}
        if self.adapting and self.iters > 0:
            part.requires_grad_(True)
            net.train()
            with torch.enable_grad():
                for step in range(self.iters):
                    loss = self.loss(net, y.detach(), operator, self.batch_generator(step))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    self._record["loss_first" if step == 0 else "loss_last"] = float(loss.detach())
                    self._record["steps"] += 1
            self.carried = {**{f"part.{k}": v.detach().clone() for k, v in part.state_dict().items()},
                            **optimiser_state(opt)}
        self.algorithm.net = net.eval().requires_grad_(False)
        self._record["seconds"] = time.perf_counter() - start
        return operator, prior

    def refine(self, recon: Reconstruction, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> Reconstruction:
        record, self._record = self._record, {}
        self.history.append(record)
        return replace(recon, seconds=recon.seconds + record.get("seconds", 0.0), trace=recon.trace + [record])


class TTTRot(InterpTTT):
    """`ttt-rot`: rotation prediction on the acquired frames; updates f (module docstring)."""

    name = "ttt-rot"
    part = "features"

    def loss(self, net: UviLite, y: Tensor, operator: ForwardOperator, generator: torch.Generator) -> Tensor:
        return rotation_loss(net, acquired_frames(y, operator), generator)


class TTTMAE(InterpTTT):
    """`ttt-mae`: pixel-space MAE of the acquired frames (mask_ratio 0.75, 0.8 in the paper); updates f.

    `release_faithful=True` reproduces what the released TTT4MII code (`ChaosTheProducer/Ours` @ 81db9f1) does
    instead, for one row of the table: a feature-space MAE (a 1x1 convolution on f's concatenated features of the
    masked frames, regressed on f's features of the unmasked frames: the encoder's own output as the target), a head
    of its own that was not trained with the encoder (sequential heads; here initialised from the adapter's seed),
    and an optimiser that steps only that head: the encoder f never changes, so every scheme (naive, mini-batch,
    online) predicts exactly what uvi-lite does, bit for bit (tested)."""

    name = "ttt-mae"
    part = "features"

    def __init__(self, lr: float = 1e-3, iters: int = 5, mask_ratio: float = 0.75, patch: int = 4,
                 seed: int = 0, release_faithful: bool = False) -> None:
        super().__init__(lr, iters, seed)
        if not 0 < mask_ratio < 1 or patch < 1:
            raise ValueError(f"ttt-mae needs 0 < mask_ratio < 1 and patch >= 1, got {mask_ratio}, {patch}")
        self.mask_ratio, self.patch = mask_ratio, patch
        self.release_faithful = bool(release_faithful)

    def trainable(self, net: UviLite) -> nn.Module:
        if not self.release_faithful:
            return net.features
        width = sum(net.features.widths)
        g = torch.Generator().manual_seed(item_seed(self.name, "release-head", self.seed))
        head = nn.Conv2d(width, width, 1)
        with torch.no_grad():
            bound = 1.0 / width ** 0.5
            head.weight.copy_(torch.empty_like(head.weight).uniform_(-bound, bound, generator=g))
            head.bias.copy_(torch.empty_like(head.bias).uniform_(-bound, bound, generator=g))
        net.release_mae = head  # on the batch's copy only; the prediction never reads it
        return head

    def loss(self, net: UviLite, y: Tensor, operator: ForwardOperator, generator: torch.Generator) -> Tensor:
        x = acquired_frames(y, operator)
        if self.release_faithful:
            return feature_mae_loss(net, net.release_mae, x, generator, self.mask_ratio, self.patch)
        return mae_loss(net, x, generator, self.mask_ratio, self.patch)


def feature_mae_loss(net: UviLite, head: nn.Module, x: Tensor, generator: torch.Generator, ratio: float,
                     patch: int) -> Tensor:
    """The released code's MAE: head(f(masked x)) regressed on f(x), f's features upsampled and concatenated (the
    encoder's own output as the target), mean squared error on the masked cells."""
    xp, _ = net.pad(x)
    m = patch_mask(tuple(xp.shape), ratio, patch, generator, xp.device).to(xp)

    def stacked(z: Tensor) -> Tensor:
        return torch.cat([f if f.shape[-2:] == z.shape[-2:] else
                          F.interpolate(f, size=z.shape[-2:], mode="bilinear", align_corners=False)
                          for f in net.features(z)], 1)

    pred, target = head(stacked(xp * (1 - m))), stacked(xp)
    return ((pred - target).pow(2) * m).sum() / (m.sum() * pred.shape[1]).clamp_min(1.0)


class TTTFlow(InterpTTT):
    """`ttt-flow`: registration of the acquired pairs that bracket missing frames; updates the flow network."""

    name = "ttt-flow"
    part = "flow"

    def loss(self, net: UviLite, y: Tensor, operator: ForwardOperator, generator: torch.Generator) -> Tensor:
        i0, i1 = acquired_pairs(y, operator)
        return registration_loss(net, net.pad(i0)[0], net.pad(i1)[0])
