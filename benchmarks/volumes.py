"""fastMRI volumes of a run: a volume's slices stacked from the saved files (in the file's units), fastMRI's
per-volume metrics, and the submission files of the samples without a target (prospective data)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmarks.metrics import volume_metrics


def volume_stack(rows: list[dict[str, Any]], path: Path, key: str) -> Any:
    """(slices, H, W) magnitudes of the rows' `key` files (reconstruction | target), in the file's units."""
    import numpy as np

    out = []
    for r in sorted(rows, key=lambda r: r.get("slice", 0)):
        a = np.load(path / r[key]).astype(np.float64)
        out.append(np.sqrt((a**2).sum(0)) * float(r.get("data_scale") or 1.0))
    return np.stack(out)


def per_volume(rows: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """fastMRI's per-volume metrics (benchmarks.metrics.volume_metrics) of every volume whose slices all finished
    with a target and saved files; slices in the file's units (x data_scale), as fastMRI scores them."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("volume") is not None:
            groups.setdefault(str(r["volume"]), []).append(r)
    out = []
    for vol, vrows in sorted(groups.items()):
        if not all(r.get("status") == "ok" and r.get("target") and r.get("reconstruction") for r in vrows):
            continue
        m = volume_metrics(volume_stack(vrows, path, "reconstruction"), volume_stack(vrows, path, "target"))
        out.append({"volume": vol, "slices": len(vrows), "status": "ok", **m})
    return out


def write_submission(rows: list[dict[str, Any]], path: Path) -> str:
    """RUN_DIR/submission/<volume>.h5 with `reconstruction` (slices, H, W) float32 magnitude in the file's units
    (fastMRI's submission layout), for the samples without a target."""
    import h5py

    folder = path / "submission"
    folder.mkdir(exist_ok=True)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("reconstruction"):
            groups.setdefault(str(r.get("volume") or r["id"]), []).append(r)
    for vol, vrows in groups.items():
        tmp = folder / f".{vol}.h5.tmp"
        with h5py.File(tmp, "w") as f:
            f.create_dataset("reconstruction", data=volume_stack(vrows, path, "reconstruction").astype("float32"))
        os.replace(tmp, folder / f"{vol}.h5")
    return "submission/"
