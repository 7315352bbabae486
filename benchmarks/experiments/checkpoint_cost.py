"""Cost of the field's checkpoints: loading a full-size prior from its file and one denoiser call at batch 1.

For each preset (default: the InverseBench MRI DhariwalUNet, 320x320, 2 channels; optionally DPS's FFHQ-256
ADM) a checkpoint of random weights is written in the real file format ({'ema': state_dict} for EDM /
InverseBench, a bare state dict for guided-diffusion), then timed: the prior's construction from the file
(torch.load + build + strict load_state_dict), and no-grad D(x, sigma) calls at batch 1 (the first call
separately; median of the rest).

    python benchmarks/experiments/checkpoint_cost.py [--which edm adm] [--device cpu|cuda] [--calls 3]
                                                 [--out benchmarks/results/checkpoint_cost.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

CASES = {"edm": ("inversebench-mri-knee", {"sigma": 1.0}), "adm": ("ffhq256-dps", {"sigma": 1.0})}


def write_random_checkpoint(which: str, preset: str, folder: Path) -> Path:
    if which == "edm":
        from priors.edm import PRESETS, build_network

        net, path = build_network(PRESETS[preset]), folder / "edm.pt"
        torch.save({"ema": net.state_dict()}, path)
    else:
        from priors.adm import PRESETS, build_unet

        net, path = build_unet(PRESETS[preset]), folder / "adm.pt"
        torch.save(net.state_dict(), path)
    return path


def measure(which: str, device: torch.device, calls: int) -> dict:
    preset, opts = CASES[which]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_random_checkpoint(which, preset, Path(tmp))
        size_mb = path.stat().st_size / 2**20
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if which == "edm":
            from priors.edm import EDMPrior

            prior = EDMPrior(path=str(path), preset=preset)
        else:
            from priors.adm import ADMPrior

            prior = ADMPrior(path=str(path), preset=preset)
        prior = prior.to(device).eval()
        if device.type == "cuda":
            torch.cuda.synchronize()
        load_s = time.perf_counter() - t0
    x = torch.randn(1, prior.channels, *prior.resolution, device=device)
    times = []
    with torch.no_grad():
        for _ in range(calls + 1):
            t0 = time.perf_counter()
            prior.denoise(x, opts["sigma"])
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return {"prior": which, "preset": preset, "file_mb": round(size_mb, 1),
            "parameters": sum(p.numel() for p in prior.parameters()), "load_s": round(load_s, 3),
            "first_call_s": round(times[0], 4), "call_s_median": round(statistics.median(times[1:]), 4),
            "calls": calls, "image_shape": [prior.channels, *prior.resolution]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--which", nargs="+", default=["edm"], choices=sorted(CASES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    rows = [measure(w, device, args.calls) for w in args.which]
    info = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    for r in rows:
        print(json.dumps(r))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"environment": info, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
