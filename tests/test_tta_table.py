"""The D2SA table script (issue 14, item 5) and the knee-to-brain shift: row -> command mapping, the U-Net ordering
check, the Markdown, resuming from finished runs, and the warning when a shift is in distribution for a network."""
from __future__ import annotations

import json
import warnings

import pytest
from omegaconf import OmegaConf

from benchmarks.config import Selection, resolve
from benchmarks.runner import warn_in_distribution_shift
from benchmarks.scripts import tta_table as tt


def test_rows_map_to_adapter_chains_and_quick_counts():
    assert tt.algo_of("unet", "non-tta") == "unet"
    assert tt.algo_of("varnet", "fine+mr-inr+sst") == "varnet+fine+mr-inr+sst"
    assert tt.algo_of(None, "diffpir+tda") == "diffpir+tda"
    assert tt.quick_overrides("unet+fine+sst") == tt.QUICK["fine"] + tt.QUICK["sst"]
    assert tt.quick_overrides("unet") == []
    assert sorted(tt.RUN_ORDER) == sorted(tt.NETWORK_ROWS)


def cells(**psnr_minutes):
    return {f"unet/{k.replace('_', '+').replace('mr+inr', 'mr-inr').replace('non+tta', 'non-tta').replace('dip+ttt', 'dip-ttt')}":
            {"psnr": p, "minutes_per_patient": m, "ssim": 0.5, "lpips": None} for k, (p, m) in psnr_minutes.items()}


def test_ordering_check_step_by_step():
    good = cells(non_tta=(17.0, 0.0), fine=(20.0, 1.0), fine_mr_inr=(20.5, 1.5), fine_mr_inr_sst=(21.0, 2.0),
                 dip_ttt=(21.5, 9.0))
    assert all(tt.ordering(good).values())
    bad = cells(non_tta=(17.0, 0.0), fine=(20.0, 1.0), fine_mr_inr=(19.0, 1.5), fine_mr_inr_sst=(19.5, 4.0),
                dip_ttt=(21.5, 9.0))
    o = tt.ordering(bad)
    assert o["Non-TTA < FINE"] and not o["FINE <= FINE+MR-INR"] and o["FINE+MR-INR < FINE+MR-INR+SST"]
    assert o["FINE+MR-INR+SST within 1 dB of DIP-TTT"] is False
    assert o["FINE+MR-INR+SST minutes <= 1/3 of DIP-TTT's"] is False
    assert tt.ordering(cells(non_tta=(17.0, 0.0)))["Non-TTA < FINE"] is None
    report = {"prior": None, "shifts": [{"name": "anatomy", "description": "d", "cells": good},
                                        {"name": "modality", "description": "d", "missing": "no source", "cells": {}}],
              "ordering": {"anatomy": tt.ordering(good)}}
    md = tt.markdown(report)
    assert "| fine+mr-inr | 20.50 / 0.500 / – | 1.50 | – / – / – | – |" in md
    assert "no source" in md and "anatomy: Non-TTA < FINE: holds" in md


def test_finished_runs_are_read_back_without_running(tmp_path, monkeypatch):
    out = tmp_path / "cell"
    out.mkdir()
    summary = {"metrics": {"psnr": {"mean": 20.0}, "ssim": {"mean": 0.6}, "seconds": {"mean": 3.0}}, "n_ok": 4}
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "tta_table.done.json").write_text(json.dumps({"algo": "unet", "argv": [], "wall_seconds": 1.0,
                                                          "summary": summary}))
    monkeypatch.setattr(tt, "bench", lambda argv: pytest.fail("a finished cell was run again"))
    row = tt.cell_row(tt.run_cell(out, "unet", [], []), slices=4)
    assert row["psnr"] == 20.0 and row["lpips"] is None and row["minutes_per_patient"] == pytest.approx(0.2)


def test_knee_to_brain_is_the_networks_anatomy_shift_and_anatomy_keeps_its_dataset():
    assert resolve(Selection("cs_mri", "unet", [], None, None, "knee-to-brain")).dataset == "phantom-brain-t2"
    assert resolve(Selection("cs_mri", "diffpir", [], None, None, "anatomy")).dataset == "phantom-knee-pd"


class _Net:
    training = {"dataset": "phantom-knee-pd"}


class _Wrapped:
    algorithm = _Net()


@pytest.mark.parametrize("shift, dataset, warns", [("anatomy", "phantom-knee-pd", True),
                                                   ("knee-to-brain", "phantom-brain-t2", False),
                                                   (None, "phantom-knee-pd", False)])
def test_in_distribution_shift_warns_for_a_network(shift, dataset, warns):
    cfg = OmegaConf.create({"names": {"shift": shift, "dataset": dataset}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_in_distribution_shift(cfg, _Wrapped())
        warn_in_distribution_shift(cfg, object())  # no training facts (a diffusion solver): never warns
    msgs = [str(w.message) for w in caught]
    assert (len(msgs) == 1 and "knee-to-brain" in msgs[0]) if warns else not msgs
