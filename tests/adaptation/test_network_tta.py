"""Network test-time adaptation: dip-ttt, fine, nr2n, ssdu, mr-inr, sst around an end-to-end network.

The networks here are tiny stand-ins with the interface of algorithms.networks.models (tests/helpers/networks.py).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from adaptation.base import AdaptedAlgorithm
from adaptation.network.d2sa import SST, DEConv, FiLMNet, MRINR, MRINRAdapter, SSTNet, perona_malik, sample_index
from adaptation.network.kspace import (EarlyStop, SampleOperator, SubsampledOperator, acquisition_density, batch_mask,
                               centre_block, holdout_split, nr2n_k, ssdu_split, unmasked)
from adaptation.network.network_tta import DIPTTT, FINE, NR2N, SSDU, NR2NCorrected
from adaptation.schemes import Scheme
from benchmarks.batch import run_batch
from benchmarks.build import Components
from inverse_problems.problems.base import ProblemInstance
from inverse_problems.operators.linalg import batch_dot
from inverse_problems.operators.masks import acs_region
from inverse_problems.problems.cs_mri import CSMRIProblem
from inverse_problems.operators.random import SampleGenerators
from tests.helpers import NetAlgorithm, TinyUNet, TinyVarNet

S = 16


def problem(coils: int = 2) -> CSMRIProblem:
    return CSMRIProblem(size=S, coils=coils, acceleration=2.0, center_fraction=0.25, coil_maps="true", noise_std=0.0)


def images(n: int = 2, seed: int = 0) -> Tensor:
    return F.avg_pool2d(torch.rand(n, 2, S, S, generator=torch.Generator().manual_seed(seed)), 3, 1, 1)


@pytest.fixture(scope="module")
def case():
    prob = problem()
    x = images()
    inst = prob.simulate(x, SampleGenerators.seeded(0, ["a", "b"]))
    return prob, x, inst


def gens() -> SampleGenerators:
    return SampleGenerators.seeded(0, ["a", "b"])


def state(net: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def same_state(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


FAST = {"fine": lambda: FINE(epochs=3, lr=1e-3), "ssdu": lambda: SSDU(epochs=3, lr=1e-3),
        "nr2n": lambda: NR2N(epochs=3, lr=1e-3), "dip-ttt": lambda: DIPTTT(max_iters=8, start=4, window=2, lr=1e-3),
        "mr-inr": lambda: MRINRAdapter(epochs=4, width=16, frequencies=8, latent=8, lr=1e-3),
        "sst": lambda: SST(max_iters=6, window=2, start=0, lr=1e-3)}
CHAINS = [["fine"], ["ssdu"], ["nr2n"], ["dip-ttt"], ["mr-inr"], ["sst"], ["fine", "mr-inr", "sst"],
          ["ssdu", "sst"]]


def test_every_registered_network_adapter_is_in_the_battery():
    """Every adapter the project registers that needs a network has a fast setting (FAST) and a chain of its own."""
    from benchmarks import registry
    from tests.helpers import assert_covered, project_names

    needing = [n for n in project_names("adapters") if getattr(registry.load("adapters", n), "needs_network", False)]
    assert_covered("adapters", FAST, "the network-TTA battery (test_network_tta.FAST)", names=needing)
    assert_covered("adapters", [c[0] for c in CHAINS if len(c) == 1], "a chain of its own (test_network_tta.CHAINS)",
                   names=needing)


def chain(names: list[str], net_cls=TinyUNet) -> AdaptedAlgorithm:
    return AdaptedAlgorithm(NetAlgorithm(net_cls()), [FAST[n]() for n in names])


# --------------------------------------------------------------------------------------- k-space re-subsampling
def test_subsampled_and_sample_operators_are_exact(case):
    _, _, inst = case
    op = inst.operator
    g = torch.Generator().manual_seed(1)
    omega = batch_mask(op, 2)
    keep, _ = holdout_split(omega, 0.3, g)
    sub = SubsampledOperator(op, keep)
    x = torch.randn(2, 2, S, S, generator=g)
    y = torch.complex(torch.randn(2, 2, S, S, generator=g), torch.randn(2, 2, S, S, generator=g))
    assert torch.allclose(batch_dot(sub(x), y), batch_dot(x, sub.adjoint(y)), rtol=1e-4, atol=1e-4)
    assert torch.equal(sub(x), op(x) * keep) and torch.equal(sub.mask, keep)
    one = SampleOperator(op, [1], 2)
    assert torch.allclose(one(x[1:]), op(x)[1:], atol=1e-6) and torch.allclose(one.adjoint(y[1:]), op.adjoint(y)[1:],
                                                                               atol=1e-6)
    assert sample_index(SubsampledOperator(one, keep[1:]), 2) == [1]
    assert sample_index(SampleOperator(SampleOperator(op, [1, 0], 2), [1], 2), 2) == [0]
    full = unmasked(one)
    assert torch.allclose(full(x[1:]) * omega[1:], op(x)[1:], atol=1e-6) and bool((full(x[1:]) * (1 - omega[1:]) != 0).any())
    with pytest.raises(ValueError, match="acquired k-space samples only"):
        SubsampledOperator(op, torch.ones(2, 1, S, S))


def test_splits_are_drawn_from_acquired_samples():
    omega = problem().mask[None, None].expand(3, 1, S, S).clone()
    gen = SampleGenerators.seeded(0, [1, 2, 3])
    train, held = holdout_split(omega, 0.05, gen)
    n = omega.flatten(1).sum(1)
    assert torch.equal(held.flatten(1).sum(1), (n * 0.05).round())
    assert bool((held <= omega).all()) and bool((train * held == 0).all()) and torch.equal(train + held, omega)
    theta, lam = ssdu_split(omega, 0.4, gen)
    assert torch.equal(lam.flatten(1).sum(1), (n * 0.4).round()) and torch.equal(theta + lam, omega)
    assert float((lam * centre_block((S, S), 4)).sum()) == 0  # the 4x4 centre stays in Theta
    # Gaussian selection: Lambda lies closer to the centre than the acquired samples it is drawn from
    r = ((torch.arange(S) - S // 2).view(-1, 1) ** 2 + (torch.arange(S) - S // 2).view(1, -1) ** 2).float().sqrt()
    assert float((lam * r).sum() / lam.sum()) < float((omega * r).sum() / omega.sum())
    # per-sample randomness: sample 2's split is the same alone as in its batch
    alone_t, alone_h = holdout_split(omega[1:2], 0.05, SampleGenerators.seeded(0, [2]))
    assert torch.equal(alone_h, held[1:2])


def test_nr2n_correction_is_exact():
    mask = problem().mask
    p = acquisition_density(mask[None, None])
    rows, cols = acs_region(mask)
    centre = torch.zeros(S, S)
    centre[rows, cols] = 1
    outside = float((mask * (1 - centre)).sum() / (1 - centre).sum())  # the acquired fraction outside the ACS
    assert torch.equal(p[0, 0][centre > 0], torch.ones(int(centre.sum())))
    assert torch.allclose(p[0, 0][centre == 0], torch.tensor(outside)) and 0 < outside < 1
    k = nr2n_k(p, 0.5)
    assert torch.allclose(k, torch.where(p >= 1, torch.zeros_like(p), (1 - p) / (1 - 0.5 * p)))
    # a network whose k-space equals y on Omega and is 0 elsewhere: the correction returns exactly A^H y
    op = problem(coils=1).simulate(images(1)).operator
    y = op(images(1, seed=3))
    net = NR2NCorrected(lambda yy, o: o.adjoint(yy), k)
    assert torch.allclose(net(y, op), op.adjoint(y), atol=1e-6)


def test_early_stop_rule():
    stop = EarlyStop(window=3, start=8)
    errors = [10, 9, 8, 7, 6, 5, 6, 7, 8, 9]
    fired = [stop(e) for e in errors]
    # at n = 8: last 3 (5, 6, 7) = 6 vs the 3 before (8, 7, 6) = 7: go on; n = 9: (6, 7, 8) = 7 vs (7, 6, 5) = 6: stop
    assert fired == [False] * 8 + [True, True]


def test_deconv_is_the_sum_of_five_difference_convolutions():
    g = torch.Generator().manual_seed(0)
    conv = DEConv(3, 2, g)
    x = torch.randn(1, 3, 6, 6, generator=g)
    patches = F.unfold(x, 3, padding=1).view(1, 3, 9, 36)  # (B, cin, tap, pixel), tap 4 the centre
    centre = patches[:, :, 4:5]

    def apply(w: Tensor, p: Tensor) -> Tensor:  # sum over cin and taps of w (cout, cin, taps) * p
        return torch.einsum("oct,bctp->bop", w, p)

    perm = DEConv.ANGULAR  # kernel w - w[perm]: each tap minus its angular neighbour perm^-1 (a rotation of the ring)
    inverse = [perm.index(t) for t in range(9)]
    assert inverse == [1, 2, 5, 0, 4, 8, 3, 6, 7]
    w = conv.part
    expected = (apply(w("central"), patches - centre) + apply(w("angular"), patches - patches[:, :, inverse])
                + apply(w("horizontal"), patches[:, :, [0, 3, 6]] - patches[:, :, [2, 5, 8]])
                + apply(w("vertical"), patches[:, :, [0, 1, 2]] - patches[:, :, [6, 7, 8]])
                + apply(w("vanilla"), patches)).view(1, 2, 6, 6) + conv.bias.view(1, -1, 1, 1)
    assert torch.allclose(conv(x), expected, atol=1e-5)
    gate = perona_malik(torch.tensor([0.0, 1.0, -3.0, 6.0]), torch.tensor(2.0))
    assert torch.allclose(gate, torch.tensor([1.0, 0.8, 1 / 3.25, 0.1]))


# ------------------------------------------------------------------------------------------------ the adapters
def test_network_adapters_refuse_other_algorithms(case):
    from algorithms.classical.zero_filled import ZeroFilled

    for name in FAST:
        with pytest.raises(ValueError, match=f"unet\\+{name}"):
            AdaptedAlgorithm(ZeroFilled(), [FAST[name]()])
    _, _, inst = case
    with pytest.raises(ValueError, match="unet\\+fine"):
        FINE().prepare(inst.y, inst.operator, None)  # not wrapped at all


def test_film_maps_of_a_frozen_inr_are_reused_and_follow_its_changes(case):
    _, _, inst = case
    alg = NetAlgorithm(TinyUNet())
    inr = MRINR((2, S, S), film_channels=4, slices=2, width=16, frequencies=8, latent=8)
    with torch.no_grad():
        inr.siren.film.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    film = FiLMNet(alg.net, inr)
    training = alg.predict(inst.y, inst.operator, film)  # INR trainable: maps recomputed, nothing kept
    assert not film._maps
    inr.requires_grad_(False)
    first = alg.predict(inst.y, inst.operator, film)
    assert len(film._maps) == 1 and torch.equal(first, training)
    assert torch.equal(alg.predict(inst.y, inst.operator, film), first) and len(film._maps) == 1  # reused
    with torch.no_grad():
        inr.latents.mul_(100.0)  # an in-place change of a frozen INR: its maps are recomputed
    changed = alg.predict(inst.y, inst.operator, film)
    assert not torch.equal(changed, first)
    assert torch.equal(changed, alg.predict(inst.y, inst.operator, FiLMNet(alg.net, inr)))


@pytest.mark.parametrize("net_cls", [TinyUNet, TinyVarNet])
def test_film_and_sst_start_as_the_identity(case, net_cls):
    _, _, inst = case
    alg = NetAlgorithm(net_cls())
    base = alg.predict(inst.y, inst.operator)
    inr = MRINR((2, S, S), film_channels=4, slices=2, width=16, frequencies=8, latent=8)
    assert torch.equal(alg.predict(inst.y, inst.operator, FiLMNet(alg.net, inr)), base)
    sst = SSTNet(alg.net, 1.0, torch.Generator().manual_seed(0))
    blocks = [n for n, m in alg.net.named_modules() if type(m).__name__ == "ConvBlock"]
    assert sst.sites == blocks and len(sst.branches) == (3 if net_cls is TinyUNet else 6)
    assert torch.equal(alg.predict(inst.y, inst.operator, sst), base)
    assert torch.equal(alg.predict(inst.y, inst.operator, SSTNet(FiLMNet(alg.net, inr), 1.0, torch.Generator())), base)
    # through the adapters, with no adaptation step: the output is the network's, exactly
    for adapters in ([MRINRAdapter(epochs=0, width=16)], [SST(max_iters=0)],
                     [MRINRAdapter(epochs=0, width=16), SST(max_iters=0)]):
        rec = AdaptedAlgorithm(alg, adapters).reconstruct(inst.y, inst.operator, None, gens())
        assert torch.equal(rec.image, alg.reconstruct(inst.y, inst.operator, None, gens()).image)


@pytest.mark.parametrize("names", CHAINS, ids=["+".join(c) for c in CHAINS])
def test_each_adapter_improves_fit_and_leaves_the_pretrained_network(case, names):
    _, _, inst = case
    alg = chain(names)
    pretrained, before = alg.algorithm.net, state(alg.algorithm.net)
    base = alg.algorithm.reconstruct(inst.y, inst.operator, None, gens())
    rec = alg.reconstruct(inst.y, inst.operator, None, gens())
    assert alg.algorithm.net is pretrained and same_state(before, state(pretrained))  # bit-identical, put back
    assert not torch.equal(rec.image, base.image)
    records = {r["adapter"]: r for r in rec.trace if r.get("adapter") in FAST}
    assert list(records) == names
    for name, r in records.items():
        if name in ("dip-ttt", "sst"):
            assert all(s["loss_last"] < s["loss_first"] for s in r["slices"]), (name, r["slices"])
        else:
            assert r["loss_last"] < r["loss_first"], (name, r)
        assert r["seconds"] > 0
    assert rec.seconds >= sum(r["seconds"] for r in records.values())
    if names[-1] in ("fine", "dip-ttt", "sst"):  # trained on all (or 95 % of) the acquired samples
        misfit = lambda img: float(inst.operator.data_misfit(img, inst.y).mean().detach())  # noqa: E731
        assert misfit(rec.image) < misfit(base.image)


def test_each_adapter_changes_only_what_it_should(case):
    _, _, inst = case
    alg = NetAlgorithm(TinyUNet())
    fine, inr, sst = FAST["fine"](), FAST["mr-inr"](), FAST["sst"]()
    wrapped = AdaptedAlgorithm(alg, [fine, inr, sst])
    pre_net, pretrained = alg.net, state(alg.net)
    for a in wrapped.adapters:
        a.generator = gens()
    fine.prepare(inst.y, inst.operator, None)
    tuned = alg.net  # fine: a trained copy of the weights
    assert tuned is not pre_net and same_state(pretrained, state(pre_net))
    assert not same_state(pretrained, state(tuned)) and state(tuned).keys() == pretrained.keys()
    tuned_state = state(tuned)
    inr.prepare(inst.y, inst.operator, None)  # mr-inr: FiLM around fine's network, its weights untouched
    assert isinstance(alg.net, FiLMNet) and alg.net.inner is tuned and same_state(tuned_state, state(tuned))
    assert not torch.equal(alg.net.inr.siren.film.weight, torch.zeros_like(alg.net.inr.siren.film.weight))
    film_state = state(alg.net)
    # sst trains its branches only
    model, params = sst.adapted(alg.net)
    assert {id(p) for p in params} == {id(p) for p in model.branches.parameters()}
    recon = alg.reconstruct(inst.y, inst.operator, None, gens())
    sst.refine(recon, inst.y, inst.operator, None)
    assert same_state(film_state, state(alg.net)) and same_state(pretrained, state(pre_net))
    assert all(not p.requires_grad for p in alg.net.parameters())


@pytest.mark.parametrize("names", [["fine", "mr-inr", "sst"], ["ssdu", "sst"], ["dip-ttt"], ["nr2n"]],
                         ids=lambda c: "+".join(c))
def test_network_adaptation_never_sees_the_target(names):
    """Same y, different targets: the adapted reconstruction is bit-identical (only the metrics move)."""
    from tests.helpers import ListDataset

    prob = problem()
    fixed = prob.simulate(images(), SampleGenerators.seeded(0, ["toy-0", "toy-1"]))

    class FixedMeasurement(CSMRIProblem):
        def simulate(self, target, generator=None):
            return ProblemInstance(fixed.y.clone(), copy.deepcopy(fixed.operator), copy.deepcopy(fixed.true_operator),
                                   fixed.scale.clone(), {})

    out, psnrs = [], []
    for target in (images(), images(seed=5)):
        comp = Components(dataset=ListDataset(target), problem=FixedMeasurement(size=S, coils=2, acceleration=2.0,
                                                                                center_fraction=0.25, coil_maps="true"),
                          algorithm=chain(names, TinyVarNet if "ssdu" in names else TinyUNet), prior=None)
        rows, imgs, _, _ = run_batch(comp, [0, 1], seed=0, device=torch.device("cpu"))
        out.append(torch.stack(imgs))
        psnrs.append(rows[0]["psnr"])
    assert torch.equal(out[0], out[1]) and psnrs[0] != psnrs[1]


def test_dip_ttt_early_stopping_uses_held_out_measured_samples_only(case):
    _, _, inst = case
    alg = NetAlgorithm(TinyUNet())
    dip = DIPTTT(max_iters=10, start=4, window=2, lr=1e-3)
    AdaptedAlgorithm(alg, [dip]).reconstruct(inst.y, inst.operator, None, gens())
    omega = batch_mask(inst.operator, 2)
    assert len(dip.splits) == 2
    for k, (train, held) in enumerate(dip.splits):
        assert bool((held <= omega[k:k + 1]).all()) and bool((train * held == 0).all())
        assert torch.equal(train + held, omega[k:k + 1]) and int(held.sum()) == round(0.05 * int(omega[k].sum()))
    # changing the held-out samples moves the held-out curve only: the training run is the same, bit for bit
    curves = copy.deepcopy(dip.curves)
    _, held0 = dip.splits[0]
    y2 = inst.y.clone()
    y2[0:1] = y2[0:1] + 0.5 * held0 * y2[0:1].abs().mean()
    AdaptedAlgorithm(alg, [dip]).reconstruct(y2, inst.operator, None, gens())
    assert dip.curves[0]["loss"] == curves[0]["loss"] and dip.curves[0]["held_out"] != curves[0]["held_out"]
    held_err = dip.curves[0]["held_out"]
    assert len(held_err) == dip.history[-1]["slices"][0]["iterations"]
    assert held_err[-1] == dip.history[-1]["slices"][0]["held_out_last"]


def test_reset_restores_the_pretrained_state(case):
    _, _, inst = case
    adapters = [FAST["fine"](), FAST["mr-inr"](), FAST["sst"]()]
    alg = AdaptedAlgorithm(NetAlgorithm(TinyUNet()), adapters)
    scheme = Scheme("minibatch", adapters)
    first = alg.reconstruct(inst.y, inst.operator, None, gens()).image
    assert adapters[0].carried and adapters[1].carried  # the mini-batch scheme would carry them
    second = alg.reconstruct(inst.y, inst.operator, None, gens()).image  # from the carried state: differs
    assert not torch.equal(first, second)
    scheme.reset()
    assert all(not a.carried for a in adapters) and adapters[1].inr is None
    again = alg.reconstruct(inst.y, inst.operator, None, gens()).image
    assert torch.equal(again, first)


def test_mr_inr_follows_the_baseline_masks():
    alg = NetAlgorithm(TinyUNet())
    for names, scheme in ((["mr-inr"], "fine"), (["ssdu", "mr-inr"], "ssdu"), (["nr2n", "mr-inr"], "nr2n"),
                          (["fine", "mr-inr"], "fine")):
        wrapped = AdaptedAlgorithm(alg, [FAST[n]() for n in names])
        assert wrapped.adapters[-1].scheme() == scheme
    assert MRINRAdapter(masks="ssdu").scheme() == "ssdu"
    with pytest.raises(ValueError, match="choose one of"):
        MRINRAdapter(masks="both")


def test_single_slice_adaptation_does_not_depend_on_the_batch(case):
    """Slice b adapted in a batch of two equals slice b adapted alone (its own generator, its own weights)."""
    _, x, inst = case
    prob = problem()
    alone = prob.simulate(x[1:], SampleGenerators.seeded(0, ["b"]))
    alg = AdaptedAlgorithm(NetAlgorithm(TinyUNet()), [FAST["dip-ttt"](), FAST["sst"]()])
    both = alg.reconstruct(inst.y, inst.operator, None, gens()).image
    one = alg.reconstruct(alone.y, alone.operator, None, SampleGenerators.seeded(0, ["b"])).image
    assert torch.allclose(both[1:], one, atol=1e-5)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="rho"):
        SSDU(rho=1.5)
    with pytest.raises(ValueError, match="q"):
        NR2N(q=1.0)
    with pytest.raises(ValueError, match="holdout"):
        DIPTTT(holdout=0.0)
    with pytest.raises(ValueError, match="lr"):
        SST(lr=0.0)
    op = CSMRIProblem(size=S, coils=1, acceleration=1.0, center_fraction=0.25).simulate(images(1)).operator
    with pytest.raises(ValueError, match="acceleration > 1"):
        NR2N().correction(batch_mask(op, 1))
    from inverse_problems.operators.base import ForwardOperator

    with pytest.raises(ValueError, match="cs_mri"):
        batch_mask(ForwardOperator(), 1)  # no sampling mask: nothing to re-subsample


def test_variants_of_ssdu_and_nr2n(case):
    """SSDU's uniform selection (D2SA's code) and NR2N without the K correction (D2SA's N2N baseline)."""
    omega = problem().mask[None, None].expand(2, 1, S, S).clone()
    theta, lam = ssdu_split(omega, 0.4, SampleGenerators.seeded(0, [1, 2]), std=None)
    assert torch.equal(theta + lam, omega) and float((lam * centre_block((S, S), 4)).sum()) == 0
    _, _, inst = case
    alg = NetAlgorithm(TinyUNet())
    nr2n = NR2N(correction=False, epochs=1)
    AdaptedAlgorithm(alg, [nr2n])
    nr2n.generator = gens()
    nr2n.prepare(inst.y, inst.operator, None)
    assert type(alg.net) is TinyUNet  # the trained copy itself, no correction around it
    nr2n = NR2N(epochs=1)
    AdaptedAlgorithm(alg, [nr2n])
    nr2n.prepare(inst.y, inst.operator, None)
    assert isinstance(alg.net, NR2NCorrected)
    with pytest.raises(ValueError, match="selection"):
        SSDU(selection="poisson")
