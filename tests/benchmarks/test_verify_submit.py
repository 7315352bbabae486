"""`bench verify` (re-run samples from a run's provenance, refuse where it differs) and `bench submit` (an entry with
a sha256 manifest that `bench leaderboard` checks)."""
from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from benchmarks import leaderboard
from benchmarks.metrics import METRIC_CONVENTION
from benchmarks.provenance import REPO
from tests.helpers import bench

SMALL = ["--quiet", "problem.size=32", "dataset.size=32"]


@pytest.fixture(scope="module")
def cg_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verify") / "cg"
    bench("run", "--problem", "cs_mri", "--algo", "cg-sense", "--n", "3", "--batch-size", "2", "--out", str(out),
          *SMALL)
    return out


def _verify(run: Path, *extra: str, check: bool = True):
    return bench("verify", str(run), *extra, check=check)


def test_verify_a_classical_solver_is_bit_identical_and_the_row_carries_it(cg_run, tmp_path):
    run = tmp_path / "cg"
    shutil.copytree(cg_run, run)
    env = json.loads((run / "environment.json").read_text())
    assert env["code"]["fingerprint"].startswith("sha256:")
    assert "algorithms/classical/compressed_sensing.py" in env["code"]["files"]  # cg-sense's module
    assert "benchmarks/cli.py" not in env["code"]["files"]  # a module that computes no number does not count
    res = _verify(run, "--samples", "2", "--seed", "1")
    assert res.stdout.count("bit-identical;") == 2 and "verified: 2/2 (2 bit-identical)" in res.stdout
    v = json.loads((run / "verify.json").read_text())
    assert v["verified"] == "2/2" and v["n_bit_identical"] == 2 and v["forced"] is False and v["machine"] and v["date"]
    assert all(s["bit_identical"] and s["max_abs_diff"] == 0.0 for s in v["samples"])
    assert all(d == 0 for s in v["samples"] for d in s["metric_delta"].values())
    again = _verify(run, "--samples", "2", "--seed", "1")
    assert again.stdout.splitlines()[:2] == res.stdout.splitlines()[:2]  # the seeded draw picks the same samples
    v = json.loads((run / "verify.json").read_text())  # the second verify's
    board = leaderboard.build([run])
    assert board["entries"][0]["verification"] == {"verified": "2/2", "runs": "1/1", "date": v["date"],
                                                   "machines": [v["machine"]], "forced": False}
    leaderboard.validate(board)


def test_verify_refuses_a_changed_code_file_or_package_and_names_it(cg_run, tmp_path):
    run = tmp_path / "cg"
    shutil.copytree(cg_run, run)
    env = json.loads((run / "environment.json").read_text())
    changed = sorted(env["code"]["files"])[0]
    env["code"]["files"][changed] = "0" * 64
    env["packages"]["torch"] = "0.0.1"
    (run / "environment.json").write_text(json.dumps(env))
    res = _verify(run, check=False)
    assert res.returncode == 2 and f"code: {changed} (changed)" in res.stderr
    assert "package torch: 0.0.1 (run)" in res.stderr and "--force" in res.stderr
    assert not (run / "verify.json").exists()
    res = _verify(run, "--force", "--samples", "1")  # compared anyway: the same numbers, the differences recorded
    v = json.loads((run / "verify.json").read_text())
    assert v["verified"] == "1/1" and v["forced"] and any(changed in d for d in v["differences"])
    assert "compared anyway (--force)" in res.stdout
    del env["code"]  # a run from before source files were recorded: its git revision counts
    env["git_revision"] = "0" * 40
    (run / "environment.json").write_text(json.dumps(env))
    res = _verify(run, check=False)
    assert res.returncode == 2 and "records no source files, and its git revision 0000" in res.stderr


def test_verify_an_analytic_prior_solver_is_bit_identical(tmp_path):
    out = tmp_path / "ddrm"
    bench("run", "--problem", "inpainting", "--algo", "ddrm", "--prior", "gaussian", "--n", "3", "--batch-size", "3",
          "--out", str(out), "--quiet", "algorithm.n_steps=4")
    res = _verify(out)
    assert "verified: 2/2" in res.stdout, res.stdout


def test_verify_the_shipped_prior_and_a_swapped_prior_file(tmp_path):
    """brain-64 (64 x 64: the size it was trained at), batched with run.prior_per_sample=true: bit-identical; the same
    run after its weights file was swapped is refused, naming the fingerprints, and differs when forced."""
    weights = tmp_path / "brain-64"
    shutil.copytree(REPO / "priors" / "weights" / "brain-64", weights)
    out = tmp_path / "dp"
    bench("run", "--problem", "cs_mri", "--algo", "diffpir", "--n", "2", "--batch-size", "2", "--out", str(out),
          "--quiet", f"prior.path={weights}", "algorithm.n_steps=3", "run.prior_per_sample=true")
    assert "verified: 2/2" in _verify(out).stdout
    state = torch.load(weights / "model.pt", weights_only=True)
    name = next(k for k, v in state["ema"].items() if v.is_floating_point())
    state["ema"][name] = state["ema"][name] * 1.01
    torch.save(state, weights / "model.pt")
    res = _verify(out, check=False)
    assert res.returncode == 2 and "prior fingerprint of brain-64 (prior.path=" in res.stderr
    assert "swapped" in res.stderr and json.loads((out / "verify.json").read_text())["verified"] == "2/2"
    res = _verify(out, "--force", check=False)
    v = json.loads((out / "verify.json").read_text())
    assert res.returncode == 1 and v["verified"] == "0/2" and v["forced"]
    assert all(s["max_abs_diff"] > 0 for s in v["samples"]) and "differs: max |Δ|" in res.stdout


def _members(entry: Path) -> dict[str, bytes]:
    with tarfile.open(entry) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _repack(members: dict[str, bytes], out: Path) -> Path:
    import io

    with tarfile.open(out, "w") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return out


def test_submit_an_entry_that_loads_into_the_leaderboard(cg_run, tmp_path):
    entry = tmp_path / "entry.tar"
    res = bench("submit", str(cg_run), "-o", str(entry))
    assert "sha256 manifest" in res.stdout
    members = _members(entry)
    manifest = json.loads(members["cg/MANIFEST.json"])
    assert set(manifest["files"]) >= {"config.yaml", "environment.json", "samples.jsonl", "summary.json"}
    assert not any(f.startswith("reconstructions/") for f in manifest["files"])
    bench("submit", str(cg_run), "-o", str(tmp_path / "full.tar.gz"), "--with-recons")
    full = json.loads(_members(tmp_path / "full.tar.gz")["cg/MANIFEST.json"])["files"]
    assert "reconstructions/000000.npy" in full and "targets/000002.npy" in full
    board = leaderboard.build([entry])
    (row,) = board["entries"]
    direct = leaderboard.build([cg_run])["entries"][0]
    assert row["run_ids"] == [str(entry)] and row["metrics"] == direct["metrics"] and row["n"] == 3
    assert row["metric_convention"] == f"per-slice ({METRIC_CONVENTION['fastmri']})"
    out = tmp_path / "lb.json"
    twice = bench("leaderboard", str(entry), str(tmp_path / "full.tar.gz"), "-o", str(out), check=False)
    assert twice.returncode == 2 and "counted twice" in twice.stderr and str(entry) in twice.stderr  # named by entry
    res = bench("leaderboard", str(entry), "-o", str(out))
    assert "1 entries" in res.stdout


@pytest.mark.parametrize("tamper, message", [
    ("change", "cg/samples.jsonl"),
    ("missing", "summary.json is listed in the manifest but missing"),
    ("extra", "notes.txt is in the entry but not in its manifest"),
    ("link", "is a link or special file"),
    ("escape", "lies outside the run folder"),
])
def test_a_tampered_entry_is_refused_naming_the_file(cg_run, tmp_path, tamper, message):
    entry = tmp_path / "entry.tar"
    bench("submit", str(cg_run), "-o", str(entry))
    members = _members(entry)
    if tamper == "change":
        line = json.loads(members["cg/samples.jsonl"].decode().splitlines()[0])
        line["psnr"] += 3.0
        members["cg/samples.jsonl"] = (json.dumps(line) + "\n").encode() + members["cg/samples.jsonl"].split(
            b"\n", 1)[1]
        message = "samples.jsonl does not match its sha256 in the manifest"
    elif tamper == "missing":
        del members["cg/summary.json"]
    elif tamper == "extra":
        members["cg/notes.txt"] = b"hello"
    elif tamper == "escape":
        members["../evil.txt"] = b"x"
    bad = _repack(members, tmp_path / "bad.tar")
    if tamper == "link":
        with tarfile.open(bad, "a") as tar:
            info = tarfile.TarInfo("cg/link")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    res = bench("leaderboard", str(bad), "-o", str(tmp_path / "lb.json"), check=False)
    assert res.returncode == 2 and message in res.stderr and str(bad) in res.stderr, res.stderr
    assert not (tmp_path / "lb.json").exists()


def test_submit_refuses_what_is_not_a_finished_run(tmp_path):
    res = bench("submit", str(tmp_path), "-o", str(tmp_path / "e.tar"), check=False)
    assert res.returncode == 2 and "not a run directory" in res.stderr
    res = bench("submit", str(tmp_path), "-o", str(tmp_path / "e.zip"), check=False)
    assert res.returncode == 2


def test_verify_a_run_scored_under_the_old_convention_compares_its_saved_images(cg_run, tmp_path):
    run = tmp_path / "cg"
    shutil.copytree(cg_run, run)
    lines = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    old = [{k: v for k, v in r.items() if k != "metric_convention"} | {"psnr": r["psnr"] - 2.0} for r in lines]
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    res = _verify(run, "--samples", "3")
    assert "verified: 3/3" in res.stdout and "older convention" in res.stdout
    v = json.loads((run / "verify.json").read_text())
    assert all(s["metric_delta"]["psnr"] == 0 for s in v["samples"])  # against its saved image scored now, not +2


def test_verify_an_entry_writes_beside_it_and_the_row_carries_that(cg_run, tmp_path):
    entry = tmp_path / "entry.tar"
    bench("submit", str(cg_run), "-o", str(entry))  # no reconstructions: the metrics are compared to the bit
    res = _verify(entry, "--samples", "2")
    assert "verified: 2/2 (0 bit-identical)" in res.stdout and "no saved reconstruction to compare; metrics equal" \
        in res.stdout
    beside = json.loads((tmp_path / "entry.tar.verify.json").read_text())
    assert beside["verified"] == "2/2" and beside["written_to"] == str(tmp_path / "entry.tar.verify.json")
    row = leaderboard.build([entry])["entries"][0]
    assert row["verification"]["verified"] == "2/2" and row["verification"]["date"] == beside["date"]
    full = tmp_path / "full.tar"
    bench("submit", str(cg_run), "-o", str(full), "--with-recons")
    assert "verified: 3/3 (3 bit-identical)" in _verify(full, "--samples", "3").stdout
