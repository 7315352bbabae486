"""`bench tune` (hydra's Optuna sweeper on the val split) and `bench run --tuned`."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from benchmarks.config import ConfigError, component_defaults, search_space
from benchmarks.tune import method_space
from tests.helpers import bench

# DiffPIR on the Gaussian-prior inpainting problem at 16 px, 10 steps, zeta = 1
SMALL = ["problem.size=16", "dataset.size=16", "prior.dataset_options.size=16", "algorithm.n_steps=10",
         "algorithm.zeta=1.0"]


def test_search_blocks_declare_options_and_never_reach_constructors():
    for algo in ("dps", "daps", "diffpir", "ddrm", "diffdeur"):
        space = search_space("algorithms", algo)
        assert space and set(space) <= set(component_defaults("algorithms", algo))
        assert "search" not in component_defaults("algorithms", algo)
    assert set(search_space("algorithms", "daps")) == {"lr", "tau"}
    assert set(search_space("algorithms", "diffpir")) == {"lam", "zeta"}
    assert set(search_space("algorithms", "diffdeur")) == {"mu", "zeta"}
    assert set(search_space("algorithms", "ddrm")) == {"eta", "n_steps"}
    budget = component_defaults("algorithms", "ddrm")["n_steps"]
    choices = search_space("algorithms", "ddrm")["n_steps"]
    assert max(int(c) for c in choices[choices.index("(") + 1:-1].split(",")) <= budget  # within the NFE budget
    assert method_space("daps", ["tda"]) == {"algorithm.lr": search_space("algorithms", "daps")["lr"],
                                             "algorithm.tau": search_space("algorithms", "daps")["tau"],
                                             "adapters.tda.lr": search_space("adapters", "tda")["lr"]}
    assert "search" not in component_defaults("adapters", "tda")
    assert search_space("algorithms", "cg-sense") == {}


def test_three_trial_study_recovers_the_known_optimum(tmp_path):
    """lam = 1 is DiffPIR's exact data weight for a Gaussian prior at small sigma (rho = sigma_n^2 / sigma^2, the
    posterior of x given the denoiser's estimate); lam = 1e8 makes the data step ignore y, so the reconstruction is
    a prior draw. Three seeded TPE trials over the two must try both and keep lam = 1."""
    out = tmp_path / "study"
    bench("tune", "--problem", "inpainting", "--algo", "diffpir", "--trials", "3", "--n-val", "2", "--quiet",
          "--out", str(out), *SMALL, "algorithm.lam=choice(100000000.0, 1.0)")
    study = json.loads((out / "study.json").read_text())
    assert study["problem"] == "inpainting" and study["method"] == "diffpir" and study["split"] == "val"
    assert study["n_trials"] == 3 and study["n_val"] == 2 and study["search_space"] == ["algorithm.lam"]
    tried = {t["options"]["algorithm.lam"] for t in study["trials"]}
    assert tried == {1.0, 1e8}  # the seeded sampler compared both
    assert study["best"]["options"] == {"algorithm.lam": 1.0}
    by_lam = {t["options"]["algorithm.lam"]: t["score"] for t in study["trials"]}
    assert by_lam[1.0] > by_lam[1e8] + 2.0
    assert study["best"]["score"] == pytest.approx(by_lam[1.0])
    assert OmegaConf.load(out / "optimization_results.yaml").best_params == {"algorithm.lam": 1.0}
    first = study["trials"][0]  # trial 0 is the registered defaults (DiffPIR's lam = 1)
    assert first["defaults"] and first["number"] == 0 and first["run_dir"] == "defaults/0"
    assert first["options"] == {"algorithm.lam": 1.0}
    assert sum(t["defaults"] for t in study["trials"]) == 1
    for t in study["trials"]:  # every trial is a val run directory with the trial's options
        cfg = OmegaConf.load(out / t["run_dir"] / "config.yaml")
        assert cfg.run.split == "val" and cfg.algorithm.lam == t["options"]["algorithm.lam"]
        summary = json.loads((out / t["run_dir"] / "summary.json").read_text())
        assert t["score"] == pytest.approx(summary["metrics"]["psnr"]["mean"])


def test_defaults_win_when_the_sampler_finds_nothing_better(tmp_path):
    """Both searched values make the data step ignore y; the defaults trial (lam = 1) stays the study's best, so a
    tuned run is never worse than the defaults on val."""
    out = tmp_path / "study"
    bench("tune", "--problem", "inpainting", "--algo", "diffpir", "--trials", "3", "--n-val", "2", "--quiet",
          "--out", str(out), *SMALL, "algorithm.lam=choice(100000000.0, 10000000.0)")
    study = json.loads((out / "study.json").read_text())
    sampled = [t for t in study["trials"] if not t["defaults"]]
    assert len(sampled) == 2 and {t["options"]["algorithm.lam"] for t in sampled} <= {1e8, 1e7}
    assert study["best"]["defaults"] and study["best"]["options"] == {"algorithm.lam": 1.0}
    assert study["best"]["score"] > max(t["score"] for t in sampled)


def test_hydra_form_study_and_tuned_run(tmp_path):
    """`bench run -m hydra/sweeper=optuna ...` writes the same study; --tuned runs test with its best options and
    records the tuning block; mismatched or missing studies are clear errors."""
    study_dir = tmp_path / "study"
    bench("run", "-m", "--problem", "inpainting", "--algo", "cg-sense", "--n", "2", "--quiet", "--out", str(study_dir),
          "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize", "hydra.sweeper.n_trials=2",
          "hydra.sweeper.sampler.seed=0", "run.split=val", "algorithm.lam=choice(0.0, 30.0)")
    study = json.loads((study_dir / "study.json").read_text())
    assert study["n_trials"] == 2 and study["method"] == "cg-sense"
    best = study["best"]["options"]["algorithm.lam"]
    run = tmp_path / "tuned"
    bench("run", "--problem", "inpainting", "--algo", "cg-sense", "--n", "2", "--quiet", "--out", str(run),
          "--tuned", str(study_dir))
    cfg = OmegaConf.load(run / "config.yaml")
    assert cfg.run.split == "test" and cfg.algorithm.lam == best
    assert OmegaConf.to_container(cfg.tuning) == {
        "study": str(study_dir.resolve()), "trials": 2, "metric": "psnr", "split": "val",
        "score": study["best"]["score"], "options": {"algorithm": {"lam": best}}}
    default = tmp_path / "default"
    bench("run", "--problem", "inpainting", "--algo", "cg-sense", "--n", "2", "--quiet", "--out", str(default))
    assert "tuning" not in OmegaConf.load(default / "config.yaml")
    for args, message in [
        (["--algo", "zero-filled", "--tuned", str(study_dir)], "that study tuned cg-sense on inpainting, not zero-filled"),
        (["--algo", "cg-sense", "--tuned", str(tmp_path / "nope")], "no study.json there"),
        (["--algo", "cg-sense", "--tuned", str(study_dir), "algorithm.lam=3"], "sets algorithm.lam; drop the override"),
    ]:
        res = bench("run", "--problem", "inpainting", "--n", "1", "--quiet", "--out", str(tmp_path / "x"), *args,
                    check=False)
        assert res.returncode == 2 and message in res.stderr, res.stderr


def test_tune_refuses_what_it_cannot_tune(tmp_path, monkeypatch):
    res = bench("tune", "--problem", "inpainting", "--algo", "cg-sense", "--out", str(tmp_path / "s"), check=False)
    assert res.returncode == 2 and "declares no search space" in res.stderr
    res = bench("tune", "--problem", "inpainting", "--algo", "diffpir", "run.split=test", "--out",
                str(tmp_path / "s"), check=False)
    assert res.returncode == 2 and "always tunes on run.split=val" in res.stderr
    import benchmarks.config as config

    monkeypatch.setattr(config, "_component_yaml", lambda group, name: {"search": {"lamm": "interval(0, 1)"}})
    with pytest.raises(ConfigError, match="names lamm, which 'diffpir' does not take"):
        search_space("algorithms", "diffpir")
