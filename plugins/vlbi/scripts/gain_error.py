"""How well TDA estimated the station gains in a run: the RMS of (adapted - true) log-gain amplitude over the stations
that observed, per sample, beside the RMS of the true ones (what leaving them at 0 would give). The true gains are
drawn again from the run's seed and sample ids (every draw is per sample, so they are the run's own).
Usage: python gain_error.py RUN_DIR"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import yaml

from benchmarks import registry
from inverse_problems.operators.random import SampleGenerators


def main(run: Path) -> None:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    rows = [json.loads(s) for s in (run / "samples.jsonl").read_text().splitlines() if s.strip()]
    trace = [json.loads(s) for s in (run / "adaptation.jsonl").read_text().splitlines() if s.strip()]
    problem = registry.build("problems", "blackhole", **(cfg.get("problem") or {}))
    dataset = registry.build("datasets", "synthetic-eht", split="test", **(cfg.get("dataset") or {}))
    errs, base = [], []
    for batch in trace:
        items = [dataset[i] for i in batch["indices"]]
        gen = SampleGenerators.seeded(int(cfg["run"]["seed"]), [it["id"] for it in items], "cpu")
        true = problem.instance(items, "cpu", gen).true_operator.log_gain.detach()
        got = torch.tensor(batch["trace"][0]["final"]["log_gain"])
        seen = sorted(set(problem.obs.station1.tolist()) | set(problem.obs.station2.tolist()))
        errs.append((got - true)[:, seen].pow(2).mean(1).sqrt())
        base.append(true[:, seen].pow(2).mean(1).sqrt())
    e, b = torch.cat(errs), torch.cat(base)
    print(f"{run.name}: {len(rows)} samples, RMS log-gain error {float(e.mean()):.4f} ± {float(e.std()):.4f} "
          f"(gains left at 1: {float(b.mean()):.4f} ± {float(b.std()):.4f})")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
