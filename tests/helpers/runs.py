"""Run directories written by hand, as `bench run` writes them, for the leaderboard and site tests."""
from __future__ import annotations

import json

from omegaconf import OmegaConf


def fake_run(path, algorithm, psnr, adapters=(), shift=None, failed=0, options=None, start=0, prior="p",
             prior_options=None, prior_hash="sha256:aa", scheme="online", split="test", tuning=None, problem=None,
             trace=None, ids=None, problem_name="cs_mri"):
    """A run directory as `bench run` writes it (config.yaml, environment.json, samples.jsonl[, adaptation.jsonl]);
    sample i has index start + i and id `s<index>` unless `ids` are given."""
    path.mkdir(parents=True)
    names = {"problem": problem_name, "algorithm": algorithm, "adapters": list(adapters), "prior": prior, "dataset": "d",
             "shift": shift}
    if prior_hash != "absent":
        names["prior_hash"] = prior_hash
    cfg = {"names": names, "run": {"scheme": scheme, "split": split, "seed": 0}, "algorithm": options or {},
           "problem": problem or {}, "prior": prior_options or {}}
    if tuning is not None:
        cfg["tuning"] = tuning
    OmegaConf.save(OmegaConf.create(cfg), path / "config.yaml")
    (path / "environment.json").write_text(json.dumps({"device": "cpu"}))
    n = len(psnr) + failed
    ids = ids or [f"s{start + i}" for i in range(n)]
    with open(path / "samples.jsonl", "w") as f:
        for i, v in enumerate(psnr):
            f.write(json.dumps({"index": start + i, "id": ids[i], "status": "ok", "psnr": v, "ssim": 0.5, "nmse": 0.01,
                                "seconds": 2.0, "nfe": 100, "problem_acceleration": 4.0}) + "\n")
        for j in range(failed):
            k = len(psnr) + j
            f.write(json.dumps({"index": start + k, "id": ids[k], "status": "failed",
                                "reason": "diverged at step 3", "psnr": None}) + "\n")
    if trace is not None:
        with open(path / "adaptation.jsonl", "w") as f:
            f.write(json.dumps({"indices": [start], "trace": trace}) + "\n")
    return path
