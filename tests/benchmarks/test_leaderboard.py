"""Leaderboard aggregation against numbers computed by hand, the shipped JSON Schema, and every merge case:
rows are keyed by everything that changes a number, and nothing is counted twice or silently dropped."""
from __future__ import annotations

import json
import math
import textwrap
import warnings
from pathlib import Path

import jsonschema
import pytest
import torch
from omegaconf import OmegaConf

from benchmarks import leaderboard, registry
from benchmarks.config import Selection, compose_config
from benchmarks.fingerprint import prior_fingerprint
from tests.helpers import bench, fake_run


def test_aggregation_by_hand(tmp_path):
    fake_run(tmp_path / "a1", "daps", [30.0, 32.0])
    fake_run(tmp_path / "a2", "daps", [34.0], failed=1, start=2)   # same key, other samples: merged with a1
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
    assert "daps+tda" in md and "21.00 ± 1.00" in md and "| 4.0 |" in md and "| defaults |" in md


def test_schema_rejects_malformed(tmp_path):
    fake_run(tmp_path / "a", "daps", [30.0])
    board = leaderboard.build([tmp_path])
    schema = json.loads(leaderboard.SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"]["enum"] == list(leaderboard.READABLE_VERSIONS)
    assert leaderboard.SCHEMA_VERSION == leaderboard.READABLE_VERSIONS[-1]
    bad = json.loads(json.dumps(board))
    del bad["entries"][0]["metrics"]
    with pytest.raises(jsonschema.ValidationError):
        leaderboard.validate(bad)
    bad = json.loads(json.dumps(board))
    bad["schema_version"] = "1.1"
    with pytest.raises(jsonschema.ValidationError):
        leaderboard.validate(bad)
    bad = json.loads(json.dumps(board))
    del bad["entries"][0]["prior_hash"]
    with pytest.raises(jsonschema.ValidationError):
        leaderboard.validate(bad)
    bad = json.loads(json.dumps(board))
    bad["entries"][0]["metrics"]["psnr"]["mean"] = float("nan")   # the schema's "number" takes NaN; validate does not
    with pytest.raises(jsonschema.ValidationError, match="non-finite number at /entries/0/metrics/psnr/mean"):
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
    assert "| diffpir (lam=30) |" in md and "| diffpir |" in md


def _labels(board):
    md = leaderboard.markdown(board)
    labels = [line.split(" | ")[5] for line in md.splitlines()[2:]]
    assert len(labels) == len(set(labels)) == len(board["entries"]), md
    return labels


def test_two_priors_are_two_rows(tmp_path):
    """Another checkpoint path, the same options with other weights, or a run without a recorded hash: never
    merged, even on the same samples, and each gets a label of its own."""
    fake_run(tmp_path / "pathA", "daps", [30.0, 31.0], prior_options={"path": "A"}, prior_hash="sha256:" + "1" * 64)
    fake_run(tmp_path / "pathB", "daps", [20.0, 21.0], prior_options={"path": "B"}, prior_hash="sha256:" + "2" * 64)
    fake_run(tmp_path / "pathA-retrained", "daps", [25.0, 26.0], prior_options={"path": "A"},
             prior_hash="sha256:" + "3" * 64)
    fake_run(tmp_path / "old", "daps", [22.0, 23.0], prior_options={"path": "A"}, prior_hash="absent")
    board = leaderboard.build([tmp_path])
    leaderboard.validate(board)
    assert len(board["entries"]) == 4 and all(e["n"] == 2 for e in board["entries"])
    by_run = {e["run_ids"][0].rsplit("/", 1)[-1]: e for e in board["entries"]}
    assert by_run["old"]["prior_hash"] == leaderboard.UNKNOWN_HASH
    assert by_run["pathB"]["prior_options"] == {"path": "B"}
    assert by_run["pathA"]["metrics"]["psnr"]["mean"] == pytest.approx(30.5)
    labels = _labels(board)
    assert any("prior.path=B" in lab for lab in labels)
    assert any("prior_hash=sha256:333333333333" in lab for lab in labels)
    assert any("prior_hash=unknown" in lab for lab in labels)


def test_two_schemes_are_two_rows(tmp_path):
    for scheme in ("online", "naive", "minibatch"):
        fake_run(tmp_path / scheme, "daps", [30.0], adapters=["tda"], scheme=scheme,
                 trace=[{"adapter": "tda", "adapting": True, "steps_adapted": 5}])
    board = leaderboard.build([tmp_path])
    leaderboard.validate(board)
    assert sorted(e["scheme"] for e in board["entries"]) == ["minibatch", "naive", "online"]
    assert all(e["adapters"] == "tda" and e["n"] == 1 for e in board["entries"])
    assert any("run.scheme=naive" in lab for lab in _labels(board))


def test_duplicate_samples_are_an_error_naming_both_dirs(tmp_path):
    """The same 4 phantoms run three times are not n = 12."""
    for k in range(3):
        fake_run(tmp_path / f"again{k}", "daps", [30.0 + k, 31.0, 32.0, 33.0])
    with pytest.raises(leaderboard.LeaderboardError) as exc:
        leaderboard.build([tmp_path])
    msg = str(exc.value)
    assert "'s0' is counted twice" in msg and str(tmp_path / "again0") in msg and str(tmp_path / "again1") in msg
    # two writers in one run directory: both lines named
    one = tmp_path / "one"
    fake_run(one / "run", "daps", [30.0, 31.0])
    with open(one / "run" / "samples.jsonl", "a") as f:
        f.write(json.dumps({"index": 0, "id": "s0", "status": "ok", "psnr": 29.0}) + "\n")
    with pytest.raises(leaderboard.LeaderboardError, match=r"samples.jsonl line 1\) and in .*samples.jsonl line 3"):
        leaderboard.build([one])
    # a val run (a tuning trial) is never a row (issue 26: skipped, named); other seeds on other indices merge
    other = tmp_path / "other"
    fake_run(other / "test", "daps", [30.0], split="test")
    fake_run(other / "val", "daps", [20.0], split="val")
    fake_run(other / "test-more", "daps", [32.0], split="test", start=1)
    with pytest.warns(leaderboard.LeaderboardWarning, match="'val' split"):
        board = leaderboard.build([other])
    assert sorted((e["split"], e["n"]) for e in board["entries"]) == [("test", 2)]
    assert [s["path"] for s in board["skipped"]] == [str(other / "val")]


def test_noop_shift_joins_the_plain_row():
    """`--shift operator` sets the default coil maps: its resolved config is the unshifted one, so no row of its own."""
    plain = compose_config(Selection("cs_mri", "cg-sense", [], None, None, None), ["problem.size=32"])
    op = compose_config(Selection("cs_mri", "cg-sense", [], None, None, "operator"), ["problem.size=32"])
    noise = compose_config(Selection("cs_mri", "cg-sense", [], None, None, "noise"), ["problem.size=32"])
    oracle = compose_config(Selection("cs_mri", "cg-sense", [], None, None, "operator"),
                            ["problem.size=32", "problem.coil_maps=true"])
    assert not leaderboard.shift_changed_config(op)
    assert leaderboard.shift_changed_config(noise) and leaderboard.shift_changed_config(oracle)
    assert not leaderboard.shift_changed_config(plain)
    contrast = compose_config(Selection("cs_mri", "cg-sense", [], None, None, "contrast"), ["problem.size=32"])
    assert leaderboard.shift_changed_config(contrast)  # another dataset
    undone = compose_config(Selection("cs_mri", "cg-sense", [], None, "phantom-brain-t2", "contrast"),
                            ["problem.size=32"])
    assert not leaderboard.shift_changed_config(undone)  # --dataset put the default back


def test_noop_shift_runs_are_counted_once(tmp_path):
    fake_run(tmp_path / "plain", "cg-sense", [30.0, 31.0], prior=None, prior_hash=None,
             problem={"coil_maps": "estimated"})
    fake_run(tmp_path / "operator", "cg-sense", [30.0, 31.0], prior=None, prior_hash=None, shift="operator",
             problem={"coil_maps": "estimated"})
    fake_run(tmp_path / "noise", "cg-sense", [28.0, 29.0], prior=None, prior_hash=None, shift="noise",
             problem={"coil_maps": "estimated", "noise_std": 0.03})
    board = leaderboard.build([tmp_path])
    leaderboard.validate(board)
    rows = {e["shift"]: e for e in board["entries"]}
    assert set(rows) == {None, "noise"}
    assert rows[None]["n"] == 2 and rows[None]["shift_noop"] == ["operator"] and len(rows[None]["run_ids"]) == 2
    assert "repeat" in rows[None]["notes"][0] and rows["noise"]["shift_noop"] == []


def test_noop_adapter_is_labelled_not_a_row(tmp_path):
    """cg-sense has no sampler step, so TDA (steps_adapted = 0) and AIR (no guidance weight) adapted nothing."""
    noop = [{"adapter": "tda", "adapting": True, "steps_adapted": 0}, {"adapter": "air", "w_data": [], "w_tv": []}]
    fake_run(tmp_path / "cg", "cg-sense", [30.0, 31.0], prior=None, prior_hash=None)
    fake_run(tmp_path / "cg-tda", "cg-sense", [30.0, 31.0], adapters=["tda"], prior=None, prior_hash=None, trace=noop)
    fake_run(tmp_path / "cg-tda-air", "cg-sense", [30.0, 31.0, 32.0], adapters=["tda", "air"], prior=None,
             prior_hash=None, trace=noop)
    fake_run(tmp_path / "daps-tda", "daps", [25.0], adapters=["tda"],
             trace=[{"adapter": "tda", "adapting": True, "steps_adapted": 7}])
    fake_run(tmp_path / "daps-air-zero", "daps", [24.0], adapters=["air"],
             trace=[{"adapter": "air", "w_data": [0.0, 0.5], "w_tv": [0.0, 0.0]}])
    # the naive scheme's frozen pass uses what the warm-up learned: never "nothing"
    fake_run(tmp_path / "cg-tda-naive", "cg-sense", [30.0], adapters=["tda"], prior=None, prior_hash=None,
             scheme="naive", trace=[{"adapter": "tda", "adapting": False, "steps_adapted": 0}])
    board = leaderboard.build([tmp_path])
    leaderboard.validate(board)
    rows = {(e["algorithm"], e["adapters"], e["scheme"]): e for e in board["entries"]}
    assert set(rows) == {("cg-sense", "", "online"), ("daps", "tda", "online"), ("daps", "air", "online"),
                         ("cg-sense", "tda", "naive")}
    cg = rows[("cg-sense", "", "online")]
    assert cg["adapters_noop"] == ["air", "tda"] and cg["adapter_options"] == {}
    assert cg["n"] == 3 and cg["metrics"]["psnr"]["mean"] == pytest.approx(31.0)  # s0, s1 once; s2 from cg-tda-air
    assert cg["label"] == "cg-sense (+air adapted nothing, +tda adapted nothing)"
    assert rows[("daps", "tda", "online")]["adapters_noop"] == []
    # two runs of the same no-op variant on the same samples are still duplicates
    fake_run(tmp_path / "cg-tda-again", "cg-sense", [30.0], adapters=["tda"], prior=None, prior_hash=None, trace=noop)
    with pytest.raises(leaderboard.LeaderboardError, match="cg-tda"):
        leaderboard.build([tmp_path])


def test_tuned_and_default_rows_are_apart(tmp_path):
    tuning = {"study": str(tmp_path / "study"), "trials": 20, "metric": "psnr", "split": "val", "score": 27.5,
              "options": {"lam": 12.0}}
    fake_run(tmp_path / "default", "diffpir", [25.0], options={"lam": 1.0})
    fake_run(tmp_path / "tuned", "diffpir", [25.5], options={"lam": 12.0}, tuning=tuning, start=0)
    fake_run(tmp_path / "tuned-more", "diffpir", [26.5], options={"lam": 12.0}, tuning=tuning, start=1)
    board = leaderboard.build([tmp_path])
    leaderboard.validate(board)
    rows = {leaderboard.tuning_label(e): e for e in board["entries"]}
    assert set(rows) == {"defaults", "tuned on val, 20 trials"}
    tuned = rows["tuned on val, 20 trials"]
    assert tuned["n"] == 2 and tuned["tuning"]["studies"] == [{"study": str(tmp_path / "study"), "score": 27.5}]
    assert rows["defaults"]["tuning"] is None
    md = leaderboard.markdown(board)
    assert "| tuning |" in md.splitlines()[0] and "| tuned on val, 20 trials |" in md and "| defaults |" in md


def test_stray_config_yaml_is_skipped_with_a_warning(tmp_path):
    fake_run(tmp_path / "runs" / "a", "daps", [30.0])
    (tmp_path / "runs" / "notes").mkdir()
    (tmp_path / "runs" / "notes" / "config.yaml").write_text("lr: 0.1\n")          # someone's config
    (tmp_path / "runs" / "killed").mkdir()
    (tmp_path / "runs" / "killed" / "config.yaml").write_text("")                  # truncated at start
    (tmp_path / "runs" / "killed" / "samples.jsonl").write_text("")
    (tmp_path / "runs" / "fresh").mkdir()                                          # started, nothing finished
    (tmp_path / "runs" / "fresh" / "config.yaml").write_text("names: {problem: cs_mri, algorithm: daps}\n")
    (tmp_path / "runs" / "a" / ".hydra").mkdir()                                   # hydra's own: not searched
    (tmp_path / "runs" / "a" / ".hydra" / "config.yaml").write_text("names: {problem: cs_mri}\n")
    with pytest.warns(leaderboard.LeaderboardWarning) as record:
        board = leaderboard.build([tmp_path / "runs"])
    leaderboard.validate(board)
    said = " ".join(str(w.message) for w in record)
    for d in ("notes", "killed", "fresh"):
        assert str(tmp_path / "runs" / d) in said
    assert ".hydra" not in said and len(board["entries"]) == 1 and board["entries"][0]["n"] == 1
    assert sorted(s["path"].rsplit("/", 1)[-1] for s in board["skipped"]) == ["fresh", "killed", "notes"]
    res = bench("leaderboard", str(tmp_path / "runs" / "notes"), "-o", str(tmp_path / "lb.json"), check=False)
    assert res.returncode == 2 and "no run directories" in res.stderr


def test_corrupted_middle_line_is_an_error_torn_last_line_is_not(tmp_path):
    run = fake_run(tmp_path / "a", "daps", [30.0, 31.0, 32.0])
    lines = (run / "samples.jsonl").read_text().splitlines()
    (run / "samples.jsonl").write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][:25])  # killed mid-write
    assert leaderboard.build([tmp_path])["entries"][0]["n"] == 2
    (run / "samples.jsonl").write_text(lines[0] + "\n" + lines[1][:25] + "\n" + lines[2] + "\n")
    with pytest.raises(leaderboard.LeaderboardError, match=r"samples.jsonl, line 2: corrupted samples line"):
        leaderboard.build([tmp_path])


def test_nan_and_huge_values(tmp_path):
    """Bare NaN in a samples file, 1e300 and 1.7e308 values: strict JSON out, no overflow, flagged in notes."""
    run = fake_run(tmp_path / "nan", "daps", [30.0, 32.0])
    with open(run / "samples.jsonl", "a") as f:
        f.write('{"index": 2, "id": "s2", "status": "ok", "psnr": NaN, "ssim": Infinity, "seconds": 1.0}\n')
    fake_run(tmp_path / "huge", "dps", [1e300, -1e300, 1e300])
    fake_run(tmp_path / "overflow", "ddrm", [1.7e308, -1.7e308])
    board = leaderboard.build([tmp_path])
    text = leaderboard.dumps(board)
    json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in the leaderboard JSON"))
    rows = {e["algorithm"]: e for e in board["entries"]}
    nan = rows["daps"]
    ci = nan["metrics"]["psnr"].pop("ci95")  # the interval of the finite values only
    assert nan["n"] == 3 and nan["metrics"]["psnr"] == {"mean": 31.0, "std": 1.0, "n": 2, "n_nonfinite": 1}
    assert 30.0 <= ci[0] <= 31.0 <= ci[1] <= 32.0
    assert nan["metrics"]["ssim"]["n_nonfinite"] == 1 and any("psnr: 1 non-finite" in s for s in nan["notes"])
    huge = rows["dps"]["metrics"]["psnr"]
    assert huge["mean"] == pytest.approx(1e300 / 3) and huge["std"] == pytest.approx(math.sqrt(8 / 9) * 1e300)
    over = rows["ddrm"]["metrics"]["psnr"]  # the naive sum of squares is inf here
    assert over["mean"] == 0.0 and over["std"] == pytest.approx(1.7e308)
    out = tmp_path / "lb.json"
    bench("leaderboard", str(tmp_path), "-o", str(out))
    assert "NaN" not in out.read_text() and "Infinity" not in out.read_text()


def test_an_infinite_option_is_written_as_a_string_and_a_nan_metric_still_fails():
    """A configuration may hold an infinite option (lowfield's TDA `param_sigma_max: .inf`): the board writes it as
    "inf" instead of failing; a non-finite metric is still refused."""
    board = {"entries": [{"adapter_options": {"tda": {"param_sigma_max": {"fwhm": math.inf, "noise_std": -math.inf}}},
                          "changed_options": {"adapters": {"tda": {"lr": math.nan}}}, "metrics": {"psnr": 30.0}}]}
    opts = leaderboard._options_as_json(board)["entries"][0]
    assert opts["adapter_options"]["tda"]["param_sigma_max"] == {"fwhm": "inf", "noise_std": "-inf"}
    assert opts["changed_options"]["adapters"]["tda"]["lr"] == "nan" and opts["metrics"]["psnr"] == 30.0
    bad = {"entries": [{"adapter_options": {}, "metrics": {"psnr": math.nan}}]}
    assert leaderboard._non_finite(leaderboard._options_as_json(bad)) is not None


def test_rows_that_differ_only_in_a_problem_option_have_distinct_labels(tmp_path):
    fake_run(tmp_path / "random", "cg-sense", [30.0], prior=None, prior_hash=None,
             problem={"mask": "random", "acceleration": 4})
    fake_run(tmp_path / "equi", "cg-sense", [28.0], prior=None, prior_hash=None,
             problem={"mask": "equispaced", "acceleration": 4})
    fake_run(tmp_path / "ds", "cg-sense", [27.0], prior=None, prior_hash=None,
             problem={"mask": "random", "acceleration": 4})
    OmegaConf.save(OmegaConf.merge(OmegaConf.load(tmp_path / "ds" / "config.yaml"), {"dataset": {"size": 32}}),
                   tmp_path / "ds" / "config.yaml")
    board = leaderboard.build([tmp_path])
    labels = _labels(board)
    assert any("problem.mask=equispaced" in lab for lab in labels)
    assert any("dataset.size=32" in lab for lab in labels)


def test_real_run_records_the_prior_fingerprint(tmp_path):
    """A real tiny `bench run`: config.yaml holds the fingerprint of the prior it used, the leaderboard keys on it."""
    out = tmp_path / "run"
    bench("run", "--problem", "inpainting", "--algo", "diffpir", "--n", "2", "--batch-size", "2", "--quiet",
          "--out", str(out), "algorithm.n_steps=2")
    cfg = OmegaConf.load(out / "config.yaml")
    comp_cfg = compose_config(Selection("inpainting", "diffpir", []), ["algorithm.n_steps=2"])
    from benchmarks.build import build_components

    prior = build_components(comp_cfg, torch.device("cpu")).prior
    assert cfg.names.prior_hash == prior_fingerprint(prior) and cfg.names.prior_hash.startswith("sha256:")
    zf = tmp_path / "zf"
    bench("run", "--problem", "inpainting", "--algo", "zero-filled+air", "--n", "2", "--quiet", "--out", str(zf))
    assert OmegaConf.load(zf / "config.yaml").names.prior_hash is None
    board = leaderboard.build([tmp_path])
    leaderboard.validate(board)
    rows = {e["algorithm"]: e for e in board["entries"]}
    assert rows["diffpir"]["prior_hash"] == cfg.names.prior_hash and rows["diffpir"]["n"] == 2
    assert rows["zero-filled"]["adapters"] == "" and rows["zero-filled"]["adapters_noop"] == ["air"]


def test_fingerprint_tells_weights_apart():
    from priors.analytic import GaussianPrior

    mean, var = torch.zeros(1, 8, 8), torch.ones(1, 8, 8)
    a = prior_fingerprint(GaussianPrior(mean, var))
    assert a == prior_fingerprint(GaussianPrior(mean.clone(), var.clone()))
    var2 = var.clone()
    var2[0, 3, 3] = 1.0 + 1e-6
    assert prior_fingerprint(GaussianPrior(mean, var2)) != a
    assert prior_fingerprint(GaussianPrior(mean, var, basis="pixel")) != a  # an attribute, not a tensor
    half = GaussianPrior(mean.double(), var)
    half.mean = half.mean.double()
    assert prior_fingerprint(half) != a  # the dtype is part of it

    class Analytic(torch.nn.Module):  # no tensor at all: class and options
        def __init__(self, gain):
            super().__init__()
            self.gain = gain

    assert prior_fingerprint(Analytic(0.5)) == prior_fingerprint(Analytic(0.5)) != prior_fingerprint(Analytic(0.25))


def _dist(root, name, entry_points):
    d = root / f"{name.replace('-', '_')}-0.1.dist-info"
    d.mkdir()
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (d / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    (d / "RECORD").write_text("")


def test_plugin_name_collision_names_both_distributions(tmp_path, monkeypatch):
    _dist(tmp_path, "twin-one", "[medtta_bench.priors]\ntwin = one_pkg:Prior\n")
    _dist(tmp_path, "twin-two", "[medtta_bench.priors]\ntwin = two_pkg:Prior\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(registry.RegistryError) as exc:
        registry.names("priors")
    msg = str(exc.value)
    assert "'twin'" in msg and "'twin-one'" in msg and "'twin-two'" in msg and "one_pkg:Prior" in msg
    assert registry.names("algorithms")  # other groups are unaffected


def test_plugin_shadowing_a_builtin_is_an_error(tmp_path, monkeypatch):
    _dist(tmp_path, "shadow-plugin", "[medtta_bench.algorithms]\ndaps = shadow_pkg:DAPS\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(registry.RegistryError, match=r"'daps'.*'medtta-bench'.*'shadow-plugin'|'daps'.*"
                                                      r"'shadow-plugin'.*'medtta-bench'"):
        registry.load("algorithms", "daps")


def test_no_warning_for_a_clean_tree(tmp_path):
    fake_run(tmp_path / "a", "daps", [30.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        board = leaderboard.build([tmp_path])
    assert board["skipped"] == [] and board["entries"][0]["notes"] == []


def test_tuning_label_says_when_the_defaults_won():
    tuned = {"tuning": {"split": "val", "trials": 8}, "changed_options": {"algorithm": {"lam": 30.0}}}
    assert leaderboard.tuning_label(tuned) == "tuned on val, 8 trials"
    assert leaderboard.tuning_label({**tuned, "changed_options": {}}) == "tuned on val, 8 trials: defaults kept"
    assert leaderboard.tuning_label({"tuning": None, "changed_options": {}}) == "defaults"


def test_keep_carries_rows_of_an_earlier_board_and_refuses_a_repeat(tmp_path):
    """--keep: the rows of an earlier leaderboard file join (noted as kept); a row the runs also hold is an error."""
    fake_run(tmp_path / "old" / "a", "daps", [20.0, 21.0], prior="phantom-brain-64", prior_hash="sha256:" + "1" * 64)
    earlier = tmp_path / "earlier.json"
    bench("leaderboard", str(tmp_path / "old"), "-o", str(earlier))
    fake_run(tmp_path / "new" / "a", "daps", [30.0, 31.0], prior="brain-64", prior_hash="sha256:" + "2" * 64)
    out = tmp_path / "lb.json"
    bench("leaderboard", str(tmp_path / "new"), "--keep", str(earlier), "-o", str(out))
    board = json.loads(out.read_text())
    leaderboard.validate(board)
    by_prior = {e["prior"]: e for e in board["entries"]}
    assert set(by_prior) == {"phantom-brain-64", "brain-64"}
    assert by_prior["phantom-brain-64"]["metrics"]["psnr"]["mean"] == pytest.approx(20.5)
    assert any("kept from earlier.json" in n for n in by_prior["phantom-brain-64"]["notes"])
    assert not any("kept from" in n for n in by_prior["brain-64"]["notes"])
    res = bench("leaderboard", str(tmp_path / "old"), "--keep", str(earlier), "-o", str(out), check=False)
    assert res.returncode == 2 and "counted twice" in res.stderr
    earlier.write_text(json.dumps({**json.loads(earlier.read_text()), "schema_version": "1.0"}))
    res = bench("leaderboard", str(tmp_path / "new"), "--keep", str(earlier), "-o", str(out), check=False)
    assert res.returncode == 2 and "major version" in res.stderr


def test_a_schema_2_1_board_stays_valid_and_the_problem_block_is_checked(tmp_path):
    """2.2 added only the optional per-entry problem_metrics block: the shipped 2.1 board validates; a block without
    its version, or with a per-run value that is not a number, does not."""
    old = json.loads((Path(leaderboard.__file__).parent / "results" / "leaderboard_phantom-brain-64.json").read_text())
    assert old["schema_version"] == "2.1"
    leaderboard.validate(old)
    fake_run(tmp_path / "a", "daps", [30.0])
    board = leaderboard.build([tmp_path])
    assert board["schema_version"] == leaderboard.SCHEMA_VERSION and "problem_metrics" not in board["entries"][0]
    board["entries"][0]["problem_metrics"] = {"version": "mrsi-1", "per_run": {"kinetic_error_lac": 0.1},
                                              "per_sample": {"nrmse_lac": {"mean": 0.2, "std": 0.0, "n": 1,
                                                                           "n_nonfinite": 0}}}
    leaderboard.validate(board)
    bad = json.loads(json.dumps(board))
    del bad["entries"][0]["problem_metrics"]["version"]
    with pytest.raises(jsonschema.ValidationError):
        leaderboard.validate(bad)
    bad = json.loads(json.dumps(board))
    bad["entries"][0]["problem_metrics"]["per_run"]["kinetic_error_lac"] = "low"
    with pytest.raises(jsonschema.ValidationError):
        leaderboard.validate(bad)
