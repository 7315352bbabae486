"""TTT schemes through the runner: online resets, mini-batch carries, naive adapts on all batches then freezes."""
from __future__ import annotations

import json
import pytest
import torch
from omegaconf import OmegaConf

import benchmarks.runner as runner
from benchmarks.build import Components
from adaptation.base import AdaptedAlgorithm
from adaptation.sampler.prior_affine import PriorAffine
from adaptation.schemes import Scheme
from adaptation.sampler.tda import TDA
from tests.helpers import HQS, ListDataset, PhaseProblem, phase_prior

N, BATCH = 6, 2


def run_scheme(scheme: str, tmp_path, monkeypatch, adapters) -> None:
    prior = phase_prior(16)
    images = prior.sample(N, torch.Generator().manual_seed(1))
    comp = Components(dataset=ListDataset(images), problem=PhaseProblem(16, true_phase=0.4), prior=prior,
                      algorithm=AdaptedAlgorithm(HQS(12), adapters), adapters=adapters)
    monkeypatch.setattr(runner, "build_components", lambda cfg, device: comp)
    cfg = OmegaConf.create({
        "run": {"n": N, "batch_size": BATCH, "seed": 0, "device": "cpu", "scheme": scheme, "split": "test",
                "save_reconstructions": False},
        "names": {"problem": "toy-phase", "algorithm": "hqs", "adapters": ["tda"], "prior": "toy", "dataset": "toy",
                  "shift": None}})
    summary = runner.execute(cfg, tmp_path / scheme, progress=False)
    assert summary["n_ok"] == N
    logged = [json.loads(x) for x in (tmp_path / scheme / "adaptation.jsonl").read_text().splitlines()]
    assert [line["indices"] for line in logged] == [[0, 1], [2, 3], [4, 5]]  # the run dir keeps what TDA learned
    assert all(line["trace"][0]["final"]["phase"] is not None for line in logged)


def phases(history, key):
    return [h[key]["phase"] for h in history]


def test_online_resets_every_batch(tmp_path, monkeypatch):
    tda = TDA(lr=0.05, iters=2)
    run_scheme("online", tmp_path, monkeypatch, [tda])
    assert len(tda.history) == N // BATCH
    assert phases(tda.history, "initial") == [0.0] * 3  # every batch from the nominal operator
    assert all(abs(p - 0.4) < 0.1 for p in phases(tda.history, "final"))
    assert all(h["adapting"] and h["steps_adapted"] > 0 for h in tda.history)


def test_minibatch_carries_state(tmp_path, monkeypatch):
    tda = TDA(lr=0.05, iters=2)
    run_scheme("minibatch", tmp_path, monkeypatch, [tda])
    init, final = phases(tda.history, "initial"), phases(tda.history, "final")
    assert init[0] == 0.0
    assert init[1:] == pytest.approx(final[:-1], abs=1e-7)  # theta_i starts from theta_{i-1}
    assert abs(final[-1] - 0.4) < 0.05


def test_naive_adapts_on_all_batches_then_predicts_frozen(tmp_path, monkeypatch):
    tda = TDA(lr=0.05, iters=2)
    pa = PriorAffine(sigmas=(0.2,))
    run_scheme("naive", tmp_path, monkeypatch, [tda, pa])
    warm, frozen = tda.history[:3], tda.history[3:]
    assert len(frozen) == 3
    assert [h["adapting"] for h in warm] == [True] * 3 and [h["adapting"] for h in frozen] == [False] * 3
    assert phases(warm, "initial")[1:] == pytest.approx(phases(warm, "final")[:-1], abs=1e-7)
    last = phases(warm, "final")[-1]
    assert all(h["steps_adapted"] == 0 for h in frozen)
    assert phases(frozen, "initial") == pytest.approx([last] * 3) and phases(frozen, "final") == pytest.approx([last] * 3)
    pa_warm, pa_frozen = pa.history[:3], pa.history[3:]
    assert all("held_out" in h for h in pa_warm) and not any("held_out" in h for h in pa_frozen)
    assert all(h["final"] == pa_warm[-1]["final"] for h in pa_frozen)


def test_scheme_reset_restores_pretrained_state():
    tda = TDA(kind="network", hidden=(4,))
    pa = PriorAffine()
    scheme = Scheme("online", [tda, pa])
    y = torch.rand(2, 1, 8, 8)
    from inverse_problems.operators.inpainting import Inpainting

    tda.prepare(y, Inpainting(torch.ones(8, 8)), None)
    with torch.no_grad():
        tda.net.out.weight.fill_(0.3)
    tda.carried = {"phase": torch.tensor(0.2)}
    pa.carried = {"alpha": torch.ones(1) * 2, "beta": torch.zeros(1)}
    assert "net.out.weight" in tda.state_dict()
    scheme.before_batch()
    assert tda.net is None and tda.carried == {} and pa.carried == {}
    assert set(tda.state_dict()) == {"_extra_state"}
    scheme.set_adapting(False)
    assert not tda.adapting and not pa.adapting
    minib = Scheme("minibatch", [pa])
    pa.carried = {"alpha": torch.ones(1) * 2, "beta": torch.zeros(1)}
    minib.before_batch()
    assert float(pa.carried["alpha"]) == 2.0
    with pytest.raises(ValueError, match="naive, online, minibatch"):
        Scheme("epochs", [])
