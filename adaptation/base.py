"""The adapter interface: three hooks around an algorithm (DESIGN.md, "Interfaces").

- `prepare(y, operator, prior)`: before a run (patient-level adaptation); returns the operator and
  prior the run uses (possibly wrapped or with adapted parameters).
- `on_step(step)`: at each sampler step (TDA/AIR interleave with the reverse diffusion); may return a
  replacement for the clean estimate x0.
- `refine(recon, y, operator, prior)`: after a run (single-slice refinement).

Adapters see measurements only, never the target. An adapter with `patient_level = True` gets one patient's
slices per batch (the runner groups the items by their `patient` id, whatever run.batch_size). `reset()` returns an adapter to its pretrained
state; `state_dict()`/`load_state_dict()` carry state between batches (the TTT schemes).
Adapters of one `AdaptedAlgorithm` see each other through `peers` (AIR guides through TDA's adapted degradation).
`algorithm` is the wrapped algorithm (set by `AdaptedAlgorithm`): network adapters (`needs_network = True`) adapt
its `net` by installing an adapted copy for the batch; `AdaptedAlgorithm` puts the pretrained `net` back after every
batch, so the pretrained weights are never left changed.
`generator` is the run's randomness for the batch (per-sample generators, inverse_problems.operators.random), set before
`prepare`; an adapter draws its own streams from it with `inverse_problems.operators.random.spawn`.
"""
from __future__ import annotations

from torch import Tensor, nn

from algorithms.base import Algorithm, Reconstruction, Step, StepCallback
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.random import Randomness
from priors.base import Prior


class Adapter(nn.Module):
    """Base adapter: every hook is the identity. `adapting=False` freezes it (the naive scheme's predict pass)."""

    adapting: bool = True
    # patient-level (D2SA stage 1, FINE): the runner hands it all of a patient's slices in one batch
    # (benchmarks.runner.patient_batches) before reconstructing them
    patient_level: bool = False
    peers: tuple["Adapter", ...] = ()
    generator: Randomness = None  # the batch's randomness, set by AdaptedAlgorithm before `prepare`

    needs_network: bool = False  # True: wraps only an end-to-end network algorithm (one with `predict` and `net`)

    def __init__(self) -> None:
        super().__init__()
        self.carried: dict[str, Tensor] = {}  # adapted values that outlive a batch's operator (schemes carry them)

    def get_extra_state(self) -> dict[str, dict[str, Tensor]]:
        return {"carried": {k: v.detach().clone() for k, v in self.carried.items()}}

    def set_extra_state(self, state: dict[str, dict[str, Tensor]]) -> None:
        self.carried = {k: v.detach().clone() for k, v in state.get("carried", {}).items()}

    @property
    def algorithm(self) -> Algorithm | None:
        """The wrapped algorithm (set by AdaptedAlgorithm; None for an adapter used on its own)."""
        return self.__dict__.get("_algorithm")

    @algorithm.setter
    def algorithm(self, algorithm: Algorithm | None) -> None:
        self.__dict__["_algorithm"] = algorithm  # a plain reference: never a submodule, never in the state dict

    def degrade(self, x: Tensor, operator: ForwardOperator) -> Tensor:
        """The adapted degradation applied to a clean image; the operator itself unless the adapter learns one."""
        return operator(x)

    def prepare(self, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> tuple[ForwardOperator, Prior | None]:
        return operator, prior

    def on_step(self, step: Step) -> Tensor | None:
        return None

    def refine(self, recon: Reconstruction, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> Reconstruction:
        return recon

    def reset(self) -> None:
        """Back to the pretrained (initial) state: nothing carried."""
        self.carried = {}


class AdaptedAlgorithm(Algorithm):
    """An algorithm with adapters, applied in order (`daps+tda+air` = DAPS with TDA then AIR)."""

    def __init__(self, algorithm: Algorithm, adapters: list[Adapter]) -> None:
        super().__init__()
        self.algorithm = algorithm
        self.adapters = adapters
        self.uses_prior = algorithm.uses_prior
        self.needs_svd = algorithm.needs_svd
        for a in adapters:
            if getattr(a, "needs_network", False) and not is_network_algorithm(algorithm):
                raise ValueError(
                    f"adapter {type(a).__name__} adapts an end-to-end reconstruction network, but "
                    f"{type(algorithm).__name__} has none (no `predict` and `net`); chain it onto a network "
                    f"algorithm, e.g. --algo unet+{getattr(a, 'name', type(a).__name__.lower())}")
            a.peers = tuple(adapters)
            a.algorithm = algorithm

    def reconstruct(self, y: Tensor, operator: ForwardOperator, prior: Prior | None = None,
                    generator: Randomness = None, callback: StepCallback | None = None) -> Reconstruction:
        pretrained = getattr(self.algorithm, "net", None)
        try:
            return self._reconstruct(y, operator, prior, generator, callback)
        finally:
            if pretrained is not None:  # network adapters install adapted copies for one batch only
                self.algorithm.net = pretrained

    def _reconstruct(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: Randomness,
                     callback: StepCallback | None) -> Reconstruction:
        for adapter in self.adapters:
            adapter.generator = generator
            adapter.algorithm = self.algorithm
            operator, prior = adapter.prepare(y, operator, prior)

        def chained(step: Step) -> Tensor | None:
            replaced = None
            for hook in [a.on_step for a in self.adapters] + ([callback] if callback else []):
                out = hook(step)
                if out is not None:
                    step.x0 = replaced = out
            return replaced

        recon = self.algorithm.reconstruct(y, operator, prior, generator, chained)
        for adapter in self.adapters:
            recon = adapter.refine(recon, y, operator, prior)
        self.last_operator, self.last_prior = operator, prior
        return recon


def adaptable_parameters(operator: ForwardOperator) -> dict[str, nn.Parameter]:
    """An operator's trainable physical parameters: its `adaptable_parameters()` if it has one, else its
    `nn.Parameter`s by name (e.g. a PSF width or a noise level made adaptable)."""
    if hasattr(operator, "adaptable_parameters"):
        return dict(operator.adaptable_parameters())
    return dict(operator.named_parameters())


def is_network_algorithm(algorithm: object) -> bool:
    """Duck-typed end-to-end network algorithm: `predict(y, operator, net=None)` and a `net` module."""
    return callable(getattr(algorithm, "predict", None)) and isinstance(getattr(algorithm, "net", None), nn.Module)
