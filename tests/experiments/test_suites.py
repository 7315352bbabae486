"""Seam 5, suites: configs/suites/board.yaml and tta.yaml expand to exactly the runs the two experiment scripts made
from their own tables before (the tables are copied here from the scripts as they were), and `bench suite` runs a
suite's runs."""
from __future__ import annotations

import json

import pytest

from benchmarks.experiments import leaderboard_runs as lr
from benchmarks.experiments import tta_table as tt
from benchmarks.suites import SuiteError, load_suite, suite_names

# benchmarks/experiments/leaderboard_runs.py before the suites
OLD_SETTINGS = {
    "cs_mri-R4": ("cs_mri", ["problem.acceleration=4"]),
    "cs_mri-R8": ("cs_mri", ["problem.acceleration=8"]),
    "cs_mri-1coil-R4": ("cs_mri", ["problem.coils=1", "problem.acceleration=4"]),
    "lowfield": ("lowfield", []),
}
OLD_CLASSICAL = ["zero-filled", "cg-sense", "l1-wavelet", "tv"]
OLD_DIFFUSION = ["ddrm", "diffpir", "daps", "dps", "diffdeur"]
OLD_ADAPTED = [("cs_mri-R4", "daps+tda"), ("cs_mri-R4", "diffpir+tda"), ("cs_mri-R8", "diffpir+tda"),
               ("cs_mri-R4", "ddrm+tda"), ("lowfield", "daps+tda"), ("lowfield", "diffpir+tda")]


def old_board(stage: str) -> list[tuple[str, str, str, list[str]]]:
    out = []
    for setting, (problem, overrides) in OLD_SETTINGS.items():
        methods = (OLD_CLASSICAL + OLD_DIFFUSION + [a for s, a in OLD_ADAPTED if s == setting]) \
            if stage == "defaults" else OLD_DIFFUSION
        out += [(f"{setting}-{algo}", problem, algo, overrides) for algo in methods]
    return out


@pytest.mark.parametrize("stage", ["defaults", "tune", "tuned"])
def test_the_board_suite_keeps_the_leaderboard_scripts_runs(stage):
    """Every run the script made before the suites is still in the board, under its name and with its options."""
    now = [(j.name, j.problem, j.algo, [*j.flags(), *j.overrides]) for j in lr.jobs(stage)]
    missing = [r for r in old_board(stage) if r not in now]
    assert not missing


ROSTER = ["ddnm", "pigdm", "reddiff", "pnpdm", "lgd", "score-mri", "csgm"]


def test_the_board_has_the_roster_the_2_percent_row_and_tda_rows():
    board = load_suite("board")
    assert all(j.n >= 16 for j in board.runs)
    defaults = {(j.group, j.algo) for j in lr.jobs("defaults")}
    tuned = {(j.group, j.algo) for j in lr.jobs("tune")}
    for group in ("cs_mri-R4", "cs_mri-R8", "cs_mri-1coil-R4", "lowfield"):
        assert {(group, a) for a in OLD_DIFFUSION + ROSTER} <= tuned
        assert {(group, f"{a}+tda") for a in OLD_DIFFUSION + ROSTER} <= defaults
    for group in ("cs_mri-2pct", "cs_mri-1coil-2pct"):
        jobs = [j for j in lr.jobs("defaults") if j.group == group]
        assert {j.algo for j in jobs} >= {*OLD_CLASSICAL, *OLD_DIFFUSION, *ROSTER, *(f"{a}+tda" for a in ROSTER)}
        assert all({"problem.acceleration=50", "problem.mask=vd2d"} <= set(j.overrides) for j in jobs)
    assert {j.algo for j in lr.jobs("defaults") if j.group == "cs_mri-2pct"} >= {"unet", "varnet"}


# benchmarks/experiments/tta_table.py before the suites
OLD_SHIFTS = [
    ("anatomy", "knee PD -> brain T2 (cs_mri, R = 4, 8 coils)", ["--shift", "knee-to-brain"],
     {"unet": "knee-pd", "varnet": "knee-pd"}),
    ("modality", "brain T2 -> brain T1 (cs_mri, R = 4, 8 coils)", ["--shift", "contrast"],
     {"unet": "brain-t2", "varnet": "brain-t2"}),
    ("acceleration", "brain T2, R = 2 -> R = 4 (cs_mri, 8 coils)", ["--dataset", "phantom-brain-t2"],
     {"unet": "brain-t2-r2", "varnet": "brain-t2-r2"}),
    ("dataset", "brain T2, phantom scanner -> another scanner: 16 coils closer to the head, 4x noise, 5x "
     "bias field (cs_mri, R = 4; --shift scanner)", ["--shift", "scanner"],
     {"unet": "brain-t2", "varnet": "brain-t2"}),
]
OLD_RUN_ORDER = ["non-tta", "fine", "fine+mr-inr", "fine+mr-inr+sst", "dip-ttt", "fine+sst",
                 "ssdu", "ssdu+sst", "ssdu+mr-inr+sst", "nr2n", "nr2n+sst", "nr2n+mr-inr+sst"]
OLD_DIFFUSION_ROWS = ["daps", "daps+tda", "dps", "dps+tda", "diffpir", "diffpir+tda", "diffpir+prior-affine"]


def old_tta() -> list[tuple[str, str, list[str]]]:
    """Every (shift, algo, flags + model override) of the old script's full table."""
    out = []
    for name, _, args, models in OLD_SHIFTS:
        for family in ("unet", "varnet"):
            out += [(name, tt.algo_of(family, r), args + [f"algorithm.model={models[family]}"])
                    for r in OLD_RUN_ORDER]
        out += [(name, r, list(args)) for r in OLD_DIFFUSION_ROWS]
    return out


def test_the_tta_suite_is_the_tta_tables_runs():
    runs = load_suite("tta").runs
    assert [(r.group, r.algo, [*r.flags(), *r.overrides]) for r in runs] == old_tta()
    assert [(s.name, s.description, s.args, s.network_model) for s in tt.SHIFTS] == [tuple(s) for s in OLD_SHIFTS]
    assert tt.RUN_ORDER == OLD_RUN_ORDER and tt.DIFFUSION_ROWS == OLD_DIFFUSION_ROWS
    assert [tt.family_row(r.algo) for r in runs[:2]] == [("unet", "non-tta"), ("unet", "fine")]


def test_a_bad_suite_is_refused(tmp_path, monkeypatch):
    import benchmarks.suites as suites

    assert {"board", "tta"} <= set(suite_names())
    with pytest.raises(SuiteError, match="unknown suite 'nope'"):
        load_suite("nope")
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "bad.yaml").write_text("runs:\n  - {problem: cs_mri, algo: daps, overides: []}\n")
    (tmp_path / "suites" / "twice.yaml").write_text("runs:\n  - {problem: cs_mri, algo: [daps, daps]}\n")
    monkeypatch.setattr(suites, "CONFIG_DIR", tmp_path)
    with pytest.raises(SuiteError, match="unknown: overides"):
        load_suite("bad")
    with pytest.raises(SuiteError, match="daps occur twice"):
        load_suite("twice")


def test_bench_suite_runs_each_run_into_its_folder(tmp_path, monkeypatch, capsys):
    from benchmarks import cli

    calls = []

    def fake_run(argv):
        calls.append(argv)
        out = tmp_path / argv[argv.index("--out") + 1]
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps({"n": 2}))
        return 0

    monkeypatch.setattr(cli, "_run_argv", fake_run)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["suite", "tta", "--list", "--only", "modality/unet+fine+mr-inr+sst"]) == 0
    listed = capsys.readouterr().out.strip().splitlines()
    assert listed == ["bench run --problem cs_mri --algo unet+fine+mr-inr+sst --shift contrast "
                      "algorithm.model=brain-t2 --out runs/suites/tta/modality/unet+fine+mr-inr+sst"] and not calls
    assert cli.main(["suite", "board", "--only", "lowfield-daps", "--n", "2", "--out", "o", "run.seed=1"]) == 0
    assert [c[c.index("--algo") + 1] for c in calls] == ["daps", "daps+tda"]
    assert calls[0][calls[0].index("--n") + 1] == "2" and "run.seed=1" in calls[0] and "--quiet" in calls[0]
    assert calls[0][calls[0].index("--out") + 1] == "o/lowfield-daps"
    calls.clear()
    assert cli.main(["suite", "board", "--only", "lowfield-daps", "--n", "2", "--out", "o"]) == 0
    assert not calls  # finished runs are skipped


def test_suite_records_and_lists_its_cpu_hours(tmp_path, monkeypatch, capsys):
    """`bench suite` writes OUT/suite_cost.json (CPU-hours per run from each run's summary `cost`, and the total)
    and prints them; `--list` shows the last run's figures as estimates."""
    from benchmarks import cli

    def fake_run(argv):
        out = tmp_path / argv[argv.index("--out") + 1]
        out.mkdir(parents=True, exist_ok=True)
        cpu = 360.0 if argv[argv.index("--algo") + 1] == "daps" else 720.0
        (out / "summary.json").write_text(json.dumps({"n": 2, "cost": {"cpu_seconds": cpu, "wall_seconds": 1.0,
                                                                        "processes": 1, "threads": [1]}}))
        return 0

    monkeypatch.setattr(cli, "_run_argv", fake_run)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["suite", "board", "--only", "lowfield-daps", "--n", "2", "--out", "o"]) == 0
    printed = capsys.readouterr().out
    cost = json.loads((tmp_path / "o" / "suite_cost.json").read_text())
    assert cost["runs"]["lowfield-daps"]["cpu_hours"] == 0.1 and cost["runs"]["lowfield-daps+tda"]["cpu_hours"] == 0.2
    assert cost["total_cpu_hours"] == pytest.approx(0.3) and "lowfield-daps" not in cost["missing"]
    assert "bench suite board: 0.300 CPU-h in total" in printed and "lowfield-daps: 0.100 CPU-h" in printed
    assert cli.main(["suite", "board", "--list", "--only", "lowfield-daps", "--out", "o"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].endswith("# last run: 0.100 CPU-h") and listed[-1].startswith("# last run (")
    assert "0.300 CPU-h in total" in listed[-1]
