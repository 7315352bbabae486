"""The interp4d table (issue 29): interpolators, TTT4MII's test-time training and diffusion solvers on the same task.

Each row is one `bench run --problem interp4d` on the first `--n` test sequences (32 x 32 x 12: the shipped uvi-lite
model's size), in distribution and under the cardiac shifts (`cardiac-ef`, `cardiac-ct`, `cardiac-noise`, and
`interp-frames` with --frames-shift); on the lung phantom the baseline rows in distribution and under
`lung-breathing`. Rows:

- `interp-linear`, `interp-nearest`, `interp-io` (instance-optimised registration), `uvi-lite` (the shipped cardiac
  model);
- `uvi-lite+ttt-rot` and `uvi-lite+ttt-mae` under the schemes naive, online and minibatch, and `uvi-lite+ttt-flow`
  (online), each at batch size 1 (one sequence a batch, so the schemes differ);
- the release-faithful MAE-TTT (`adapters.ttt-mae.release_faithful=true`, minibatch): TTT4MII's released code;
- the sequence prior (the shipped `cardiac-seq-32`, an EDM network on the 12 frames as channels, loaded by path: `--prior edm prior.path=...`) with DDRM, DPS, DAPS
  and DiffPIR at CPU budgets (CPU_STEPS), each also `+prior-affine` (D' = a D + b per frame channel, fitted on the
  acquired frames before the run) unless --no-adapt. Not `+tda`: TDA (kind=physical) fits an operator's physical
  parameters at each sampler step, and the frame-selection operator has none (the frames it keeps are known
  exactly, the noise level is zero), so `bench run` refuses it before any compute. Not under `interp-frames`: the
  prior models 12 frames.

Per row: mean ± standard error over all missing frames (pooled over sequences, the papers' convention) of PSNR,
lncc9, SSIM and NMSE x 100; per sequence: wall and CPU seconds of the run (cost.jsonl: the run's process time and
wall time, data rendering included, divided by n) and the adapters' seconds (their trace in adaptation.jsonl, plus the
naive scheme's warm-up pass); paired differences to `uvi-lite` on the same sequences (to `interp-linear` for
`uvi-lite` itself) with benchmarks.stats: the 95 % BCa bootstrap interval of the mean per-sequence difference and the
Wilcoxon signed-rank p, as the main board does. Written after every run to benchmarks/results/interp_table.json and
.md; run directories under benchmarks/results/runs/interp_table/ (ignored by git) are re-read or resumed, so the
script can be stopped and restarted.

    python benchmarks/experiments/interp_table.py --n 8 --prior priors/weights/cardiac-seq-32/model.pt
    python benchmarks/experiments/interp_table.py --n 2 --settings cardiac/none --rows interp-linear,uvi-lite

Extra `key=value` arguments are hydra overrides passed to every run.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.results import read_samples

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
METRICS = ("psnr", "lncc9", "ssim", "nmse100")
LOWER_IS_BETTER = {"nmse100"}
SIZE = ["problem.size=32", "dataset.size=32"]
CARDIAC_SHIFTS = ("none", "cardiac-ef", "cardiac-ct", "cardiac-noise")
LUNG_SHIFTS = ("none", "lung-breathing")
BASELINES = ("interp-linear", "interp-nearest", "interp-io")
SCHEMES = ("naive", "online", "minibatch")
SOLVERS = ("ddrm", "dps", "daps", "diffpir")
# CPU-sized solver budgets, about 100 network evaluations each: DDRM 100 steps, DPS 100 (with gradients), DAPS
# 50 annealing x 2 ODE steps (its 0.1k budget), DiffPIR 100 steps (99 NFE: its last step returns the iterate). At 20
# steps DDRM and DiffPIR lost 2.5 and 1.9 dB in distribution (a check outside the table, the 4000-step prior)
CPU_STEPS = {"ddrm": ["algorithm.n_steps=100"], "dps": ["algorithm.n_steps=100"], "daps": ["algorithm.budget=0.1k"],
             "diffpir": ["algorithm.n_steps=100"]}
REFERENCE = "uvi-lite"
ADAPTER = "prior-affine"  # the diffusion rows' test-time adaptation (not tda: see the module docstring)
PAPER = {
    "source": "Zhang, Lei, Zheng, Chen, Xie, 'Test Time Training for 4D Medical Image Interpolation' (TTT4MII), Tables "
              "I-III, as reported: their data (ACDC 128x128x32; 4D-Lung), their code, an RTX 4090; never merged with "
              "this suite's rows",
    "psnr_db": {"ACDC (cardiac)": {"UVI-Net": 33.59, "TTT4MII": 33.73},
                "4D-Lung": {"UVI-Net": 34.00, "TTT4MII": 34.02}},
    "seconds_per_sample": {"rotation TTT": "0.90-0.94", "MAE TTT": "2.35-2.91"},
    "note": "the paper's gains (+0.14 dB, +0.02 dB) are below its own standard errors over frames; no shift is tested",
}


def plan(settings: list[str], rows: set[str] | None, prior: str | None, adapt: bool) -> list[dict[str, Any]]:
    """Every run of the table, in order: (setting, label, algo, flags, overrides)."""
    out: list[dict[str, Any]] = []

    def add(setting: str, label: str, algo: str, flags: tuple[str, ...] = (), opts: tuple[str, ...] = ()) -> None:
        if rows is None or label in rows or algo in rows:
            out.append({"setting": setting, "label": label, "algo": algo, "flags": list(flags), "overrides": list(opts)})

    for setting in settings:
        dataset, shift = setting.split("/")
        for b in BASELINES:
            add(setting, b, b)
        if dataset == "lung":
            continue
        add(setting, REFERENCE, REFERENCE)
        for aux in ("rot", "mae"):
            for scheme in SCHEMES:
                add(setting, f"uvi-lite+ttt-{aux} ({scheme})", f"uvi-lite+ttt-{aux}",
                    ("--scheme", scheme, "--batch-size", "1"))
        add(setting, "uvi-lite+ttt-flow (online)", "uvi-lite+ttt-flow", ("--scheme", "online", "--batch-size", "1"))
        add(setting, "uvi-lite+ttt-mae release-faithful (minibatch)", "uvi-lite+ttt-mae",
            ("--scheme", "minibatch", "--batch-size", "1"), ("adapters.ttt-mae.release_faithful=true",))
        if prior is None or shift == "interp-frames":
            continue
        for solver in SOLVERS:
            for chain in [solver] + ([f"{solver}+{ADAPTER}"] if adapt else []):
                add(setting, f"{chain} (sequence prior)", chain, ("--prior", "edm"),
                    (f"prior.path={prior}", *CPU_STEPS[solver]))
    return out


def run(spec: dict[str, Any], n: int, extra: list[str], runs: Path) -> dict[str, Any]:
    """One `bench run` (re-read or resumed where its directory exists); the row's numbers."""
    from benchmarks.cli import main as bench

    dataset, shift = spec["setting"].split("/")
    safe = "".join(c if c.isalnum() or c in "+-." else "_" for c in f"{spec['setting']}__{spec['label']}")
    out = runs / safe
    args = ["run", "--problem", "interp4d", "--algo", spec["algo"], "--n", str(n), "--out", str(out), "--quiet",
            *spec["flags"]]
    if (out / "config.yaml").exists():
        args.append("--resume")
    if shift != "none":
        args += ["--shift", shift]
    elif dataset == "lung":
        args += ["--dataset", "phantom-lung-4d"]
    args += SIZE + spec["overrides"] + extra
    start = time.time()
    code = bench(args)
    row: dict[str, Any] = {**spec, "command": "bench " + " ".join(a for a in args if a not in ("--quiet", "--resume")
                                                                   and not a.startswith("--out") and a != str(out))}
    if code != 0 or not (out / "summary.json").exists():
        return {**row, "error": f"bench run exited {code}"}
    s = json.loads((out / "summary.json").read_text())
    samples = [r for r in read_samples(out / "samples.jsonl") if r.get("status") == "ok"]
    cost = read_samples(out / "cost.jsonl")
    trace = read_samples(out / "adaptation.jsonl")
    pr = s.get("problem_run_metrics") or {}
    k = max(1, len(samples))
    adapt = sum(float(t.get("seconds", 0.0)) for b in trace for t in b.get("trace", []))
    adapt += sum(float(c.get("naive_warmup_seconds", 0.0)) for c in cost)
    row.update({
        "n_ok": s.get("n_ok"), "elapsed_s": round(time.time() - start, 1),
        "frames": {m: {"mean": pr.get(f"{m}_frames_mean"), "se": pr.get(f"{m}_frames_se")} for m in METRICS},
        "per_sequence": {"ids": [r["id"] for r in samples],
                         **{m: [r["problem_metrics"][f"{m}_missing"] for r in samples] for m in METRICS}},
        "wall_s_per_sequence": sum(c["wall_seconds"] for c in cost) / k,
        "cpu_s_per_sequence": sum(c["cpu_seconds"] for c in cost) / k,
        "cpu_s_total": sum(c["cpu_seconds"] + c.get("startup_cpu_seconds", 0.0) for c in cost),
        "adapt_s_per_sequence": adapt / k if trace or any("naive_warmup_seconds" in c for c in cost) else None,
        "nfe": (s["metrics"].get("nfe") or {}).get("mean"),
        "load_1min": [cost[0].get("load_1min_start"), cost[-1].get("load_1min_end")] if cost else None,
    })
    return row


def values(row: dict[str, Any], metric: str) -> dict[str, float]:
    ps = row.get("per_sequence") or {}
    return {i: float(v) for i, v in zip(ps.get("ids", []), ps.get(metric, []))
            if isinstance(v, (int, float)) and math.isfinite(v)}


def compare(rows: list[dict[str, Any]]) -> None:
    """Each row's paired differences to uvi-lite of its setting (uvi-lite's own, and every row of a setting without
    uvi-lite, to interp-linear)."""
    from benchmarks import stats

    by = {(r["setting"], r["label"]): r for r in rows if "error" not in r}
    for r in rows:
        if "error" in r:
            continue
        has_reference = (r["setting"], REFERENCE) in by  # the lung settings have no uvi-lite row (no model ships)
        ref_label = REFERENCE if has_reference and r["label"] != REFERENCE else "interp-linear"
        ref = by.get((r["setting"], ref_label))
        if ref is None or ref is r:
            r.pop("paired", None)
            continue
        block: dict[str, Any] = {"reference": ref_label}
        for m in METRICS:
            p = stats.paired(values(r, m), values(ref, m))
            if p is not None:
                block[m] = {"diff": p.diff.mean, "low": p.diff.low, "high": p.diff.high, "p_wilcoxon": p.p_wilcoxon,
                            "n": p.diff.n}
        r["paired"] = block


def fmt(v: Any, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def cell(frames: dict[str, Any], m: str) -> str:
    c = frames.get(m) or {}
    spec = ".3f" if m in ("lncc9", "ssim") else ".2f"
    return f"{fmt(c.get('mean'), spec)} ± {fmt(c.get('se'), spec)}"


def paired_cell(r: dict[str, Any], m: str = "psnr") -> str:
    p = (r.get("paired") or {}).get(m)
    if not p:
        return "–"
    spec = ".2f" if m in ("psnr", "nmse100") else ".3f"
    interval = "" if p["low"] is None else f" [{p['low']:+{spec}}, {p['high']:+{spec}}]"
    pv = "" if p["p_wilcoxon"] is None else f", p {p['p_wilcoxon']:.2g}"
    return f"{p['diff']:+{spec}}{interval}{pv}"


HEAD = ["setting", "method", "n", "PSNR (dB)", "lncc9", "SSIM", "NMSE×100", "Δ PSNR (paired 95 % CI, Wilcoxon p)",
        "Δ SSIM", "s/seq wall", "s/seq CPU", "adapt s/seq"]


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in result["rows"]:
        if "error" in r:
            out.append([r["setting"], r["label"], "failed: " + r["error"]] + ["–"] * (len(HEAD) - 3))
            continue
        ref = (r.get("paired") or {}).get("reference")
        delta = paired_cell(r) + (f" (vs {ref})" if ref and ref != REFERENCE else "")
        out.append([r["setting"], r["label"], str(r["n_ok"])] + [cell(r["frames"], m) for m in METRICS]
                   + [delta, paired_cell(r, "ssim"), fmt(r["wall_s_per_sequence"]), fmt(r["cpu_s_per_sequence"]),
                      fmt(r["adapt_s_per_sequence"])])
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(result)]
    if result.get("missing"):
        lines += ["", "Not measured: " + ", ".join(result["missing"])]
    paper = result["paper"]
    lines += ["", "The paper's numbers (" + paper["source"] + "): PSNR " + "; ".join(
        f"{k}: " + ", ".join(f"{m} {v:.2f} dB" for m, v in d.items()) for k, d in paper["psnr_db"].items())
        + "; seconds per sample " + ", ".join(f"{k} {v}" for k, v in paper["seconds_per_sample"].items())
        + f". {paper['note']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=8, help="test sequences per run (default 8)")
    p.add_argument("--settings", default=None, help="comma-separated dataset/shift, e.g. cardiac/none,lung/none "
                                                    "(default: every cardiac shift, then lung/none and lung/lung-breathing)")
    p.add_argument("--frames-shift", action="store_true", help="also cardiac/interp-frames (20 missing frames)")
    p.add_argument("--rows", default=None, help="comma-separated labels or algorithms to run (default: all)")
    p.add_argument("--prior", default=None, help="the sequence prior's model.pt (without it: no diffusion rows)")
    p.add_argument("--no-adapt", action="store_true", help="skip the solvers' +prior-affine rows")
    p.add_argument("--out", default=str(RESULTS / "interp_table"), help="JSON/markdown stem")
    p.add_argument("--fresh", action="store_true", help="do not keep the rows of an existing results file")
    args, extra = p.parse_known_args(argv)
    settings = args.settings.split(",") if args.settings else (
        [f"cardiac/{s}" for s in CARDIAC_SHIFTS] + (["cardiac/interp-frames"] if args.frames_shift else [])
        + [f"lung/{s}" for s in LUNG_SHIFTS])
    specs = plan(settings, set(args.rows.split(",")) if args.rows else None, args.prior, not args.no_adapt)
    json_path, md_path = Path(args.out).with_suffix(".json"), Path(args.out).with_suffix(".md")
    kept: list[dict[str, Any]] = []
    this = "python benchmarks/experiments/interp_table.py " + " ".join(argv if argv is not None else sys.argv[1:])
    commands = [this]
    if json_path.exists() and not args.fresh:
        old = json.loads(json_path.read_text())
        if old.get("n") == args.n:
            planned = {(s["setting"], s["label"]) for s in specs}
            kept = [r for r in old["rows"] if (r["setting"], r["label"]) not in planned]
            commands = [c for c in old.get("commands", [old.get("command")]) if c and c != this] + [this]
    import torch

    result: dict[str, Any] = {
        "command": " && ".join(commands), "commands": commands,
        "n": args.n, "size": 32, "frames": 12,
        "prior": args.prior or (old.get("prior") if kept else None), "solver_budgets": CPU_STEPS,
        "threads": 1, "torch": torch.__version__, "paper": PAPER, "rows": kept,
        "missing": [f"{s['setting']}: {s['label']}" for s in specs]}
    runs = RESULTS / "runs" / "interp_table"

    def save() -> None:
        canonical = [f"cardiac/{x}" for x in (*CARDIAC_SHIFTS, "interp-frames")] + [f"lung/{x}" for x in LUNG_SHIFTS]
        order = {s: i for i, s in enumerate(dict.fromkeys(canonical + [r["setting"] for r in result["rows"]]))}
        labels = {lab: i for i, lab in enumerate(dict.fromkeys(
            s["label"] for s in plan([r["setting"] for r in result["rows"]], None, "prior", True)))}
        result["rows"].sort(key=lambda r: (order[r["setting"]], labels.get(r["label"], len(labels))))
        compare(result["rows"])
        result["cpu_s_total"] = round(sum(r.get("cpu_s_total", 0.0) for r in result["rows"]), 1)
        result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        md_path.write_text(markdown(result))

    for spec in specs:
        row = run(spec, args.n, extra, runs)
        result["rows"] = [r for r in result["rows"] if (r["setting"], r["label"]) != (spec["setting"], spec["label"])]
        result["rows"].append(row)
        result["missing"].remove(f"{spec['setting']}: {spec['label']}")
        save()
        psnr = (row.get("frames") or {}).get("psnr") or {}
        print(f"{spec['setting']}: {spec['label']}: PSNR {fmt(psnr.get('mean'))} ± {fmt(psnr.get('se'))} "
              f"({row.get('elapsed_s')} s){' ' + row['error'] if 'error' in row else ''}", flush=True)
    save()
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
