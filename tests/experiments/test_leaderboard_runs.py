"""The board driver remakes what a new prior checkpoint outdates: a finished row or a tuning study whose recorded
prior fingerprint is not that of the weights its config loads now is moved aside (OUT/superseded/) and made again; one
that matches is kept."""
from __future__ import annotations

from omegaconf import OmegaConf

from benchmarks.experiments.leaderboard_runs import remove_if_stale, stale
from benchmarks.tune import neutral_prior_hash
from tests.helpers.cli import bench


def test_a_row_or_study_made_with_other_prior_weights_is_stale_and_removed(tmp_path, capsys):
    row = tmp_path / "test" / "inpainting-ddrm"
    bench("run", "--problem", "inpainting", "--algo", "ddrm", "--prior", "gaussian", "--n", "2", "--out", str(row),
          "--quiet", "algorithm.n_steps=2")
    config = row / "config.yaml"
    recorded = OmegaConf.load(config).names.prior_hash
    assert stale(config, recorded) is None  # the runner's fingerprint, taken again here
    assert stale(config, neutral_prior_hash(OmegaConf.load(config)), study=True) is None  # a study's, likewise
    why = stale(config, "sha256:" + "0" * 64)
    assert why is not None and "other weights of its prior 'gaussian'" in why and "sha256:000000000000" in why
    assert stale(config, "sha256:" + "0" * 64, study=True) is not None

    remove_if_stale("inpainting-ddrm", row, config, recorded)
    assert (row / "samples.jsonl").exists()  # current: kept
    remove_if_stale("inpainting-ddrm", row, config, "sha256:" + "0" * 64)
    kept = tmp_path / "superseded" / ("0" * 12) / "test" / "inpainting-ddrm"
    assert not row.exists() and (kept / "samples.jsonl").exists() and str(kept) in capsys.readouterr().out


def test_a_row_without_a_prior_is_never_stale(tmp_path):
    row = tmp_path / "zf"
    bench("run", "--problem", "inpainting", "--algo", "zero-filled", "--n", "1", "--out", str(row), "--quiet")
    config = row / "config.yaml"
    assert OmegaConf.load(config).names.get("prior") is None
    assert stale(config, None) is None and stale(config, "sha256:" + "0" * 64) is None
