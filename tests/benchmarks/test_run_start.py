"""Issue 23, item 5: a run names its directory when it starts (stderr, before the first sample), not only at the end."""
from __future__ import annotations

from pathlib import Path

import benchmarks.runner as runner
from benchmarks.cli import main


def run_spying(tmp_path: Path, monkeypatch, capsys, *flags: str):
    """`bench run` of two zero-filled inpainting samples; the output as it stood when the first batch began."""
    real, seen = runner.run_batch, []

    def spy(*args, **kwargs):
        if not seen:
            seen.append(capsys.readouterr())
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_batch", spy)
    out = tmp_path / "run"
    assert main(["run", "--problem", "inpainting", "--algo", "zero-filled", "--n", "2", "--out", str(out),
                 *flags]) == 0
    return out, seen[0], capsys.readouterr()


def test_the_run_directory_is_printed_before_the_first_sample(tmp_path, monkeypatch, capsys):
    out, early, final = run_spying(tmp_path, monkeypatch, capsys)
    heading = f"zero-filled on inpainting (grf, prior None) -> {out}"
    assert early.err.splitlines()[0] == heading and early.out == ""  # stderr, beside the progress bar
    assert heading in final.out and "psnr" in final.out  # the final table, on stdout, as before


def test_a_resume_says_how_much_is_written_and_quiet_prints_no_start_line(tmp_path, monkeypatch, capsys):
    out, early, _ = run_spying(tmp_path, monkeypatch, capsys, "--quiet")
    assert early.err == "" and early.out == ""
    (out / "samples.jsonl").write_text((out / "samples.jsonl").read_text().splitlines(keepends=True)[0])
    monkeypatch.undo()
    _, early, _ = run_spying(tmp_path, monkeypatch, capsys, "--resume")
    assert early.err.splitlines()[0] == (f"zero-filled on inpainting (grf, prior None) -> {out}  "
                                         f"[resuming: 1 of 2 samples written]")


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    """The default --out is stamped to the second: a second run that starts in the same second must not find the
    first's folder (it would be refused as an unfinished run)."""
    import time

    from omegaconf import OmegaConf

    from benchmarks.cli import default_out

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20260101-000000")
    cfg = OmegaConf.create({"names": {"problem": "mrsi", "algorithm": "csi-fit", "adapters": []}})
    first = default_out(cfg)
    (tmp_path / first).mkdir(parents=True)
    second = default_out(cfg)
    assert first != second and second == first + "-2"
