"""The width-cost script times every checkpoint it is given, with and without the backward pass, and reports each
against the first (which is 1 by construction) with the parameter counts."""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks.experiments.width_cost import main

WEIGHTS = Path(__file__).resolve().parents[2] / "priors" / "weights" / "brain-64"


def test_each_checkpoint_is_timed_against_the_first(tmp_path):
    out = main(["--prior", f"a={WEIGHTS}", "--prior", f"b={WEIGHTS}", "--batch", "1", "--rounds", "1",
                "--out", str(tmp_path / "cost.json")])
    assert json.loads((tmp_path / "cost.json").read_text()) == out
    assert out["ratio_to_first"]["a"] == {"no_grad": 1.0, "backward": 1.0}
    assert set(out["ratio_to_first"]["b"]) == {"no_grad", "backward"} and out["ratio_to_first"]["b"]["backward"] > 0
    assert out["parameters"]["a"] == out["parameters"]["b"] > 800_000
