"""One denoiser call of a prior under each execution setting: memory format, autocast precision, torch.compile.

Times a no-grad call and a call with its backward pass (what DPS pays) of the shipped prior (or --prior-path, a
diffusers directory) at each batch size, interleaving the settings round by round so that a machine whose load
changes affects them alike (medians over rounds); also reports each setting's largest output difference from
contiguous float32 on the same input. Writes benchmarks/results/denoiser_speed.json.

    python benchmarks/experiments/denoiser_speed.py [--device cpu] [--batch 1 4] [--rounds 7] [--precision fp32 bf16]
        [--compile]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from priors.shipped import phantom_brain_64


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def settings(precisions: list[str], with_compile: bool) -> list[tuple[str, str, bool]]:
    """(precision, memory format, compile): fp32 contiguous first (the reference)."""
    out = [(p, f, False) for p in ["fp32", *[q for q in precisions if q != "fp32"]]
           for f in ("contiguous", "channels_last")]
    if with_compile:
        out += [("fp32", "contiguous", True), ("fp32", "channels_last", True)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=3, help="calls per timing (the time is per call)")
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16", "fp16"], choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (prior.compile=true)")
    ap.add_argument("--prior-path", default=None)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "denoiser_speed.json"))
    args = ap.parse_args()
    device = torch.device(args.device)
    rows = []
    for batch in args.batch:
        g = torch.Generator().manual_seed(0)
        x = torch.randn((batch, 2, 64, 64), generator=g).to(device)
        sigma = torch.full((batch,), 0.5, device=device)
        priors = {}
        for prec, fmt, comp in settings(args.precision, args.compile):
            p = phantom_brain_64(str(device), args.prior_path, compile=comp).requires_grad_(False)
            priors[(prec, fmt, comp)] = p.set_execution(prec, fmt)
        ref = priors[("fp32", "contiguous", False)]
        with torch.no_grad():
            base = ref.denoise(x, sigma)

        def call(p):
            with torch.no_grad():
                for _ in range(args.calls):
                    p.denoise(x, sigma)

        def call_backward(p):
            for _ in range(args.calls):
                xi = x.detach().requires_grad_(True)
                torch.autograd.grad(p.denoise(xi, sigma).square().sum(), xi)

        times = {k: {"call": [], "call_backward": []} for k in priors}
        for k, p in priors.items():  # warm-up (compilation happens here)
            call(p), call_backward(p)
        for _ in range(args.rounds):
            for kind, fn in (("call", call), ("call_backward", call_backward)):
                for k, p in priors.items():
                    sync(device)
                    t0 = time.perf_counter()
                    fn(p)
                    sync(device)
                    times[k][kind].append((time.perf_counter() - t0) / args.calls)
        t_ref = statistics.median(times[("fp32", "contiguous", False)]["call"])
        tb_ref = statistics.median(times[("fp32", "contiguous", False)]["call_backward"])
        for (prec, fmt, comp), p in priors.items():
            with torch.no_grad():
                diff = float((p.denoise(x, sigma) - base).abs().max())
            t = statistics.median(times[(prec, fmt, comp)]["call"])
            tb = statistics.median(times[(prec, fmt, comp)]["call_backward"])
            rows.append({"batch": batch, "precision": prec, "memory_format": fmt, "compile": comp,
                         "call_seconds": t, "call_backward_seconds": tb, "call_speedup": t_ref / t,
                         "call_backward_speedup": tb_ref / tb, "max_abs_diff_vs_fp32_contiguous": diff})
            print(f"batch {batch} {prec} {fmt:13s} compile={comp!s:5s} call {t * 1e3:7.2f} ms (x{t_ref / t:4.2f})  "
                  f"+backward {tb * 1e3:7.2f} ms (x{tb_ref / tb:4.2f})  max|diff| {diff:.2e}")
    out = {"device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "platform": platform.platform(),
           "prior": args.prior_path or "phantom-brain-64", "rounds": args.rounds, "calls_per_timing": args.calls,
           "note": "medians over interleaved rounds; the machine was shared with other jobs", "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
