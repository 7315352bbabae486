"""The adapter interface: three hooks around an algorithm (docs/design.md, "Interfaces").

- `prepare(y, operator, prior)`: before a run (patient-level adaptation); returns the operator and
  prior the run uses (possibly wrapped or with adapted parameters).
- `on_step(step)`: at each sampler step (TDA/AIR interleave with the reverse diffusion); may return a
  replacement for the clean estimate x0.
- `refine(recon, y, operator, prior)`: after a run (single-slice refinement).

Adapters see measurements only, never the target. An adapter with `patient_level = True` gets one patient's
slices per batch (the runner groups the items by their `patient` id, whatever run.batch_size). `reset()` returns an adapter to its pretrained
state; `state_dict()`/`load_state_dict()` carry state between batches (the TTT schemes).
Adapters never inspect each other: an adapter declares what it `provides` and what it `needs` (a `Capability`:
the adapted degradation, a mask scheme), and `AdaptedAlgorithm` binds each need once, when it builds the chain
(`bind_chain`: AIR guides through the degradation network TDA provides; MR-INR follows the masks of the network
baseline before it). A required need that no adapter of the chain provides is an error naming the adapter and the need.
`algorithm` is the wrapped algorithm (set by `AdaptedAlgorithm`): network adapters (`needs_network = True`) adapt
its `net` by installing an adapted copy for the batch; `AdaptedAlgorithm` puts the pretrained `net` back after every
batch, so the pretrained weights are never left changed.
`generator` is the run's randomness for the batch (per-sample generators, inverse_problems.operators.random), set before
`prepare`; an adapter draws its own streams from it with `inverse_problems.operators.random.spawn`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Generic, Sequence, TypeVar

from torch import Tensor, nn

from algorithms.base import Algorithm, Reconstruction, Step, StepCallback
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.random import Randomness
from priors.base import Prior


T = TypeVar("T")


@dataclass(frozen=True)
class Capability(Generic[T]):
    """Something one adapter of a chain provides and another needs: the key of the handshake (`bind_chain`)."""

    name: str
    description: str


# x, operator -> A_theta(x): the degradation an adapter learned (TDA's network kind); the operator itself without one
DegradeFn = Callable[[Tensor, ForwardOperator], Tensor]
DEGRADATION: Capability[DegradeFn] = Capability(
    "degradation", "an adapted degradation x -> A_theta(x) (e.g. tda with kind=network, or tda-net)")
MASK_SCHEME: Capability[str] = Capability(
    "mask scheme", "the input/loss masks of a patient-level network baseline (fine, nr2n or ssdu)")


@dataclass(frozen=True)
class Need:
    """One thing an adapter needs from the others of its chain.

    `required=False`: the adapter has a fallback of its own where no adapter provides it (AIR: the nominal
    operator). `earlier=True`: only adapters before it in the chain count, the nearest one (MR-INR follows the
    baseline it is chained after); else exactly one adapter anywhere in the chain may provide it."""

    capability: Capability
    required: bool = True
    earlier: bool = False


class Adapter(nn.Module):
    """Base adapter: every hook is the identity. `adapting=False` freezes it (the naive scheme's predict pass)."""

    name: str = ""  # the registered name its trace records carry (the class name where empty)
    adapting: bool = True
    # patient-level (D2SA stage 1, FINE): the runner hands it all of a patient's slices in one batch
    # (benchmarks.schedule.patient_batches) before reconstructing them
    patient_level: bool = False
    provides: ClassVar[tuple[Capability, ...]] = ()  # what it offers the others of its chain (`provide`)
    needs: ClassVar[tuple[Need, ...]] = ()  # what the chain must hand it (`bind`)
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

    def provide(self, capability: Capability[T]) -> T:
        """The value of a capability this adapter declares in `provides` (called once, when the chain is built)."""
        raise NotImplementedError(f"{label(self)} declares it provides {capability.name} but has no `provide` for it")

    def bind(self, capability: Capability[T], value: T) -> None:
        """Receive what the chain hands for one of `needs` (AdaptedAlgorithm, once, when it builds the chain)."""
        self.__dict__.setdefault("_handed", {})[capability] = value  # a plain reference, never a submodule

    def handed(self, capability: Capability[T], default: Any = None) -> T | Any:
        """What the chain handed for `capability`, or `default` where no adapter of the chain provides it."""
        return self.__dict__.get("_handed", {}).get(capability, default)

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
        # adapters fit operator parameters or images through A^H / gradients: none is known to run forward-only
        self.derivative_free = getattr(algorithm, "derivative_free", False) and not adapters
        for a in adapters:
            if getattr(a, "needs_network", False) and not is_network_algorithm(algorithm):
                raise ValueError(
                    f"adapter {type(a).__name__} adapts an end-to-end reconstruction network, but "
                    f"{type(algorithm).__name__} has none (no `predict` and `net`); chain it onto a network "
                    f"algorithm, e.g. --algo unet+{a.name or type(a).__name__.lower()}")
            a.algorithm = algorithm
        bind_chain(adapters)

    def reconstruct(self, y: Tensor, operator: ForwardOperator, prior: Prior | None = None,
                    generator: Randomness = None, callback: StepCallback | None = None) -> Reconstruction:
        pretrained = getattr(self.algorithm, "net", None)
        try:
            return self._reconstruct(y, operator, prior, generator, callback)
        finally:
            if pretrained is not None:  # network adapters install adapted copies for one batch only
                self.algorithm.net = pretrained

    def adapt(self, y: Tensor, operator: ForwardOperator, prior: Prior | None = None,
              generator: Randomness = None) -> None:
        """The adapters' `prepare` hooks on a batch, nothing reconstructed (the naive scheme's adapt-only warm-up);
        the pretrained network is put back after."""
        pretrained = getattr(self.algorithm, "net", None)
        try:
            self._prepare(y, operator, prior, generator)
        finally:
            if pretrained is not None:
                self.algorithm.net = pretrained

    def _prepare(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: Randomness
                 ) -> tuple[ForwardOperator, Prior | None]:
        """Every adapter's `prepare`, in chain order: the operator and prior the run uses."""
        for adapter in self.adapters:
            adapter.generator = generator
            adapter.algorithm = self.algorithm
            operator, prior = adapter.prepare(y, operator, prior)
        return operator, prior

    def _reconstruct(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: Randomness,
                     callback: StepCallback | None) -> Reconstruction:
        operator, prior = self._prepare(y, operator, prior, generator)

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


def label(adapter: Adapter) -> str:
    return adapter.name or type(adapter).__name__


def bind_chain(adapters: Sequence[Adapter]) -> None:
    """The handshake: hand every adapter what it `needs` from the `provides` of the others, once.

    A need with `earlier=True` gets the nearest provider before the adapter; any other need the one provider in the
    chain (two are an error: the chain would be ambiguous). A required need that nobody provides is an error."""
    for a in adapters:
        a.__dict__["_handed"] = {}
    for i, a in enumerate(adapters):
        for need in getattr(a, "needs", ()):
            cap = need.capability
            if need.earlier:
                providers = [p for p in adapters[:i] if cap in getattr(p, "provides", ())][-1:]
            else:
                providers = [p for p in adapters if p is not a and cap in getattr(p, "provides", ())]
            if len(providers) > 1:
                raise ValueError(f"adapter {label(a)} needs {cap.name} ({cap.description}), and "
                                 f"{', '.join(label(p) for p in providers)} all provide one; chain only one of them")
            if providers:
                a.bind(cap, providers[0].provide(cap))
            elif need.required:
                where = "before it in the chain" if need.earlier else "of the chain"
                raise ValueError(f"adapter {label(a)} needs {cap.name} ({cap.description}), which no adapter {where} "
                                 f"provides; chain one that does{' before it' if need.earlier else ''}")


def adaptable_parameters(operator: ForwardOperator) -> dict[str, nn.Parameter]:
    """An operator's trainable physical parameters: its `adaptable_parameters()` if it has one, else its
    `nn.Parameter`s by name (e.g. a PSF width or a noise level made adaptable)."""
    if hasattr(operator, "adaptable_parameters"):
        return dict(operator.adaptable_parameters())
    return dict(operator.named_parameters())


def is_network_algorithm(algorithm: object) -> bool:
    """Duck-typed end-to-end network algorithm: `predict(y, operator, net=None)` and a `net` module."""
    return callable(getattr(algorithm, "predict", None)) and isinstance(getattr(algorithm, "net", None), nn.Module)
