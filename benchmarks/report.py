"""`bench report RUN_DIR`: the summary table and a figure of targets, reconstructions and errors.

The targets come from RUN_DIR/targets/<index>.npy (saved by `bench run`), so a report never depends on the
current folder or on the dataset still being there; a run made before targets were saved falls back to
rebuilding them from the dataset named in its config.yaml, with a warning. The helpers here (reading a
run's images, naming a run) are shared with the results page (benchmarks/site.py).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from benchmarks.results import RunDir, aggregate, problem_info  # noqa: E402
from inverse_problems.complex import magnitude  # noqa: E402


def image_2d(array: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) for display: the modulus for C = 2 (real, imaginary), the image for C = 1."""
    return magnitude(torch.from_numpy(np.asarray(array, dtype=np.float32))[None])[0, 0].numpy()


def method_name(names: Any) -> str:
    """algorithm[+adapter...] from a config's `names`."""
    return names["algorithm"] + "".join("+" + a for a in (names.get("adapters") or []))


def setting_parts(names: Any, problem_options: dict[str, Any], info: dict[str, float]) -> list[str]:
    """The words that say what was measured: prior, shift, R (realised, else asked for) and coils."""
    parts = [f"prior {names.get('prior') or '–'}", f"shift {names.get('shift') or 'none'}"]
    accel = info.get("acceleration", problem_options.get("acceleration"))
    if accel is not None:
        parts.append(f"R = {float(accel):.1f}")
    coils = info.get("coils", problem_options.get("coils"))
    if coils is not None:
        parts.append(f"{int(coils)} coil{'s' if int(coils) != 1 else ''}")
    return parts


def run_title(cfg: DictConfig, rows: list[dict[str, Any]]) -> str:
    """E.g. `daps+tda on cs_mri (phantom-brain-t2): prior phantom-brain-64, shift none, R = 4.0, 8 coils`."""
    names = OmegaConf.to_container(cfg.names)
    opts = OmegaConf.to_container(cfg.get("problem") or OmegaConf.create({}), resolve=True)
    return (f"{method_name(names)} on {names['problem']} ({names.get('dataset')}): "
            + ", ".join(setting_parts(names, opts, problem_info(rows))))


class Targets:
    """Ground truth of a run's samples: RUN_DIR/targets/<index>.npy, or, for a run made before targets were
    saved, the item rebuilt from the dataset in its config.yaml (once per run, with a warning)."""

    def __init__(self, run_dir: Path, cfg: DictConfig) -> None:
        self.run_dir, self.cfg = Path(run_dir), cfg
        self.rebuilt = False
        self._dataset = None

    def __call__(self, index: int) -> np.ndarray:
        path = self.run_dir / "targets" / f"{index:06d}.npy"
        if path.exists():
            return np.load(path)
        if self._dataset is None:
            from benchmarks.runner import build_dataset

            warnings.warn(f"{self.run_dir} has no saved targets (made before runs saved targets/); rebuilding them "
                          f"from dataset {self.cfg.names.dataset!r}: this is right only if that dataset is unchanged")
            try:
                self._dataset = build_dataset(self.cfg.names.dataset, self.cfg, self.cfg.run.split)
            except Exception as exc:
                raise FileNotFoundError(f"{path} is missing and dataset {self.cfg.names.dataset!r} could not be "
                                        f"rebuilt ({exc}); rerun the run with this version of `bench run`") from exc
            self.rebuilt = True
        return self._dataset[index]["image"].numpy()


def samples_figure(run_dir: Path, cfg: DictConfig, rows: list[dict[str, Any]], title: str) -> plt.Figure:
    """Three rows per sample column: target, reconstruction (one grey scale, with its colour bar) and
    |error| of the displayed images (one scale for all samples, with its colour bar)."""
    targets = Targets(run_dir, cfg)
    pairs = [(image_2d(targets(r["index"])), image_2d(np.load(run_dir / r["reconstruction"]))) for r in rows]
    lo = min(float(t.min()) for t, _ in pairs)
    hi = max(float(t.max()) for t, _ in pairs)
    err_max = max(float(np.abs(x - t).max()) for t, x in pairs) or 1.0
    fig, axes = plt.subplots(3, len(rows), figsize=(2.4 * len(rows) + 1.2, 7.4), squeeze=False,
                             layout="constrained")
    for j, (r, (target, recon)) in enumerate(zip(rows, pairs)):
        label = f"{r['psnr']:.2f} dB" if r.get("psnr") is not None else r.get("status", "")
        im = axes[0, j].imshow(target, cmap="gray", vmin=lo, vmax=hi)
        axes[1, j].imshow(recon, cmap="gray", vmin=lo, vmax=hi)
        em = axes[2, j].imshow(np.abs(recon - target), cmap="inferno", vmin=0, vmax=err_max)
        for i, text in enumerate([f"target #{r['index']}", f"reconstruction, {label}", "|error|"]):
            axes[i, j].set_title(text, fontsize=8)
            axes[i, j].axis("off")
    fig.colorbar(im, ax=axes[:2, :].ravel().tolist(), shrink=0.8, label="intensity (target units)")
    fig.colorbar(em, ax=axes[2, :].ravel().tolist(), shrink=0.8, label="|error|")
    fig.suptitle(title + (" [targets rebuilt from the dataset]" if targets.rebuilt else ""), fontsize=9)
    return fig


def report(run_dir: Path, max_samples: int = 4) -> str:
    from benchmarks.runner import format_table

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    all_rows = RunDir(run_dir).all_samples()
    summary = aggregate(all_rows)
    summary["problem_info"] = problem_info(all_rows)
    title = run_title(cfg, all_rows)
    text = title + "\n" + format_table(summary)
    # samples of prospective data (target_convention null) have no target to draw
    rows = sorted((r for r in all_rows if r.get("reconstruction") and r.get("target_convention", "") is not None),
                  key=lambda r: r["index"])[:max_samples]
    if rows:
        fig = samples_figure(run_dir, cfg, rows, title)
        (run_dir / "figures").mkdir(exist_ok=True)
        path = run_dir / "figures" / "samples.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        text += f"\nfigure: {path}"
    return text
