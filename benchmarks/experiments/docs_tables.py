"""Write the results tables of the README and docs/*.md from the results files in benchmarks/results/.

Every results table in the documentation sits between two markers,

    <!-- results:NAME:start -->
    ... (written by this script; do not edit by hand)
    <!-- results:NAME:end -->

and is rebuilt from the JSON the experiments wrote, with one line under it: the command that produced the runs,
the date, the machine (device, threads, CPU cores, GPU or none) and whether it was idle, where known. What a
results file does not record itself (the machine's core count, for instance) is taken from `CONDITIONS` below,
which holds what the session that made the file stated about it.

    python benchmarks/experiments/docs_tables.py           # rewrite every marked block in README.md and docs/*.md
    python benchmarks/experiments/docs_tables.py --check   # exit 1 naming every block that differs (CI, tests)
    python benchmarks/experiments/docs_tables.py --list    # the table names and where they are used

Commands recorded under the experiments folder's former name (benchmarks/scripts/) are shown with its current one
(benchmarks/experiments/). Imports nothing heavier than the leaderboard module (no torch).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- results:(?P<name>[a-z0-9-]+):start -->\n)(?P<body>.*?)(<!-- results:(?P=name):end -->)",
                   re.S)
DASH = "–"

# What the results files do not record about their conditions, as the sessions that made them stated it (the
# README before issue 23). A date or idle flag a results file records itself wins over these; a machine given here
# wins over a file's free-text machine note.
CPU2 = "2-core CPU (model not recorded), no GPU"
CONDITIONS: dict[str, dict[str, str]] = {
    "leaderboard.json": {"machine": CPU2, "idle": "no: two to four other jobs shared the 2 cores"},
    "paired_spread.json": {"machine": CPU2 + ", one thread per run", "idle": "no (shared with other jobs)"},
    "gap_closure.json": {"machine": CPU2, "idle": "not recorded"},
    "gap_closure_daps.json": {"machine": CPU2, "idle": "not recorded"},
    "gap_closure_phantom-brain-64.json": {"machine": CPU2, "idle": "not recorded"},
    "anatomy_eval.json": {"machine": CPU2},
    "lowfield_psf_drift.json": {"machine": CPU2},
    "tta_table.json": {"machine": CPU2 + ", one thread per run",
                       "idle": "no (shared with other jobs): compare CPU minutes, not wall minutes"},
    "tta_table_defaults.json": {"machine": CPU2 + ", one thread per run",
                                "idle": "no (shared with other jobs): compare CPU minutes, not wall minutes"},
    "tta_table_nr2n_uncorrected.json": {"machine": CPU2 + ", one thread per run", "idle": "no"},
    "tta_main_command.json": {"date": "2026-12-03 (committed)", "idle": "yes (nothing else running)",
                              "machine": CPU2 + ", torch's default 2 threads, a fresh install"},
    "mrsi_table.json": {"machine": CPU2 + ", one thread", "idle": "no (shared with other jobs)",
                        "date": "2026-12-02 (committed)"},
    "mrsi_daps_val.json": {"machine": CPU2 + ", one thread", "idle": "no", "date": "2026-12-02 (committed)"},
    "mrsi_daps_budget_change.json": {"machine": CPU2 + ", one thread", "idle": "no", "date": "2026-12-02 (committed)"},
    "mrsi_tda_iters.json": {"machine": CPU2 + ", one thread", "idle": "no", "date": "2026-12-02 (committed)"},
    "mrsi_daps_cost.json": {"machine": CPU2, "idle": "no (shared with other jobs)", "date": "2026-12-02 (committed)"},
    "prior_quality.json": {"machine": CPU2},
    "recon_baselines.json": {"machine": CPU2, "idle": "not recorded", "date": "2026-12-02 (committed)"},
    "recon_baselines_varnet.json": {"machine": CPU2, "idle": "not recorded", "date": "2026-12-02 (committed)"},
    "recon_baselines_brain_t2.json": {"machine": CPU2, "idle": "not recorded", "date": "2026-12-02 (committed)"},
    "recon_baselines_varnet_brain_t2.json": {"machine": CPU2, "idle": "not recorded",
                                             "date": "2026-12-02 (committed)"},
    "solver_cost.json": {"machine": CPU2, "date": "2026-12-02 (committed)"},
    "peer_speed.json": {"machine": CPU2, "date": "2026-12-02 (committed)"},
    "denoiser_speed.json": {"machine": CPU2, "date": "2026-12-02 (committed)"},
    "daps_x0_sampler.json": {"machine": CPU2 + ", one thread", "date": "2026-12-02 (committed)"},
    "diffpir_data_step.json": {"machine": CPU2 + ", one thread", "idle": "no", "date": "2026-12-02 (committed)"},
    "cli_startup.json": {"machine": CPU2},
    "board_cost.json": {"machine": CPU2 + ", one thread per run", "idle": "no: two or three jobs shared the 2 cores"},
    "inference_backends.json": {"machine": CPU2},
    "interp_table.json": {"machine": CPU2 + ", one thread per run",
                          "idle": "no (shared with a leaderboard job): compare CPU seconds, not wall seconds"},
    "quality_per_second.json": {"idle": "no: beside a background job at nice 10 (this study at nice 5)"},
}


# ---------------------------------------------------------------- reading and formatting

def load(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


def f(v: Any, spec: str = ".2f") -> str:
    return DASH if v is None else format(v, spec)


def delta(mean: float, low: float, high: float) -> str:
    """A paired difference with its 95 % interval: `+0.32 [+0.22, +0.52]`."""
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"


def paired_cell(pairs: dict[str, Any], key: str) -> str:
    """The paired difference of reconstruction row `key` in a training curve's `paired` record, or a dash."""
    return delta(pairs[key]["mean"], pairs[key]["low"], pairs[key]["high"]) if key in pairs else DASH


def cmd(text: str) -> str:
    """A recorded command with the experiments folder's current name, as inline code."""
    return "`" + " ".join(str(text).replace("benchmarks/scripts/", "benchmarks/experiments/").split()) + "`"


def table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def machine(data: dict[str, Any], name: str) -> str:
    """What the file records about the machine (device, threads, torch), then what CONDITIONS adds."""
    said = CONDITIONS.get(name, {})
    if isinstance(data.get("machine"), str) and "machine" not in said:  # without a run note's load figures
        return re.sub(r"\s*\(load average[^)]*\)", "", data["machine"])
    parts = [said.get("machine", "not recorded")]
    if data.get("device"):
        parts.insert(0, f"device {data['device']}")
    threads = data.get("threads", data.get("omp_num_threads"))
    threads = int(threads) if isinstance(threads, (int, str)) and str(threads).isdigit() else threads
    if threads is not None and "thread" not in parts[-1]:
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    if data.get("torch"):
        parts.append(f"torch {data['torch']}")
    return ", ".join(parts)


def date(data: dict[str, Any], name: str) -> str:
    for key in ("finished_at", "created", "date_utc"):
        if data.get(key):
            return str(data[key]).replace("T", " ")[:16].rstrip("Z")
    return CONDITIONS.get(name, {}).get("date", "not recorded")


def idle(data: dict[str, Any], name: str) -> str:
    if "measured_under_load" in data:
        return "no (measured under load)" if data["measured_under_load"] else "yes"
    return CONDITIONS.get(name, {}).get("idle", "no (shared with other jobs)")


def caption(name: str, command: str | None = None, note: str = "", data: dict[str, Any] | None = None) -> str:
    """The line under a table: source file, command, date, machine, idle; then what a reader must know."""
    data = load(name) if data is None else data
    command = command if command is not None else data.get("command")
    made = f", made by {cmd(command)}" if command else ""
    line = (f"*From `benchmarks/results/{name}`{made}; {date(data, name)}; {machine(data, name)}; "
            f"idle: {idle(data, name)}.*")
    return line + (f" {note}" if note else "")


# ---------------------------------------------------------------- the leaderboard

MAIN_SETTING = "cs_mri, 8 coils, R = 4, ESPIRiT coil maps, brain-T2 phantoms (64×64, simulated k-space)"


def _prior_note(docs: str) -> str:
    """The board's prior, linked from a page whose path to the docs folder is `docs` ("docs/" from the README)."""
    return f"prior `brain-64` (its 15000-step weights, [priors]({docs}priors.md#the-shipped-prior-brain-64))"


FORMER_BOARD = "leaderboard_brain-64-8000.json"  # the board of the default prior's former weights


def _pending(board: dict[str, Any], keep: Callable[[dict[str, Any]], bool] = lambda e: True) -> list[str]:
    """Rows of the former weights' board (FORMER_BOARD) that the current board lacks, i.e. not remade yet with the
    current weights: the names of their run directories, in the former board's order."""
    def key(e: dict[str, Any]) -> tuple:
        return e["setting"]["id"], e["algorithm"], e["adapters"], e["tuning"] is not None

    have = {key(e) for e in board["entries"]}
    return [Path(e["run_ids"][0]).name for e in load(FORMER_BOARD)["entries"] if key(e) not in have and keep(e)]


def _pending_note(names: list[str], where: str) -> str:
    return (f" Not remade yet with these weights ({where}): {', '.join(names)}; their rows with the 8000-step weights "
            f"are in `{FORMER_BOARD}`." if names else "")


def _setting_rows(board: dict[str, Any], coils: int = 8, acceleration: int = 4) -> list[dict[str, Any]]:
    """The board's rows of cs_mri at `coils` and R = `acceleration` (random mask, no shift, brain-T2 phantoms, the
    default prior), best PSNR first."""
    rows = [e for e in board["entries"]
            if e["problem"] == "cs_mri" and e["problem_options"].get("coils") == coils
            and e["problem_options"].get("acceleration") == acceleration and not e["shift"]
            and e["problem_options"].get("mask", "random") == "random"
            and e["dataset"] == "phantom-brain-t2" and e["prior"] in (None, "brain-64")
            and e.get("split", "test") == "test" and not e.get("collapsed_into") and not e.get("former_prior")]
    return sorted(rows, key=lambda e: -(e["metrics"]["psnr"]["mean"] or 0.0))


def _setting_table(board: dict[str, Any], setting: str, coils: int = 8, acceleration: int = 4,
                   docs: str = "docs/") -> str:
    """One setting's rows: PSNR with its interval, the paired difference to L1-wavelet, rank, SSIM, NFE, s/sample
    (`docs`: the page's path to the docs folder, for the prior's link)."""
    from benchmarks.leaderboard import tuning_label

    entries = _setting_rows(board, coils, acceleration)
    rows = []
    for e in entries:
        m, cmp_ = e["metrics"], e.get("comparison") or {}
        ci = m["psnr"].get("ci95")
        d = (cmp_.get("paired") or {}).get("psnr")
        paired = ("reference" if cmp_.get("role") == "reference" else DASH if d is None else
                  delta(d["diff"], d["low"], d["high"]))
        rank = cmp_.get("rank")
        rows.append([e.get("label") or e["algorithm"], tuning_label(e),
                     f(m["psnr"]["mean"]) + (f" [{f(ci[0])}, {f(ci[1])}]" if ci else ""), paired,
                     DASH if rank is None else str(rank) + (" ≈" if cmp_.get("tied_with_best") else ""),
                     f(m["ssim"]["mean"], ".3f"), f(e["nfe"], ".0f"), f(e["seconds_per_sample"], ".1f")])
    n = {e["n"] for e in entries}
    ids = {e["setting"]["id"] for e in entries}
    pending = _pending_note(_pending(board, lambda e: e["setting"]["id"] in ids), "this setting")
    return "\n\n".join([
        table(["method", "tuning", "PSNR (dB) [95 % interval]", "− L1-wavelet (paired, dB)", "rank", "SSIM", "NFE",
               "s/sample"], rows),
        f"{setting}; {_prior_note(docs)}; {'/'.join(map(str, sorted(n)))} test images per row, seed 0, sorted by "
        f"PSNR. Rank: rows whose paired interval against the best includes 0 share rank 1 (≈).{pending} "
        + caption("leaderboard.json", "python benchmarks/experiments/leaderboard_runs.py",
                  "s/sample: wall seconds at batch 16 on one thread of shared cores, indicative only.", board)])


def headline() -> str:
    return _setting_table(load("leaderboard.json"), MAIN_SETTING)


def single_coil() -> str:
    return _setting_table(load("leaderboard.json"), MAIN_SETTING.replace("8 coils", "single coil").replace(
        ", ESPIRiT coil maps", ""), coils=1, docs="")


def leaderboard() -> str:
    from benchmarks.leaderboard import document

    board = load("leaderboard.json")
    return "\n\n".join([document(board).rstrip("\n"), caption(
        "leaderboard.json", "python benchmarks/experiments/leaderboard_runs.py --stage defaults|tune|tuned|board",
        "16 test images per row (64×64), seed 0, all 16 in one batch, one thread per run; prior `brain-64` at 15000 "
        "steps (the default)." + _pending_note(_pending(board), "every setting") + " The former boards (4 images per "
        "row: `brain-64` at 4200 steps, and `phantom-brain-64`) are kept in "
        "`leaderboard_brain-64-4200.json` and `leaderboard_phantom-brain-64.json`. s/sample: wall seconds on shared "
        "cores, compare within a row group only. The run directories (`benchmarks/results/runs/test`) are in the "
        "repository without their arrays (reconstructions, targets): `bench leaderboard benchmarks/results/runs/test` "
        "rebuilds the board from them, and `bench verify` re-runs a row from its recorded provenance.", board)])


def paired_spread() -> str:
    data = load("paired_spread.json")
    rows = []
    for r in data["rows"]:
        d = r["paired"]
        ci = r["psnr_ci95"]
        rows.append([r["method"], str(r["n"]), f(r["psnr"]) + (f" [{f(ci[0])}, {f(ci[1])}]" if ci else ""),
                     "reference" if r["role"] == "reference" else DASH if d is None else
                     delta(d["diff"], d["low"], d["high"]) + f", p = {d['p_wilcoxon']:.2g}",
                     DASH if d is None or d["sd"] is None else f(d["sd"], ".3f"),
                     DASH if r["n_to_resolve"] is None else str(r["n_to_resolve"]), DASH if r["rank"] is None
                     else str(r["rank"])])
    return "\n\n".join([
        table(["method", "n", "PSNR [95 % interval]", f"− {data['reference']} (paired)", "paired sd (dB)",
               f"n for ±{data['resolve_db']} dB", "rank"], rows),
        f"{data['setting']}; seed 0. n for ±{data['resolve_db']} dB = ceil((1.96 · sd / {data['resolve_db']})²) "
        f"(`benchmarks.stats.samples_for`); {data['sample_seconds']:.0f} s of reconstruction in all (the runs' "
        f"per-sample seconds summed). "
        + caption("paired_spread.json", data=data)])


# ---------------------------------------------------------------- test-time adaptation

GAP_SHIFTS = {
    "cs_mri-coil-maps": ("`cs_mri` coil maps: ESPIRiT vs true (operator)", "`tda` (noise level, phase, coil-map "
                                                                             "correction)"),
    "lowfield-psf": ("`lowfield` PSF: reconstruction assumes FWHM 1.0, data 2.0 (operator)",
                     "`tda` (PSF width, noise level)"),
    "contrast-t1": ("contrast T2w → T1w (data; true coil maps)", "`prior-affine`"),
}


def _closure(v: float | None) -> str:
    return "no gap" if v is None else f"{100 * v:.0f} %"


def gap_closure() -> str:
    now, daps, former = load("gap_closure.json"), load("gap_closure_daps.json"), load(
        "gap_closure_phantom-brain-64.json")
    old = {s["shift"]: s for s in former["shifts"]}
    rows = []
    for data, solver in ((now, "DiffPIR"), (daps, "DAPS")):
        for s in data["shifts"]:
            shift, adapter = GAP_SHIFTS.get(s["shift"], (s["shift"], f"`{s['adapter']}`"))
            p = s["psnr"]
            o = old.get(s["shift"]) if solver == "DiffPIR" else None
            before = (DASH if o is None else f"{f(o['psnr']['oracle'])} / {f(o['psnr']['unadapted'])} / "
                      f"{f(o['psnr']['adapted'])}: {_closure(o['gap_closure'])}")
            rows.append([shift, solver, adapter, f(p["oracle"]), f(p["unadapted"]), f(p["adapted"]),
                         _closure(s["gap_closure"]), before])
    return "\n\n".join([
        table(["shift", "solver", "adapter", "oracle", "unadapted", "adapted", "gap closure",
               "former prior (`phantom-brain-64`): oracle / unadapted / adapted"], rows),
        "PSNR in dB, 4 test phantoms, prior `brain-64`; gap closure = (adapted − unadapted) / (oracle − unadapted), "
        "\"no gap\" where the shifted setting is not worse than the oracle. "
        + caption("gap_closure.json") + " DAPS: " + caption("gap_closure_daps.json")
        + " Former prior: " + caption("gap_closure_phantom-brain-64.json")])


def anatomy() -> str:
    data = load("anatomy_eval.json")
    rows = []
    for test_set, block in data["sets"].items():
        for label, r in block["rows"].items():
            method = label.split(" (")[0]
            rows.append([test_set, method, r.get("prior") or DASH, f"{f(r['psnr'])} ± {f(r['psnr_std'])}",
                         f(r["ssim"], ".4f"), f"{r['gain_over_l1_wavelet']:+.2f}".replace("-", "−")])
    return "\n\n".join([table(["test set", "method", "prior", "PSNR", "SSIM", "− L1-wavelet (dB)"], rows),
                        f"{data['problem']}, {data['n']} test images per set, seed 0. " + caption("anatomy_eval.json", data=data)])


NETWORK_ROWS = ["non-tta", "dip-ttt", "fine", "fine+mr-inr", "fine+sst", "fine+mr-inr+sst",
                "ssdu", "ssdu+sst", "ssdu+mr-inr+sst", "nr2n", "nr2n+sst", "nr2n+mr-inr+sst"]
DIFFUSION_ROWS = ["daps", "daps+tda", "dps", "dps+tda", "diffpir", "diffpir+tda", "diffpir+prior-affine"]


def _minutes(c: dict[str, Any] | None) -> str:
    return DASH if c is None else f"{f(c['minutes_per_patient'])}; {f(c.get('cpu_minutes_per_patient'))}"


def _quality(c: dict[str, Any] | None, lpips: bool = True) -> str:
    if c is None:
        return DASH
    return f"{f(c['psnr'])} / {f(c['ssim'], '.3f')}" + (f" / {f(c['lpips'], '.3f')}" if lpips else "")


def tta_quick() -> str:
    data = load("tta_table.json")
    parts = []
    for sh in data["shifts"]:
        cells = sh["cells"]
        parts.append(f"**{sh['name']}** ({sh['description']})")
        rows = [[r] + [x for fam in ("unet", "varnet") for x in (_quality(cells.get(f"{fam}/{r}")),
                                                                  _minutes(cells.get(f"{fam}/{r}")))]
                for r in NETWORK_ROWS if f"unet/{r}" in cells or f"varnet/{r}" in cells]
        parts.append(table(["method", "U-Net PSNR / SSIM / LPIPS", "U-Net min/patient (wall; CPU)",
                            "VarNet PSNR / SSIM / LPIPS", "VarNet min/patient (wall; CPU)"], rows))
        diff = [[r, _quality(cells[f"diffusion/{r}"]), _minutes(cells[f"diffusion/{r}"])]
                for r in DIFFUSION_ROWS if f"diffusion/{r}" in cells]
        if diff:
            parts.append(table([f"diffusion (prior {data.get('prior') or 'default'})", "PSNR / SSIM / LPIPS",
                                "min/patient (wall; CPU)"], diff))
    quick = "; ".join(f"{k} {' '.join(o.split('.')[-1] for o in v)}" for k, v in data["quick_overrides"].items())
    parts.append(f"{data['patients']} patient of {data['slices']} slices ({data['size']}×{data['size']}, seed "
                 f"{data['seed']}), `--quick` iteration counts ({quick}); LPIPS – where its weights are not "
                 "installed. " + caption("tta_table.json", data["commands"][0] + " (and the other "
                                         f"{len(data['commands']) - 1} commands listed in the file)", data=data))
    return "\n\n".join(parts)


def tta_defaults() -> str:
    data = load("tta_table_defaults.json")
    shifts = data["shifts"]
    parts = []
    for fam, title in (("unet", "U-Net"), ("varnet", "VarNet")):
        rows = []
        for r in ("non-tta", "fine", "fine+mr-inr", "fine+mr-inr+sst", "dip-ttt"):
            cells = [sh["cells"].get(f"{fam}/{r}") for sh in shifts]
            if not any(cells):
                continue
            rows.append([r] + [x for c in cells for x in (_quality(c, lpips=False), _minutes(c))])
        parts.append(f"{title}:")
        parts.append(table(["method"] + [x for sh in shifts for x in (f"{sh['name']}: PSNR / SSIM",
                                                                     "min/patient (wall; CPU)")], rows))
    parts.append(f"{data['patients']} patient of {data['slices']} slices, the adapters' own defaults (FINE 25 epochs, "
                 "MR-INR 25 epochs, SST ≤ 100 iterations, DIP-TTT ≤ 300 iterations with held-out early stopping). "
                 + caption("tta_table_defaults.json", data["commands"][0] + f" (and {len(data['commands']) - 1} more "
                           "listed in the file)", data=data))
    return "\n\n".join(parts)


def tta_nr2n() -> str:
    data = load("tta_table_nr2n_uncorrected.json")
    rows = []
    for sh in data["shifts"]:
        for fam, title in (("unet", "U-Net"), ("varnet", "VarNet")):
            c = sh["cells"].get(f"{fam}/nr2n")
            if c:
                rows.append([sh["name"], title, _quality(c, lpips=False), _minutes(c)])
    return "\n\n".join([table(["shift", "network", "nr2n, `correction=false`: PSNR / SSIM",
                               "min/patient (wall; CPU)"], rows),
                        caption("tta_table_nr2n_uncorrected.json", data=data)])


def tta_main_command() -> str:
    d = load("tta_main_command.json")
    rows = [[cmd(d["command"].replace("/usr/bin/time -v ", "").split(" --out")[0]), f(d["wall_seconds"], ".0f"),
             f(d["user_cpu_seconds"] + d["system_cpu_seconds"], ".0f"), f(d["max_rss_mb"], ".0f"),
             f"{f(d['psnr_mean'])} ± {f(d['psnr_std'])}", f(d["ssim_mean"], ".3f")],
            [cmd(d["non_tta"]["command"]), DASH, DASH, DASH, f(d["non_tta"]["psnr_mean"]),
             f(d["non_tta"]["ssim_mean"], ".3f")]]
    return "\n\n".join([table(["command", "wall s", "CPU s", "peak MB", "PSNR (dB)", "SSIM"], rows),
                        caption("tta_main_command.json", "/usr/bin/time -v " + d["command"].split("-v ")[-1],
                                f"Adapters at their defaults ({d['defaults']}).", data=d)])


# ---------------------------------------------------------------- MRSI

METABOLITES = ["water", "glc", "glx", "lac"]


def mrsi() -> str:
    data = load("mrsi_table.json")
    rows = []
    for r in data["rows"]:
        if "error" in r:
            rows.append([r["shift"], r["label"], "failed"] + [DASH] * 10)
            continue
        rows.append([r["shift"], r["label"].split("/")[-1].replace("_oracle_physics", " (oracle physics)"),
                     str(r["n_ok"])] + [f(r[f"nrmse_{m}"], ".3f") for m in METABOLITES]
                    + [f(r[f"kinetic_error_{m}"], ".3f") for m in METABOLITES]
                    + [f(r["kinetic_error_mean"], ".3f"), f(r["seconds_per_sample"], ".1f")])
    head = ["shift", "method", "n"] + [f"NRMSE {m}" for m in METABOLITES] + [f"kin. err {m}" for m in METABOLITES] + [
        "kin. err mean", "s/sample"]
    gap = table(["drift shift: gap closure of TDA", "kinetic-curve error", "mean map NRMSE"],
                [[a, f(g["kinetic_error"]), f(g["nrmse"])] for a, g in data["gap_closure"].items()])
    return "\n\n".join([table(head, rows), gap,
                        "First test subject, frames 1–4 (22.5–90 min), 32×32, R = 4; map NRMSE: mean over the frames; "
                        "kinetic-curve error: per run, mean over the tumour, GM and WM ROIs; `--cpu-steps`: DiffPIR 20 "
                        "steps, DPS 100; DAPS at `mrsi`'s default budget. " + caption("mrsi_table.json", data=data)])


def _mrsi_row(r: dict[str, Any]) -> list[str]:
    return ([f(r.get("psnr"))] + [f(r.get(f"nrmse_{m}"), ".3f") for m in METABOLITES]
            + [f(r.get("kinetic_error_mean"), ".3f")])


def mrsi_daps_val() -> str:
    data = load("mrsi_daps_val.json")
    rows = [[f"`{r['overrides']}`" + (" (**chosen**)" if r["label"] == data["chosen"] else "")] + _mrsi_row(r)
            + [f(r.get("seconds_per_sample"), ".1f")] for r in data["rows"]]
    return "\n\n".join([table(["DAPS+TDA x0 step at 0.1K (val, `dmi-drift`)", "PSNR (dB)"]
                              + [f"NRMSE {m}" for m in METABOLITES] + ["kin. err mean", "s/sample"], rows),
                        caption("mrsi_daps_val.json", data=data)])


def mrsi_budget() -> str:
    data = load("mrsi_daps_budget_change.json")
    rows = [[r["run"].replace("__", " / "),
             f"{f(r['old']['psnr'])} → {f(r['new']['psnr'])}",
             f"{f(r['old']['nrmse_mean'], '.3f')} → {f(r['new']['nrmse_mean'], '.3f')}",
             f"{f(r['old']['kinetic_error_mean'], '.3f')} → {f(r['new']['kinetic_error_mean'], '.3f')}",
             f"{f(r['old']['seconds_per_sample'], '.1f')} → {f(r['new']['seconds_per_sample'], '.1f')}"]
            for r in data["rows"]]
    return "\n\n".join([table(["run", "PSNR old → new", "map NRMSE mean old → new", "kin. err mean old → new",
                               "s/sample old → new"], rows),
                        "Old: 25 annealing × 2 ODE × 20 Langevin steps (`--cpu-steps`); new: `mrsi`'s default "
                        "(0.1K, 50 Langevin steps); same weights and seeds. "
                        + caption("mrsi_daps_budget_change.json", data["new"], data=data)])


def mrsi_tda_iters() -> str:
    data = load("mrsi_tda_iters.json")
    rows = [[r["label"]] + _mrsi_row(r) for r in data["rows"]]
    return "\n\n".join([table(["run", "PSNR (dB)"] + [f"NRMSE {m}" for m in METABOLITES] + ["kin. err mean"], rows),
                        caption("mrsi_tda_iters.json", data=data)])


def mrsi_daps_cost() -> str:
    data = load("mrsi_daps_cost.json")
    rows = [[b["budget"], str(b["operator_round_trips"]), str(b["nfe"]), f(b["seconds_per_batch"] / 60, ".1f")]
            for b in data["budgets"]]
    return "\n\n".join([table(["DAPS budget on `mrsi`", "operator round-trips per batch", "NFE",
                               "minutes per batch (predicted)"], rows),
                        f"One operator round-trip {f(data['normal_s'] * 1000, '.0f')} ms, one network call "
                        f"{f(data['denoiser_s'] * 1000, '.0f')} ms (batch {data['batch']}). "
                        + caption("mrsi_daps_cost.json", data=data)])


# ---------------------------------------------------------------- priors and networks

def prior_quality() -> str:
    data = load("prior_quality.json")
    names = {k: v["name"] for k, v in data["priors"].items()}
    parts = []
    for test_set, block in data["test_sets"].items():
        sigmas = [r["sigma"] for r in block["rows"]]
        extra = [(k, k) for k in data["priors"] if k not in ("new", "old")]  # labelled on the command line
        labels = [("noisy", "noisy input"), ("new", f"**`{names['new']}`** (default)"), *extra,
                  ("old", f"`{names['old']}` (the first default)"), ("gaussian (fourier)", "Gaussian (Fourier basis)"),
                  ("gmm-4 (fourier)", "GMM, 4 components (Fourier)")]
        rows = [[label] + [f(r[key]["psnr_complex"]) for r in block["rows"]] for key, label in labels]
        rows.append([f"gain default − `{names['old']}`"] + [f"{r['gain new - old']:+.2f}" for r in block["rows"]])
        parts.append(table([f"{test_set.split(':')[0]} ({block['n_test']} test images)"]
                           + [f"σ = {s:g}" for s in sigmas], rows))
    parts.append("Denoising PSNR (dB, complex images scaled to a magnitude 99th percentile of 1) of x0 + σ·ε; the "
                 f"analytic priors are fitted to {data['n_train_for_analytic']} training images of "
                 f"`{data['train_dataset']}`. " + caption("prior_quality.json", data=data))
    return "\n\n".join(parts)


RECON = [("recon_baselines.json", "recon_baselines_varnet.json", "knee PD"),
         ("recon_baselines_brain_t2.json", "recon_baselines_varnet_brain_t2.json", "brain T2")]


def recon_baselines() -> str:
    parts = []
    for unet_file, varnet_file, source in RECON:
        u, v = load(unet_file), load(varnet_file)
        rows = []
        for label, res in u["results"].items():
            vres = v["results"].get(label, {})

            def q(r: dict[str, Any] | None) -> str:
                if not r:
                    return DASH
                return f"{f(r['psnr']['mean'])} ± {f(r['psnr']['std'])} / {f(r['ssim']['mean'], '.3f')}"
            rows.append([label, q(res.get("zero-filled")), q(res.get("cg-sense")), q(res.get("unet")),
                         q(vres.get("varnet"))])
        parts.append(table(["test data", "zero-filled (RSS)", "CG-SENSE", f"`unet` ({source})",
                            f"`varnet` ({source})"], rows))
        parts.append(f"PSNR (dB) ± std / SSIM, {u['n']} test phantoms, seed {u['seed']}. " + caption(unet_file, data=u)
                     + " VarNet: " + caption(varnet_file, data=v))
    return "\n\n".join(parts)


# ---------------------------------------------------------------- speed

SOLVERS = ["dps", "ddrm", "diffpir", "diffpir-direct", "daps-langevin", "daps-exact"]


def solver_cost() -> str:
    data = load("solver_cost.json")
    probs = list(data["problems"])
    rows = []
    for s in SOLVERS:
        cells = []
        for p in probs:
            r = data["problems"][p].get(s)
            if r is None:
                cells.append(DASH)
            elif "skipped" in r:
                cells.append("skipped: " + r["skipped"])
            else:
                cells.append(f(r["ratio"]) + (f" (CPU {f(r['cpu_ratio'])})" if "cpu_ratio" in r else ""))
        rows.append([s] + cells)
    return "\n\n".join([table(["solver"] + [f"{p}: time / (NFE × one call)" for p in probs], rows),
                        f"Batch {data['batch']}, {data['size']}×{data['size']}, prior `{data['prior']}`, "
                        f"{data['memory_format']}; DPS's floor is a call with its backward pass; target ≤ "
                        f"{data['target_ratio']}. Wall-time ratios move by about ±0.3 with the load; the 8-coil rows "
                        "with a CPU ratio were re-measured on their own (`--problems multi-coil --solvers ...`). "
                        + caption("solver_cost.json", data=data)])


def solver_roster_cost() -> str:
    data = load("solver_roster_cost.json")
    rows = [[f"`{name}`", str(r["nfe"]), r["floor"], f(r["ratio"]), f(r["cpu_ratio"]), r["date_utc"][:10]]
            for name, r in data["solvers"].items()]
    return "\n\n".join([table(["solver", "NFE (cut)", "floor", "time / floor (wall)", "time / floor (CPU)", "measured"],
                               rows),
                        f"{data['problem']}, prior `{data['prior']}`, batch {data['batch']}, {data['memory_format']}, "
                        f"{data['threads']} thread; steps cut to a few NFE (particles and candidates count as network "
                        f"evaluations); target ≤ {data['target_ratio']} for part 1. " + caption("solver_roster_cost.json", data=data)])


def peer_speed() -> str:
    data = load("peer_speed.json")
    rows = []
    for name, m in data["methods"].items():
        cpu, wall = m["seconds_per_sample_cpu"], m["ratio_suite_over_deepinv_wall"]
        psnr = m["psnr_db"]
        rows.append([name, str(m["nfe"]), f(cpu["suite"]), f(cpu["deepinv"]),
                     f"**{f(m['ratio_suite_over_deepinv_cpu'])}**; {f(wall)}",
                     f"{f(psnr['suite'])} / {f(psnr['deepinv'])}"])
    return "\n\n".join([table(["method", "NFE", "suite CPU s/sample", "DeepInverse CPU s/sample",
                               "suite / DeepInverse (CPU; wall)", "PSNR suite / DeepInverse (dB)"], rows),
                        f"Same denoiser (`{data['prior']}`, {data['memory_format']}, {data['precision']}), same "
                        f"operator ({data['problem']}), same NFE, batch {data['batch']}; DeepInverse "
                        f"{data['deepinv']}; medians of {data['repeats']} alternating repeats; the CPU-second ratio is "
                        "the figure to read. " + caption("peer_speed.json", data=data)])


def cli_startup() -> str:
    data = load("cli_startup.json")
    rows = []
    for name, r in data["results"].items():
        if not isinstance(r, dict):
            continue
        first = r.get("first_sample_s", {}).get("median")
        rows.append([f"`{data['commands'].get(name, name)}`", f(r["total_s"]["median"]), f(first),
                     f(r["cpu_s"]["median"])])
    return "\n\n".join([table(["command", "median wall s (whole process)", "to the first sample", "median CPU s"],
                               rows),
                        "Fresh interpreter per timing, interleaved; `run` rows: start to the first finished sample. "
                        + caption("cli_startup.json", "python benchmarks/experiments/cli_startup.py --repeat 5 "
                                  "--run-repeat 3", data=data)])


def daps_x0() -> str:
    data = load("daps_x0_sampler.json")
    rows = [[label, f"{f(r['psnr'])} ± {f(r['psnr_std'])}", f(r["ssim"], ".3f"), cmd(r["command"])]
            for label, r in data["runs"].items()]
    rows += [[label + " (reference)", f(r["psnr"]), f(r["ssim"], ".3f"), DASH] for label, r in data["reference"].items()]
    return "\n\n".join([table(["DAPS x0 step", "PSNR (dB)", "SSIM", "command"], rows),
                        f"{data['problem']}. " + caption("daps_x0_sampler.json", "", data=data)])


def _paired(r: dict[str, Any]) -> str:
    d = r.get("paired_psnr_difference")
    return DASH if d is None else f"{d:+.2f} ± {f(r.get('paired_psnr_difference_std'))}"


def daps_main_command(name: str = "daps_main_command.json") -> str:
    data = load(name)
    ref = data["command"].split("--reference ")[1].split(" --")[0].strip('"') if "--reference" in data["command"] \
        else "1k langevin"
    rows = [[name, f(r["nfe"], ".0f"), f(r["psnr"]), _paired(r),
             " / ".join(f(v) for v in r["psnr_per_sample"].values()), f(r["cpu_s"], ".0f"), f(r["wall_s"], ".0f"),
             f"{f(r['load_before'], '.1f')}–{f(r['load_after'], '.1f')}", cmd(r["command"])]
            for name, r in data["rows"].items()]
    return "\n\n".join([table(["DAPS x0 step, budget", "NFE", "PSNR (dB)", f"paired Δ to {ref} (dB)",
                               "per sample (dB)", "CPU s", "wall s", "load", "command"], rows),
                        f"{data['what']}. " + caption(name, data=data)])


def main_command_speed(name: str = "main_command_speed.json") -> str:
    data = load(name)
    rows = [[str(r["extra_busy_processes"]), r["mode"], str(r["threads"]), f(r["load_seen_by_auto"], ".1f"),
             ("> " if r.get("stopped") else "") + f(r["cpu_s"], ".0f"), ("> " if r.get("stopped") else "")
             + f(r["wall_s"], ".0f"), f(r["psnr"]) if not r.get("stopped") else "stopped unfinished",
             f"{f(r['load_before'], '.1f')}–{f(r['load_after'], '.1f')}", cmd(r["command"])] for r in data["runs"]]
    return "\n\n".join([table(["extra busy processes", "threads chosen by", "threads", "load seen", "CPU s (process)",
                               "wall s", "PSNR (dB)", "load", "command"], rows),
                        f"{data['what']}. " + caption(name, data=data)])


def main_command_profile() -> str:
    data = load("main_command_profile.json")
    rows = [[label, f(p["seconds"]), f"{100 * p['share_of_run']:.0f} %", DASH if p["calls"] is None else str(p["calls"])]
            for label, p in data["parts"].items()]
    return "\n\n".join([table(["part", "seconds", "share", "calls"], rows),
                        f"{data['what']}; {data['n']} samples, PSNR {f(data['psnr'])} dB; {f(data['run_seconds_profiled'])} s "
                        f"profiled. " + caption("main_command_profile.json", data=data)])


def throughput() -> str:
    data = load("throughput.json")
    rows = [[r["layout"], f(r["samples_per_hour"], ".0f"), f(r["cpu_s_per_sample"], ".1f"), f(r["wall_s"], ".0f"),
             f(r["psnr"]), f"{f(r['load_before'], '.1f')}–{f(r['load_after'], '.1f')}", cmd(r["command"])]
            for r in data["runs"]]
    return "\n\n".join([table(["layout", "samples / hour", "CPU s / sample", "wall s", "PSNR (dB)", "load", "command"],
                               rows), f"{data['what']}. " + caption("throughput.json", data=data)])


def board_cost() -> str:
    data = load("board_cost.json")
    est = data["estimate"]
    rows = [[f"estimate: `{k}` rows", f(v)] for k, v in est["hours_per_problem"].items()]
    rows.append([f"estimate: all {est['rows']} rows", f"**{f(est['total_hours'])}**"])
    if data.get("recorded"):
        rec = data["recorded"]
        for group, g in rec.get("per_group", {}).items():
            rows.append([f"recorded: `{group}` ({g['runs']} runs" + (f", {g['missing']} not run" if g["missing"] else "")
                         + ")", f"{f(g['cpu_hours'], '.3f')} CPU-h"])
        if rec.get("tuning"):
            rows.append([f"recorded: tuning on val ({rec['tuning']['studies']} studies)",
                         f"{f(rec['tuning']['cpu_hours'], '.3f')} CPU-h"])
        rows.append([f"recorded: all {len(rec['runs'])} runs of the board suite ({rec['date']})",
                     f"**{f(rec['total_cpu_hours'], '.3f')}** CPU-h"])
        full = rec.get("full_board")
        if full:
            rows.append([f"estimate: the whole suite at n = 16 (missing runs at their method's recorded mean; "
                         f"{len(full['not_estimated'])} runs of methods that ran nowhere not counted)",
                         f"{f(full['total_cpu_hours'], '.2f')} CPU-h"])
    return "\n\n".join([table(["what", "hours"], rows),
                        f"{est['kind'][0].upper() + est['kind'][1:]}, the leaderboard of {est['date_utc'][:10]}. "
                        + caption("board_cost.json", data=data)])


def denoiser_speed() -> str:
    data = load("denoiser_speed.json")
    rows = [[r["precision"], r["memory_format"], f(r["call_seconds"]), f(r["call_backward_seconds"]),
             f(r["call_speedup"]), f(r["call_backward_speedup"]), f(r["max_abs_diff_vs_fp32_contiguous"], ".1e")]
            for r in data["rows"]]
    return "\n\n".join([table(["precision", "layout", "call s", "call + backward s", "speed-up (call)",
                               "speed-up (+ backward)", "max abs. difference"], rows),
                        f"Prior `{data['prior']}`, batch {data['rows'][0]['batch']}, medians over {data['rounds']} "
                        "interleaved rounds. " + caption("denoiser_speed.json", "python benchmarks/experiments/"
                                                         "denoiser_speed.py --rounds 5 --calls 1 --batch 4 "
                                                         "--precision fp32", data=data)])


def training_curve(file: str = "training_curve_brain-64.json", what: str = "`brain-64`'s training",
                   paired: bool = False) -> str:
    """A brain prior's curve; `paired`: also each checkpoint's item-by-item difference to the first checkpoint."""
    data = load(file)
    ref = data.get("l1-wavelet", {})
    steps = sorted(data["checkpoints"], key=int)
    recon = [("daps real-brain val", "real-brain val"), ("diffpir+tda real-brain val", "real-brain val"),
             ("daps in-distribution val", "in-distribution val")]
    rows = []
    for k in steps:
        c = data["checkpoints"][k]
        den = [f(c["denoising"]["real-brain val"][str(s)]) for s in data["sigmas"]]
        den += [f(c["denoising"][t]["0.2"]) for t in ("anatomy-brain-mix test", "real-brain test")]
        rec = [f"{f(c['recon'][key])} ({c['recon'][key] - ref[r]:+.2f})" if key in c.get("recon", {}) else "–"
               for key, r in recon]
        if paired:
            pr = c.get("paired") or {}
            rec += [paired_cell(pr, key) for key, _ in recon]
        rows.append([k, *den, *rec])
    rows.append(["`l1-wavelet`", *[""] * (len(data["sigmas"]) + 2), f(ref.get("real-brain val")),
                 "", f(ref.get("in-distribution val"))] + [""] * (3 if paired else 0))
    head = (["step"] + [f"real-brain val σ = {s:g}" for s in data["sigmas"]]
            + ["anatomy test σ = 0.2", "real-brain test σ = 0.2", "DAPS, real-brain val (Δ L1)",
               "DiffPIR+TDA, real-brain val (Δ L1)", "DAPS, in-distribution val (Δ L1)"])
    if paired:
        first = sorted(data["checkpoints"], key=int)[0]
        head += [f"{name}: paired Δ vs step {first} [95 %]" for name in ("DAPS real", "DiffPIR+TDA real", "DAPS in-dist.")]
    return "\n\n".join([table(head, rows), (
        f"Denoising PSNR (dB, complex) of x0 + σ·ε per checkpoint of {what}, and the PSNR of `bench run` "
        f"(cs_mri, R = 4, 8 coils, every option at its default) on the first {data['n_recon']} val items, with the "
        "difference to L1-wavelet on the same items in brackets; checkpoints are chosen on the val columns only. "
        f"Plot: `benchmarks/results/{file.replace('.json', '.png')}`. " + caption(file, data=data))])


def width_curve() -> str:
    """brain-64's network at 16 and 32 base channels, trained alike from scratch, compared step by step."""
    wide, narrow = load("training_curve_brain-64-wide.json"), load("training_curve_brain-64-16ch.json")
    keys = [("daps real-brain val", "DAPS real"), ("diffpir+tda real-brain val", "DiffPIR+TDA real"),
            ("daps in-distribution val", "DAPS in-dist.")]
    rows = []
    for k in sorted(set(wide["checkpoints"]) & set(narrow["checkpoints"]), key=int):
        w, n = wide["checkpoints"][k], narrow["checkpoints"][k]
        pr = w.get("paired_with") or {}
        rows.append([k] + [f"{f(n['denoising']['real-brain val']['0.2'])} / {f(w['denoising']['real-brain val']['0.2'])}"]
                    + [f"{f(n['recon'][key])} / {f(w['recon'][key])}" if key in n.get("recon", {}) and key in w.get("recon", {})
                       else DASH for key, _ in keys]
                    + [paired_cell(pr, key) for key, _ in keys])
    ref = wide.get("l1-wavelet", {})
    head = (["step", "real-brain val σ = 0.2 denoising, 16 / 32 ch"] + [f"{name}, 16 / 32 ch" for _, name in keys]
            + [f"{name}: paired Δ 32 − 16 [95 %]" for _, name in keys])
    return "\n\n".join([table(head, rows), (
        "PSNR (dB) of `brain-64`'s network at 16 base channels (its own width) and at 32, both trained from scratch "
        "with the same data, seed and recipe, at equal steps: complex denoising of the `real-brain` val slices at "
        f"σ = 0.2, and `bench run` (cs_mri, R = 4, 8 coils, every option at its default) on the first {wide['n_recon']} "
        f"val items (L1-wavelet on the same items: {f(ref.get('real-brain val'))} real, "
        f"{f(ref.get('in-distribution val'))} in distribution); the paired column is the 32-channel run minus the "
        "16-channel one, item by item. " + caption("training_curve_brain-64-wide.json", data=wide)
        + " The 16-channel runs: " + caption("training_curve_brain-64-16ch.json", data=narrow)),
        width_cost()])


def width_cost() -> str:
    data = load("width_cost.json")
    rows = [[f"{k} base channels", f"{data['parameters'][k] / 1e6:.2f} M", f(data["median_seconds"][k]["no_grad"] * 1e3, ".0f"),
             f(data["median_seconds"][k]["backward"] * 1e3, ".0f"), f(data["ratio_to_first"][k]["no_grad"]),
             f(data["ratio_to_first"][k]["backward"])] for k in data["median_seconds"]]
    return "\n\n".join([table(["network", "parameters", "ms per call", "ms per call + backward", "× (call)",
                                "× (+ backward)"], rows),
                         f"One `denoise` call at batch {data['batch']}, one thread, medians of {data['rounds']} "
                         "interleaved rounds. " + caption("width_cost.json", data=data)])


def lowfield_psf_drift() -> str:
    data = load("lowfield_psf_drift.json")
    rows = [[r["prior"], f(r["fwhm_recon"], ".1f"), f(r["diffpir psnr"]), f(r["diffpir implied fwhm"]),
             f(r["diffpir+tda psnr"]), f(r["tda final fwhm"]), f(r["diffpir+tda implied fwhm"]),
             f(r["tda at sigma <= 0.1: psnr"]), f(r["tda at sigma <= 0.1: final fwhm"])] for r in data["rows"]]
    return "\n\n".join([table(["prior", "assumed FWHM (px)", "DiffPIR PSNR", "DiffPIR implied FWHM", "DiffPIR+TDA PSNR",
                                "TDA's final FWHM", "DiffPIR+TDA implied FWHM", "TDA at σ ≤ 0.1: PSNR",
                                "TDA at σ ≤ 0.1: final FWHM"], rows),
                         f"`lowfield` (true PSF FWHM {data['true_fwhm']} px), {data['n']} {data['split']} images, the "
                         "problem's default TDA options. Implied FWHM: the width that best explains the noise-free data "
                         "from the run's reconstructions. " + caption("lowfield_psf_drift.json", data=data)])


def knee_curve() -> str:
    data = load("training_curve_knee-64.json")
    ref = data.get("l1-wavelet", {})
    steps = sorted(data["checkpoints"], key=int)
    rows = []
    for k in steps:
        c = data["checkpoints"][k]
        den = [f(c["denoising"]["phantom-knee-pd test"][str(s)]) for s in data["sigmas"]]
        rec = [f"{f(c['recon'][key])} ({c['recon'][key] - ref[r]:+.2f})" if key in c.get("recon", {}) else "–"
               for key, r in (("daps knee val", "knee val"), ("daps knee-to-brain val", "knee-to-brain val"))]
        rows.append([k, *den, *rec])
    rows.append(["`l1-wavelet`", *[""] * len(data["sigmas"]), f(ref.get("knee val")), f(ref.get("knee-to-brain val"))])
    head = (["step"] + [f"knee PD test σ = {s:g}" for s in data["sigmas"]]
            + ["DAPS, knee val (Δ L1)", "DAPS, knee -> brain val (Δ L1)"])
    return "\n\n".join([table(head, rows), (
        "Denoising PSNR (dB, complex) of x0 + σ·ε on held-out knee PD phantoms per checkpoint of `knee-64`'s training, "
        f"and the PSNR of `bench run --algo daps --prior knee-64` (cs_mri, R = 4, 8 coils) on the first {data['n_recon']} "
        "val items of its own domain (`--shift anatomy`) and of D2SA's target (`--shift knee-to-brain`, brain T2), "
        "with the difference to L1-wavelet on the same items in brackets. Plot: "
        "`benchmarks/results/training_curve_knee-64.png`. " + caption("training_curve_knee-64.json", data=data))])


def diffpir_data_step() -> str:
    data = load("diffpir_data_step.json")
    rows = [[f"`data_step={k}`", f(r["mean_psnr"]), f(r["mean_ssim"], ".3f"), f(data["process_cpu_seconds"][k], ".1f"),
             cmd(data["commands"][k])] for k, r in data["runs"].items()]
    return "\n\n".join([table(["DiffPIR data step", "PSNR (dB)", "SSIM", "process CPU s", "command"], rows),
                        data["what"].split(":")[0] + ". " + caption("diffpir_data_step.json", "", data=data)])


def inference_backends() -> str:
    data = load("inference_backends.json")
    ov = "openvino" in data
    rows = [[str(r["batch"]), f(r["torch"]["cpu_seconds"] * 1e3, ".1f"), f(r["onnxruntime"]["cpu_seconds"] * 1e3, ".1f"),
             f(r["cpu_ratio_torch_over_onnxruntime"]), f(r["wall_ratio_torch_over_onnxruntime"]), f(r["max_abs_diff"], ".1e")]
            + ([f(r["openvino"]["cpu_seconds"] * 1e3, ".1f"), f(r["cpu_ratio_torch_over_openvino"]),
                f(r["openvino_max_abs_diff"], ".1e")] if ov else [])
            + [f"{f(r['torch']['load_1min'][0], '.1f')}–{f(r['torch']['load_1min'][2], '.1f')}"] for r in data["rows"]]
    head = ["batch", "eager (channels_last) CPU ms", "ONNX Runtime CPU ms", "eager / ORT (CPU)", "eager / ORT (wall)",
            "ORT max abs. difference"]
    head += ["OpenVINO CPU ms", "eager / OpenVINO (CPU)", "OpenVINO max abs. difference"] if ov else []
    versions = f"onnxruntime {data['onnxruntime']}" + (f", openvino {data['openvino']}" if ov else "")
    out = [table(head + ["load (1 min)"], rows),
           f"Prior `{data['prior']}`, one forward call, medians over {data['rounds']} alternating calls per backend; "
           f"{versions}. " + caption("inference_backends.json", data=data)]
    main = data.get("main_command")
    if main:
        out.append(table(["backend", "PSNR (dB)", "process CPU s", "wall s", "load (1 min, start–end)", "command"],
                         [[name, f(r["psnr"], ".4f"), f(r["cpu_seconds"], ".1f"), f(r["wall_seconds"], ".0f"),
                           f"{f(r['load_1min'][0], '.1f')}–{f(r['load_1min'][1], '.1f')}", cmd(r["command"])]
                          for name, r in main["runs"].items()]))
        out.append(main["note"])
    return "\n\n".join(out)


INTERP_SETTINGS = {"cardiac/none": "cardiac phantom, in distribution", "cardiac/cardiac-ef": "cardiac, `cardiac-ef` "
                   "(ejection fraction 0.20–0.35: motion)", "cardiac/cardiac-ct": "cardiac, `cardiac-ct` (CT-like "
                   "contrast)", "cardiac/cardiac-noise": "cardiac, `cardiac-noise` (Rician noise × 3)",
                   "cardiac/interp-frames": "cardiac, `interp-frames` (20 missing frames)",
                   "lung/none": "lung phantom, in distribution", "lung/lung-breathing": "lung, `lung-breathing` "
                   "(amplitude × 2.5)"}


def _interp_delta(r: dict[str, Any], m: str = "psnr") -> str:
    p = (r.get("paired") or {}).get(m)
    if not p:
        return DASH
    spec = ".2f" if m in ("psnr", "nmse100") else ".3f"
    ci = "" if p["low"] is None else f" [{p['low']:+{spec}}, {p['high']:+{spec}}]"
    pv = "" if p["p_wilcoxon"] is None else f", p = {p['p_wilcoxon']:.2g}"
    vs = "" if r["paired"]["reference"] == "uvi-lite" else f" vs {r['paired']['reference']}"
    return f"{p['diff']:+{spec}}{ci}{pv}{vs}"


def interp4d() -> str:
    data = load("interp_table.json")
    out = []
    head = ["method", "PSNR (dB)", "lncc9", "SSIM", "NMSE×100", "Δ PSNR (95 % CI, Wilcoxon p)", "Δ SSIM",
            "s/seq wall", "s/seq CPU", "adapt. s/seq", "NFE"]
    for setting, title in INTERP_SETTINGS.items():
        rows = [r for r in data["rows"] if r["setting"] == setting]
        if not rows:
            continue
        body = []
        for r in rows:
            if "error" in r:
                body.append([r["label"], "failed"] + [DASH] * (len(head) - 2))
                continue
            fr = r["frames"]
            body.append([r["label"]] + [f"{f(fr[m]['mean'], sp)} ± {f(fr[m]['se'], sp)}" for m, sp in
                                        (("psnr", ".2f"), ("lncc9", ".3f"), ("ssim", ".3f"), ("nmse100", ".2f"))]
                        + [_interp_delta(r), _interp_delta(r, "ssim"), f(r["wall_s_per_sequence"]),
                           f(r["cpu_s_per_sequence"]), f(r["adapt_s_per_sequence"]),
                           f(r["nfe"], ".0f") if r.get("nfe") else DASH])
        out += [f"**{title}** ({data['n']} test sequences, {data['size']} × {data['size']} × {data['frames']})",
                table(head, body)]
    paper = data["paper"]
    out.append("The paper's numbers, quoted, not merged (" + paper["source"] + "): PSNR " + "; ".join(
        f"{k}: " + ", ".join(f"{m} {v:.2f} dB" for m, v in d.items()) for k, d in paper["psnr_db"].items())
        + "; seconds per sample: " + ", ".join(f"{k} {v}" for k, v in paper["seconds_per_sample"].items())
        + f"; {paper['note']}.")
    budgets = "; ".join(f"{a}: {' '.join(o)}" for a, o in data["solver_budgets"].items())
    out.append(f"Mean ± standard error over all missing frames (pooled over the sequences); Δ: paired on the "
               f"sequences (mean per-sequence difference to `uvi-lite`, 95 % BCa bootstrap interval, Wilcoxon "
               f"signed-rank p; `uvi-lite`'s own, and the lung rows', against `interp-linear`, as named); seconds per sequence: the run's wall and "
               f"process CPU time over n (rendering the phantoms included), adaptation: the adapters' own time "
               f"(with the naive scheme's warm-up pass). Solver budgets: {budgets}; sequence prior "
               f"`{data['prior']}`. All runs together: {data['cpu_s_total'] / 60:.1f} CPU-minutes. "
               + caption("interp_table.json", data=data))
    return "\n\n".join(out)


def quality_per_second() -> str:
    data = load("quality_per_second.json")
    out = []
    for setting, s in data["settings"].items():
        summ, rows = s["summary"], []
        best, head = summ["deepinv_best"], summ["headline"]
        for key, curve in s["curves"].items():
            if not curve:
                continue
            r = summ["reach"][key]
            pts = "; ".join(f"{p['nfe']}: {f(p['psnr'], '.1f')} @ {f(p['cpu_s_per_sample'])}"
                            for p in sorted(curve, key=lambda p: p["cpu_s_per_sample"]))
            label = f"**{key}**" if key == head.get("suite_fastest_to_deepinv_best") else key
            rows.append([label, f(r["best_psnr"]), f(r["to_l1_wavelet_psnr_cpu_s"]),
                         f(r["to_deepinv_best_psnr_cpu_s"]), pts])
        skipped = "; ".join(f"{k}: {v}" for k, v in s.get("skipped", {}).items())
        if head.get("ratio") is not None:
            verdict = (f"the suite's fastest to it, {head['suite_fastest_to_deepinv_best']}, takes "
                       f"{f(head['cpu_s_per_sample'])} s: **{f(head['ratio'])}×** DeepInverse's time (goal ≤ "
                       f"{head['goal']}: {'met' if head['goal_met'] else 'not met'})"
                       + (", an upper bound: its cheapest budget is already there" if head.get("at_cheapest_budget")
                          else "")
                       + (f"; in network calls {f(head['nfe'], '.0f')} against {f(head['deepinv_nfe'], '.0f')} NFE"
                          if head.get("nfe") is not None else ""))
        else:
            verdict = f"ratio: none ({head.get('why', 'not measured')})"
        bare = summ.get("headline_run_overhead_excluded")
        if bare and bare.get("ratio") is not None:
            verdict += (f"; without the bench run's fixed part ({f(s['run_overhead']['cpu_s_per_sample'])} s/sample, a "
                        f"zero-filled run) {bare['suite_fastest_to_deepinv_best']}: **{f(bare['ratio'])}×**")
        out.append(f"**{setting}** (`{' '.join(s['overrides'])}`): L1-wavelet {f(summ['l1_wavelet_psnr'])} dB; "
                   f"DeepInverse's best {f(best['psnr'])} dB ({best['method']}, {f(best['cpu_s_per_sample'])} CPU "
                   f"s/sample); {verdict}." + (f" Not run: {skipped}." if skipped else ""))
        out.append(table(["solver", "best PSNR (dB)", "CPU s/sample to L1-wavelet's PSNR",
                          "CPU s/sample to DeepInverse's best", "curve (NFE: PSNR dB @ CPU s/sample)"], rows))
        hc = s.get("harness_check")
        if hc:
            med, ratio = hc["median"], hc["suite_over_deepinv"]
            out.append(f"Harness check ({setting}): DiffPIR at 100 NFE, {len(hc['runs']['deepinv'])} rounds in turn, "
                       f"medians of CPU s/sample: the suite's bench run {f(med['suite bench run'])}, the suite's "
                       f"DiffPIR in the study's process {f(med['suite in process'])}, DeepInverse's "
                       f"{f(med['deepinv'])} (suite / DeepInverse: {f(ratio['suite bench run'])} through bench run, "
                       f"{f(ratio['suite in process'])} in process).")
    out.append(f"n = {data['n']} test samples in one batch, one thread; seconds: CPU seconds of the process per "
               "sample (suite: the bench run from its start, interpreter start-up excluded; DeepInverse: around the "
               "sampler's call); reach times interpolate linearly between the budgets that bracket the target, – where "
               "no budget reaches it. " + data["note"] + " " + caption("quality_per_second.json", data=data)
               + "".join(f" Then {cmd(c['command'])} ({c['date_utc']}) added to it." for c in data.get("later_commands", [])))
    return "\n\n".join(out)


TABLES: dict[str, Callable[[], str]] = {
    "headline": headline, "single-coil": single_coil, "leaderboard": leaderboard, "paired-spread": paired_spread, "gap-closure": gap_closure, "anatomy": anatomy,
    "tta-quick": tta_quick, "tta-defaults": tta_defaults, "tta-nr2n": tta_nr2n, "tta-main-command": tta_main_command,
    "mrsi": mrsi, "mrsi-daps-val": mrsi_daps_val, "mrsi-budget": mrsi_budget, "mrsi-tda-iters": mrsi_tda_iters,
    "mrsi-daps-cost": mrsi_daps_cost, "prior-quality": prior_quality, "recon-baselines": recon_baselines,
    "solver-cost": solver_cost, "peer-speed": peer_speed, "cli-startup": cli_startup, "daps-x0": daps_x0,
    "denoiser-speed": denoiser_speed, "diffpir-data-step": diffpir_data_step,
    "daps-main-command": daps_main_command, "daps-sampler-01k": lambda: daps_main_command("daps_sampler_01k.json"),
    "main-command-speed": main_command_speed,
    "main-command-load": lambda: main_command_speed("main_command_load.json"),
    "main-command-profile": main_command_profile, "throughput": throughput, "board-cost": board_cost,
    "inference-backends": inference_backends, "training-curve": training_curve,
    "training-curve-lowres": lambda: training_curve("training_curve_brain-64-lowres.json",
                                                    "`brain-64`'s fine-tuning on the mixture with low-resolution items "
                                                    "(steps counted from the base run's start)"),
    "training-curve-knee": knee_curve, "training-curve-width": width_curve,
    "training-curve-val22": lambda: training_curve("training_curve_brain-64-val22.json",
                                                   "the candidates for `brain-64` (8000: the former default; 10000: "
                                                   "the base run; 15000: 5000 steps of the low-resolution "
                                                   "fine-tuning, lowres=0.3, now the default; 18000: 3000 more steps "
                                                   "from it with lowres=0.6 down to 16-pixel matrices; 20000: 5000 "
                                                   "more steps of the same fine-tuning)", paired=True),
    "solver-roster-cost": solver_roster_cost, "lowfield-psf-drift": lowfield_psf_drift, "interp4d": interp4d,
    "quality-per-second": quality_per_second,
}


# ---------------------------------------------------------------- filling the pages

def render(name: str) -> str:
    if name not in TABLES:
        raise KeyError(f"no results table {name!r}; known: {', '.join(sorted(TABLES))}")
    return "\n" + TABLES[name]().strip("\n") + "\n\n"


def fill(text: str) -> str:
    """`text` with every marked block rewritten from the results files."""
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("name")) + m.group(4), text)


def blocks(text: str) -> list[str]:
    return [m.group("name") for m in BLOCK.finditer(text)]


def stale(pages: list[Path] = PAGES) -> list[str]:
    """`page: table` for every block whose text differs from the generator's."""
    out = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            if m.group("body") != render(m.group("name")):
                out.append(f"{page.relative_to(ROOT)}: {m.group('name')}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a page's tables differ from the results files")
    p.add_argument("--list", action="store_true", help="the table names and the pages that use them")
    args = p.parse_args(argv)
    if args.list:
        used = {page.relative_to(ROOT).as_posix(): blocks(page.read_text(encoding="utf-8")) for page in PAGES}
        for name in TABLES:
            print(f"{name:<20} {', '.join(pg for pg, names in used.items() if name in names) or '(unused)'}")
        return 0
    if args.check:
        bad = stale()
        for b in bad:
            print(f"stale: {b} (run python benchmarks/experiments/docs_tables.py)")
        return 1 if bad else 0
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        new = fill(text)
        if new != text:
            page.write_text(new, encoding="utf-8")
            print(f"wrote {page.relative_to(ROOT)} ({', '.join(blocks(text))})")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
