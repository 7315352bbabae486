"""The adapter handshake: adapters declare what they provide and need, the chain binds them once; no adapter
inspects its peers. TDA is two adapters (physical, network), `tda` builds either."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

import adaptation
from adaptation.base import DEGRADATION, MASK_SCHEME, AdaptedAlgorithm, Adapter, Capability, Need, bind_chain
from adaptation.network.d2sa import MRINRAdapter
from adaptation.network.network_tta import FINE, NR2N, SSDU
from adaptation.sampler.air import AIR
from adaptation.sampler.tda import TDA
from adaptation.sampler.tda_network import NetworkTDA
from adaptation.sampler.tda_physical import PhysicalTDA
from algorithms.base import Step
from benchmarks import registry
from inverse_problems.operators.inpainting import Inpainting
from tests.helpers.networks import NetAlgorithm, TinyUNet


class Plain:
    """A stand-in algorithm: the chain only needs `uses_prior` and `needs_svd`."""

    uses_prior = False
    needs_svd = False


def test_no_adapter_inspects_its_peers():
    assert not hasattr(Adapter, "peers") and not hasattr(Adapter, "degrade")
    root = Path(adaptation.__file__).parent
    for path in root.rglob("*.py"):
        assert ".peers" not in path.read_text(), path


def test_air_is_handed_the_degradation_network_tda_provides():
    tda, air = NetworkTDA(hidden=(4,), activation="leaky_relu"), AIR()
    AdaptedAlgorithm(Plain(), [tda, air])
    assert air.handed(DEGRADATION) == tda.degrade
    tda2, air2 = NetworkTDA(hidden=(4,)), AIR()
    AdaptedAlgorithm(Plain(), [air2, tda2])  # one degradation in the chain: wherever it is chained
    assert air2.handed(DEGRADATION) == tda2.degrade
    air3 = AIR()
    AdaptedAlgorithm(Plain(), [PhysicalTDA(), air3])  # physical TDA adapts the step's operator itself
    assert air3.handed(DEGRADATION) is None


def test_air_guides_through_the_handed_degradation():
    """A nonlinear g is not in the solver's operator: AIR's step goes through it because the chain handed it."""
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = 0.8 * x
    op = Inpainting(torch.ones(8, 8))
    tda, air = NetworkTDA(hidden=(4,), activation="leaky_relu"), AIR(scale=1.0)
    AdaptedAlgorithm(Plain(), [tda, air])
    tda.prepare(y, op, None)
    with torch.no_grad():
        tda.net.out.weight.fill_(0.1)  # g no longer the identity
    air.prepare(y, op, None)
    step = Step(10, 12, torch.full((2,), 0.01), x, x, y, op, None)
    out = air.on_step(step)
    u = x.clone().requires_grad_(True)
    r = tda.degrade(u, op) - y
    (grad,) = torch.autograd.grad(0.5 * (r ** 2).sum(), u)
    assert torch.allclose(out, x - grad / air.lipschitz, atol=1e-6)
    alone = AIR(scale=1.0)
    AdaptedAlgorithm(Plain(), [alone])
    alone.prepare(y, op, None)
    assert not torch.allclose(alone.on_step(step), out)  # without TDA: the nominal operator


def test_mr_inr_is_handed_the_mask_scheme_of_the_baseline_before_it():
    alg = NetAlgorithm(TinyUNet())
    for chain, scheme in (([], "fine"), ([SSDU()], "ssdu"), ([NR2N()], "nr2n"), ([SSDU(), FINE()], "fine")):
        mr = MRINRAdapter()
        AdaptedAlgorithm(alg, [*chain, mr])
        assert mr.handed(MASK_SCHEME) == (chain[-1].mask_scheme if chain else None) and mr.scheme() == scheme
    mr = MRINRAdapter()
    AdaptedAlgorithm(alg, [mr, SSDU()])  # a baseline after it is not the one it follows
    assert mr.scheme() == "fine"


NEEDED: Capability[int] = Capability("widget", "a widget from a widget maker")


class Needy(Adapter):
    name = "needy"
    needs = (Need(NEEDED),)


class Maker(Adapter):
    name = "maker"
    provides = (NEEDED,)

    def provide(self, capability):
        return 7


def test_a_required_need_nobody_provides_is_a_clear_error():
    with pytest.raises(ValueError, match=r"adapter needy needs widget \(a widget from a widget maker\), which no "
                                         r"adapter of the chain provides"):
        AdaptedAlgorithm(Plain(), [Needy(), AIR()])
    needy = Needy()
    AdaptedAlgorithm(Plain(), [needy, Maker()])
    assert needy.handed(NEEDED) == 7
    with pytest.raises(ValueError, match="maker, maker all provide one"):
        bind_chain([Maker(), needy, Maker()])
    with pytest.raises(NotImplementedError, match="declares it provides widget but has no `provide`"):
        type("Broken", (Adapter,), {"provides": (NEEDED,)})().provide(NEEDED)


def test_tda_builds_the_adapter_of_its_kind():
    physical = registry.build("adapters", "tda")
    network = registry.build("adapters", "tda", kind="network", hidden=[4], lr=0.01)
    own = registry.build("adapters", "tda-net", hidden=[4])
    assert isinstance(physical, PhysicalTDA) and physical.kind == "physical" and physical.name == "tda"
    assert isinstance(network, NetworkTDA) and network.hidden == (4,) and network.lr == 0.01
    assert network.name == "tda" and own.name == "tda-net"  # trace records carry the name it was chained under
    assert DEGRADATION in NetworkTDA.provides and not PhysicalTDA.provides
    with pytest.raises(ValueError, match="unknown TDA kind"):
        TDA(kind="magic")


def test_tda_options_are_its_kinds_options_and_one_default_each():
    """`tda` takes the union of both kinds' options with the same defaults as each kind's constructor."""
    union = inspect.signature(TDA).parameters
    for cls in (PhysicalTDA, NetworkTDA):
        for name, p in inspect.signature(cls).parameters.items():
            assert union[name].default == p.default, (cls.__name__, name)
    assert set(union) == {"kind"} | set(inspect.signature(PhysicalTDA).parameters) | \
        set(inspect.signature(NetworkTDA).parameters)
