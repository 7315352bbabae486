"""`bench report RUN_DIR`: the summary table and a figure of targets, reconstructions and errors."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from benchmarks.results import RunDir, aggregate  # noqa: E402
from benchmarks.runner import build_dataset, format_table  # noqa: E402
from inverse_problems.complex import magnitude  # noqa: E402


def report(run_dir: Path, max_samples: int = 4) -> str:
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    rows = [r for r in RunDir(run_dir).all_samples() if r.get("reconstruction")]
    summary = aggregate(RunDir(run_dir).all_samples())
    summary["problem_info"] = {}
    text = format_table(summary)
    rows = sorted(rows, key=lambda r: r["index"])[:max_samples]
    if rows:
        dataset = build_dataset(cfg.names.dataset, cfg, cfg.run.split)
        fig, axes = plt.subplots(3, len(rows), figsize=(2.6 * len(rows), 7.8), squeeze=False)
        for j, r in enumerate(rows):
            target = magnitude(dataset[r["index"]]["image"][None])[0, 0]
            recon = magnitude(torch.from_numpy(np.load(run_dir / r["reconstruction"]))[None])[0, 0]
            vmax = float(target.max())
            for i, (img, title) in enumerate([(target, "target"), (recon, f"{r['psnr']:.2f} dB" if r.get("psnr") else
                                                                     r["status"]), ((recon - target).abs(), "|error|")]):
                axes[i, j].imshow(img.numpy(), cmap="gray", vmin=0, vmax=vmax if i < 2 else vmax / 4)
                axes[i, j].set_title(title, fontsize=9)
                axes[i, j].axis("off")
        (run_dir / "figures").mkdir(exist_ok=True)
        path = run_dir / "figures" / "samples.png"
        fig.suptitle(f"{cfg.names.algorithm} on {cfg.names.problem}")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        text += f"\nfigure: {path}"
    return text
