"""The leaderboard's paired comparison (benchmarks.comparison): intervals and paired differences from the rows'
per-sample values, the reference row, unpaired rows, shared ranks, duplicate collapse, former priors, the matrices."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from benchmarks import comparison, leaderboard, stats
from tests.helpers import bench, fake_run

RNG = np.random.default_rng(7)
BASE = RNG.normal(25.0, 1.5, 8)  # 8 samples that vary far more than the methods do
CLASSICAL = {"prior": None, "prior_hash": None}


def _prior() -> str:
    return comparison.current_prior("cs_mri") or "brain-64"


def _board(tmp_path, reference=None):
    fake_run(tmp_path / "l1", "l1-wavelet", list(BASE), **CLASSICAL)
    fake_run(tmp_path / "cg", "cg-sense", list(BASE - 1.0 + RNG.normal(0, 0.1, 8)), **CLASSICAL)
    fake_run(tmp_path / "daps", "daps", list(BASE + 1.6 + RNG.normal(0, 0.05, 8)), prior=_prior())
    fake_run(tmp_path / "dps", "dps", list(BASE + 1.5 + 0.3 * (-1.0) ** np.arange(8)), prior=_prior())
    fake_run(tmp_path / "ddrm", "ddrm", list(BASE[:5] + 3.0), prior=_prior())  # other sample ids: 5 of the 8
    fake_run(tmp_path / "old", "daps", list(BASE + 4.0), prior="former-prior")
    return leaderboard.build([tmp_path], reference)


def _rows(board):
    return {(e["algorithm"], e["prior"]): e for e in board["entries"]}


def test_intervals_and_paired_differences_are_scipys(tmp_path):
    board = _board(tmp_path)
    leaderboard.validate(board)
    rows = _rows(board)
    l1, cg = rows[("l1-wavelet", None)], rows[("cg-sense", None)]
    psnr = np.array(cg["per_sample"]["psnr"])
    ref = sps.bootstrap((psnr,), np.mean, confidence_level=0.95, n_resamples=9999, method="BCa",
                        random_state=np.random.default_rng(stats.SEED)).confidence_interval
    assert cg["metrics"]["psnr"]["ci95"] == [ref.low, ref.high]
    assert cg["comparison"]["reference"] == l1["row_id"] and l1["comparison"]["role"] == "reference"
    d = psnr - np.array(l1["per_sample"]["psnr"])
    got = cg["comparison"]["paired"]["psnr"]
    ci = sps.bootstrap((d,), np.mean, confidence_level=0.95, n_resamples=9999, method="BCa",
                       random_state=np.random.default_rng(stats.SEED)).confidence_interval
    assert got == {"diff": pytest.approx(d.mean()), "low": ci.low, "high": ci.high,
                   "p_wilcoxon": sps.wilcoxon(d).pvalue, "n": 8, "sd": pytest.approx(d.std(ddof=1))}
    assert board["statistics"]["reference"] == "l1-wavelet"


def test_unpaired_rows_are_labelled_and_not_ranked(tmp_path):
    rows = _rows(_board(tmp_path))
    c = rows[("ddrm", _prior())]["comparison"]
    assert c["role"] == "unpaired" and c["paired"] == {} and c["rank"] is None
    assert c["note"].startswith("unpaired: sample ids differ (5 shared of 5")
    md = leaderboard.markdown({"entries": list(rows.values())})
    assert "unpaired: sample ids differ (5 shared of 5; the reference holds 8)" in md


def test_ranks_ties_and_former_priors(tmp_path):
    rows = _rows(_board(tmp_path))
    daps, dps, old = rows[("daps", _prior())], rows[("dps", _prior())], rows[("daps", "former-prior")]
    # DPS is DAPS give or take 0.3 dB per sample: its paired interval against the best (DAPS) includes 0
    assert daps["comparison"]["rank"] == dps["comparison"]["rank"] == 1
    assert daps["comparison"]["best"] and dps["comparison"]["tied_with_best"]
    assert rows[("l1-wavelet", None)]["comparison"]["rank"] == 3 and rows[("cg-sense", None)]["comparison"]["rank"] == 4
    # the former prior's row is 2.5 dB better but stays out of the ranks and the matrices, not out of the JSON
    assert old["former_prior"] and not old["comparison"]["headline"] and old["comparison"]["rank"] is None
    assert old["comparison"]["paired"]["psnr"]["diff"] == pytest.approx(4.0)


def test_matrix_bold_and_tie_marks(tmp_path):
    board = _board(tmp_path)
    [m] = comparison.matrices(board)
    assert m.family == "cs_mri" and len(m.columns) == 1
    assert list(m.rows)[:2] == ["daps", "dps"] and "daps" in m.rows and not any("former" in r for r in m.rows)
    md = leaderboard.document(board)
    matrix, full = md.split("**All rows**")
    lines = {line.split(" | ")[0].strip("| "): line for line in matrix.splitlines() if line.startswith("| ")}
    assert "| **" in lines["daps"] and lines["daps"].count("**") == 2 and comparison.TIE_MARK not in lines["daps"]
    assert lines["dps"].rstrip(" |").endswith(comparison.TIE_MARK) and "**" not in lines["dps"]
    assert "**" not in lines["cg-sense"] and comparison.TIE_MARK not in lines["cg-sense"]
    cell = comparison.cell_text(board["entries"][0])
    assert cell.count("[") == 1 and " n=" in cell
    assert "former-prior" in full and "former-prior" not in matrix and comparison.LEGEND in matrix


def test_a_tuned_row_that_kept_the_defaults_collapses_into_the_defaults_row(tmp_path):
    tuning = {"study": "st", "trials": 8, "metric": "psnr", "split": "val", "score": 27.5, "options": {}}
    fake_run(tmp_path / "l1", "l1-wavelet", list(BASE), **CLASSICAL)
    fake_run(tmp_path / "tv", "tv", list(BASE + 0.5), **CLASSICAL)
    fake_run(tmp_path / "tv-tuned", "tv", list(BASE + 0.5), tuning=tuning, **CLASSICAL)
    board = leaderboard.build([tmp_path])
    leaderboard.validate(board)
    plain = next(e for e in board["entries"] if e["algorithm"] == "tv" and e["tuning"] is None)
    tuned = next(e for e in board["entries"] if e["algorithm"] == "tv" and e["tuning"] is not None)
    assert tuned["collapsed_into"] == plain["row_id"] and plain["collapsed"] == [tuned["row_id"]]
    assert tuned["comparison"]["role"] == "collapsed" and not tuned["comparison"]["headline"]
    assert any("defaults kept" in n and "collapsed" in n for n in plain["notes"])
    md = leaderboard.markdown(board)
    assert md.count("| tv |") == 1 and "defaults (= tuned on val, 8 trials: defaults kept)" in md
    assert sum(len(r) for m in comparison.matrices(board) for r in m.rows.values()) == 2


def test_a_tuned_row_that_kept_a_problems_own_options_collapses_and_a_changed_one_does_not(tmp_path):
    """cs_mri's yaml sets DAPS's budget: both rows record it as changed from the constructor's defaults, yet a study
    whose trial 0 won repeats the defaults row; a study that moved an option does not."""
    tuning = {"study": "st", "trials": 8, "metric": "psnr", "split": "val", "score": 27.5, "options": {}}
    own = {"budget": "0.1k", "x0_sampler": "chain", "tau": 0.01}  # a run records every option
    fake_run(tmp_path / "l1", "l1-wavelet", list(BASE), **CLASSICAL)
    fake_run(tmp_path / "daps", "daps", list(BASE + 1.0), options=own, prior=_prior())
    fake_run(tmp_path / "daps-tuned", "daps", list(BASE + 1.0), options=own, tuning=tuning, prior=_prior())
    fake_run(tmp_path / "daps-moved", "daps", list(BASE + 1.2), options={**own, "tau": 0.05}, tuning=tuning,
             prior=_prior(), start=0)
    board = leaderboard.build([tmp_path])
    rows = [e for e in board["entries"] if e["algorithm"] == "daps"]
    plain = next(e for e in rows if e["tuning"] is None)
    kept = next(e for e in rows if e["tuning"] is not None and e["algorithm_options"]["tau"] == 0.01)
    moved = next(e for e in rows if e["algorithm_options"]["tau"] == 0.05)
    assert plain["changed_options"] and kept["collapsed_into"] == plain["row_id"]
    assert not moved.get("collapsed_into") and moved["comparison"]["role"] != "collapsed"


def test_reference_flag_and_from_json(tmp_path):
    _board(tmp_path / "runs")
    out, md = tmp_path / "lb.json", tmp_path / "lb.md"
    bench("leaderboard", str(tmp_path / "runs"), "--reference", "cg-sense", "-o", str(out), "--markdown", str(md))
    board = json.loads(out.read_text())
    rows = _rows(board)
    assert board["statistics"]["reference"] == "cg-sense"
    assert rows[("cg-sense", None)]["comparison"]["role"] == "reference"
    assert rows[("l1-wavelet", None)]["comparison"]["paired"]["psnr"]["diff"] > 0
    assert md.read_text().index("**All rows**") > md.read_text().index("**cs_mri**")
    again = tmp_path / "again.json"
    bench("leaderboard", "--from-json", str(out), "-o", str(again))  # the file's own reference is kept
    rebuilt = json.loads(again.read_text())
    assert [e["comparison"] for e in rebuilt["entries"]] == [e["comparison"] for e in board["entries"]]
    res = bench("leaderboard", "-o", str(again), check=False)
    assert res.returncode == 2 and "--from-json" in res.stderr
    res = bench("leaderboard", str(tmp_path / "runs"), "--reference", "nothing", "-o", str(again))
    assert "no row is 'nothing'" in res.stderr and json.loads(again.read_text())["statistics"]["reference"] == "nothing"


def test_an_old_board_without_per_sample_values(tmp_path):
    """A 2.2 board's rows have no per-sample values: no intervals, no pairing, no ranks, and they say so."""
    _board(tmp_path)
    board = leaderboard.build([tmp_path])
    for e in board["entries"]:
        for k in ("per_sample", "comparison", "setting", "row_id", "former_prior"):
            e.pop(k, None)
        for m in e["metrics"].values():
            m.pop("ci95", None)
    board.pop("statistics")
    board["schema_version"] = "2.2"
    leaderboard.validate(board)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(board))
    rows = _rows(leaderboard.from_json(path))
    cg = rows[("cg-sense", None)]["comparison"]
    assert cg["role"] == "not paired" and "no per-sample values" in cg["note"] and cg["rank"] is None
    assert "[–]" in comparison.cell_text(rows[("daps", _prior())])


def test_an_option_a_run_predates_takes_the_value_the_other_rows_record(tmp_path):
    """A run written before an option existed does not record it: in the setting it takes the value every other row
    of the problem records (listed under `assumed`); where the recorded values differ, it stays a setting of its own."""
    fake_run(tmp_path / "old", "l1-wavelet", list(BASE), problem={"acceleration": 4}, **CLASSICAL)
    fake_run(tmp_path / "new", "cg-sense", list(BASE - 1.0), problem={"acceleration": 4.0, "slab": 0.6}, **CLASSICAL)
    rows = _rows(leaderboard.build([tmp_path]))
    old, new = rows[("l1-wavelet", None)], rows[("cg-sense", None)]
    assert old["setting"]["id"] == new["setting"]["id"] and old["setting"]["assumed"] == ["problem_options.slab"]
    assert "assumed" not in new["setting"] and new["comparison"]["paired"]["psnr"]["diff"] == pytest.approx(-1.0)
    fake_run(tmp_path / "thin", "tv", list(BASE), problem={"acceleration": 4, "slab": 0.3}, **CLASSICAL)
    rows = _rows(leaderboard.build([tmp_path]))
    assert len({e["setting"]["id"] for e in rows.values()}) == 3
    assert rows[("cg-sense", None)]["comparison"]["role"] == "no reference"


def test_forward_only_rows_share_the_setting_and_mrsi_is_compared_with_its_own_reference(tmp_path):
    """`forward_only` hands the solver the same data through a forward-only operator: such a row shares its
    setting (its label says forward-only); a problem without an L1-wavelet row (mrsi) is paired with its own
    reference (comparison.PROBLEM_REFERENCES)."""
    mrsi = dict(problem_name="mrsi", **CLASSICAL)
    fake_run(tmp_path / "tv", "mrsi-tv", list(BASE), problem={"acceleration": 4, "forward_only": False}, **mrsi)
    fake_run(tmp_path / "dpg", "dpg", list(BASE - 2.0), problem={"acceleration": 4, "forward_only": True},
             problem_name="mrsi", prior="p")
    rows = {e["algorithm"]: e for e in leaderboard.build([tmp_path])["entries"]}
    tv, dpg = rows["mrsi-tv"], rows["dpg"]
    assert tv["setting"]["id"] == dpg["setting"]["id"] and tv["comparison"]["role"] == "reference"
    assert dpg["comparison"]["paired"]["psnr"]["diff"] == pytest.approx(-2.0)
    assert comparison.method_label(dpg).startswith("dpg (forward-only") and "forward-only" not in comparison.method_label(tv)
    board = leaderboard.build([tmp_path], reference="cg-sense")  # another reference asked for: no fallback
    assert board["entries"][0]["comparison"]["role"] == "no reference"
