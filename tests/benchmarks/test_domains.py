"""Seam 5: every model declares its source domain through one interface (`source_domain`), and "in distribution?"
is one rule for priors and networks (benchmarks.domains)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from benchmarks import leaderboard
from benchmarks.config import Selection, compose_config
from benchmarks.domains import (config_source_domain, domain_changes, in_distribution, source_domain,
                                warn_in_distribution_shift)
from priors.domain import SourceDomain

REPO = Path(__file__).resolve().parents[2]


class _Model:
    def __init__(self, domain: SourceDomain | None) -> None:
        self.source_domain = domain


def _prior(name: str) -> _Model:
    return _Model(SourceDomain.read(REPO / "priors" / "weights" / name / "metadata.json"))


def test_shipped_priors_and_networks_declare_their_source_domain():
    for name, dataset in (("brain-64", "anatomy-brain-mix"), ("phantom-brain-64", "phantom-brain-t2"),
                          ("phantom-dmi-32", "phantom-dmi")):
        domain = _prior(name).source_domain
        assert domain.dataset == dataset and domain.problem is None and domain.dataset_options["size"] in (32, 64)
    from algorithms.networks.models import SHIPPED, WEIGHTS

    for arch, models in SHIPPED.items():
        for model, file in models.items():
            domain = SourceDomain.read((WEIGHTS / file).with_suffix(".json"))
            assert domain.problem == "cs_mri" and domain.dataset.startswith("phantom-"), (arch, model)
    r2 = SourceDomain.read((WEIGHTS / SHIPPED["unet"]["brain-t2-r2"]).with_suffix(".json"))
    assert r2.problem_options["acceleration"] == 2
    from priors.base import Prior

    assert Prior.source_domain is None  # an analytic prior: fitted to no data set


def test_a_built_network_and_prior_expose_it(monkeypatch):
    from algorithms.networks.models import UNet  # noqa: F401  (the registered class)
    from benchmarks import registry

    net = registry.load("algorithms", "unet")(model="brain-t2")
    assert source_domain(net) == SourceDomain.from_facts(net.training)
    assert source_domain(net).dataset == "phantom-brain-t2"
    wrapped = type("Adapted", (), {"algorithm": net})()
    assert source_domain(wrapped) == source_domain(net)  # an adapted algorithm: its solver's
    prior = registry.load("priors", "phantom-brain-64")()
    assert source_domain(prior) == _prior("phantom-brain-64").source_domain
    assert source_domain(object()) is None


def _cfg(algo: str, shift: str | None, dataset: str | None = None, prior: str | None = None, overrides=()):
    return compose_config(Selection("cs_mri", algo, [], prior, dataset, shift), ["problem.size=32", *overrides])


@pytest.mark.parametrize("prior, shift, dataset, overrides, inside", [
    ("phantom-brain-64", "knee-to-brain", None, [], True),  # brain T2 phantoms: the prior's own training data
    ("phantom-brain-64", "anatomy", None, [], False),  # knee PD
    ("phantom-brain-64", "noise", "phantom-brain-t2", [], False),  # its data, another acquisition
    ("phantom-brain-64", "knee-to-brain", None, ["dataset.length=4", "dataset.seed=3"], True),  # which items only
    ("brain-64", "knee-to-brain", None, [], False),  # trained on anatomy-brain-mix
    ("knee-64", "anatomy", None, [], True),  # knee PD phantoms: the knee prior's own training data
    ("knee-64", "knee-to-brain", None, [], False),  # its source -> brain T2, the D2SA anatomy shift
])
def test_a_prior_on_its_own_training_data_is_flagged_as_a_network_is(prior, shift, dataset, overrides, inside):
    cfg = compose_config(Selection("cs_mri", "diffpir", [], prior, dataset, shift), list(overrides))
    source = _prior(prior).source_domain
    assert in_distribution(cfg, source) is inside and (not domain_changes(cfg, source)) is inside
    assert config_source_domain(cfg) == ("prior", source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_in_distribution_shift(cfg, object(), _prior(prior))  # a diffusion solver: the prior's domain
    msgs = [str(w.message) for w in caught]
    assert (len(msgs) == 1 and "in distribution for it" in msgs[0] and "--prior" in msgs[0]) if inside else not msgs
    if inside:  # the leaderboard credits no shift to an in-distribution run
        assert not leaderboard.shift_changed_config(cfg)


def test_one_rule_for_both_families():
    """The same target (brain T2 phantoms, cs_mri's defaults) is in distribution for the brain-T2 network and the
    brain-T2 prior alike, and out of it for both at R = 8."""
    net = compose_config(Selection("cs_mri", "unet", [], None, None, "knee-to-brain"), ["algorithm.model=brain-t2"])
    sol = compose_config(Selection("cs_mri", "diffpir", [], "phantom-brain-64", None, "knee-to-brain"))
    assert config_source_domain(net)[0] == "network"
    assert in_distribution(net, config_source_domain(net)[1]) and in_distribution(sol, config_source_domain(sol)[1])
    assert not leaderboard.shift_changed_config(net) and not leaderboard.shift_changed_config(sol)
    # `--shift anatomy` changes the dataset (knee PD), but the knee-PD network was trained there: no shift credited
    knee = compose_config(Selection("cs_mri", "unet", [], None, None, "anatomy"))
    assert knee.names.dataset == "phantom-knee-pd" and not leaderboard.shift_changed_config(knee)
    assert leaderboard.shift_changed_config(compose_config(Selection("cs_mri", "unet", [], None, None, "contrast")))
    for extra in (["problem.acceleration=8"],):
        net8 = compose_config(Selection("cs_mri", "unet", [], None, None, "knee-to-brain"),
                              ["algorithm.model=brain-t2", *extra])
        sol8 = compose_config(Selection("cs_mri", "diffpir", [], "phantom-brain-64", None, "knee-to-brain"), extra)
        assert domain_changes(net8, config_source_domain(net8)[1]) == ["problem.acceleration"]
        assert domain_changes(sol8, config_source_domain(sol8)[1]) == ["problem.acceleration"]


def test_a_model_without_a_source_is_never_in_distribution(tmp_path):
    cfg = compose_config(Selection("cs_mri", "cg-sense", [], None, None, "knee-to-brain"))
    assert config_source_domain(cfg) == ("prior", None) and not in_distribution(cfg, None)
    (tmp_path / "m.json").write_text(json.dumps({"training": {"steps": 3}}))  # facts without a dataset
    assert SourceDomain.read(tmp_path / "m.json") is None and SourceDomain.read(tmp_path / "none.json") is None


def test_a_prior_loaded_by_class_from_a_trained_folder_has_that_folders_domain():
    """`--prior diffusers prior.path=DIR` of a `bench train-prior` output: the metadata.json there, at run time
    (the runner's warning) and from the config (the leaderboard) alike."""
    folder = REPO / "priors" / "weights" / "phantom-brain-64"
    cfg = compose_config(Selection("cs_mri", "diffpir", [], "diffusers", None, "knee-to-brain"), [f"prior.path={folder}"])
    expected = SourceDomain.beside(folder)
    assert expected.dataset == "phantom-brain-t2"
    assert config_source_domain(cfg) == ("prior", expected)
    from benchmarks.domains import run_model

    assert run_model(cfg, object(), _Model(None)) == ("prior", expected) and in_distribution(cfg, expected)
