"""The reliability battery (issue 26): the hostile inputs and faults of the probe, each with its expected outcome.

Every case names its input and what must happen: REFUSED (an error matching a pattern that names what is wrong, and
no traceback), FAILED_ITEM (a DataError naming the file: what the run loop records as a failed line), SKIPPED (the
leaderboard reports the run and goes on), or OK (the careful user's expectation, e.g. a clean study still applies).
The run loop's cases: resume verifies every line it trusts (unreadable, duplicated, or missing its reconstruction:
set aside in samples.jsonl.set-aside and redone), and a bad item is a failed line carrying the run's tier, however
many come before the first good one.

Every file is built here, in tmp_path; nothing is written to the working tree.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import pickle
import re
import shlex
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from benchmarks import leaderboard
from inverse_problems.data.base import DataError
from inverse_problems.data.readers.fastmri import FastMRIDataset, make_header, write_fastmri_h5
from inverse_problems.data.readers.nifti import NiftiDataset
from inverse_problems.operators.coils import birdcage_maps
from inverse_problems.operators.fft import fft2c
from tests.conftest import bench

torch.set_num_threads(1)
REFUSED, FAILED_ITEM, SKIPPED, OK = "refused", "failed item", "skipped", "ok"


@dataclass
class Case:
    id: str
    make: Callable[..., Any]  # builds the input in tmp_path; what it returns depends on the family
    outcome: str
    match: str = ""

    def param(self, *marks: Any) -> Any:
        return pytest.param(self, id=self.id, marks=marks)


def no_traceback(res) -> None:
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (a FIFO read blocks forever): SIGALRM interrupts the blocking call."""
    def expire(*_: Any) -> None:
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ================================================================ bad data files: DataError naming the file
def image32(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(32, 32, generator=g) + 0.5


def multicoil(coils: int, shape=(32, 32)) -> torch.Tensor:
    img = torch.nn.functional.pad(image32(), ((shape[1] - 32) // 2,) * 2 + ((shape[0] - 32) // 2,) * 2)
    return fft2c(birdcage_maps(coils, shape, dtype=torch.complex64) * img)[None]


def _rgb_nifti(tmp: Path):
    rgb = np.zeros((16, 16, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"] = 200
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(tmp / "rgb.nii"))
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((16, 16, 3)).astype(np.float32) + 0.5, np.eye(4)),
             str(tmp / "z_good.nii"))
    return lambda: NiftiDataset(str(tmp), size=16)[0]


def _nifti_1e37(tmp: Path):
    nib.save(nib.Nifti1Image((np.random.default_rng(0).random((16, 16, 3)) * 1e37).astype(np.float32), np.eye(4)),
             str(tmp / "huge.nii"))
    return lambda: NiftiDataset(str(tmp), size=16)[0]


def _prospective_no_dc(coils: int):
    def make(tmp: Path):
        m = np.zeros(32, np.float32)
        m[::2] = 1
        m[14:19] = 1
        m[16] = 0  # the DC column
        k = multicoil(coils) * torch.from_numpy(m)
        write_fastmri_h5(tmp / "nodc.h5", k[:, 0] if coils == 1 else k, extra={"mask": m})
        return lambda: FastMRIDataset(str(tmp), size=32)[0]
    return make


def _hw_mask_cropped_readout(tmp: Path):
    m = np.zeros((64, 32), np.float32)
    m[:, ::2] = 1
    m[:, 12:20] = 1
    m[5, 3] = 1  # rows differ: a true 2-D mask
    write_fastmri_h5(tmp / "hw.h5", multicoil(4, (64, 32)) * torch.from_numpy(m),
                     header=make_header((64, 32, 1), (32, 32, 1)), extra={"mask": m})
    return lambda: FastMRIDataset(str(tmp), size=32)[0]


def _kspace_1e37(tmp: Path):
    write_fastmri_h5(tmp / "big.h5", multicoil(4) * 1e37)
    return lambda: FastMRIDataset(str(tmp), size=32)[0]


def _zero_maps(tmp: Path):
    k = multicoil(4)
    write_fastmri_h5(tmp / "zmaps.h5", k, extra={"sensitivity_maps": np.zeros(tuple(k.shape), np.complex64)})
    return lambda: FastMRIDataset(str(tmp), size=32)[0]


def _negative_fov(tmp: Path):
    write_fastmri_h5(tmp / "fov.h5", multicoil(4), header=make_header((32, 32, 1), (-40, 32, 1)))
    return lambda: FastMRIDataset(str(tmp), size=32)[0]


def _billion_slices(tmp: Path):
    with h5py.File(tmp / "many.h5", "w") as f:
        f.create_dataset("kspace", shape=(10**9, 2, 16, 16), dtype=np.complex64, chunks=(1, 2, 16, 16))
    return lambda: FastMRIDataset(str(tmp), size=16, slices="all")[0]


READERS = [
    Case("rgb-nifti", _rgb_nifti, FAILED_ITEM, r"rgb\.nii: voxels are of type .*RGB.*grey-level"),
    Case("nifti-scaled-1e37", _nifti_1e37, FAILED_ITEM,
         r"huge\.nii: slice 1 along axis 2 holds magnitudes up to .*e\+36, beyond what float32"),
    Case("prospective-mask-without-dc-1-coil", _prospective_no_dc(1), FAILED_ITEM,
         r"nodc\.h5: key 'mask' does not acquire the k-space centre"),
    Case("prospective-mask-without-dc-8-coils", _prospective_no_dc(8), FAILED_ITEM,
         r"nodc\.h5: key 'mask' does not acquire the k-space centre"),
    Case("hw-mask-on-cropped-readout", _hw_mask_cropped_readout, FAILED_ITEM,
         r"hw\.h5: key 'mask' is a 2-D \(H, W\) mask, but the readout axis is cropped"),
    Case("kspace-scaled-1e37-not-no-signal", _kspace_1e37, FAILED_ITEM,
         r"big\.h5: key 'kspace' slice 0 holds magnitudes up to .*beyond what float32"),
    Case("all-zero-stored-coil-maps-not-exploded", _zero_maps, FAILED_ITEM,
         r"zmaps\.h5: key 'sensitivity_maps' slice 0 is all zero"),
    Case("negative-field-of-view", _negative_fov, FAILED_ITEM,
         r"fov\.h5: 'ismrmrd_header' reconSpace/matrixSize is -40x32; a field of view must be at least 1 x 1"),
    Case("file-declaring-1e9-slices", _billion_slices, FAILED_ITEM, r"many\.h5: key 'kspace' declares 1000000000 "
                                                                     r"slices, more than any MR volume holds"),
]


@pytest.mark.parametrize("case", [c.param() for c in READERS])
def test_bad_file_is_a_data_error_naming_it(case: Case, tmp_path: Path):
    read = case.make(tmp_path)
    with pytest.raises(DataError, match=case.match) as info:
        read()
    assert "dataset.size=-" not in str(info.value)  # never advises an impossible fix


def test_negative_crop_is_refused_naming_the_option(tmp_path: Path):
    write_fastmri_h5(tmp_path / "ok.h5", multicoil(2))
    with pytest.raises(ValueError, match=r"dataset\.crop must be two positive integers"):
        FastMRIDataset(str(tmp_path), size=32, crop=[-40, 32])


# ================================================================ studies: data, validated
SMALL = ["problem.size=16", "dataset.size=16", "prior.dataset_options.size=16", "algorithm.n_steps=5"]
LAM = "tag(log, interval(0.1, 100.0))"


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    """A study of diffpir on inpainting as `bench tune` leaves it (trial run directories, the sweeper's results),
    written into study.json by tune.write_study: trial 0 the defaults (lam = 1), trial 1 the sampler's lam = 3 (best).
    Each trial asked for run.n = 100000 and used 2 items."""
    from benchmarks.config import Selection, compose_config
    from benchmarks.tune import write_study

    out = tmp_path_factory.mktemp("study") / "s"
    sel = Selection("inpainting", "diffpir", [], None, None, None)
    for folder, lam, psnr in ((out / "defaults" / "0", 1.0, 20.0), (out / "0", 3.0, 21.0)):
        folder.mkdir(parents=True)
        cfg = compose_config(sel, SMALL + ["run.split=val", "run.n=100000", f"algorithm.lam={lam}"])
        OmegaConf.save(cfg, folder / "config.yaml")
        (folder / "summary.json").write_text(json.dumps({"n": 2, "n_ok": 2, "n_failed": 0,
                                                         "metrics": {"psnr": {"mean": psnr}}}))
    OmegaConf.save(OmegaConf.create({"name": "optuna", "best_params": {"algorithm.lam": 3.0}, "best_value": 21.0}),
                   out / "optimization_results.yaml")
    write_study(out, {"algorithm.lam": LAM})
    return out


def test_study_records_what_was_used_and_its_command_reproduces_it(study_dir: Path, tmp_path: Path):
    study = json.loads((study_dir / "study.json").read_text())
    assert study["n_val"] == 2  # the items the trials used, not the 100000 asked for
    assert study["split"] == "val" and study["best"]["options"] == {"algorithm.lam": 3.0}
    assert study["space"] == {"algorithm.lam": LAM} and str(study["prior_hash"]).startswith("sha256:")
    words = shlex.split(study["command"])
    for fixed in SMALL:
        assert fixed in words  # the study's fixed options are in the command
    assert words[:2] == ["bench", "run"] and words[-2:] == ["--tuned", str(study_dir)]
    out = tmp_path / "tuned"
    res = bench(*words[1:], "--n", "1", "--quiet", "--out", str(out), check=False)  # run as printed: a clean study
    assert res.returncode == 0, res.stderr
    cfg = OmegaConf.load(out / "config.yaml")
    assert cfg.algorithm.lam == 3.0 and cfg.run.split == "test" and cfg.tuning.split == "val"


def _tamper(change: Callable[[dict], Any]) -> Callable[[Path, Path], Path]:
    def make(study_dir: Path, tmp: Path) -> Path:
        study = json.loads((study_dir / "study.json").read_text())
        text = change(study)
        (tmp / "study").mkdir()
        (tmp / "study" / "study.json").write_text(text if isinstance(text, str) else json.dumps(study))
        return tmp / "study"
    return make


def _opt(key: str, value: Any) -> Callable[[dict], None]:
    return lambda s: s["best"]["options"].update({key: value})


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def change(s: dict) -> None:
        *head, last = path.split(".")
        node = s
        for h in head:
            node = node[h]
        node[last] = value
    return change


STUDIES = [
    Case("best-sets-run.split", _tamper(_opt("run.split", "train")), REFUSED, r"best option run\.split='train' is not "
                                                                                r"in diffpir's search space"),
    Case("best-sets-run.seed", _tamper(_opt("run.seed", 5)), REFUSED, r"best option run\.seed=5 is not in"),
    Case("best-sets-problem.acceleration", _tamper(_opt("problem.acceleration", 2)), REFUSED,
         r"best option problem\.acceleration=2 is not in"),
    Case("best-sets-problem.noise_std", _tamper(_opt("problem.noise_std", 0)), REFUSED,
         r"best option problem\.noise_std=0 is not in"),
    Case("best-sets-+foo", _tamper(_opt("+foo", 1)), REFUSED, r"best option \+foo=1 is not in"),
    Case("best-sets-hydra.run.dir", _tamper(_opt("hydra.run.dir", "/tmp/x")), REFUSED,
         r"best option hydra\.run\.dir='/tmp/x' is not in"),
    Case("space-widened-to-a-problem-option",
         _tamper(lambda s: (s["space"].update({"problem.noise_std": "interval(0.0, 1.0)"}),
                            _opt("problem.noise_std", 0.0)(s))), REFUSED,
         r"problem\.noise_std is not an option of diffpir"),
    Case("best-outside-its-range", _tamper(_opt("algorithm.lam", 1e9)), REFUSED,
         r"best option algorithm\.lam: 1000000000\.0 is outside \[0\.1, 100\.0\]"),
    Case("best-of-the-wrong-type", _tamper(_opt("algorithm.lam", "3")), REFUSED,
         r"best option algorithm\.lam: '3' is not a number"),
    Case("study-claims-split-test", _tamper(_set("split", "test")), REFUSED,
         r"field 'split' is 'test'; a study is made on the val split"),
    Case("study-claims-n_trials-minus-1", _tamper(_set("n_trials", -1)), REFUSED, r"field 'n_trials' is -1"),
    Case("study-is-a-json-list", _tamper(lambda s: "[1, 2]"), REFUSED, r"holds a JSON list, not a study"),
    Case("study-holds-a-bare-NaN", _tamper(lambda s: json.dumps(s).replace('"score": 21.0', '"score": NaN')), REFUSED,
         r"not valid JSON: bare NaN"),
    Case("study-of-another-dataset", _tamper(_set("dataset", "phantom-brain-t2")), REFUSED,
         r"the study was made with dataset 'phantom-brain-t2', this run has 'grf'"),
    Case("study-of-other-prior-weights", _tamper(_set("prior_hash", "sha256:" + "0" * 64)), REFUSED,
         r"the study's prior weights \(fingerprint sha256:000000000000\) are not this run's"),
    Case("study-without-a-setting", _tamper(lambda s: s.pop("setting")), REFUSED, r"the study records no setting"),
]


@pytest.mark.parametrize("case", [c.param() for c in STUDIES])
def test_tampered_study_is_refused_naming_the_key(case: Case, study_dir: Path, tmp_path: Path):
    folder = case.make(study_dir, tmp_path)
    res = bench("run", "--problem", "inpainting", "--algo", "diffpir", *SMALL, "--tuned", str(folder), "--n", "1",
                "--quiet", "--out", str(tmp_path / "run"), check=False)
    assert res.returncode == 2 and re.search(case.match, res.stderr), res.stderr
    no_traceback(res)
    assert not (tmp_path / "run").exists()  # refused before anything was written


RUN_SETTINGS = [
    Case("run-in-another-problem-setting", ["problem.noise_std=0"], REFUSED,
         r"the study was made with problem\.noise_std=0\.01, this run has problem\.noise_std=0; .*run the study's "
         r"command: bench run"),
    Case("run-without-the-study's-fixed-option", [o for o in SMALL if "n_steps" not in o], REFUSED,
         r"the study was made with algorithm\.n_steps=5, this run has algorithm\.n_steps="),
    Case("tuned-run-on-the-val-split", ["run.split=val"], REFUSED, r"this run is on the 'val' split, the one the study "
                                                                    r"chose its options on"),
    Case("override-of-a-tuned-option", ["algorithm.lam=3"], REFUSED, r"sets algorithm\.lam; drop the override"),
]


@pytest.mark.parametrize("case", [c.param() for c in RUN_SETTINGS])
def test_run_outside_the_study_setting_is_refused(case: Case, study_dir: Path, tmp_path: Path):
    options = case.make if case.id == "run-without-the-study's-fixed-option" else SMALL + case.make
    res = bench("run", "--problem", "inpainting", "--algo", "diffpir", *options, "--tuned", str(study_dir), "--n", "1",
                "--quiet", "--out", str(tmp_path / "run"), check=False)
    assert res.returncode == 2 and re.search(case.match, res.stderr), res.stderr
    no_traceback(res)


TUNES = [
    Case("interval-low-above-high", ["algorithm.lam=interval(10.0, 1.0)"], REFUSED,
         r"search space algorithm\.lam=interval\(10\.0, 1\.0\): an interval needs finite bounds low < high"),
    Case("log-interval-from-zero", ["algorithm.lam=tag(log, interval(0.0, 1.0))"], REFUSED,
         r"search space algorithm\.lam=.*a log-scale interval needs low > 0"),
    Case("search-over-a-problem-option", ["problem.noise_std=choice(0.0, 0.1)"], REFUSED,
         r"bench tune: problem\.noise_std is not an option of diffpir"),
    Case("foreign-non-empty-out", "foreign", REFUSED, r"is a folder that is not empty and is not a sweep or study "
                                                      r"directory \(it holds notes\.txt\); nothing was written there"),
]


@pytest.mark.parametrize("case", [c.param() for c in TUNES])
def test_tune_refuses_before_trial_0(case: Case, tmp_path: Path):
    out = tmp_path / "study"
    extra = []
    if case.make == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    else:
        extra = case.make
    res = bench("tune", "--problem", "inpainting", "--algo", "diffpir", "--trials", "2", "--n-val", "1", "--quiet",
                "--out", str(out), *SMALL, *extra, check=False)
    assert res.returncode == 2 and re.search(case.match, res.stderr), res.stderr
    no_traceback(res)
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert left == (["notes.txt"] if case.make == "foreign" else [])  # no trial ran, nothing was written


def test_tune_reports_one_best():
    """The Optuna sweeper's own "Best parameters/value" lines (its best ignores the defaults trial) are dropped while
    a study runs; the study's best is the one printed."""
    from benchmarks.tune import quiet_sweeper_best

    logger = logging.getLogger("hydra_plugins.hydra_optuna_sweeper._impl")

    def record(msg: str) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.INFO, __file__, 0, msg, (), None)

    with quiet_sweeper_best():
        assert not logger.filter(record("Best parameters: {'algorithm.lam': 3.0}"))
        assert not logger.filter(record("Best value: 21.0"))
        assert logger.filter(record("Launching 1 jobs locally"))
    assert logger.filter(record("Best value: 21.0"))


# ================================================================ leaderboard: never stops, never counts val runs
def fake_run(path: Path, rows: list[dict], split: str = "test", algorithm: str = "daps",
             options: dict | None = None, dataset: str = "d") -> Path:
    path.mkdir(parents=True)
    cfg = {"names": {"problem": "cs_mri", "algorithm": algorithm, "adapters": [], "prior": "p", "dataset": dataset,
                     "shift": None, "prior_hash": "sha256:aa"},
           "run": {"scheme": "online", "split": split, "seed": 0}, "algorithm": options or {}, "problem": {},
           "prior": {}}
    OmegaConf.save(OmegaConf.create(cfg), path / "config.yaml")
    (path / "environment.json").write_text(json.dumps({"device": "cpu"}))
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def ok_rows(n: int, start: int = 0, **extra: Any) -> list[dict]:
    return [{"index": start + i, "id": f"s{start + i}", "status": "ok", "psnr": 30.0 + i, "ssim": 0.5, "nmse": 0.01,
             "seconds": 1.0, "nfe": 10, **extra} for i in range(n)]


def _val_trials(tmp: Path) -> None:
    fake_run(tmp / "study" / "defaults" / "0", ok_rows(2), split="val")
    fake_run(tmp / "study" / "0", ok_rows(2), split="val")


def _corrupted_middle_line(tmp: Path) -> None:
    bad = fake_run(tmp / "bad", ok_rows(3, start=10))
    lines = (bad / "samples.jsonl").read_text().splitlines()
    (bad / "samples.jsonl").write_text(lines[0] + "\n" + lines[1][:20] + "\n" + lines[2] + "\n")


def _fifo(name: str) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        d = tmp / "fifo"
        d.mkdir()
        if name == "config.yaml":
            os.mkfifo(d / "config.yaml")
            (d / "samples.jsonl").write_text(json.dumps(ok_rows(1)[0]) + "\n")
        else:
            OmegaConf.save(OmegaConf.create({"names": {"problem": "cs_mri", "algorithm": "daps"},
                                             "run": {"split": "test"}}), d / "config.yaml")
            os.mkfifo(d / name)
    return make


LEADERBOARD_TREES = [
    Case("val-split-trial-runs", _val_trials, SKIPPED, r"a run on the 'val' split .*the leaderboard ranks test-split"),
    Case("one-run-with-a-corrupted-middle-line", _corrupted_middle_line, SKIPPED, r"line 2: corrupted samples line"),
    Case("fifo-named-config.yaml", _fifo("config.yaml"), SKIPPED, r"config\.yaml is a FIFO \(named pipe\), not a "
                                                                   r"regular file"),
    Case("fifo-named-samples.jsonl", _fifo("samples.jsonl"), SKIPPED, r"samples\.jsonl is a FIFO"),
]


@pytest.mark.parametrize("case", [c.param() for c in LEADERBOARD_TREES])
def test_leaderboard_reports_a_bad_run_and_goes_on(case: Case, tmp_path: Path):
    fake_run(tmp_path / "good", ok_rows(2))
    case.make(tmp_path)
    with deadline(120):
        res = bench("leaderboard", str(tmp_path), "-o", str(tmp_path / "out" / "lb.json"), check=False)
    assert res.returncode == 0, res.stderr
    board = json.loads((tmp_path / "out" / "lb.json").read_text())
    assert [e["n"] for e in board["entries"]] == [2]  # the good run, counted once; nothing of the bad ones
    assert any(re.search(case.match, s["reason"]) for s in board["skipped"]), board["skipped"]


def test_failed_line_without_a_tier_does_not_mix_tiers(tmp_path: Path):
    rows = ok_rows(2, tier="measured", target_convention="fastmri-rss")
    rows.append({"index": 2, "id": "bad", "status": "failed", "reason": "item 2 could not be read", "psnr": None})
    fake_run(tmp_path / "measured", rows)
    entry, = leaderboard.build([tmp_path])["entries"]
    assert entry["tier"] == "measured" and entry["target_convention"] == "fastmri-rss"
    assert entry["n"] == 2 and entry["n_failed"] == 1


# ---------------------------------------------------------------- hostile strings in every output format
HOSTILE = {"lam": "<script>alert(1)</script>", "mode": "<b onmouseover=alert(2)>x</b>", "pipes": "a|b||c",
           "lines": "one\ntwo\rthree", "ticks": "`rm -rf ~`", "ansi": "\x1b[31mred\x1b[0m", "link": "[x](javascript:1)"}
RUN_NAME = "run<script>alert(3)</script>|`x`"


def _markdown_is_inert(md: str, entries: int) -> None:
    lines = md.rstrip("\n").split("\n")
    assert len(lines) == entries + 2  # one line per row: no newline got through
    bars = {line.count("|") for line in lines}
    assert len(bars) == 1  # no pipe from a value split a row
    for raw in ("<script", "<b ", "`", "\x1b", "\r", "](javascript"):
        assert raw not in md, raw


@pytest.fixture()
def hostile_tree(tmp_path: Path) -> Path:
    fake_run(tmp_path / "runs" / RUN_NAME, ok_rows(2), options=HOSTILE, dataset="d<i>ataset</i>|x")
    return tmp_path / "runs"


def test_markdown_file_and_terminal_table_escape_what_they_quote(hostile_tree: Path, tmp_path: Path):
    res = bench("leaderboard", str(hostile_tree), "-o", str(tmp_path / "lb.json"), "--markdown",
                str(tmp_path / "lb.md"))
    md = (tmp_path / "lb.md").read_text()
    _markdown_is_inert(md, 1)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and "a&#124;b&#124;&#124;c" in md and "one\\ntwo" in md
    terminal = res.stdout.split("\n1 entries ->")[0] + "\n"
    _markdown_is_inert(terminal, 1)
    board = json.loads((tmp_path / "lb.json").read_text())  # the JSON keeps the values as they are
    assert board["entries"][0]["algorithm_options"]["lam"] == HOSTILE["lam"]


def test_results_page_escapes_what_it_quotes(hostile_tree: Path, tmp_path: Path):
    bench("leaderboard", str(hostile_tree), "-o", str(tmp_path / "lb.json"), "--html", str(tmp_path / "html"))
    pages = [tmp_path / "html" / "index.html", *sorted((tmp_path / "html" / "configs").glob("*/index.html"))]
    assert len(pages) == 2
    for page in pages:
        text = page.read_text()
        for raw in ("<script>alert", "<b onmouseover", "<i>ataset"):
            assert raw not in text, (page, raw)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0].read_text()


# ---------------------------------------------------------------- OS errors: one line, nothing half-written
class FullDisk:
    """open() whose files take half of what is written, then raise ENOSPC (errno, strerror, filename)."""

    def __init__(self, code: int = errno.ENOSPC) -> None:
        self.code = code

    def __call__(self, path: Any, mode: str = "r", *args: Any, **kwargs: Any):
        f = open(path, mode, *args, **kwargs)  # noqa: SIM115
        if "w" not in mode:
            return f
        code = self.code

        class Half:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

            def write(self, text):
                f.write(text[: len(text) // 2])
                f.flush()
                raise OSError(code, os.strerror(code), str(path))

            def __getattr__(self, name):
                return getattr(f, name)
        return Half()


def _denied(path: Any, mode: str = "r", *args: Any, **kwargs: Any):
    if "w" in mode:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    return open(path, mode, *args, **kwargs)  # noqa: SIM115


OS_ERRORS = [
    Case("disk-full-on-leaderboard-json", FullDisk(), REFUSED, r"-o .*lb\.json: cannot write it \(.*: No space left "
                                                               r"on device\); nothing was written there"),
    Case("unwritable-output-folder", _denied, REFUSED, r"-o .*lb\.json: cannot write it \(.*: Permission denied\)"),
]


@pytest.mark.parametrize("case", [c.param() for c in OS_ERRORS])
def test_output_errors_are_one_line_and_leave_the_old_file(case: Case, tmp_path: Path, monkeypatch):
    fake_run(tmp_path / "runs" / "a", ok_rows(2))
    target = tmp_path / "lb.json"
    target.write_text("OLD")
    monkeypatch.setattr("benchmarks.cli.open", case.make, raising=False)
    res = bench("leaderboard", str(tmp_path / "runs"), "-o", str(target), check=False)
    assert res.returncode != 0 and re.search(case.match, res.stderr), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    no_traceback(res)
    assert target.read_text() == "OLD"  # the complete old file, not a truncated new one
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_output_into_a_missing_folder_is_made(tmp_path: Path):
    fake_run(tmp_path / "runs" / "a", ok_rows(2))
    out = tmp_path / "new" / "deeper" / "lb.json"
    bench("leaderboard", str(tmp_path / "runs"), "-o", str(out), "--markdown", str(tmp_path / "md" / "lb.md"))
    assert json.loads(out.read_text())["entries"] and (tmp_path / "md" / "lb.md").read_text().startswith("| problem")


def test_output_onto_a_folder_is_refused(tmp_path: Path):
    fake_run(tmp_path / "runs" / "a", ok_rows(2))
    (tmp_path / "lb.json").mkdir()
    res = bench("leaderboard", str(tmp_path / "runs"), "-o", str(tmp_path / "lb.json"), check=False)
    assert res.returncode == 2 and "lb.json: is a folder" in res.stderr
    no_traceback(res)


def test_file_too_large_in_html_leaves_no_half_page(tmp_path: Path, monkeypatch):
    fake_run(tmp_path / "runs" / "a", ok_rows(2))
    real = Path.write_text

    def too_large(self: Path, *args: Any, **kwargs: Any) -> int:
        if self.name == "index.html" and self.parent.name.startswith(".html"):
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", too_large)
    res = bench("leaderboard", str(tmp_path / "runs"), "-o", str(tmp_path / "lb.json"), "--html",
                str(tmp_path / "html"), check=False)
    assert res.returncode == 2 and re.search(r"--html .*html: cannot write the results page \(.*index\.html: File "
                                             r"too large\)", res.stderr), res.stderr
    no_traceback(res)
    assert not (tmp_path / "html").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".html")]


# ---------------------------------------------------------------- a tampered --keep file
def _keep(text: str | Callable[[dict], Any]) -> Callable[[Path, dict], Path]:
    def make(tmp: Path, board: dict) -> Path:
        path = tmp / "old.json"
        if callable(text):
            text(board)
            path.write_text(json.dumps(board))
        else:
            path.write_text(text)
        return path
    return make


KEEPS = [
    Case("keep-a-json-list", _keep("[1, 2, 3]"), REFUSED, r"--keep .*old\.json: holds a JSON list, not a leaderboard"),
    Case("keep-n-minus-5", _keep(lambda b: b["entries"][0].update(n=-5)), REFUSED,
         r"--keep .*old\.json: at entries/0/n: -5 is less than the minimum of 0"),
    Case("keep-a-bare-NaN", _keep('{"schema_version": "2.2", "created": "x", "entries": [], "x": NaN}'), REFUSED,
         r"--keep .*old\.json: holds a bare NaN, which JSON does not have"),
    Case("keep-a-fifo", lambda tmp, board: (os.mkfifo(tmp / "old.json"), tmp / "old.json")[1], REFUSED,
         r"--keep .*old\.json: old\.json is a FIFO"),
]


@pytest.mark.parametrize("case", [c.param() for c in KEEPS])
def test_tampered_keep_file_is_named_with_its_problem(case: Case, tmp_path: Path):
    fake_run(tmp_path / "runs" / "a", ok_rows(2))
    fake_run(tmp_path / "gone" / "b", ok_rows(2), algorithm="dps")
    board = leaderboard.build([tmp_path / "gone"])
    keep = case.make(tmp_path, board)
    with deadline(120):
        res = bench("leaderboard", str(tmp_path / "runs"), "-o", str(tmp_path / "lb.json"), "--keep", str(keep),
                    check=False)
    assert res.returncode == 2 and re.search(case.match, res.stderr), res.stderr
    no_traceback(res)
    assert not (tmp_path / "lb.json").exists()


# ================================================================ no code from files, ever
class Payload:
    """A pickle that creates a marker file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_crafted_pickle_runs_no_code_through_any_path_a_message_suggests(tmp_path: Path, capsys):
    from benchmarks.experiments import convert_edm_pickle
    from priors.adm import ADMPrior
    from priors.checkpoints import read_state_dict
    from priors.edm import EDMPrior
    from priors.training.loop import load_checkpoint

    marker = tmp_path / "PWNED"
    files = {"evil.pt": lambda p: torch.save({"ema": Payload(marker)}, p),
             "evil-plain.pt": lambda p: p.write_bytes(pickle.dumps({"ema": Payload(marker)})),
             "network-snapshot.pkl": lambda p: p.write_bytes(pickle.dumps({"ema": Payload(marker)}))}
    tiny = dict(class_name="EDMPrecond", img_resolution=16, img_channels=2, model_type="DhariwalUNet",
                model_channels=32, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8], dropout=0.0)
    messages = []
    for name, write in files.items():
        path = tmp_path / name
        write(path)
        path.with_suffix(".json").write_text(json.dumps(tiny))
        for load in (lambda: read_state_dict(path), lambda: EDMPrior(path=str(path)),
                     lambda: ADMPrior(path=str(path), preset="ffhq256-dps"), lambda: load_checkpoint(path)):
            with pytest.raises(ValueError) as info:
                load()
            messages.append(str(info.value))
            assert not marker.exists(), name
    res = bench("run", "--problem", "cs_mri", "--algo", "dps", "--prior", "edm", f"prior.path={tmp_path / 'evil.pt'}",
                "problem.size=16", "problem.coils=1", "dataset.size=16", "--n", "1", "--quiet",
                "--out", str(tmp_path / "run"), check=False)
    assert res.returncode == 2 and "never unpickles" in res.stderr and not marker.exists()
    for message in messages:  # no message advises unpickling; the EDM ones name the converter's --help only
        assert "pickle.load" not in message and "--trust-pickle" not in message
        if "convert_edm_pickle" in message:
            assert "verified" in message and "--help" in message
    assert any("convert_edm_pickle" in m for m in messages)
    # following the message: the converter, as named, refuses to unpickle without the explicit trust flag
    src = tmp_path / "edm"
    (src / "torch_utils").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"refusing to unpickle .*sha256 [0-9a-f]{64}"):
        convert_edm_pickle.main(["--edm-src", str(src), str(tmp_path / "network-snapshot.pkl"), str(tmp_path / "o.pt")])
    assert not marker.exists() and not (tmp_path / "o.pt").exists()
    with pytest.raises(SystemExit) as info:
        convert_edm_pickle.main(["--help"])
    assert info.value.code == 0
    assert "--trust-pickle" in capsys.readouterr().out


# ================================================================ messages that blamed the wrong thing
CLI = [
    Case("+foo.bar", ["run", "--problem", "inpainting", "--algo", "zero-filled", "+foo.bar=3"], REFUSED,
         r"unknown option foo .*no component reads it"),
    Case("+adapters.tda.lr-without-tda", ["run", "--problem", "inpainting", "--algo", "zero-filled",
                                          "+adapters.tda.lr=3"], REFUSED,
         r"adapters\.tda\.\*: 'tda' is not an adapter of this run \(--algo zero-filled\)"),
    Case("prior-options-without-a-prior", ["run", "--problem", "inpainting", "--algo", "zero-filled",
                                           "+prior.gain=3"], REFUSED, r"prior\.gain: 'zero-filled' uses no prior"),
    Case("snr_db-minus-1000", ["run", "--problem", "cs_mri", "--algo", "zero-filled", "problem.snr_db=-1000",
                               "problem.size=16", "dataset.size=16"], REFUSED,
         r"problem\.snr_db=-1000 is outside \[-60, 300\] dB"),
    Case("train-prior-samples-0", ["train-prior", "--samples", "0", "--steps", "1"], REFUSED,
         r"--samples must be a whole number >= 1, got 0"),
    Case("train-prior-steps-0", ["train-prior", "--steps", "0"], REFUSED, r"--steps must be a whole number >= 1"),
]


@pytest.mark.parametrize("case", [c.param() for c in CLI])
def test_refused_up_front_naming_the_key(case: Case, tmp_path: Path):
    args = list(case.make) + ["--out", str(tmp_path / "out")]
    if args[0] == "run":
        args += ["--n", "1", "--quiet"]
    res = bench(*args, check=False)
    assert res.returncode == 2 and re.search(case.match, res.stderr), res.stderr
    no_traceback(res)
    assert not (tmp_path / "out").exists()


def test_real_brain_without_dipy_is_a_usage_error(tmp_path: Path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "dipy" else real(name, *a))
    res = bench("run", "--problem", "cs_mri", "--algo", "zero-filled", "--shift", "real-brain", "--n", "1", "--quiet",
                "--out", str(tmp_path / "out"), check=False)
    assert res.returncode == 2 and "pip install dipy" in res.stderr, res.stderr
    no_traceback(res)


def test_edm_json_with_a_negative_resolution_names_the_field(tmp_path: Path):
    from priors.edm import build_network, network_config

    (tmp_path / "w.json").write_text(json.dumps({"class_name": "EDMPrecond", "img_resolution": -64, "img_channels": 2,
                                                 "model_type": "SongUNet", "model_channels": 16}))
    with pytest.raises(ValueError, match=r"w\.json: img_resolution is -64; it must be a whole number >= 1"):
        build_network(network_config(config=str(tmp_path / "w.json")), tmp_path / "w.json")


def test_run_help_shows_an_option_that_exists():
    from benchmarks.cli import parser

    run = parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    text = run.format_help()
    assert "algorithm.n_steps=50" in text and "algorithm.steps=" not in text


# ================================================================ run-loop parts (the lead, after the runner split)
TINY = ["--problem", "inpainting", "--algo", "zero-filled", "--quiet", "problem.size=16", "dataset.size=16"]


def _tiny_run(out: Path, n: int = 3, resume: bool = False) -> Any:
    return bench("run", *TINY, "--n", str(n), "--out", str(out), *(["--resume"] if resume else []), check=False)


def _samples(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines() if line.strip()]


def test_resume_sets_aside_a_corrupted_middle_line_and_redoes_it(tmp_path: Path):
    out = tmp_path / "run"
    assert _tiny_run(out).returncode == 0
    lines = (out / "samples.jsonl").read_text().splitlines()
    (out / "samples.jsonl").write_text(lines[0] + "\n" + lines[1][:30] + "\n" + lines[2] + "\n")
    assert _tiny_run(out, resume=True).returncode == 0
    assert sorted(r["index"] for r in _samples(out)) == [0, 1, 2]  # every line parses; sample 1 redone
    assert any(p.name != "samples.jsonl" and "1" in p.read_text() for p in out.glob("*.jsonl*"))  # set aside, named
    assert leaderboard.build([out])["entries"][0]["n"] == 3


def test_resume_counts_a_duplicated_line_once(tmp_path: Path):
    out = tmp_path / "run"
    assert _tiny_run(out).returncode == 0
    with open(out / "samples.jsonl", "a") as f:
        f.write((out / "samples.jsonl").read_text().splitlines()[0] + "\n")
    assert _tiny_run(out, resume=True).returncode == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 3 and sorted(r["index"] for r in _samples(out)) == [0, 1, 2]


def test_resume_redoes_a_sample_whose_reconstruction_is_gone(tmp_path: Path):
    out = tmp_path / "run"
    assert _tiny_run(out).returncode == 0
    (out / "reconstructions" / "000001.npy").unlink()
    assert _tiny_run(out, resume=True).returncode == 0
    assert (out / "reconstructions" / "000001.npy").exists()


def _nifti_folder(root: Path, bad: int, good: int) -> Path:
    """`bad` RGB NIfTI volumes (sorted first), then `good` grey-level ones: one middle slice each."""
    rgb = np.zeros((16, 16, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    root.mkdir()
    for j in range(bad):
        nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(root / f"a{j}-rgb.nii"))
    for j in range(good):
        grey = np.random.default_rng(j).random((16, 16, 3)).astype(np.float32) + 0.5
        nib.save(nib.Nifti1Image(grey, np.eye(4)), str(root / f"b{j}.nii"))
    return root


def _nifti_run(root: Path, out: Path, n: int) -> Any:
    return bench("run", "--problem", "cs_mri", "--algo", "zero-filled", "--dataset", "nifti", f"dataset.root={root}",
                 "dataset.size=16", "problem.size=16", "problem.coils=1", "--n", str(n), "--quiet", "--out", str(out),
                 check=False)


def test_a_folder_of_only_bad_files_is_refused_naming_the_file(tmp_path: Path):
    """Nothing in the folder can be read: refused at setup (rc 2) naming the first file and its problem."""
    res = _nifti_run(_nifti_folder(tmp_path / "d", 1, 0), tmp_path / "run", 1)
    assert res.returncode == 2 and re.search(r"none of the 1 file\(s\) can be read; the first: .*a0-rgb\.nii: voxels "
                                             r"are of type", res.stderr), res.stderr
    no_traceback(res)


def test_a_bad_file_before_good_ones_is_a_failed_line(tmp_path: Path):
    out = tmp_path / "run"
    res = _nifti_run(_nifti_folder(tmp_path / "d", 1, 1), out, 2)
    assert res.returncode == 0, res.stderr
    assert [(r["status"], "a0-rgb.nii" in (r.get("reason") or "")) for r in _samples(out)] == [("failed", True),
                                                                                               ("ok", False)]


def test_nine_bad_files_before_a_good_one_are_failed_lines(tmp_path: Path):
    """The run's setup looks at the first 8 items only (runner.first_readable): nine unreadable files first refuse
    the whole run today; each must be a failed line naming its file, and the good one a result."""
    out = tmp_path / "run"
    res = _nifti_run(_nifti_folder(tmp_path / "d", 9, 1), out, 10)
    assert res.returncode == 0, res.stderr
    rows = _samples(out)
    assert [r["status"] for r in rows] == ["failed"] * 9 + ["ok"] and (out / "summary.json").exists()
    assert all(f"a{j}-rgb.nii" in rows[j]["reason"] for j in range(9))


def test_every_line_carries_the_run_tier(tmp_path: Path):
    """A measured run with one unreadable file: its failed line carries tier measured like the others."""
    root = tmp_path / "d"
    for j in range(2):
        k = multicoil(2).clone()
        if j == 1:
            k[0, 0, 3, 3] = complex(float("nan"), 0)
        write_fastmri_h5(root / f"f{j}.h5", k)
    out = tmp_path / "run"
    res = bench("run", "--problem", "cs_mri", "--algo", "zero-filled", "--dataset", "fastmri", f"dataset.root={root}",
                "dataset.size=32", "problem.size=32", "problem.data=measured", "--n", "2", "--batch-size", "1",
                "--quiet", "--out", str(out), check=False)
    assert res.returncode == 0, res.stderr
    rows = _samples(out)
    assert [r["status"] for r in rows] == ["ok", "failed"] and all(r.get("tier") == "measured" for r in rows)
