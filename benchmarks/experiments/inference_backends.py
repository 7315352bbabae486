"""One forward call of the shipped prior `brain-64` on each inference backend: eager PyTorch (channels_last, as the
runner sets it on a CPU: run.memory_format=auto) and ONNX Runtime (prior.backend=onnxruntime, CPU provider, all
graph optimisations), one thread each; with --openvino also OpenVINO's CPU runtime on the same exported graph
(reshaped to each batch size, f32 inference precision), which is measured here only and is no prior option.

The backends alternate call by call (A B B A ...) at each batch size, so that a shared machine's changing load
affects both alike; each figure is a median over `--rounds` calls of the process's CPU time and of wall time, with
the 1-minute load average read beside each call. Also records the largest output difference from eager PyTorch.
Writes benchmarks/results/inference_backends.json.

    OMP_NUM_THREADS=1 python benchmarks/experiments/inference_backends.py [--batch 1 4] [--rounds 60] [--openvino]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from priors.edm import EDMPrior
from priors.shipped import brain_64


Call = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def timed(call: Call, x: torch.Tensor, sigma: torch.Tensor) -> tuple[float, float, float]:
    """(CPU seconds, wall seconds, 1-minute load average) of one no-grad call."""
    load = os.getloadavg()[0]
    with torch.no_grad():
        c0, w0 = time.process_time(), time.perf_counter()
        call(x, sigma)
        return time.process_time() - c0, time.perf_counter() - w0, load


def openvino_call(graph: Path, batch: int) -> Call:
    """The exported graph on OpenVINO's CPU runtime, reshaped to `batch`, one thread, f32."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(graph))
    model.reshape({"x": [batch, 2, 64, 64], "sigma": [batch]})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32",
                                                 "NUM_STREAMS": 1})
    request = compiled.create_infer_request()

    def call(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        request.infer({"x": x.numpy(), "sigma": sigma.numpy()})
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    return call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--rounds", type=int, default=60, help="calls per backend and batch size (alternating)")
    ap.add_argument("--openvino", action="store_true", help="also time OpenVINO on the exported graph")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "inference_backends.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    priors = {"torch": brain_64().set_execution("fp32", "channels_last"),
              "onnxruntime": brain_64(backend="onnxruntime").set_execution("fp32", "channels_last")}
    import onnxruntime

    versions = {"onnxruntime": onnxruntime.__version__}
    if args.openvino:
        import openvino

        versions["openvino"] = openvino.__version__
    rows: list[dict[str, Any]] = []
    for batch in args.batch:
        g = torch.Generator().manual_seed(batch)
        sigma = torch.exp(torch.empty(batch).uniform_(-4.0, 4.0, generator=g))
        x = torch.randn((batch, 2, 64, 64), generator=g) * (1 + sigma.view(-1, 1, 1, 1))
        calls: dict[str, Call] = {name: p.denoise for name, p in priors.items()}
        with torch.no_grad():  # warm-up (the first ONNX call exports the graph or reads it from the cache)
            outs = {name: call(x, sigma) for name, call in calls.items()}
        if args.openvino:
            calls["openvino"] = openvino_call(priors["onnxruntime"]._onnx.path, batch)
            outs["openvino"] = calls["openvino"](x, sigma)
        for call in calls.values():
            call(x, sigma)
        diffs = {name: float((out - outs["torch"]).abs().max()) for name, out in outs.items() if name != "torch"}
        diff = diffs["onnxruntime"]
        times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in calls}
        order = list(calls)
        for r in range(args.rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                times[name].append(timed(calls[name], x, sigma))
        row: dict[str, Any] = {"batch": batch, "max_abs_diff": diff}
        if args.openvino:
            row["openvino_max_abs_diff"] = diffs["openvino"]
        for name, ts in times.items():
            loads = [t[2] for t in ts]
            row[name] = {"cpu_seconds": statistics.median(t[0] for t in ts),
                         "wall_seconds": statistics.median(t[1] for t in ts),
                         "load_1min": [min(loads), statistics.median(loads), max(loads)]}
        for name in calls:
            if name != "torch":
                row[f"cpu_ratio_torch_over_{name}"] = row["torch"]["cpu_seconds"] / row[name]["cpu_seconds"]
        row["wall_ratio_torch_over_onnxruntime"] = row["torch"]["wall_seconds"] / row["onnxruntime"]["wall_seconds"]
        rows.append(row)
        others = ", ".join(f"{name} {row[name]['cpu_seconds'] * 1e3:.1f} ms (x{row[f'cpu_ratio_torch_over_{name}']:.2f}, "
                           f"max|diff| {diffs[name]:.1e})" for name in calls if name != "torch")
        print(f"batch {batch}, load {row['torch']['load_1min'][1]:.1f}: CPU per call: torch "
              f"{row['torch']['cpu_seconds'] * 1e3:.1f} ms, {others}")
    out = {"command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv), "prior": "brain-64", "threads": 1,
           "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
           "measured_under_load": max(r["torch"]["load_1min"][2] for r in rows) > 1.5,
           "torch": torch.__version__, **versions, "platform": platform.platform(),
           "cpu_count": os.cpu_count(), "rounds": args.rounds, "torch_memory_format": "channels_last",
           "note": "medians over alternating calls on a machine shared with other jobs; load_1min is [min, median, "
                   "max] of the 1-minute load average read before each call", "rows": rows}
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    if "main_command" in previous:  # the end-to-end runs recorded beside the call timings (docs/speed.md) stay
        out["main_command"] = previous["main_command"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
