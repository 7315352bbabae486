"""The interp4d table script (issue 29, item 6): its rows per setting, the paired comparison to uvi-lite through
benchmarks.stats, the Markdown, and one real (tiny) run read back into a row."""
from __future__ import annotations

import json

from benchmarks.experiments import interp_table as it
from benchmarks import stats


def test_plan_rows_per_setting():
    specs = it.plan(["cardiac/none", "cardiac/interp-frames", "lung/lung-breathing"], None, "p/model.pt", True)
    by = {}
    for s in specs:
        by.setdefault(s["setting"], []).append(s["label"])
    assert by["lung/lung-breathing"] == list(it.BASELINES)  # lung: the baselines only (no lung model ships)
    cardiac = by["cardiac/none"]
    assert it.REFERENCE in cardiac and "uvi-lite+ttt-flow (online)" in cardiac
    assert all(f"uvi-lite+ttt-{a} ({s})" in cardiac for a in ("rot", "mae") for s in it.SCHEMES)
    assert all(f"{c} (sequence prior)" in cardiac for s in it.SOLVERS for c in (s, f"{s}+prior-affine"))
    assert not any("sequence prior" in label for label in by["cardiac/interp-frames"])  # the prior models 12 frames
    faithful = next(s for s in specs if "release-faithful" in s["label"])
    assert "adapters.ttt-mae.release_faithful=true" in faithful["overrides"]
    ttt = next(s for s in specs if s["label"] == "uvi-lite+ttt-rot (naive)")
    assert ttt["flags"] == ["--scheme", "naive", "--batch-size", "1"]
    assert not any("sequence prior" in s["label"] for s in it.plan(["cardiac/none"], None, None, True))
    assert [s["label"] for s in it.plan(["cardiac/none"], {"uvi-lite"}, None, True)] == ["uvi-lite"]


def row(setting, label, psnr):
    ids = [f"s{i}" for i in range(len(psnr))]
    return {"setting": setting, "label": label, "n_ok": len(psnr),
            "per_sequence": {"ids": ids, **{m: list(psnr) for m in it.METRICS}},
            "frames": {m: {"mean": sum(psnr) / len(psnr), "se": 0.1} for m in it.METRICS},
            "wall_s_per_sequence": 1.0, "cpu_s_per_sequence": 0.5, "adapt_s_per_sequence": None}


def test_paired_against_uvi_lite_and_linear_for_uvi_lite():
    rows = [row("cardiac/none", "interp-linear", [28.0, 29.0, 30.0, 29.5]),
            row("cardiac/none", "uvi-lite", [29.0, 30.5, 30.5, 30.0]),
            row("cardiac/none", "uvi-lite+ttt-rot (online)", [29.1, 30.4, 30.7, 30.1])]
    it.compare(rows)
    lin, uvi, ttt = rows
    assert uvi["paired"]["reference"] == "interp-linear" and ttt["paired"]["reference"] == "uvi-lite"
    want = stats.paired(it.values(ttt, "psnr"), it.values(uvi, "psnr"))
    assert ttt["paired"]["psnr"]["diff"] == want.diff.mean and ttt["paired"]["psnr"]["low"] == want.diff.low
    assert ttt["paired"]["psnr"]["p_wilcoxon"] == want.p_wilcoxon
    md = it.markdown({"rows": rows, "paper": it.PAPER, "missing": []})
    assert "(vs interp-linear)" in md and "33.59" in md and "33.73" in md and md.count("\n| cardiac/none") == 3


def test_one_tiny_run_read_back(tmp_path, monkeypatch):
    spec = it.plan(["cardiac/none"], {"interp-linear"}, None, False)[0]
    r = it.run(spec, 2, ["problem.frames=5", "dataset.frames=5", "dataset.oversample=1"], tmp_path)
    assert r["n_ok"] == 2 and len(r["per_sequence"]["psnr"]) == 2 and r["frames"]["psnr"]["se"] > 0
    assert r["cpu_s_per_sequence"] >= 0 and r["adapt_s_per_sequence"] is None
    assert "--problem interp4d --algo interp-linear --n 2" in r["command"]
    json.dumps(r)


def test_a_setting_without_uvi_lite_compares_to_linear():
    rows = [row("lung/none", "interp-linear", [27.0, 28.0, 26.0]), row("lung/none", "interp-io", [27.5, 28.1, 26.2])]
    it.compare(rows)
    assert "paired" not in rows[0] and rows[1]["paired"]["reference"] == "interp-linear"
