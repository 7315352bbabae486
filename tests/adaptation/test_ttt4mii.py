"""TTT4MII's adapters on uvi-lite (`ttt-rot`, `ttt-mae`, `ttt-flow`): each trains its part of a copy only, online
resets weights and Adam's moments, mini-batch carries them, naive predicts with the adapted state frozen."""
from __future__ import annotations

import pytest
import torch

from adaptation.base import AdaptedAlgorithm
from adaptation.network.ttt4mii import TTTMAE, TTTFlow, TTTRot, InterpTTT
from adaptation.schemes import Scheme
from inverse_problems.operators.random import SampleGenerators
from tests.helpers import interp_instance, sequences, tiny_uvi_algorithm

torch.set_num_threads(1)
FAST = {"ttt-rot": lambda: TTTRot(iters=2, lr=1e-2), "ttt-mae": lambda: TTTMAE(iters=2, lr=1e-2),
        "ttt-flow": lambda: TTTFlow(iters=2, lr=1e-2)}
PART = {"ttt-rot": "features", "ttt-mae": "features", "ttt-flow": "flow"}


def test_every_registered_interpolator_adapter_is_in_the_battery():
    from benchmarks import registry
    from tests.helpers import assert_covered, project_names

    classes = {n: registry.load("adapters", n) for n in project_names("adapters")}
    ttt = [n for n, c in classes.items() if isinstance(c, type) and issubclass(c, InterpTTT)]
    assert_covered("adapters", FAST, "the TTT4MII battery (test_ttt4mii.FAST)", names=ttt)


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def run_batch(wrapped: AdaptedAlgorithm, seed: int = 0, shift: int = 0):
    x = sequences(2, frames=6, size=16, seed=seed)
    _, inst = interp_instance(x)
    return wrapped.reconstruct(inst.y, inst.operator, None, SampleGenerators.seeded(shift, ["a", "b"]))


@pytest.mark.parametrize("name", list(FAST))
def test_adapter_trains_its_part_of_a_copy_only(name, tmp_path):
    alg = tiny_uvi_algorithm(tmp_path)
    pretrained = alg.net
    before = state(pretrained)
    adapter = FAST[name]()
    installed = []
    wrapped = AdaptedAlgorithm(alg, [adapter])
    original_predict = alg.predict
    alg.predict = lambda y, op, net=None: (installed.append(alg.net), original_predict(y, op, net))[1]
    r = run_batch(wrapped)
    assert alg.net is pretrained and same(before, state(pretrained))  # pretrained weights untouched
    adapted = installed[0]
    assert adapted is not pretrained and torch.isfinite(r.image).all()
    for part in ("features", "flow", "refine"):
        changed = not same(state(getattr(pretrained, part)), state(getattr(adapted, part)))
        assert changed == (part == PART[name]), (name, part)
    assert adapter.history[-1]["steps"] == 2 and r.trace[-1]["adapter"] == name


def adam_steps(adapter: InterpTTT) -> set[float]:
    return {float(v) for k, v in adapter.carried.items() if k.endswith(".step")}


@pytest.mark.parametrize("name", list(FAST))
def test_online_resets_weights_and_optimiser_minibatch_carries(name, tmp_path):
    outs = {}
    for scheme_name in ("online", "minibatch"):
        alg = tiny_uvi_algorithm(tmp_path)
        adapter = FAST[name]()
        wrapped = AdaptedAlgorithm(alg, [adapter])
        scheme = Scheme(scheme_name, [adapter])
        images, steps, parts = [], [], []
        for _ in range(2):
            scheme.before_batch()
            images.append(run_batch(wrapped).image)
            steps.append(adam_steps(adapter))
            parts.append({k: v.clone() for k, v in adapter.carried.items() if k.startswith("part.")})
        outs[scheme_name] = images
        if scheme_name == "online":  # the same batch twice from the pretrained state: the same numbers
            assert steps == [{2.0}, {2.0}] and torch.equal(images[0], images[1]) and same(parts[0], parts[1])
        else:  # theta_2 and Adam's moments go on from theta_1
            assert steps == [{2.0}, {4.0}] and not torch.equal(images[0], images[1]) and not same(parts[0], parts[1])
    assert torch.equal(outs["online"][0], outs["minibatch"][0])


def test_naive_predicts_with_the_adapted_state_frozen(tmp_path):
    alg = tiny_uvi_algorithm(tmp_path)
    adapter = TTTRot(iters=2, lr=1e-2)
    wrapped = AdaptedAlgorithm(alg, [adapter])
    scheme = Scheme("naive", [adapter])
    scheme.set_adapting(True)
    run_batch(wrapped, seed=0)
    run_batch(wrapped, seed=1)
    learned = dict(adapter.carried)
    scheme.set_adapting(False)
    a, b = run_batch(wrapped, seed=0), run_batch(wrapped, seed=0)
    assert torch.equal(a.image, b.image) and same(learned, adapter.carried)
    assert adapter.history[-1]["steps"] == 0 and adapter.history[-1]["adapting"] is False


def test_mae_mask_ratio_option_and_refusals(tmp_path):
    assert TTTMAE(mask_ratio=0.8).mask_ratio == 0.8
    with pytest.raises(ValueError, match="mask_ratio"):
        TTTMAE(mask_ratio=1.0)
    from algorithms.classical.interpolation import InterpLinear

    with pytest.raises(ValueError, match="uvi-lite\\+ttt-rot"):
        run_batch(AdaptedAlgorithm(InterpLinear(), [TTTRot()]))


@pytest.mark.parametrize("epochs,adapt_only", [(1, False), (2, True)])
def test_naive_epochs_and_adapt_only_warm_up_through_the_runner(epochs, adapt_only, tmp_path, monkeypatch):
    """run.naive_epochs passes over all batches adapt before the predicting pass; run.naive_adapt_only runs only the
    adapters' before-run adaptation in them (no reconstruction, so no warm-up records in the trace)."""
    from omegaconf import OmegaConf

    import benchmarks.runner as runner
    from benchmarks.build import Components
    from tests.helpers import ListDataset

    x = sequences(3, frames=5, size=16)
    prob, _ = interp_instance(x)
    adapter = TTTRot(iters=2, lr=1e-2)
    comp = Components(dataset=ListDataset(x), problem=prob, prior=None,
                      algorithm=AdaptedAlgorithm(tiny_uvi_algorithm(tmp_path), [adapter]), adapters=[adapter])
    monkeypatch.setattr(runner, "build_components", lambda cfg, device: comp)
    cfg = OmegaConf.create({
        "run": {"n": 3, "batch_size": 1, "seed": 0, "device": "cpu", "scheme": "naive", "split": "test",
                "save_reconstructions": False, "naive_epochs": epochs, "naive_adapt_only": adapt_only},
        "names": {"problem": "interp4d", "algorithm": "uvi-lite", "adapters": ["ttt-rot"], "prior": None,
                  "dataset": "toy", "shift": None}})
    assert runner.execute(cfg, tmp_path / "run", progress=False)["n_ok"] == 3
    assert adam_steps(adapter) == {float(2 * 3 * epochs)}  # iters x batches x epochs, all before predicting
    frozen = adapter.history[-3:]
    assert all(h["steps"] == 0 and not h["adapting"] for h in frozen)
    assert len(adapter.history) == (3 if adapt_only else 6)
    import json

    cost = json.loads((tmp_path / "run" / "cost.jsonl").read_text().splitlines()[-1])
    assert 0 < cost["naive_warmup_seconds"] <= cost["wall_seconds"]  # the warm-up's time, for the table


@pytest.mark.parametrize("scheme_name", ["naive", "online", "minibatch"])
def test_release_faithful_mae_predicts_exactly_what_uvi_lite_does(scheme_name, tmp_path):
    """The released code's MAE-TTT (feature-space target, its own head, the encoder not stepped): the head learns
    (its loss changes, its state is carried) and the prediction equals uvi-lite's bit for bit under every scheme."""
    plain = tiny_uvi_algorithm(tmp_path)
    x = sequences(2, frames=6, size=16, seed=0)
    _, inst = interp_instance(x)
    reference = plain.run(inst.y, inst.operator, None, None)
    adapter = TTTMAE(iters=3, lr=1e-2, release_faithful=True)
    wrapped = AdaptedAlgorithm(tiny_uvi_algorithm(tmp_path), [adapter])
    scheme = Scheme(scheme_name, [adapter])
    if scheme_name == "naive":
        scheme.set_adapting(True)
        run_batch(wrapped)
        scheme.set_adapting(False)
    for _ in range(2):
        scheme.before_batch()
        r = run_batch(wrapped)
        assert torch.equal(r.image, reference)
    record = next(h for h in adapter.history if h["steps"])
    assert record["loss_first"] != record["loss_last"]  # the head does learn
    assert {k.split(".")[1] for k in adapter.carried if k.startswith("part.")} == {"weight", "bias"}
    # the pixel MAE (the default) does change the prediction
    changed = AdaptedAlgorithm(tiny_uvi_algorithm(tmp_path), [TTTMAE(iters=3, lr=1e-2)])
    assert not torch.equal(run_batch(changed).image, reference)
