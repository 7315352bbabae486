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
from inverse_problems.operators.complex import magnitude  # noqa: E402


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
            from benchmarks.build import build_dataset

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


def channels_figure(run_dir: Path, cfg: DictConfig, rows: list[dict[str, Any]], title: str,
                    names: tuple[str, ...]) -> plt.Figure:
    """Images with more than two channels (e.g. MRSI metabolite maps): two rows per channel (target,
    reconstruction; one colour scale per channel, with its colour bar), one column per sample (frame)."""
    targets = Targets(run_dir, cfg)
    pairs = [(np.asarray(targets(r["index"]), dtype=np.float64), np.load(run_dir / r["reconstruction"]))
             for r in rows]
    n_ch = pairs[0][0].shape[0]
    names = tuple(names) if len(names) == n_ch else tuple(f"channel {c}" for c in range(n_ch))
    fig, axes = plt.subplots(2 * n_ch, len(rows), figsize=(2.0 * len(rows) + 1.4, 1.9 * 2 * n_ch), squeeze=False,
                             layout="constrained")
    for c, name in enumerate(names):
        hi = max(float(t[c].max()) for t, _ in pairs) or 1.0
        for j, (r, (target, recon)) in enumerate(zip(rows, pairs)):
            nrmse = (r.get("problem_metrics") or {}).get(f"nrmse_{name}")
            when = f", t = {r['problem_record']['time_min']:.0f} min" if (r.get("problem_record") or {}).get(
                "time_min") is not None else ""
            im = axes[2 * c, j].imshow(target[c], cmap="magma", vmin=0, vmax=hi)
            axes[2 * c + 1, j].imshow(recon[c], cmap="magma", vmin=0, vmax=hi)
            axes[2 * c, j].set_title(f"{name} target #{r['index']}{when}", fontsize=7)
            axes[2 * c + 1, j].set_title(f"{name} recon" + (f", NRMSE {nrmse:.3f}" if nrmse is not None else ""),
                                         fontsize=7)
            axes[2 * c, j].axis("off")
            axes[2 * c + 1, j].axis("off")
        fig.colorbar(im, ax=axes[2 * c:2 * c + 2, :].ravel().tolist(), shrink=0.8, label=f"{name} (target units)")
    fig.suptitle(title + (" [targets rebuilt from the dataset]" if targets.rebuilt else ""), fontsize=9)
    return fig


def kinetics_figure(rows: list[dict[str, Any]], names: tuple[str, ...], title: str) -> plt.Figure | None:
    """One panel per channel: ROI-mean curves over time, true (solid) vs reconstructed (dashed), per subject and
    ROI, from the rows' `problem_record`s (MRSI: tumour, GM, WM); None if the rows carry no curves."""
    recs = [r["problem_record"] for r in rows if r.get("status") == "ok" and (r.get("problem_record") or {}).get(
        "roi_true")]
    if not recs:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False, layout="constrained")
    subjects = sorted({str(r.get("subject")) for r in recs})
    for si, subject in enumerate(subjects):
        sub = sorted((r for r in recs if str(r.get("subject")) == subject), key=lambda r: r.get("frame") or 0)
        t = [r.get("time_min") if r.get("time_min") is not None else r.get("frame") for r in sub]
        for ri, roi in enumerate(sorted({k for r in sub for k in r["roi_true"]})):
            colour = f"C{(si * 3 + ri) % 10}"
            keep = [k for k, r in enumerate(sub) if roi in r["roi_true"]]
            for c, name in enumerate(names):
                ax = axes[0, c]
                ax.plot([t[k] for k in keep], [sub[k]["roi_true"][roi][c] for k in keep], "-o", color=colour, ms=3,
                        label=f"{roi} true" + (f" ({subject})" if len(subjects) > 1 else ""))
                ax.plot([t[k] for k in keep], [sub[k]["roi_recon"][roi][c] for k in keep], "--x", color=colour, ms=4,
                        label=f"{roi} recon")
    for c, name in enumerate(names):
        axes[0, c].set_title(name, fontsize=9)
        axes[0, c].set_xlabel("time (min)")
    axes[0, 0].set_ylabel("ROI mean (target units, mM)")
    axes[0, -1].legend(fontsize=6, loc="best")
    fig.suptitle("kinetic curves: " + title, fontsize=9)
    return fig


def spectrum_figure(run_dir: Path, cfg: DictConfig, row: dict[str, Any], problem: Any, title: str) -> plt.Figure:
    """The spectrum of one voxel (the target's brightest voxel of the last channel, e.g. lactate) from the true
    and the reconstructed maps, through the problem's nominal line shapes (`Problem.voxel_spectrum`)."""
    target = torch.from_numpy(np.asarray(Targets(run_dir, cfg)(row["index"]), dtype=np.float32))
    recon = torch.from_numpy(np.load(run_dir / row["reconstruction"]).astype(np.float32))
    flat = int(torch.argmax(target[-1]))
    i, j = divmod(flat, target.shape[-1])
    ppm, true = problem.voxel_spectrum(target, i, j)
    _, rec = problem.voxel_spectrum(recon, i, j)
    fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
    ax.plot(ppm.numpy(), true.numpy(), label="true maps")
    ax.plot(ppm.numpy(), rec.numpy(), "--", label="reconstructed maps")
    ax.invert_xaxis()
    ax.set_xlabel("chemical shift (ppm)")
    ax.set_ylabel("real spectrum (a.u.)")
    ax.legend(fontsize=7)
    ax.set_title(f"voxel ({i}, {j}) of sample #{row['index']}: {title}", fontsize=8)
    return fig


def _problem(cfg: DictConfig) -> Any:
    """The run's problem built from its config (None where it is not registered or does not build)."""
    from benchmarks import registry

    try:
        opts = OmegaConf.to_container(cfg.get("problem") or OmegaConf.create({}), resolve=True)
        return registry.build("problems", str(cfg.names.problem), **opts)
    except Exception:  # a report still draws the maps without the problem's extras
        return None


def report(run_dir: Path, max_samples: int = 4) -> str:
    from benchmarks.summary import format_table

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    all_rows = RunDir(run_dir).all_samples()
    summary = aggregate(all_rows)
    summary["problem_info"] = problem_info(all_rows)
    extra = sorted({m for r in all_rows for m in (r.get("problem_metrics") or {})})
    if extra:  # the problem's own per-sample metrics, as the run's summary aggregates them
        summary["problem_metrics"] = aggregate([{"status": r.get("status"), **(r.get("problem_metrics") or {})}
                                                for r in all_rows], extra)["metrics"]
    title = run_title(cfg, all_rows)
    text = title + "\n" + format_table(summary)
    # samples of prospective data (target_convention null) have no target to draw
    rows = sorted((r for r in all_rows if r.get("reconstruction") and r.get("target_convention", "") is not None),
                  key=lambda r: r["index"])[:max_samples]
    for m, v in (summary_run_metrics(run_dir) or {}).items():
        text += f"\n{m:<22}{'null' if v is None else format(v, '.4g'):>12}  (per run)"
    if rows:
        (run_dir / "figures").mkdir(exist_ok=True)
        problem = _problem(cfg)
        names = tuple(getattr(problem, "channel_names", ()) or ())
        figures: dict[str, plt.Figure | None] = {}
        if np.load(run_dir / rows[0]["reconstruction"]).shape[0] > 2:  # every channel, not channel 0 only
            figures["samples.png"] = channels_figure(run_dir, cfg, rows, title, names)
            if names:
                figures["kinetics.png"] = kinetics_figure(all_rows, names, title)
            if problem is not None and hasattr(problem, "voxel_spectrum"):
                figures["spectrum.png"] = spectrum_figure(run_dir, cfg, rows[-1], problem, title)
        else:
            figures["samples.png"] = samples_figure(run_dir, cfg, rows, title)
        for name, fig in figures.items():
            if fig is None:
                continue
            path = run_dir / "figures" / name
            fig.savefig(path, dpi=100)
            plt.close(fig)
            text += f"\nfigure: {path}"
    return text


def summary_run_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The per-run problem metrics of RUN_DIR/summary.json (None if absent or unreadable)."""
    import json

    try:
        return json.loads((Path(run_dir) / "summary.json").read_text()).get("problem_run_metrics")
    except (OSError, ValueError, AttributeError):
        return None
