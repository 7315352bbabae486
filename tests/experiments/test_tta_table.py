"""The D2SA table script (issue 14, item 5) and the knee-to-brain shift: row -> command mapping, the U-Net ordering
check, the Markdown, resuming from finished runs, and the warning when a shift is in distribution for a network."""
from __future__ import annotations

import json
import time
import warnings

import pytest

from benchmarks.cli import shift_descriptions
from benchmarks.config import Selection, compose_config, resolve
from benchmarks.domains import warn_in_distribution_shift
from benchmarks.experiments import tta_table as tt


def test_rows_map_to_adapter_chains_and_quick_counts():
    assert tt.algo_of("unet", "non-tta") == "unet"
    assert tt.algo_of("varnet", "fine+mr-inr+sst") == "varnet+fine+mr-inr+sst"
    assert tt.algo_of(None, "diffpir+tda") == "diffpir+tda"
    assert tt.quick_overrides("unet+fine+sst") == tt.QUICK["fine"] + tt.QUICK["sst"]
    assert tt.quick_overrides("unet") == []
    assert sorted(tt.RUN_ORDER) == sorted(tt.NETWORK_ROWS)


def cells(**psnr_minutes):
    return {f"unet/{k.replace('_', '+').replace('mr+inr', 'mr-inr').replace('non+tta', 'non-tta').replace('dip+ttt', 'dip-ttt')}":
            {"psnr": p, "minutes_per_patient": 2 * m, "cpu_minutes_per_patient": m, "ssim": 0.5, "lpips": None}
            for k, (p, m) in psnr_minutes.items()}


def test_ordering_check_step_by_step():
    good = cells(non_tta=(17.0, 0.0), fine=(20.0, 1.0), fine_mr_inr=(20.5, 1.5), fine_mr_inr_sst=(21.0, 2.0),
                 dip_ttt=(21.5, 9.0))
    assert all(tt.ordering(good).values())
    bad = cells(non_tta=(17.0, 0.0), fine=(20.0, 1.0), fine_mr_inr=(19.0, 1.5), fine_mr_inr_sst=(19.5, 4.0),
                dip_ttt=(21.5, 9.0))
    o = tt.ordering(bad)
    assert o["Non-TTA < FINE"] and not o["FINE <= FINE+MR-INR"] and o["FINE+MR-INR < FINE+MR-INR+SST"]
    assert o["FINE+MR-INR+SST within 1 dB of DIP-TTT"] is False
    assert o["FINE+MR-INR+SST CPU minutes <= 1/3 of DIP-TTT's"] is False
    assert tt.ordering(cells(non_tta=(17.0, 0.0)))["Non-TTA < FINE"] is None
    report = {"prior": None, "shifts": [{"name": "anatomy", "description": "d", "cells": good},
                                        {"name": "modality", "description": "d", "missing": "no source", "cells": {}}],
              "ordering": {"anatomy": tt.ordering(good)}}
    md = tt.markdown(report)
    assert "| fine+mr-inr | 20.50 / 0.500 / – | 3.00; 1.50 | – / – / – | – |" in md  # wall; CPU
    assert "no source" in md and "anatomy: Non-TTA < FINE: holds" in md


def test_finished_runs_are_read_back_without_running(tmp_path, monkeypatch):
    out = tmp_path / "cell"
    out.mkdir()
    summary = {"metrics": {"psnr": {"mean": 20.0}, "ssim": {"mean": 0.6}, "seconds": {"mean": 3.0}}, "n_ok": 4}
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "tta_table.done.json").write_text(json.dumps({"algo": "unet", "argv": [], "wall_seconds": 1.0,
                                                          "summary": summary}))
    monkeypatch.setattr(tt, "bench", lambda argv: pytest.fail("a finished cell was run again"))
    row = tt.cell_row(tt.run_cell(out, "unet", [], []), slices=4, patients=1)
    assert row["psnr"] == 20.0 and row["lpips"] is None and row["minutes_per_patient"] == pytest.approx(0.2)
    assert row["cpu_minutes_per_patient"] is None  # a cell without CPU time (resumed, or from an older table)


def test_a_cell_records_its_cpu_time_and_a_resumed_one_none(tmp_path, monkeypatch):
    summary = {"metrics": {"psnr": {"mean": 20.0}, "seconds": {"mean": 3.0}}, "n_ok": 4}

    def fake_bench(argv):
        out = tmp_path / argv[argv.index("--out") + 1]
        end = time.process_time() + 0.3
        while time.process_time() < end:  # burn 0.3 s of this process's CPU
            pass
        (out / "summary.json").write_text(json.dumps(summary))
        return 0

    monkeypatch.setattr(tt, "bench", fake_bench)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    cell = tt.run_cell(tt.Path("a"), "unet", [], [])
    assert cell["cpu_seconds"] >= 0.3 and "--resume" not in cell["argv"]
    assert tt.cell_row(cell, slices=4, patients=2)["cpu_minutes_per_patient"] == pytest.approx(
        cell["cpu_seconds"] / 2 / 60)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "samples.jsonl").write_text("{}\n")  # partly written: resumed, its CPU time is one leg only
    cell = tt.run_cell(tt.Path("b"), "unet", [], [])
    assert cell["argv"][1] == "--resume" and cell["cpu_seconds"] is None


def test_cells_of_a_results_file_with_the_same_settings_are_kept(tmp_path):
    settings = {"patients": 1, "slices": 4, "size": 64, "seed": 0, "quick": True, "overrides": [], "prior": None}
    cell = {"psnr": 20.0}
    results = tmp_path / "t.json"
    assert tt.kept_cells(results, settings) == ({}, [])  # no file yet
    results.write_text(json.dumps({**settings, "command": "first", "shifts": [{"name": "anatomy",
                                                                                "cells": {"unet/fine": cell}}]}))
    assert tt.kept_cells(results, settings) == ({"anatomy": {"unet/fine": cell}}, ["first"])
    assert tt.kept_cells(results, {**settings, "quick": False}) == ({}, [])  # other settings: a new table


def test_a_shift_is_one_target_and_the_networks_source_model_is_a_model_choice():
    """A shift names the same target for every algorithm (`--shift anatomy`: knee PD for a diffusion solver and a
    network alike); a network's default source model under it is configs/sources.yaml's (the contrast shift's
    brain-T2 networks, the acceleration shift's R = 2 networks), under the user's `algorithm.model`; D2SA's knee PD ->
    brain T2 is `--shift knee-to-brain`."""
    assert resolve(Selection("cs_mri", "unet", [], None, None, "knee-to-brain")).dataset == "phantom-brain-t2"
    assert resolve(Selection("cs_mri", "diffpir", [], None, None, "anatomy")).dataset == "phantom-knee-pd"
    assert resolve(Selection("cs_mri", "unet", ["fine"], None, None, "anatomy")).dataset == "phantom-knee-pd"
    cfg = compose_config(Selection("cs_mri", "unet", ["fine", "mr-inr", "sst"], None, None, "knee-to-brain"))
    assert cfg.algorithm.model == "knee-pd" and cfg.names.dataset == "phantom-brain-t2"
    for algo in ("varnet", "daps"):  # one target: R = 8 for both families
        cfg = compose_config(Selection("cs_mri", algo, [], None, None, "acceleration"))
        assert cfg.problem.acceleration == 8 and cfg.names.dataset == "phantom-brain-t2"
        assert cfg.algorithm.get("model") == ("brain-t2-r2" if algo == "varnet" else None)
    assert compose_config(Selection("cs_mri", "unet", [], None, None, "contrast")).algorithm.model == "brain-t2"
    cfg = compose_config(Selection("cs_mri", "varnet", [], None, None, "real-brain"))
    assert cfg.algorithm.model == "brain-t2" and cfg.names.dataset == "real-brain"
    cfg = compose_config(Selection("cs_mri", "unet", [], None, "phantom-knee-pd", "contrast"), ["algorithm.model=knee-pd"])
    assert cfg.algorithm.model == "knee-pd" and cfg.names.dataset == "phantom-knee-pd"
    for algo, model in (("unet", "brain-t2"), ("diffpir", None)):
        cfg = compose_config(Selection("cs_mri", algo, [], None, None, "scanner"))
        assert (cfg.problem.coils, cfg.problem.coil_radius, cfg.problem.noise_std) == (16, 1.1, 0.02)
        assert cfg.dataset.bias == 0.5 and cfg.names.dataset == "phantom-brain-t2"
        assert cfg.algorithm.get("model") == model
    assert "networks' source model: unet brain-t2, varnet brain-t2" in shift_descriptions()["contrast"]
    assert "source model" not in shift_descriptions()["anatomy"]
    # the diffusion solvers' source prior under knee -> brain is the knee prior (configs/sources.yaml `prior:`), as the
    # networks' is the knee-PD model; --prior wins; a network uses no prior
    assert resolve(Selection("cs_mri", "daps", ["tda"], None, None, "knee-to-brain")).prior == "knee-64"
    assert resolve(Selection("cs_mri", "daps", [], "brain-64", None, "knee-to-brain")).prior == "brain-64"
    assert resolve(Selection("cs_mri", "daps", [], None, None, "contrast")).prior == "brain-64"  # no source prior
    assert resolve(Selection("cs_mri", "unet", [], None, None, "knee-to-brain")).prior is None
    assert shift_descriptions()["knee-to-brain"].endswith("; diffusion prior: knee-64")


def test_a_shift_with_an_unknown_key_or_a_networks_block_is_refused(tmp_path, monkeypatch):
    import benchmarks.config as config

    (tmp_path / "shift").mkdir()
    (tmp_path / "shift" / "bad.yaml").write_text("dataset: phantom-brain-t2\nnetworks: {model: knee-pd}\n")
    (tmp_path / "shift" / "worse.yaml").write_text("datset: phantom-brain-t2\n")
    monkeypatch.setattr(config, "CONFIG_DIR", tmp_path)
    with pytest.raises(config.ConfigError, match="names only its target.*configs/sources.yaml"):
        config.load_shift("bad", "unet")
    with pytest.raises(config.ConfigError, match="unknown key.*datset"):
        config.load_shift("worse")


def test_a_sweep_of_networks_and_solvers_under_a_networks_shift_is_refused(tmp_path, capsys):
    from benchmarks.cli import main as bench_main

    code = bench_main(["run", "--problem", "cs_mri", "-m", "--algo", "unet,zero-filled", "--shift", "acceleration",
                       "--n", "1", "--quiet", "--out", str(tmp_path / "sweep")])
    assert code == 2 and "separate `bench run -m` calls" in capsys.readouterr().err


class _Net:
    def __init__(self, model: str) -> None:
        from algorithms.networks.models import SHIPPED, WEIGHTS

        facts = json.loads((WEIGHTS / SHIPPED["unet"][model]).with_suffix(".json").read_text())
        self.training = facts["training"]  # the shipped checkpoint's training facts


class _Wrapped:
    def __init__(self, model: str) -> None:
        self.algorithm = _Net(model)


@pytest.mark.parametrize("shift, dataset, overrides, warns", [
    ("anatomy", "phantom-knee-pd", [], True),  # the knee-PD model on knee PD: no shift for it
    ("anatomy", None, [], True),  # a shift names the target only: knee PD, the default knee-PD model's own data
    ("knee-to-brain", None, [], False),  # the networks' D2SA anatomy shift: knee PD -> brain T2
    ("contrast", "phantom-brain-t2", [], True),
    ("scanner", None, [], False),  # same dataset name, another scanner: coils, noise, bias
    ("acceleration", None, [], False),  # the R = 2 model at R = 8
    ("acceleration", None, ["problem.acceleration=2"], True),
    ("acceleration", None, ["dataset.slices=4", "dataset.length=8"], False),  # patients do not change the data
    (None, "phantom-knee-pd", [], False),
])
def test_in_distribution_shift_warns_for_a_network(shift, dataset, overrides, warns):
    cfg = compose_config(Selection("cs_mri", "unet", [], None, dataset, shift), overrides)
    model = cfg.algorithm.model or "knee-pd"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_in_distribution_shift(cfg, _Wrapped(model))
        warn_in_distribution_shift(cfg, object())  # no training facts (a diffusion solver): never warns
    msgs = [str(w.message) for w in caught]
    assert (len(msgs) == 1 and "in distribution for it" in msgs[0] and "--shift knee-to-brain" in msgs[0]) \
        if warns else not msgs


def test_each_network_uses_its_shifts_shipped_source_and_other_shifts_keep_their_cells(tmp_path, monkeypatch):
    """The modality shift runs the U-Net and the VarNet from the shipped brain-T2 sources on brain T1, a network
    without a shipped source for a shift is not run (and named missing), and a `--shifts modality` invocation keeps
    the anatomy cells of the same table."""
    from algorithms.networks.models import SHIPPED

    calls = []

    def fake_bench(argv):
        calls.append(argv)
        out = tmp_path / argv[argv.index("--out") + 1]
        out.mkdir(parents=True)
        psnr = 20.0 if "knee-to-brain" in argv else 25.0
        (out / "summary.json").write_text(json.dumps({"metrics": {"psnr": {"mean": psnr}}, "n_ok": 4}))
        return 0

    monkeypatch.setattr(tt, "bench", fake_bench)
    monkeypatch.chdir(tmp_path)
    base = ["--n", "1", "--slices", "2", "--quick", "--runs", "r", "--results", "t.json", "--rows", "non-tta"]
    assert tt.main(base + ["--only", "unet", "--shifts", "anatomy"]) == 0
    assert tt.main(base + ["--only", "unet", "varnet", "--shifts", "modality"]) == 0
    assert len(calls) == 3  # anatomy U-Net, then modality U-Net and VarNet
    for argv, algo in zip(calls[1:], ("unet", "varnet")):
        assert argv[argv.index("--algo") + 1] == algo and "algorithm.model=brain-t2" in argv
        assert argv[argv.index("--shift") + 1] == "contrast" and "brain-t2" in SHIPPED[algo]
    report = json.loads((tmp_path / "t.json").read_text())
    shifts = {s["name"]: s for s in report["shifts"]}
    assert shifts["anatomy"]["cells"]["unet/non-tta"]["psnr"] == 20.0
    assert shifts["modality"]["cells"]["varnet/non-tta"]["psnr"] == 25.0
    assert sorted(shifts["modality"]["cells"]) == ["unet/non-tta", "varnet/non-tta"]
    assert "missing" not in shifts["modality"] and "missing" not in shifts["dataset"]
    assert len(report["commands"]) == 2
    md = (tmp_path / "t.md").read_text()
    assert md.index("**anatomy**") < md.index("| non-tta | 20.00") < md.index("**modality**") < md.index(
        "| non-tta | 25.00")
    # a shift whose VarNet source is not shipped: only the U-Net runs, the VarNet is named missing
    only_unet = tt.Shift("modality", "d", ["--shift", "contrast"], {"unet": "brain-t2"}, "no VarNet source")
    monkeypatch.setattr(tt, "SHIFTS", [only_unet])
    calls.clear()
    assert tt.main(base + ["--fresh", "--runs", "r2", "--only", "unet", "varnet"]) == 0
    assert [a[a.index("--algo") + 1] for a in calls] == ["unet"]
    report = json.loads((tmp_path / "t.json").read_text())
    entry = report["shifts"][0]
    assert entry["missing"] == "no VarNet source" and list(entry["cells"]) == ["unet/non-tta"]


def test_every_shifts_network_source_is_shipped_and_the_acceleration_shift_changes_only_r():
    """Each shift's source model is a shipped model of its family; the acceleration shift's sources were trained
    on its target dataset (brain T2) at R = 2, and its runs set no acceleration, so they test at cs_mri's R = 4."""
    import inspect

    from algorithms.networks.models import SHIPPED, WEIGHTS
    from inverse_problems.problems.cs_mri import CSMRIProblem

    for shift in tt.SHIFTS:
        for family, model in shift.network_model.items():
            assert model in SHIPPED[family], (shift.name, family, model)
    accel = next(s for s in tt.SHIFTS if s.name == "acceleration")
    target = accel.args[accel.args.index("--dataset") + 1]
    assert set(accel.network_model) == {"unet", "varnet"} and not any("acceleration" in a for a in accel.args)
    assert inspect.signature(CSMRIProblem).parameters["acceleration"].default == 4.0
    for family, model in accel.network_model.items():
        training = json.loads((WEIGHTS / SHIPPED[family][model]).with_suffix(".json").read_text())["training"]
        assert training["dataset"] == target and training["problem_options"]["acceleration"] == 2
