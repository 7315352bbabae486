"""Quality per second: PSNR against CPU seconds per sample for the suite's solvers and DeepInverse's (issue 32).

Settings: `cs_mri` R = 4 (random mask, 64 x 64, noise_std 0.005), single-coil (`problem.coils=1`) and 8 coils
(estimated ESPIRiT maps, the default), the default dataset (phantom-brain-t2, test split) and prior (brain-64),
`--n` samples (4) in one batch, one thread. Each suite solver runs at 4 NFE budgets through `bench run` (one
child process per point, one at a time); its seconds are the run's process CPU seconds from RUN_DIR/cost.jsonl
(from the start of the run: building the prior and data, measuring, reconstructing and scoring; the interpreter's
start-up and imports excluded), divided by n. l1-wavelet's PSNR on the same samples is the reference line.

DeepInverse (optional extra `peers`, deepinv 0.5.0): DPS, DiffPIR and DDRM on the same network (the shipped prior
as a `deepinv.models.Denoiser`, peer_speed.SuiteDenoiser) and the same operator (`deepinv.physics.MRI`, or
`MultiCoilMRI` with the suite operator's coil maps; equality of A and A^H checked and recorded), on the same
measurement as the bench runs (the problem's instance from the same per-sample generators; checked by re-running
one suite point in this process and comparing its per-sample PSNR with the bench run's). Its seconds are this
process's CPU seconds around the sampler's call, divided by n, after a short warm-up of each sampler. Options as
in peer_speed.py (DPS and DiffPIR); DDRM at DeepInverse's defaults (eta 0.85, eta_b 1) on its default grid
linspace(1, 0, NFE) in its [0, 1] units but ending at 0.001 (the network is undefined at sigma 0). DeepInverse's
DDRM needs a `DecomposablePhysics`: its `MultiCoilMRI` is not one, so DDRM runs single-coil only (the suite's DDRM
and DDNM too: the 8-coil operator has no closed-form SVD and the dense one costs minutes per sample).

Per setting the JSON holds every solver's curve (NFE, CPU seconds per sample, mean and per-sample PSNR), each
solver's CPU seconds per sample to reach l1-wavelet's PSNR and DeepInverse's best PSNR (linear interpolation
between the two budgets that bracket the target on the curve ordered by seconds; null if no budget reaches it),
and the headline: the suite's fastest method to DeepInverse's best PSNR, its time / DeepInverse's time to its best
(goal <= 0.5), also in network calls and without the bench run's fixed part (a zero-filled run's seconds). The
points of all curves are interleaved (every curve's cheapest budget, then every curve's next, ...) so that the load
of a shared machine, which moves CPU seconds too, falls on all alike. `--harness-check R` times DiffPIR at 100 NFE R
times in turn through bench run, in this process and in DeepInverse. Rows are written as they finish; a rerun reuses
the rows already in `--out` (keeping the first run's command and date, its own listed after) unless `--fresh`;
`--plot-only` redraws the figure and the summaries from `--out`.
The figure (PSNR against CPU seconds per sample, log x, one panel per setting, the l1-wavelet line) goes beside
`--out` as .png and, for the default `--out`, to docs/ too (the pages link only to files in docs/).

    pip install -e '.[peers]'
    python -m benchmarks.experiments.quality_per_second [--n 4] [--settings single-coil 8-coil] [--fresh]
        [--harness-check 3] [--plot-only]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.experiments.timed_runs import REPO, bench_prefix, psnr_summary, run_samples, start, timed

SETTINGS = {"single-coil": ["problem.coils=1"], "8-coil": ["problem.coils=8"]}


def _steps(key: str, values: Sequence[int]) -> list[list[str]]:
    return [[f"algorithm.{key}={v}"] for v in values]


def _daps(grid: Sequence[tuple[int, int]]) -> list[list[str]]:
    return [["algorithm.budget=null", f"algorithm.n_steps={a}", f"algorithm.ode_steps={o}"] for a, o in grid]


# each suite solver's budgets (bench run overrides), from cheap to its default on cs_mri (DPS: cut, see NOTE)
DAPS_GRID = _daps([(10, 2), (25, 2), (50, 2), (40, 5)])  # NFE 20, 50, 100 (cs_mri's default 0.1k), 200
DIFFPIR_STEPS = _steps("n_steps", [11, 21, 51, 101])  # NFE 10, 20, 50, 100 (the default; the last step calls none)
SUITE: dict[str, list[list[str]]] = {
    "l1-wavelet": [[]],
    "ddrm": _steps("n_steps", [5, 10, 20, 50]),  # default 20
    "ddnm": _steps("n_steps", [10, 25, 50, 100]),  # NFE about 2 n_steps (time travel 1); default 100
    "diffpir": DIFFPIR_STEPS,
    "diffpir+tda": DIFFPIR_STEPS,
    "daps": DAPS_GRID,
    "daps+tda": DAPS_GRID,
    "pigdm": _steps("n_steps", [10, 20, 50, 100]),  # default 100
    "dps": _steps("n_steps", [25, 50, 100, 200]),  # default 1000
}
NEEDS_SVD = {"ddrm", "ddnm"}  # single-coil only (see the docstring)
REFERENCE = "l1-wavelet"
PEERS: dict[str, list[int]] = {"dps": [25, 50, 100, 200], "diffpir": [10, 20, 50, 100], "ddrm": [5, 10, 20, 50]}
PEER_SINGLE_COIL_ONLY = {"ddrm"}
GOAL_RATIO = 0.5
DEFAULT_OUT = REPO / "benchmarks/results/quality_per_second.json"
NOTE = ("Measured beside a background job at nice 10 (this study at nice 5) on a shared 2-core machine without a "
        "GPU; CPU seconds of the process (one thread), which other jobs move far less than wall seconds. DPS runs "
        "at 25-200 NFE, not up to its default 1000, to keep the study within its CPU budget (DPS at 200 NFE is "
        "already its slowest point and far below the other solvers' PSNR at the same seconds).")


def reach_time(points: Sequence[tuple[float, float]], target: float) -> float | None:
    """CPU seconds at which a (seconds, PSNR) curve first reaches `target` PSNR: the curve ordered by seconds,
    linear interpolation between the last point below the target and the first at or above it; the first point's
    seconds if it is already there; None if no point reaches it."""
    pts = sorted(points)
    for i, (t, p) in enumerate(pts):
        if p >= target:
            if i == 0:
                return t
            t0, p0 = pts[i - 1]
            return t0 + (target - p0) / (p - p0) * (t - t0)
    return None


def summarise(curves: dict[str, list[dict[str, Any]]], reference: float | None,
              reference_key: str = f"suite:{REFERENCE}") -> dict[str, Any]:
    """Reach times per curve (keys 'suite:NAME' and 'deepinv:NAME'), DeepInverse's best and the headline ratio: the
    suite's fastest solver to DeepInverse's best PSNR (the reference curve, l1-wavelet, is not a candidate)."""
    pts = {k: [(r["cpu_s_per_sample"], r["psnr"]) for r in rows] for k, rows in curves.items() if rows}
    nfe = {k: [(r["nfe"], r["psnr"]) for r in rows] for k, rows in curves.items() if rows and "nfe" in rows[0]}
    peers = {k: v for k, v in pts.items() if k.startswith("deepinv:")}
    out: dict[str, Any] = {"l1_wavelet_psnr": reference}
    best_key = max(peers, key=lambda k: max(p for _, p in peers[k])) if peers else None
    best = max(p for _, p in peers[best_key]) if best_key else None
    best_time = reach_time(peers[best_key], best) if best_key else None
    out["deepinv_best"] = {"method": best_key, "psnr": best, "cpu_s_per_sample": best_time}
    out["reach"] = {k: {"to_l1_wavelet_psnr_cpu_s": None if reference is None else reach_time(v, reference),
                        "to_deepinv_best_psnr_cpu_s": None if best is None else reach_time(v, best),
                        "to_deepinv_best_psnr_nfe": None if best is None or k not in nfe else reach_time(nfe[k], best),
                        "best_psnr": max(p for _, p in v)} for k, v in pts.items()}
    suite = {k: r["to_deepinv_best_psnr_cpu_s"] for k, r in out["reach"].items()
             if k.startswith("suite:") and k != reference_key and r["to_deepinv_best_psnr_cpu_s"] is not None}
    if best_time and suite:
        fastest = min(suite, key=suite.get)
        ratio = suite[fastest] / best_time
        out["headline"] = {"suite_fastest_to_deepinv_best": fastest, "cpu_s_per_sample": suite[fastest],
                           "deepinv_cpu_s_per_sample": best_time, "ratio": ratio, "goal": GOAL_RATIO,
                           "goal_met": ratio <= GOAL_RATIO,
                           # its cheapest budget already reaches the target: the time is an upper bound
                           "at_cheapest_budget": min(pts[fastest])[1] >= best,
                           # the same in network calls: what the ratio would be at equal seconds per call
                           "nfe": out["reach"][fastest]["to_deepinv_best_psnr_nfe"],
                           "deepinv_nfe": out["reach"][best_key]["to_deepinv_best_psnr_nfe"]}
    else:
        out["headline"] = {"suite_fastest_to_deepinv_best": None, "ratio": None, "goal": GOAL_RATIO, "goal_met": False,
                           "why": "no suite solver reaches DeepInverse's best PSNR" if best_time else "no DeepInverse run"}
    return out


def bench_point(name: str, overrides: list[str], setting: list[str], n: int, tmp: Path,
                bench: str | None) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """One `bench run` of the suite: its row (NFE, CPU seconds per sample, PSNR) and its samples."""
    out = tmp / f"{name}-{len(list(tmp.iterdir()))}"
    argv = ["run", "--problem", "cs_mri", "--algo", name, "--n", str(n), "--batch-size", str(n), "--quiet",
            "run.threads=1", *setting, *overrides]
    t = timed([start(bench_prefix(bench) + argv + ["--out", str(out)])])
    samples = run_samples(out)
    cost = [json.loads(line) for line in (out / "cost.jsonl").read_text().splitlines() if line.strip()][-1]
    row = {"command": "bench " + shlex.join(argv + ["--out", "DIR"]), "nfe": samples[min(samples)]["nfe"],
           "cpu_s_per_sample": round(cost["cpu_seconds"] / n, 4), "run_cpu_s": cost["cpu_seconds"],
           "process_cpu_s": t["cpu_s"], "wall_s": t["wall_s"], "load_before": t["load_before"],
           "load_after": t["load_after"], **psnr_summary(samples)}
    return row, samples


class Peers:
    """DeepInverse's samplers on one setting's measurement, in this process (deepinv imported here: the extra)."""

    def __init__(self, coils: int, n: int, seed: int = 0) -> None:
        import torch

        from benchmarks.experiments import peer_speed as ps
        from benchmarks.items import load_item
        from inverse_problems.data.phantoms.datasets import BrainT2
        from inverse_problems.operators.random import SampleGenerators
        from inverse_problems.problems.cs_mri import CSMRIProblem

        self.torch, self.ps, self.dinv, self.n = torch, ps, ps.dinv, n
        torch.set_num_threads(1)
        self.prior = ps.brain_64("cpu").requires_grad_(False)
        self.prior.set_execution("fp32", "channels_last")  # the runner's run.memory_format=auto on CPU
        data = BrainT2(split="test", size=64)
        items = [load_item(data, i, (2, 64, 64)) for i in range(n)]
        self.gen = SampleGenerators.seeded(seed, [it["id"] for it in items])
        inst = CSMRIProblem(size=64, coils=coils).instance(items, "cpu", self.gen)
        self.x_true = torch.stack([it["image"] for it in items])
        self.y, self.op, self.scale = inst.y, inst.operator.requires_grad_(False), inst.scale
        sigma_n = self.op.noise_std.detach().reshape(-1).expand(n)
        self.c = sigma_n / sigma_n.min()  # per-sample c >= 1: DeepInverse's one noise level is every sample's own
        self.sigma_u = float(sigma_n.min()) / 2
        self.physics = ps.deepinv_physics(self.op, self.sigma_u)
        self.y_u = ps.to_unit(self.y, self.physics, self.c, self.op)
        self.den = ps.SuiteDenoiser(self.prior, self.c)

    def psnr(self, x_scaled) -> list[float]:
        from benchmarks.metrics import image_metrics
        return [r["psnr"] for r in image_metrics(x_scaled * self.ps.per_sample(self.scale, x_scaled), self.x_true)]

    def suite_psnr(self, algo) -> list[float]:
        """A suite solver on the same instance in this process (the check that the measurement is the bench run's)."""
        return self.psnr(algo.reconstruct(self.y, self.op, self.prior, self.gen).image)

    def suite_cpu(self, algo) -> float:
        """CPU seconds per sample of a suite solver on the same measurement in this process (fresh generators)."""
        from inverse_problems.operators.random import SampleGenerators
        gen = SampleGenerators.seeded(0, range(self.n))
        cpu = time.process_time()
        algo.reconstruct(self.y, self.op, self.prior, gen)
        return round((time.process_time() - cpu) / self.n, 4)

    def sampler(self, method: str, nfe: int):
        import numpy as np
        dinv, torch = self.dinv, self.torch
        if method == "dps":
            return dinv.sampling.DPS(self.den, num_steps=nfe + 1, dtype=torch.float32, device="cpu",
                                     rng=torch.Generator().manual_seed(0))
        if method == "diffpir":
            return dinv.sampling.DiffPIR(self.den, dinv.optim.data_fidelity.L2(), sigma=self.sigma_u, max_iter=nfe,
                                         zeta=1.0, lambda_=2.0)
        # DeepInverse's default grid linspace(1, 0, NFE) ends at sigma 0, where the EDM network is undefined (NaN)
        return dinv.sampling.DDRM(self.den, sigmas=np.linspace(1, 0.001, nfe))

    def run(self, method: str, nfe: int) -> tuple[dict[str, Any], list[float]]:
        """One timed run: CPU seconds of this process around the sampler's call; NFE checked."""
        model = self.sampler(method, nfe)
        self.den.calls = 0
        self.torch.manual_seed(0)
        cpu, wall = time.process_time(), time.perf_counter()
        u = model(self.y_u, self.physics, seed=0) if method in ("dps", "ddrm") else model(self.y_u, self.physics)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if self.den.calls != nfe:
            raise RuntimeError(f"deepinv {method}: NFE {self.den.calls}, expected {nfe}")
        x = self.ps.per_sample(self.c, u) * (2 * u.detach() - 1)
        psnr = self.psnr(x)
        return {"nfe": nfe, "cpu_s_per_sample": round(cpu / self.n, 4), "run_cpu_s": round(cpu, 3),
                "wall_s": round(wall, 2), "psnr": round(statistics.fmean(psnr), 3),
                "psnr_per_sample": {i: round(p, 3) for i, p in enumerate(psnr)}}, psnr


def harness_check(sname: str, peers: Peers, n: int, tmp: Path, bench: str | None, repeats: int) -> dict[str, Any]:
    """DiffPIR at 100 NFE, `repeats` times in turn: the suite's through bench run, the suite's in this process (the
    same call as DeepInverse's, without the harness) and DeepInverse's: whether the headline's seconds are the
    solver's or the harness's, and how much the load moves them."""
    from algorithms.diffusion.diffpir import DiffPIR
    ov, nfe = DIFFPIR_STEPS[-1], int(DIFFPIR_STEPS[-1][0].split("=")[1]) - 1
    runs: dict[str, list[float]] = {"suite bench run": [], "suite in process": [], "deepinv": []}
    peers.suite_cpu(DiffPIR(n_steps=3))  # warm-up
    for _ in range(repeats):
        runs["suite bench run"].append(bench_point("diffpir", ov, SETTINGS[sname], n, tmp, bench)[0]["cpu_s_per_sample"])
        runs["suite in process"].append(peers.suite_cpu(DiffPIR(n_steps=nfe + 1)))
        runs["deepinv"].append(peers.run("diffpir", nfe)[0]["cpu_s_per_sample"])
        print(sname, "harness check", json.dumps({k: v[-1] for k, v in runs.items()}), flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"what": f"DiffPIR at {nfe} NFE, {repeats} rounds in turn: CPU seconds per sample of the suite's bench run, "
                    "of the suite's DiffPIR in this process (same prior, measurement and thread as DeepInverse's) and "
                    "of DeepInverse's DiffPIR", "runs": runs, "median": med,
            "suite_over_deepinv": {k: round(med[k] / med["deepinv"], 3) for k in ("suite bench run", "suite in process")}}


def plot(result: dict[str, Any], path: Path) -> None:
    """PSNR against CPU seconds per sample, log x, one panel per setting; one colour per solver name (DeepInverse's
    dashed with squares, in the colour of the suite's solver of the same name), the l1-wavelet line dotted."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    settings = [s for s in result["settings"] if result["settings"][s]["curves"]]
    names = [n for n in SUITE if n != REFERENCE]
    colour = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
    fig, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 5.2), squeeze=False)
    handles: dict[str, Any] = {}
    for ax, name in zip(axes[0], settings):
        s = result["settings"][name]
        for k, rows in s["curves"].items():
            lib, solver = k.split(":", 1)
            if not rows or solver == REFERENCE:
                continue
            rows = sorted(rows, key=lambda r: r["cpu_s_per_sample"])
            peer = lib == "deepinv"
            (line,) = ax.plot([r["cpu_s_per_sample"] for r in rows], [r["psnr"] for r in rows], "--" if peer else "-",
                              marker="s" if peer else "o", ms=4, color=colour.get(solver, "k"),
                              label=f"DeepInverse {solver}" if peer else solver)
            handles.setdefault(line.get_label(), line)
        ref = s["summary"]["l1_wavelet_psnr"]
        if ref is not None:
            handles.setdefault("l1-wavelet", ax.axhline(ref, color="k", lw=1, ls=":", label="l1-wavelet"))
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(FormatStrFormatter(""))
        ax.set_xlabel("CPU seconds per sample (one thread)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"cs_mri R = 4, {name}, n = {result['n']}")
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--solvers", nargs="+", default=list(SUITE), choices=list(SUITE))
    ap.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS))
    ap.add_argument("--harness-check", type=int, default=0, metavar="REPEATS",
                    help="also time DiffPIR at 100 NFE REPEATS times in turn: bench run, in process, DeepInverse")
    ap.add_argument("--fresh", action="store_true", help="measure every row again (default: reuse --out's rows)")
    ap.add_argument("--plot-only", action="store_true", help="only redraw the figure and summaries from --out")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--bench", help="the bench command (default: python -m benchmarks.cli of this checkout)")
    args = ap.parse_args()
    out_path = Path(args.out).resolve()
    old = json.loads(out_path.read_text()) if out_path.exists() and not args.fresh else {}
    result: dict[str, Any] = {
        "what": "PSNR against CPU seconds per sample: cs_mri R = 4 (random mask, noise_std 0.005), 64 x 64, "
                "phantom-brain-t2 test split, prior brain-64, seed 0, one batch of n, one thread; the suite's solvers "
                "through bench run and DeepInverse's DPS, DiffPIR and DDRM on the same network, operator and "
                "measurement",
        "command": "python -m benchmarks.experiments.quality_per_second " + shlex.join(sys.argv[1:]),
        "date_utc": old.get("date_utc") if args.plot_only else
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, no GPU",
        "note": NOTE, "n": args.n, "budgets": {"suite": SUITE, "deepinv": PEERS},
        "seconds": {"suite": "RUN_DIR/cost.jsonl cpu_seconds / n: the bench run's process CPU seconds from the "
                             "start of the run (build, measure, reconstruct, score), interpreter start-up excluded",
                    "deepinv": "this process's CPU seconds around the sampler's call / n (after a warm-up)"},
        "reach": "CPU seconds per sample to a PSNR: linear interpolation on the curve ordered by seconds between "
                 "the budgets that bracket it; null: no budget reaches it",
        "settings": old.get("settings", {})}
    if old:  # a rerun that reuses rows keeps the first run's command and date and lists its own after them
        later = old.get("later_commands", [])
        if not args.plot_only:
            later = later + [{k: result[k] for k in ("command", "date_utc")}]
        result.update({k: old[k] for k in ("command", "date_utc", "machine") if k in old}, later_commands=later)

    def save() -> None:
        for s in result["settings"].values():
            ref = s["curves"].get(f"suite:{REFERENCE}")
            s["summary"] = summarise(s["curves"], ref[0]["psnr"] if ref else None)
            fixed = s.get("run_overhead", {}).get("cpu_s_per_sample")
            if fixed is not None:  # the headline again with the bench run's fixed part taken off the suite's seconds
                shifted = {k: [{**r, "cpu_s_per_sample": r["cpu_s_per_sample"] - fixed} if k.startswith("suite:")
                               else r for r in rows] for k, rows in s["curves"].items()}
                s["summary"]["headline_run_overhead_excluded"] = summarise(
                    shifted, ref[0]["psnr"] if ref else None)["headline"]
        # the measured runs' CPU: the bench processes whole (start-up included), DeepInverse's timed calls
        result["measured_cpu_minutes"] = round(sum(
            r.get("process_cpu_s", r["run_cpu_s"]) for s in result["settings"].values()
            for rows in s["curves"].values() for r in rows) / 60, 1)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=2) + "\n")
        plot(result, out_path.with_suffix(".png"))
        if out_path == DEFAULT_OUT:
            shutil.copyfile(out_path.with_suffix(".png"), REPO / "docs" / out_path.with_suffix(".png").name)

    if args.plot_only:
        save()
        return
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for sname in args.settings:
            s = result["settings"].setdefault(sname, {"overrides": SETTINGS[sname], "curves": {}})
            coils = 1 if sname == "single-coil" else 8
            solvers = [m for m in args.solvers if not (coils > 1 and m in NEEDS_SVD)]
            methods = [m for m in args.peers if not (coils > 1 and m in PEER_SINGLE_COIL_ONLY)]
            for m in set(args.solvers) - set(solvers):
                s.setdefault("skipped", {})[f"suite:{m}"] = "no closed-form SVD for 8 coils"
            for m in set(args.peers) - set(methods):
                s.setdefault("skipped", {})[f"deepinv:{m}"] = ("DeepInverse's DDRM needs a DecomposablePhysics; its "
                                                               "MultiCoilMRI is not one")
            peers = Peers(coils, args.n) if methods else None
            if peers:
                s["operator_max_difference"] = peers.ps.operator_difference(peers.op, peers.physics)
                for m in methods:
                    peers.run(m, 2)  # warm-up
            # the points interleaved: every curve's cheapest budget, then every curve's next, ... so that the load of
            # the shared machine, which moves CPU seconds too, falls on all curves alike
            for i in range(max(len(b) for b in [*SUITE.values(), *PEERS.values()])):
                for name in solvers:
                    if i >= len(SUITE[name]):
                        continue
                    ov, rows = SUITE[name][i], s["curves"].setdefault(f"suite:{name}", [])
                    cmd = "bench " + shlex.join(["run", "--problem", "cs_mri", "--algo", name, "--n", str(args.n),
                                                 "--batch-size", str(args.n), "--quiet", "run.threads=1",
                                                 *SETTINGS[sname], *ov, "--out", "DIR"])
                    if any(r["command"] == cmd for r in rows):
                        continue
                    try:
                        row, _ = bench_point(name, ov, SETTINGS[sname], args.n, tmp, args.bench)
                    except RuntimeError as exc:
                        s.setdefault("failed", {})[cmd] = str(exc)[-500:]
                        print("FAILED", cmd, str(exc)[-500:], flush=True)
                        continue
                    rows.append(row)
                    print(sname, name, json.dumps({k: row[k] for k in ("nfe", "cpu_s_per_sample", "psnr", "wall_s")}),
                          flush=True)
                    save()
                for method in methods:
                    rows = s["curves"].setdefault(f"deepinv:{method}", [])
                    if i >= len(PEERS[method]) or any(r["nfe"] == PEERS[method][i] for r in rows):
                        continue
                    row, _ = peers.run(method, PEERS[method][i])
                    rows.append(row)
                    print(sname, "deepinv", method, json.dumps({k: row[k] for k in ("nfe", "cpu_s_per_sample", "psnr")}),
                          flush=True)
                    save()
            cheapest = next((r for r in s["curves"].get("suite:diffpir", []) if r["nfe"] == 10), None)
            if peers and cheapest:  # the same measurement as the bench runs: DiffPIR's cheapest point in this process
                from algorithms.diffusion.diffpir import DiffPIR
                mine = peers.suite_psnr(DiffPIR(n_steps=int(DIFFPIR_STEPS[0][0].split("=")[1])))
                ref = {int(k): v for k, v in cheapest["psnr_per_sample"].items()}
                s["measurement_check"] = {"what": "suite DiffPIR (cheapest budget) in this process against its bench "
                                                  "run, per-sample PSNR", "max_abs_psnr_difference":
                                          max(abs(mine[i] - ref[i]) for i in range(args.n))}
            if args.harness_check and "harness_check" not in s and peers:
                s["harness_check"] = harness_check(sname, peers, args.n, tmp, args.bench, args.harness_check)
            if "run_overhead" not in s:  # what a bench run costs besides reconstructing (no prior: zero-filled)
                row, _ = bench_point("zero-filled", [], SETTINGS[sname], args.n, tmp, args.bench)
                s["run_overhead"] = {"what": "CPU seconds per sample of a zero-filled bench run: building the data "
                                             "and problem, measuring (8 coils: ESPIRiT maps) and scoring; no prior "
                                             "load", **{k: row[k] for k in ("command", "cpu_s_per_sample", "run_cpu_s")}}
            save()
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
