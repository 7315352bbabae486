"""Test-time adaptation of end-to-end reconstruction networks (`unet`, `varnet`) from the measurements alone.

Each adapter wraps a network algorithm (`predict(y, operator, net)` and a frozen pretrained `net`) and installs,
for one batch, an adapted copy as the algorithm's `net` (AdaptedAlgorithm puts the pretrained one back after the
batch; the pretrained weights are never trained in place). Chains compose through the installed network:
`unet+fine+mr-inr+sst` fine-tunes a copy of the weights, then adds FiLM, then adds SST's branches per slice.
Every loss is on acquired k-space samples; held-out sets are drawn from them (adaptation.network.kspace).

- `fine` (FINE, Zhang et al., NeuroImage 2020): patient level, from theta_0,
  min_theta sum_slices ||A f(y; theta) - y||_2^2 / ||y||_2^2, Adam, epochs over the patient's slices.
- `ssdu` (SSDU, Yaman et al., MRM 2020): patient level, Omega = Theta + Lambda (rho = |Lambda|/|Omega| = 0.4,
  Gaussian selection, central 4x4 kept in Theta); input y_Theta through A_Theta, loss on Lambda
  0.5 ||y_L - A_L f||_2 / ||y_L||_2 + 0.5 ||y_L - A_L f||_1 / ||y_L||_1; inference f(y) on all of Omega.
- `nr2n` (Noisier2Noise, Millard & Chiew, 2023): patient level, y~ = M_Lambda y (a fresh 2x sub-mask of Omega
  per step, ACS kept), loss ||(F S f(y~) - y) / (1 - K)||^2 over the full grid, K = (1 - p)/(1 - p q); inference
  x = (F S)^H [(F S f(y) - K y) / (1 - K)] (installed as a correction around the network).
- `dip-ttt` (Darestani et al., ICML 2022): single slice, in `refine`: 5 % of Omega held out,
  min_theta ||y_tr - A_tr f(y_tr; theta)||_1 / ||y_tr||_1 with Adam; after `start` iterations, stop when the
  held-out error's mean over the last `window` exceeds the `window` before; output f(y; theta) on all of Omega.
"""
from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from adaptation.base import MASK_SCHEME, Adapter, Capability, T, is_network_algorithm
from adaptation.network.kspace import (EarlyStop, SampleOperator, acquisition_density, batch_mask, holdout_split, nr2n_k,
                               nr2n_submask, rel_l1, rel_l2, restrict, ssdu_split, unmasked)
from algorithms.base import Reconstruction
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.random import Randomness, SampleGenerators, spawn
from priors.base import Prior


class NetWrapper(nn.Module):
    """A network around an inner one (FiLM, SST branches, a correction); `inner` leads to the recon network."""

    inner: nn.Module


def core(net: nn.Module) -> nn.Module:
    """The reconstruction network inside any wrappers (the module whose weights fine/ssdu/nr2n/dip-ttt train)."""
    while isinstance(net, NetWrapper):
        net = net.inner
    return net


def trainable_copy(net: nn.Module) -> nn.Module:
    """A deep copy of `net` whose recon-network weights train (wrapper parameters frozen); `net` is left as is."""
    out = copy.deepcopy(net).requires_grad_(False)
    core(out).requires_grad_(True)
    return out


def subset(generator: Randomness, index: list[int]) -> Randomness:
    """The per-sample generators of the samples `index` (a plain generator or None is returned as is)."""
    if isinstance(generator, SampleGenerators):
        return SampleGenerators([generator[i] for i in index])
    return generator


def chunks(n: int, size: int) -> Iterator[list[int]]:
    """Consecutive sample indices 0..n-1 in groups of `size` (the patient's slices, in order)."""
    for s in range(0, n, size):
        yield list(range(s, min(s + size, n)))


def fit_epochs(opt: torch.optim.Optimizer, loss_of: Callable[[list[int]], Tensor], slices: int, batch_size: int,
               epochs: int, record: dict[str, Any]) -> None:
    """`epochs` passes over a patient's `slices` in chunks of `batch_size`, one optimiser step per chunk on
    loss_of(chunk indices); `record` gets the step count and the slice-weighted mean loss of the first and last epochs."""
    epoch_losses = []
    with torch.enable_grad():
        for _ in range(epochs):
            total = 0.0
            for index in chunks(slices, batch_size):
                loss = loss_of(index)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(index) / slices
                record["steps"] += 1
            epoch_losses.append(total)
    record["loss_first"], record["loss_last"] = epoch_losses[0], epoch_losses[-1]


def check_positive(**values: float) -> None:
    for name, v in values.items():
        if not v > 0:
            raise ValueError(f"{name} must be > 0, got {v}")


class NetworkAdapter(Adapter):
    """Base of the network adapters: access to the wrapped network algorithm, the installed network, timing."""

    needs_network = True
    name = "network"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed
        self.history: list[dict[str, Any]] = []
        self._record: dict[str, Any] = {}

    def network_algorithm(self) -> Any:
        alg = self.algorithm
        if alg is None or not is_network_algorithm(alg):
            what = "no algorithm" if alg is None else type(alg).__name__
            raise ValueError(f"{self.name} adapts an end-to-end reconstruction network, but it wraps {what} (needs "
                             f"`predict` and `net`); use it as --algo unet+{self.name} or varnet+{self.name}")
        return alg

    def stream(self, *tag: object) -> Randomness:
        """A randomness stream of this adapter (per sample under the harness; from `seed` alone otherwise)."""
        return spawn(self.generator, self.name, self.seed, *tag)

    def predict(self, y: Tensor, operator: ForwardOperator, net: nn.Module) -> Tensor:
        return self.network_algorithm().predict(y, operator, net=net)

    def finish(self, recon: Reconstruction) -> Reconstruction:
        """Append this batch's record to the trace and its adaptation time to the reconstruction's."""
        record, self._record = self._record, {}
        self.history.append(record)
        return replace(recon, seconds=recon.seconds + record.get("seconds", 0.0), trace=recon.trace + [record])

    def refine(self, recon: Reconstruction, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> Reconstruction:
        return self.finish(recon)


class PatientNetworkAdapter(NetworkAdapter):
    """Patient level: trains a copy of the network's weights on all slices of the batch in `prepare`, from theta_0
    (or, under the mini-batch scheme, from the weights carried from the previous batch), and installs it.

    Subclasses define `loss(net, y, operator, omega, index)`: the self-supervised loss of the slices `index`
    (y and operator already restricted to them)."""

    patient_level = True
    mask_scheme = ""  # its input/loss masks (fine, nr2n, ssdu), provided to an MR-INR chained after it

    def __init__(self, lr: float = 1e-4, epochs: int = 25, batch_size: int = 1, seed: int = 0) -> None:
        super().__init__(seed)
        check_positive(lr=lr)
        if epochs < 0 or batch_size < 1:
            raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got epochs={epochs}, batch_size={batch_size}")
        self.lr, self.epochs, self.batch_size = lr, epochs, batch_size

    def provide(self, capability: Capability[T]) -> T:
        if capability is MASK_SCHEME and self.mask_scheme:
            return self.mask_scheme  # type: ignore[return-value]
        return super().provide(capability)

    def setup(self, y: Tensor, operator: ForwardOperator, omega: Tensor) -> None:
        """Per-batch state (splits) before training."""

    def loss(self, net: nn.Module, y: Tensor, operator: ForwardOperator, omega: Tensor, index: list[int]) -> Tensor:
        raise NotImplementedError

    def wrap(self, net: nn.Module, y: Tensor, operator: ForwardOperator) -> nn.Module:
        """The network installed for the batch (a correction may wrap the trained one)."""
        return net

    def prepare(self, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> tuple[ForwardOperator, Prior | None]:
        alg = self.network_algorithm()
        start = time.perf_counter()
        b = y.shape[0]
        omega = batch_mask(operator, b).to(y.real.device)
        net = trainable_copy(alg.net)
        if self.carried:
            core(net).load_state_dict({k[4:]: v for k, v in self.carried.items() if k.startswith("net.")})
        self._record = {"adapter": self.name, "adapting": bool(self.adapting), "slices": b, "steps": 0,
                        "loss_first": None, "loss_last": None}  # the mean loss of the first and last epochs
        if self.adapting and self.epochs > 0:
            self.setup(y, operator, omega)
            params = [p for p in net.parameters() if p.requires_grad]
            opt = torch.optim.Adam(params, lr=self.lr, foreach=True)
            fit_epochs(opt, lambda index: self.loss(net, y[index], SampleOperator(operator, index, b), omega[index], index),
                       b, self.batch_size, self.epochs, self._record)
            self.carried = {f"net.{k}": v.detach().clone() for k, v in core(net).state_dict().items()}
        net.requires_grad_(False)
        alg.net = self.wrap(net, y, operator)
        self._record["seconds"] = time.perf_counter() - start
        return operator, prior


class FINE(PatientNetworkAdapter):
    """FINE: patient-level fine-tuning from theta_0 on the measurement loss ||A f(y) - y||^2 / ||y||^2."""

    name = "fine"
    mask_scheme = "fine"
    provides = (MASK_SCHEME,)

    def loss(self, net: nn.Module, y: Tensor, operator: ForwardOperator, omega: Tensor, index: list[int]) -> Tensor:
        pred = self.predict(y, operator, net)
        return rel_l2(y, operator(pred), omega).pow(2).mean()


class SSDU(PatientNetworkAdapter):
    """SSDU: input Theta, loss on Lambda (rho = 0.4, Gaussian selection, central `acs` x `acs` kept in Theta)."""

    name = "ssdu"
    mask_scheme = "ssdu"
    provides = (MASK_SCHEME,)

    def __init__(self, rho: float = 0.4, acs: int = 4, selection: str = "gaussian", std: float = 0.25,
                 lr: float = 1e-4, epochs: int = 25, batch_size: int = 1, seed: int = 0) -> None:
        super().__init__(lr, epochs, batch_size, seed)
        if not 0 < rho < 1 or acs < 0:
            raise ValueError(f"rho must be in (0, 1) and acs >= 0, got rho={rho}, acs={acs}")
        if selection not in ("gaussian", "uniform"):
            raise ValueError(f"unknown SSDU selection {selection!r}; choose gaussian (SSDU's) or uniform (D2SA's code)")
        check_positive(std=std)
        self.rho, self.acs, self.selection, self.std = rho, acs, selection, std
        self.theta: Tensor | None = None
        self.lam: Tensor | None = None

    def reset(self) -> None:
        super().reset()
        self.theta = self.lam = None

    def setup(self, y: Tensor, operator: ForwardOperator, omega: Tensor) -> None:
        std = self.std if self.selection == "gaussian" else None
        self.theta, self.lam = ssdu_split(omega, self.rho, self.stream("split"), self.acs, std)
        self._record["lambda_fraction"] = float(self.lam.sum() / omega.sum())

    def loss(self, net: nn.Module, y: Tensor, operator: ForwardOperator, omega: Tensor, index: list[int]) -> Tensor:
        theta, lam = self.theta[index], self.lam[index]
        pred = self.predict(y * theta, restrict(operator, theta), net)
        k = operator(pred)
        return (0.5 * rel_l2(y, k, lam) + 0.5 * rel_l1(y, k, lam)).mean()


class NR2NCorrected(NetWrapper):
    """x = (F S)^H [(F S f(y) - K y) / (1 - K)]: the Noisier2Noise inference correction around a network."""

    def __init__(self, inner: nn.Module, k: Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("k", k)
        self._last: tuple[ForwardOperator, ForwardOperator] | None = None  # (operator, its unmasked copy)

    def forward(self, y: Tensor, operator: ForwardOperator) -> Tensor:
        out = self.inner(y, operator)
        if self._last is None or self._last[0] is not operator:
            self._last = (operator, unmasked(operator))
        full = self._last[1]
        k = self.k.to(out.device)
        return full.adjoint((full(out) - k * y) / (1 - k))


class NR2N(PatientNetworkAdapter):
    """Noisier2Noise: y~ = M_Lambda y (Lambda keeps each non-ACS acquired sample with probability q, fresh per
    step), weighted loss ||(F S f(y~) - y) / (1 - K)||^2 / ||y / (1 - K)||^2, K = (1 - p)/(1 - p q); the inference
    correction is installed around the trained network. `correction=False`: D2SA's N2N baseline, loss
    ||A f(y~) - y||^2 / ||y||^2 on Omega and f(y) at inference."""

    name = "nr2n"
    mask_scheme = "nr2n"
    provides = (MASK_SCHEME,)

    def __init__(self, q: float = 0.5, correction: bool = True, lr: float = 1e-4, epochs: int = 25,
                 batch_size: int = 1, seed: int = 0) -> None:
        super().__init__(lr, epochs, batch_size, seed)
        if not 0 < q < 1:
            raise ValueError(f"q (the sub-mask's keep probability) must be in (0, 1), got {q}")
        self.q, self.correct = q, bool(correction)
        self.k: Tensor | None = None
        self._batch: dict[str, Any] = {}  # per-batch streams and operators (plain references, not submodules)

    def reset(self) -> None:
        super().reset()
        self.k, self._batch = None, {}

    def correction(self, omega: Tensor) -> Tensor:
        """K (1, 1, H, W) from the acquisition density of Omega (one mask per batch)."""
        p = acquisition_density(omega[:1])
        if bool((p <= 0).all()) or bool((p >= 1).all()):
            raise ValueError("nr2n needs a mask with samples outside its fully sampled centre and unacquired samples; "
                             "use an undersampled cs_mri mask with acceleration > 1")
        return nr2n_k(p, self.q)

    def setup(self, y: Tensor, operator: ForwardOperator, omega: Tensor) -> None:
        self.k = self.correction(omega)
        self._batch = {"generator": self.stream("submask"), "full": unmasked(operator)}

    def loss(self, net: nn.Module, y: Tensor, operator: ForwardOperator, omega: Tensor, index: list[int]) -> Tensor:
        lam = nr2n_submask(omega, self.q, subset(self._batch["generator"], index))
        pred = self.predict(y * lam, restrict(operator, lam), net)
        if not self.correct:  # D2SA's N2N baseline: input Omega and a sub-mask, loss on Omega, no correction
            return rel_l2(y, operator(pred), omega).pow(2).mean()
        full = SampleOperator(self._batch["full"], index, operator.batch)
        w = 1 / (1 - self.k)
        r = (full(pred) - y) * w
        return (r.abs().pow(2).flatten(1).sum(1) / (y * w).abs().pow(2).flatten(1).sum(1).clamp_min(1e-30)).mean()

    def wrap(self, net: nn.Module, y: Tensor, operator: ForwardOperator) -> nn.Module:
        if not self.correct:
            self._batch = {}
            return net
        k = self.k if self.k is not None else self.correction(batch_mask(operator, y.shape[0]))
        self._batch = {}
        return NR2NCorrected(net, k.to(y.real.device))


class SliceNetworkAdapter(NetworkAdapter):
    """Single slice, in `refine`: each slice adapts its own copy (its own weights, so slices are adapted one at a
    time) on its training samples, with `holdout` of its acquired samples held out for early stopping; the
    reconstruction is the adapted network on all acquired samples. Subclasses define `adapted(net)` (the module
    to train, and its trainable parameters)."""

    def __init__(self, lr: float = 1e-4, max_iters: int = 300, holdout: float = 0.05, window: int = 30,
                 start: int = 0, seed: int = 0) -> None:
        super().__init__(seed)
        check_positive(lr=lr)
        if max_iters < 0:
            raise ValueError(f"max_iters must be >= 0, got {max_iters}")
        if not 0 < holdout < 1:
            raise ValueError(f"holdout is a fraction of the acquired samples in (0, 1), got {holdout}")
        self.lr, self.max_iters, self.holdout, self.window, self.start = lr, max_iters, holdout, window, start
        EarlyStop(window, start)  # validates
        self.splits: list[tuple[Tensor, Tensor]] = []  # the last batch's (train, held-out) masks, per slice
        self.curves: list[dict[str, list[float]]] = []  # the last batch's training and held-out errors, per slice

    def adapted(self, net: nn.Module, generator: Randomness = None) -> tuple[nn.Module, list[nn.Parameter]]:
        raise NotImplementedError

    def split(self, omega: Tensor, generator: Randomness) -> tuple[Tensor, Tensor]:
        """(train, held-out) sub-masks of the acquired samples omega (1, 1, H, W)."""
        return holdout_split(omega, self.holdout, generator)

    def adapt_slice(self, net: nn.Module, y: Tensor, operator: ForwardOperator, omega: Tensor,
                    generator: Randomness, init: Randomness = None) -> tuple[Tensor, dict[str, Any]]:
        train, held = self.split(omega, generator)
        self.splits.append((train, held))
        model, params = self.adapted(net, init)
        opt = torch.optim.Adam(params, lr=self.lr, foreach=True) if params else None
        stop = EarlyStop(self.window, self.start)
        op_tr = restrict(operator, train)
        curve: dict[str, list[float]] = {"loss": [], "held_out": []}
        self.curves.append(curve)
        info: dict[str, Any] = {"iterations": 0, "stopped_early": False, "loss_first": None, "loss_last": None,
                                "held_out_first": None, "held_out_last": None}
        if opt is not None:
            with torch.enable_grad():
                for it in range(self.max_iters):
                    pred = self.predict(y * train, op_tr, model)
                    k = operator(pred)
                    loss = rel_l1(y, k, train).mean()
                    with torch.no_grad():
                        held_err = float(rel_l1(y, k, held).mean())
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    info["iterations"] = it + 1
                    curve["loss"].append(float(loss.detach()))
                    curve["held_out"].append(held_err)
                    info["loss_last"], info["held_out_last"] = float(loss.detach()), held_err
                    if it == 0:
                        info["loss_first"], info["held_out_first"] = info["loss_last"], held_err
                    if stop(held_err):
                        info["stopped_early"] = True
                        break
        with torch.no_grad():
            out = self.predict(y, operator, model)
        return out, info

    def refine(self, recon: Reconstruction, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> Reconstruction:
        alg = self.network_algorithm()
        start = time.perf_counter()
        b = y.shape[0]
        self.splits, self.curves = [], []
        self._record = {"adapter": self.name, "adapting": bool(self.adapting), "slices": []}
        if not self.adapting or self.max_iters == 0:
            self._record["seconds"] = time.perf_counter() - start
            return self.finish(recon)
        omega = batch_mask(operator, b).to(y.real.device)
        gen, init = self.stream("holdout"), self.stream("init")
        images = []
        for k in range(b):
            op_k = SampleOperator(operator, [k], b)
            out, info = self.adapt_slice(alg.net, y[k:k + 1], op_k, omega[k:k + 1], subset(gen, [k]),
                                         subset(init, [k]))
            images.append(out)
            self._record["slices"].append(info)
        image = torch.cat(images).detach()
        support = operator.support()
        if support is not None:
            image = image * support.to(image)
        failed = recon.failed | ~torch.isfinite(image.flatten(1)).all(1)
        failure = [f if f is not None or not bool(failed[i]) else f"{self.name}: non-finite adapted reconstruction"
                   for i, f in enumerate(recon.failure)]
        image = torch.where(failed.view(-1, 1, 1, 1), torch.zeros_like(image), image)
        self._record["seconds"] = time.perf_counter() - start
        return self.finish(replace(recon, image=image, failed=failed, failure=failure))


class DIPTTT(SliceNetworkAdapter):
    """DIP-TTT: per slice, fine-tune a copy of the network's weights on ||y_tr - A_tr f(y_tr)||_1 / ||y_tr||_1,
    early stopping on 5 % held-out acquired samples (window `window` after `start` iterations)."""

    name = "dip-ttt"

    def __init__(self, lr: float = 1e-4, max_iters: int = 300, holdout: float = 0.05, window: int = 50,
                 start: int = 100, seed: int = 0) -> None:
        super().__init__(lr, max_iters, holdout, window, start, seed)

    def adapted(self, net: nn.Module, generator: Randomness = None) -> tuple[nn.Module, list[nn.Parameter]]:
        model = trainable_copy(net)
        return model, [p for p in model.parameters() if p.requires_grad]


__all__ = ["FINE", "SSDU", "NR2N", "DIPTTT", "NetworkAdapter", "PatientNetworkAdapter", "SliceNetworkAdapter",
           "NetWrapper", "NR2NCorrected", "core", "trainable_copy"]
