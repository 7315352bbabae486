"""Leaderboard aggregation against numbers computed by hand, and the shipped JSON Schema."""
from __future__ import annotations

import json
import math

import jsonschema
import pytest
from omegaconf import OmegaConf

from benchmarks import leaderboard
from tests.conftest import bench


def fake_run(path, algorithm, psnr, adapters=(), shift=None, failed=0, options=None):
    path.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"names": {"problem": "cs_mri", "algorithm": algorithm, "adapters": list(adapters),
                                               "prior": "p", "dataset": "d", "shift": shift},
                                     "algorithm": options or {}}), path / "config.yaml")
    (path / "environment.json").write_text(json.dumps({"device": "cpu"}))
    with open(path / "samples.jsonl", "w") as f:
        for i, v in enumerate(psnr):
            f.write(json.dumps({"index": i, "status": "ok", "psnr": v, "ssim": 0.5, "nmse": 0.01, "seconds": 2.0,
                                "nfe": 100, "problem_acceleration": 4.0}) + "\n")
        for j in range(failed):
            f.write(json.dumps({"index": len(psnr) + j, "status": "failed", "reason": "diverged at step 3",
                                "psnr": None}) + "\n")


def test_aggregation_by_hand(tmp_path):
    fake_run(tmp_path / "a1", "daps", [30.0, 32.0])
    fake_run(tmp_path / "a2", "daps", [34.0], failed=1)       # same key: merged with a1
    fake_run(tmp_path / "b", "daps", [20.0, 22.0], adapters=["tda"])
    fake_run(tmp_path / "c", "daps", [25.0], shift="contrast")
    board = leaderboard.build([tmp_path])
    leaderboard.validate(board)
    rows = {(e["algorithm"], e["adapters"], e["shift"]): e for e in board["entries"]}
    assert len(rows) == 3
    a = rows[("daps", "", None)]
    assert a["n"] == 3 and a["n_failed"] == 1
    assert a["metrics"]["psnr"]["mean"] == pytest.approx(32.0)
    assert a["metrics"]["psnr"]["std"] == pytest.approx(math.sqrt((4 + 0 + 4) / 3))
    assert a["seconds_per_sample"] == pytest.approx(2.0) and a["nfe"] == pytest.approx(100)
    assert len(a["run_ids"]) == 2 and a["problem_info"]["acceleration"] == 4.0
    b = rows[("daps", "tda", None)]
    assert b["metrics"]["psnr"]["mean"] == pytest.approx(21.0) and b["metrics"]["psnr"]["std"] == pytest.approx(1.0)
    md = leaderboard.markdown(board)
    assert "daps+tda" in md and "21.00 ± 1.00" in md and "| 4.0 |" in md


def test_schema_rejects_malformed(tmp_path):
    fake_run(tmp_path / "a", "daps", [30.0])
    board = leaderboard.build([tmp_path])
    schema = json.loads(leaderboard.SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    bad = json.loads(json.dumps(board))
    del bad["entries"][0]["metrics"]
    with pytest.raises(jsonschema.ValidationError):
        leaderboard.validate(bad)
    bad = json.loads(json.dumps(board))
    bad["schema_version"] = "0.9"
    with pytest.raises(jsonschema.ValidationError):
        leaderboard.validate(bad)


def test_cli_leaderboard(tmp_path):
    fake_run(tmp_path / "runs" / "a", "daps", [30.0, 31.0])
    out = tmp_path / "lb.json"
    md = tmp_path / "lb.md"
    bench("leaderboard", str(tmp_path / "runs"), "-o", str(out), "--markdown", str(md))
    board = json.loads(out.read_text())
    assert board["schema_version"] == leaderboard.SCHEMA_VERSION and board["entries"][0]["n"] == 2
    assert "30.50" in md.read_text()
    res = bench("leaderboard", str(tmp_path / "nowhere"), check=False)
    assert res.returncode == 2 and "does not exist" in res.stderr


def test_runs_with_other_options_are_other_rows(tmp_path):
    """Runs that differ in an algorithm option are never averaged together; the label names the option."""
    fake_run(tmp_path / "a", "diffpir", [20.0], options={"lam": 1.0, "n_steps": 100})
    fake_run(tmp_path / "b", "diffpir", [24.0], options={"lam": 30.0, "n_steps": 100})
    board = leaderboard.build([tmp_path])
    leaderboard.validate(board)
    by_lam = {e["algorithm_options"]["lam"]: e for e in board["entries"]}
    assert set(by_lam) == {1.0, 30.0}
    assert by_lam[1.0]["changed_options"] == {} and by_lam[30.0]["changed_options"] == {"algorithm": {"lam": 30.0}}
    md = leaderboard.markdown(board)
    assert "| diffpir (lam=30.0) |" in md and "| diffpir |" in md
