"""The training-curve script's bookkeeping: every prior profile names its sets, runs and methods alike, and a later
checkpoint is paired item by item against the first (what the choice of a checkpoint rests on)."""
from __future__ import annotations

import json

import pytest

from benchmarks.experiments.training_curve import PROFILES, paired_against, per_item


def test_every_profile_names_methods_for_each_of_its_runs():
    for name, profile in PROFILES.items():
        assert set(profile["methods"]) == set(profile["runs"]), name
        assert profile["plotted"] in profile["sets"], name


def write_run(folder, psnrs, failed=()):
    folder.mkdir(parents=True)
    lines = [json.dumps({"id": f"item-{i}", "status": "failed" if i in failed else "ok", "psnr": p})
             for i, p in enumerate(psnrs)]
    (folder / "samples.jsonl").write_text("\n".join(lines) + "\n")


def test_a_later_checkpoint_is_paired_item_by_item_against_the_first(tmp_path):
    base = [20.0, 22.0, 24.0, 26.0, 21.0, 23.0]
    write_run(tmp_path / "step-8000-daps-real-brain-val", base)
    write_run(tmp_path / "step-9000-daps-real-brain-val", [b + 0.5 for b in base], failed=(5,))
    assert per_item(tmp_path / "step-9000-daps-real-brain-val") == {f"item-{i}": base[i] + 0.5 for i in range(5)}
    out = paired_against(tmp_path, "9000", "8000", [("daps", "real-brain val"), ("daps", "in-distribution val")])
    assert out["against"] == "8000" and "daps in-distribution val" not in out  # no runs: no pair
    row = out["daps real-brain val"]
    assert row["n"] == 5 and row["mean"] == pytest.approx(0.5) and row["low"] == pytest.approx(0.5)


def test_a_checkpoint_is_paired_with_the_same_step_of_another_curve(tmp_path):
    narrow, wide = tmp_path / "narrow", tmp_path / "wide"
    write_run(narrow / "step-3000-daps-real-brain-val", [20.0, 21.0, 22.0, 23.0])
    write_run(wide / "step-3000-daps-real-brain-val", [20.2, 20.6, 22.2, 23.2])
    out = paired_against(wide, "3000", "3000", [("daps", "real-brain val")], other=narrow)
    assert out["against"] == "3000" and out["runs"] == str(narrow)
    row = out["daps real-brain val"]
    assert row["n"] == 4 and row["mean"] == pytest.approx(0.05)
