"""`bench leaderboard RUNS... --html DIR`: the leaderboard as a static results page.

DIR/index.html opens from disk (file://), needs no server and loads nothing from outside DIR: the CSS and
the JavaScript are inline, figures are PNG files beside it. It holds

- the leaderboard table, sortable by clicking a column header and filterable by problem, shift and tier
  (tier is "simulated" unless an entry says otherwise) and by free text;
- per problem setting (problem and its options, dataset, shift, tier): a figure grid of target, zero-filled
  and each method's reconstructions with their |error| maps, one shared colour bar for the images and one
  for the errors; and the metric curves: mean PSNR (± std) against NFE, and every sample's PSNR per method;
- a page per run with its config.yaml (copied into DIR/configs/, so links work from disk);
- above the table, one matrix per problem family (benchmarks.comparison: methods by settings, "mean [CI]", the best
  bold, ties marked); a click on a cell opens that row's page, rows/<row_id>.html: its statistics against the
  setting's reference, its runs' configs and its setting's figures.

The zero-filled column comes from a `zero-filled` run of the same setting among the given runs (runs do
not store their measurements); without one the column is left out and the page says so.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import textwrap
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from benchmarks import comparison  # noqa: E402
from benchmarks.leaderboard import _fmt, method_label, tuning_label  # noqa: E402
from benchmarks.report import Targets, image_2d  # noqa: E402
from benchmarks.results import RunDir  # noqa: E402

GENERATOR = "medtta-bench results page"
METRIC_COLUMNS = (("psnr", "PSNR"), ("ssim", "SSIM"), ("nmse", "NMSE"), ("data_misfit", "misfit"),
                  ("seconds", "s/sample"), ("nfe", "NFE"))
OPTIONAL_COLUMNS = ("scheme", "tuning")  # shown when some entry carries them
ZERO_FILLED = "zero-filled"


class SiteError(ValueError):
    """An output folder that cannot take the page."""


# ---------------------------------------------------------------------------------------------------------
# reading entries defensively (other fields may be added to the leaderboard; missing ones get defaults)

def tier(entry: dict[str, Any]) -> str:
    return str(entry.get("tier") or "simulated")


def prior_hash(entry: dict[str, Any]) -> str | None:
    """A hash of the prior's weights, under whichever key the leaderboard names it (`prior_hash`, ...)."""
    for k, v in entry.items():
        if "hash" in k and isinstance(v, str) and v:
            return v
    return None


def _text(value: Any) -> str:
    if value is None or value == "":
        return "–"
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def setting_key(entry: dict[str, Any]) -> str:
    """Entries with one key measured the same problem on the same data: their figures share a grid."""
    return json.dumps([entry.get("problem"), entry.get("problem_options") or {}, entry.get("dataset"),
                       entry.get("dataset_options") or {}, entry.get("shift"), tier(entry)], sort_keys=True)


def setting_title(entry: dict[str, Any]) -> str:
    info, opts = entry.get("problem_info") or {}, entry.get("problem_options") or {}
    parts = [str(entry.get("problem")), str(entry.get("dataset")), f"shift {entry.get('shift') or 'none'}"]
    accel = info.get("acceleration", opts.get("acceleration"))
    if accel is not None:
        parts.append(f"R = {float(accel):.1f}")
    if opts.get("coils") is not None:
        parts.append(f"{opts['coils']} coil{'s' if opts['coils'] != 1 else ''}")
    if tier(entry) != "simulated":
        parts.append(tier(entry))
    return " · ".join(parts)


def is_zero_filled(entry: dict[str, Any]) -> bool:
    return entry.get("algorithm") == ZERO_FILLED and not entry.get("adapters")


# ---------------------------------------------------------------------------------------------------------
# the figures

def _ok_rows(run: Path) -> dict[int, dict[str, Any]]:
    return {int(r["index"]): r for r in RunDir(run).all_samples()
            if r.get("status") == "ok" and r.get("reconstruction") and (run / r["reconstruction"]).exists()}


def _first_run(entry: dict[str, Any]) -> tuple[Path, dict[int, dict[str, Any]]] | None:
    """The first of the entry's runs that kept reconstructions, with its finished samples by index."""
    for rid in entry.get("run_ids") or []:
        rows = _ok_rows(Path(rid))
        if rows:
            return Path(rid), rows
    return None


def _wrap(text: str, width: int = 18) -> str:
    return "\n".join(textwrap.wrap(text, width, break_long_words=True)) or text


def samples_grid(methods: list[tuple[str, Path, dict[int, dict[str, Any]]]], indices: list[int],
                 targets: dict[int, np.ndarray], zero_filled: tuple[Path, dict[int, dict[str, Any]]] | None,
                 title: str) -> plt.Figure:
    """One row each for the target, zero-filled and every method; the columns are the samples' images (one
    grey scale, colour bar below them) and then their |error| maps (one scale, colour bar below them)."""
    rows = ([("zero-filled", *zero_filled)] if zero_filled else []) + methods
    ns = len(indices)
    fig, axes = plt.subplots(1 + len(rows), 2 * ns, figsize=(1.45 * 2 * ns + 1.6, 1.45 * (1 + len(rows)) + 0.9),
                             squeeze=False, layout="constrained")
    tgt = {i: image_2d(targets[i]) for i in indices}
    shown = [[image_2d(np.load(run / samples[i]["reconstruction"])) for i in indices] for _, run, samples in rows]
    lo = min(float(t.min()) for t in tgt.values())
    hi = max(float(t.max()) for t in tgt.values())
    err_max = max(float(np.abs(x - tgt[i]).max()) for imgs in shown for i, x in zip(indices, imgs)) or 1.0
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.spines[:].set_visible(False)
    for c, i in enumerate(indices):
        im = axes[0, c].imshow(tgt[i], cmap="gray", vmin=lo, vmax=hi)
        axes[0, c].set_title(f"sample #{i}", fontsize=8)
        axes[0, ns + c].set_title(f"|error| #{i}", fontsize=8)
    axes[0, 0].set_ylabel("target", fontsize=8)
    for r, ((label, _, samples), imgs) in enumerate(zip(rows, shown), start=1):
        axes[r, 0].set_ylabel(_wrap(label, 22), fontsize=8)
        for c, (i, img) in enumerate(zip(indices, imgs)):
            axes[r, c].imshow(img, cmap="gray", vmin=lo, vmax=hi)
            psnr = samples[i].get("psnr")
            if psnr is not None:
                axes[r, c].text(0.03, 0.04, f"{psnr:.2f} dB", color="w", fontsize=7, transform=axes[r, c].transAxes,
                                bbox={"facecolor": "k", "alpha": 0.6, "pad": 1, "lw": 0})
            em = axes[r, ns + c].imshow(np.abs(img - tgt[i]), cmap="inferno", vmin=0, vmax=err_max)
    fig.colorbar(im, ax=axes[:, :ns].ravel().tolist(), location="bottom", shrink=0.9, aspect=30, label="intensity")
    fig.colorbar(em, ax=axes[:, ns:].ravel().tolist(), location="bottom", shrink=0.9, aspect=30, label="|error|")
    fig.suptitle(title, fontsize=9)
    return fig


def curves(entries: list[dict[str, Any]], title: str) -> plt.Figure | None:
    """Mean PSNR ± std against NFE (symlog: classical methods sit at 0), and each sample's PSNR per method."""
    points = [(method_label(e), e["metrics"].get("psnr", {}), e.get("nfe")) for e in entries]
    points = [(lab, m, nfe) for lab, m, nfe in points if m.get("mean") is not None]
    per_sample = []
    for e in entries:
        vals = [r["psnr"] for rid in e.get("run_ids") or [] for r in RunDir(Path(rid)).all_samples()
                if r.get("status") == "ok" and r.get("psnr") is not None]
        if vals:
            per_sample.append((method_label(e), vals))
    if not points:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 0.9 + 0.28 * max(len(per_sample), 8)), layout="constrained")
    for k, (lab, m, nfe) in enumerate(points):
        a.errorbar([nfe or 0], [m["mean"]], yerr=[m.get("std") or 0], fmt="o", ms=4, capsize=2, color=f"C{k % 10}")
        a.annotate(_wrap(lab, 28), (nfe or 0, m["mean"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
    a.set_xscale("symlog", linthresh=1)
    a.set_xlim(-0.5, max(10.0, 2.0 * max(nfe or 0 for _, _, nfe in points)))
    a.set_xlabel("NFE (denoiser calls per sample)")
    a.set_ylabel("PSNR (dB), mean ± std")
    a.grid(alpha=0.3)
    for k, (lab, vals) in enumerate(per_sample):
        b.plot(vals, [k] * len(vals), "o", ms=3, alpha=0.7, color=f"C{k % 10}")
    b.set_yticks(range(len(per_sample)), [_wrap(lab, 34) for lab, _ in per_sample], fontsize=7)
    b.invert_yaxis()
    b.set_xlabel("PSNR (dB) of each sample")
    b.grid(alpha=0.3, axis="x")
    fig.suptitle(title, fontsize=9)
    return fig


def _save(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=80)
    plt.close(fig)


def setting_figures(k: int, entries: list[dict[str, Any]], out: Path, max_samples: int) -> tuple[list[str], list[str]]:
    """Write the figures of one setting; returns their paths (relative to out) and notes for the page."""
    title = setting_title(entries[0])
    notes, figures = [], []
    zf_entries = [e for e in entries if is_zero_filled(e)]
    zero_filled = _first_run(zf_entries[0]) if zf_entries else None
    if zero_filled is None:
        notes.append("no zero-filled column: no `zero-filled` run of this setting with reconstructions is among the "
                     "given runs (runs do not store their measurements); add one with `bench run --algo zero-filled`")
    methods = []
    for e in entries:
        if is_zero_filled(e):
            continue
        found = _first_run(e)
        if found is None:
            notes.append(f"{method_label(e)}: no saved reconstructions (run.save_reconstructions was off, or no "
                         f"sample finished)")
        else:
            methods.append((method_label(e), *found))
    if methods or zero_filled:
        columns = methods + ([("zero-filled", *zero_filled)] if zero_filled else [])
        common = sorted(set.intersection(*(set(rows) for _, _, rows in columns)))
        indices, targets = [], {}
        for i in common[:max_samples]:
            target = _target(columns, i, notes)
            if target is not None:
                indices.append(i)
                targets[i] = target
        if not common:
            notes.append("no sample index was finished by every method, so there is no figure grid")
        if indices:
            _save(samples_grid(methods, indices, targets, zero_filled, title), out / f"figures/setting-{k}-samples.png")
            figures.append(f"figures/setting-{k}-samples.png")
    fig = curves(entries, title)
    if fig is not None:
        _save(fig, out / f"figures/setting-{k}-curves.png")
        figures.append(f"figures/setting-{k}-curves.png")
    return figures, notes


def _target(columns: list[tuple[str, Path, dict]], index: int, notes: list[str]) -> np.ndarray | None:
    """The saved target of sample `index` (from the first run that has it; every run that saved one must
    agree), else rebuilt from the dataset of the first run, with a note."""
    saved = [(label, np.load(run / "targets" / f"{index:06d}.npy")) for label, run, _ in columns
             if (run / "targets" / f"{index:06d}.npy").exists()]
    for label, t in saved[1:]:
        if t.shape != saved[0][1].shape or not np.allclose(t, saved[0][1], atol=1e-6):
            notes.append(f"sample #{index}: the target saved by {label} differs from {saved[0][0]}'s (other data or "
                         f"split); its column is not comparable")
    if saved:
        return saved[0][1]
    label, run, _ = columns[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target = Targets(run, OmegaConf.load(run / "config.yaml"))(index)
    except (FileNotFoundError, OSError, KeyError, ValueError) as exc:
        notes.append(f"sample #{index}: no saved target and the dataset could not be rebuilt ({exc})")
        return None
    notes.append(f"sample #{index}: target rebuilt from the dataset of {run} (the runs predate saved targets)")
    return target


# ---------------------------------------------------------------------------------------------------------
# the page

def _check_target(out: Path) -> None:
    """Refuse a path that is not a folder, or a non-empty folder that is not a page written here."""
    if out.exists() and not out.is_dir():
        raise SiteError(f"--html {out}: exists and is not a folder; pass a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        index = out / "index.html"
        if not (index.is_file() and GENERATOR in index.read_text(errors="replace")[:2000]):
            raise SiteError(f"--html {out}: the folder is not empty and holds no results page written by `bench "
                            f"leaderboard --html`; pass a new or empty folder")


def _prepare(out: Path) -> None:
    """A fresh folder for the page's files."""
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "configs").mkdir(exist_ok=True)


def _copy_configs(board: dict[str, Any], out: Path) -> dict[str, str]:
    """configs/<k>-<run name>/index.html (the config shown) with config.yaml and environment.json beside it."""
    links: dict[str, str] = {}
    for e in board["entries"]:
        for rid in e.get("run_ids") or []:
            if rid in links:
                continue
            run = Path(rid)
            slug = f"{len(links):03d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', run.name)[:60]}"
            folder = out / "configs" / slug
            folder.mkdir()
            body = []
            for name in ("config.yaml", "environment.json"):
                if (run / name).is_file():  # a regular file: a FIFO would block the copy
                    shutil.copyfile(run / name, folder / name)
                    body.append(f'<h2><a href="{name}">{name}</a></h2><pre>{html.escape((run / name).read_text())}</pre>')
            (folder / "index.html").write_text(
                f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(run.name)}</title>'
                f"<style>{CSS}</style></head><body><p><a href=\"../../index.html\">← results</a></p>"
                f"<h1>run {html.escape(str(run))}</h1>{''.join(body)}</body></html>")
            links[rid] = f"configs/{slug}/index.html"
    return links


def _cell(value: Any, shown: str | None = None, cls: str = "") -> str:
    """A table cell whose data-v is what sorting compares (numbers as numbers; missing is empty)."""
    sort = "" if value is None else (repr(float(value)) if isinstance(value, (int, float)) else str(value))
    text = shown if shown is not None else _text(value)
    return f'<td data-v="{html.escape(sort)}"{f" class={cls!r}" if cls else ""}>{html.escape(text)}</td>'


def _delta_cell(e: dict[str, Any]) -> str:
    """The paired PSNR difference to the setting's reference (sorted by its mean), or why there is none."""
    d = ((e.get("comparison") or {}).get("paired") or {}).get(comparison.RANK_METRIC)
    return _cell(d["diff"] if d else None, comparison.reference_cell(e) if e.get("comparison") else "–", "num")


def table(board: dict[str, Any], links: dict[str, str]) -> str:
    entries = board["entries"]
    optional = [k for k in OPTIONAL_COLUMNS if any(k in e for e in entries)]
    head = (["problem", "R", "coils", "dataset", "shift", "tier", "method", "prior"] + optional
            + ["n", "failed", "rank", "Δ vs ref"]
            + [label for _, label in METRIC_COLUMNS] + ["config"])
    ths = "".join(f'<th scope="col" tabindex="0">{html.escape(h)}</th>' for h in head)
    body = []
    for e in entries:
        info, opts = e.get("problem_info") or {}, e.get("problem_options") or {}
        accel = info.get("acceleration", opts.get("acceleration"))
        h = prior_hash(e)
        cells = [_cell(e.get("problem")), _cell(accel, f"{accel:.1f}" if accel is not None else "–", "num"),
                 _cell(opts.get("coils"), None, "num"), _cell(e.get("dataset")), _cell(e.get("shift")),
                 _cell(tier(e)), _cell(method_label(e)),
                 _cell(e.get("prior"), _text(e.get("prior")) + (f" [{h.removeprefix('sha256:')[:8]}]" if h else ""))]
        cells += [_cell(tuning_label(e) if k == "tuning" else _text(e.get(k)) if e.get(k) is not None else None)
                  for k in optional]
        cells += [_cell(e.get("n"), None, "num"), _cell(e.get("n_failed"), None, "num"),
                  _cell((e.get("comparison") or {}).get("rank"), None, "num"), _delta_cell(e)]
        for m, _ in METRIC_COLUMNS:
            mm = (e.get("metrics") or {}).get(m) or {}
            mean, std = mm.get("mean"), mm.get("std")
            text = _fmt(mean, m) + (f" ± {_fmt(std, m)}" if m in ("psnr", "ssim") and std is not None and mean is not None else "")
            cells.append(_cell(mean, text, "num"))
        runs = e.get("run_ids") or []
        cfg_links = " ".join(f'<a href="{links[r]}" title="{html.escape(r)}">{j + 1}</a>'
                             for j, r in enumerate(runs) if r in links)
        cells.append(f'<td data-v="">{cfg_links}</td>')
        attrs = " ".join(f'data-{k}="{html.escape(v)}"' for k, v in
                         (("problem", str(e.get("problem"))), ("shift", e.get("shift") or "none"), ("tier", tier(e))))
        body.append(f"<tr {attrs}>{''.join(cells)}</tr>")
    return (f'<table id="board"><thead><tr>{ths}</tr></thead><tbody>\n' + "\n".join(body)
            + "\n</tbody></table>")


def matrix_html(board: dict[str, Any]) -> str:
    """The per-family matrices: each cell links to its row's page (rows/<row_id>.html); the best bold, ties marked."""
    parts = []
    for m in comparison.matrices(board):
        ths = "".join(f'<th scope="col">{html.escape(label)}</th>' for _, label in m.columns)
        trs = []
        for name, cells in m.rows.items():
            tds = []
            for sid, _ in m.columns:
                e = cells.get(sid)
                if e is None:
                    tds.append('<td class="num">–</td>')
                    continue
                text = html.escape(comparison.cell_text(e))
                text = f"<strong>{text}</strong>" if e["comparison"]["best"] else text
                tds.append(f'<td class="num"><a href="rows/{html.escape(e["row_id"])}.html">{text}</a></td>')
            trs.append(f'<tr><th scope="row">{html.escape(name)}</th>{"".join(tds)}</tr>')
        common = f"; {m.common}" if m.common else ""
        parts.append(f'<h3>{html.escape(m.family)}: PSNR (dB){html.escape(common)}</h3><div class="wrap"><table class="matrix" '
                     f'data-family="{html.escape(m.family)}"><thead><tr><th>method</th>{ths}</tr></thead><tbody>'
                     f'{"".join(trs)}</tbody></table></div>')
    if not parts:
        return ""
    legend = html.escape(comparison.LEGEND).replace("**Bold**", "<strong>Bold</strong>")
    return "<h2>Matrices</h2>" + "".join(parts) + f'<p class="meta">{legend}</p>'


def _stat_rows(e: dict[str, Any]) -> str:
    """The row page's statistics: per metric mean ± std, its interval, the paired difference to the reference."""
    out = []
    for m in comparison.STAT_METRICS:
        mm = (e.get("metrics") or {}).get(m) or {}
        ci = mm.get("ci95")
        d = ((e.get("comparison") or {}).get("paired") or {}).get(m)
        diff = "–" if d is None else (
            f"{d['diff']:+.4g}" + (f" [{d['low']:+.4g}, {d['high']:+.4g}]" if d["low"] is not None else "")
            + (f", Wilcoxon p = {d['p_wilcoxon']:.3g}" if d["p_wilcoxon"] is not None else "") + f", n = {d['n']}")
        interval = "–" if not ci else f"[{_fmt(ci[0], m)}, {_fmt(ci[1], m)}]"
        out.append(f"<tr><th>{m.upper()}</th><td>{_fmt(mm.get('mean'), m)} ± {_fmt(mm.get('std'), m)}</td>"
                   f"<td>{interval}</td><td>{html.escape(diff)}</td></tr>")
    return "".join(out)


def write_row_pages(board: dict[str, Any], out: Path, links: dict[str, str], figures: dict[str, list[str]]) -> None:
    """rows/<row_id>.html per entry: its statistics, its reference, its runs' configs and its setting's figures."""
    (out / "rows").mkdir(exist_ok=True)
    by_id = {e["row_id"]: e for e in board["entries"] if e.get("row_id")}
    for e in by_id.values():
        c = e.get("comparison") or {}
        ref = by_id.get(c.get("reference") or "")
        ref_text = "this row is the reference" if c.get("role") == "reference" else (
            f'reference: <a href="{html.escape(ref["row_id"])}.html">{html.escape(ref["label"])}</a>' if ref else "")
        runs = "".join(f'<li><a href="../{links[r]}">{html.escape(r)}</a></li>' if r in links
                       else f"<li>{html.escape(r)}</li>" for r in e.get("run_ids") or [])
        imgs = "".join(f'<div class="fig"><img src="../{f}" alt="{html.escape(setting_title(e))}"></div>'
                       for f in figures.get(e["row_id"], []))
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in [c.get("note")] + list(e.get("notes") or []) if n)
        (out / "rows" / f"{e['row_id']}.html").write_text(
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(e["label"])}</title>'
            f'<style>{CSS}</style></head><body><p><a href="../index.html">← results</a></p>'
            f'<h1>{html.escape(e["label"])}</h1><p class="meta">{html.escape(setting_title(e))} · prior '
            f'{html.escape(_text(e.get("prior")))} · {html.escape(tuning_label(e))} · n = {e.get("n")} · PSNR rank '
            f'{c.get("rank") if c.get("rank") is not None else "–"} · {ref_text}</p>'
            f"<table><thead><tr><th>metric</th><th>mean ± std</th><th>95 % interval</th><th>row − reference "
            f"(paired)</th></tr></thead><tbody>{_stat_rows(e)}</tbody></table>"
            f"{f'<ul class=notes>{notes}</ul>' if notes else ''}<h2>Runs</h2><ul>{runs}</ul><h2>Figures</h2>"
            f"{imgs or '<p class=meta>no figures (no saved reconstructions)</p>'}</body></html>")


def _select(name: str, values: list[str]) -> str:
    options = "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values)
    return (f'<label>{name} <select id="filter-{name}" data-key="{name}"><option value="">all</option>{options}'
            f"</select></label>")


def write_site(board: dict[str, Any], out: str | Path, max_samples: int = 2) -> Path:
    """Write the results page of a leaderboard (`leaderboard.build`) into the folder `out`; returns index.html.

    The page is written into a temporary folder beside `out` and moved into place whole: a full disk, an unwritable
    folder or a file too large leaves `out` as it was (an earlier page, or nothing) and raises a SiteError naming the
    path and the cause."""
    out = Path(out)
    _check_target(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        _write_page(board, tmp, max_samples)
        if out.exists():  # an earlier page (or an empty folder): moved aside, then removed once the new one is in
            os.replace(out, old)
        os.replace(tmp, out)
    except OSError as exc:
        if old.exists() and not out.exists():
            os.replace(old, out)
        where = exc.filename or out
        raise SiteError(f"--html {out}: cannot write the results page ({where}: {exc.strerror or exc}); the folder "
                        f"was left as it was") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out / "index.html"


def _write_page(board: dict[str, Any], out: Path, max_samples: int) -> Path:
    _prepare(out)
    entries = board["entries"]
    links = _copy_configs(board, out)
    (out / "leaderboard.json").write_text(json.dumps(board, indent=2))
    settings: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        settings.setdefault(setting_key(e), []).append(e)
    sections = []
    row_figures: dict[str, list[str]] = {}
    for k, group in enumerate(settings.values()):
        figures, notes = setting_figures(k, group, out, max_samples)
        row_figures.update({g["row_id"]: figures for g in group if g.get("row_id")})
        e = group[0]
        attrs = " ".join(f'data-{a}="{html.escape(v)}"' for a, v in
                         (("problem", str(e.get("problem"))), ("shift", e.get("shift") or "none"), ("tier", tier(e))))
        imgs = "".join(f'<div class="fig"><img src="{f}" alt="{html.escape(setting_title(e))}"></div>' for f in figures)
        note = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        sections.append(f'<section class="setting" {attrs}><h3>{html.escape(setting_title(e))}</h3>'
                        f'<p class="opts">problem options: <code>{html.escape(_text(e.get("problem_options") or {}))}'
                        f"</code></p>{imgs}{f'<ul class=notes>{note}</ul>' if note else ''}</section>")
    problems = sorted({str(e.get("problem")) for e in entries})
    shifts = sorted({e.get("shift") or "none" for e in entries})
    tiers = sorted({tier(e) for e in entries})
    n_runs = len({r for e in entries for r in e.get("run_ids") or []})
    if any(e.get("row_id") for e in entries):
        write_row_pages(board, out, links, row_figures)
    page = PAGE.format(
        generator=GENERATOR, css=CSS, js=JS, created=html.escape(str(board.get("created", ""))),
        schema=html.escape(str(board.get("schema_version", ""))), n_entries=len(entries), n_runs=n_runs,
        filters=_select("problem", problems) + _select("shift", shifts) + _select("tier", tiers),
        table=table(board, links), sections="\n".join(sections), matrices=matrix_html(board))
    index = out / "index.html"
    index.write_text(page)
    return index


CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.2em 2em;color:#1b1b1b;background:#fff}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin-top:1.6em}h3{font-size:1.05em;margin:.4em 0}
.meta,.opts,.count{color:#555;font-size:.9em}
.filters{display:flex;gap:1em;flex-wrap:wrap;align-items:center;margin:.8em 0}
.filters select,.filters input{font:inherit;padding:.15em .3em}
.wrap{overflow-x:auto}
table{border-collapse:collapse;font-size:.86em;white-space:nowrap}
table.matrix td a{color:inherit;text-decoration:none;display:block}table.matrix td a:hover{text-decoration:underline}
th,td{border-bottom:1px solid #ddd;padding:.25em .55em;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f4f6;cursor:pointer;user-select:none;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
tbody tr:hover{background:#f7fafc}
section.setting{border-top:1px solid #ddd;margin-top:1em;padding-top:.4em}
.fig{overflow-x:auto}.fig img{max-width:none;display:block;margin:.4em 0}
.notes{color:#8a5a00;font-size:.9em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto}
"""

JS = """
(function () {
  const table = document.getElementById('board');
  const tbody = table.tBodies[0];
  const heads = Array.from(table.tHead.rows[0].cells);
  function key(row, col) { return row.cells[col].dataset.v; }
  function compare(a, b) {  // missing values last; numbers as numbers; text by locale
    if (a === '' || b === '') return a === b ? 0 : (a === '' ? 1 : -1);
    const x = Number(a), y = Number(b);
    if (!isNaN(x) && !isNaN(y)) return x - y;
    return a.localeCompare(b);
  }
  function sortBy(col) {
    const th = heads[col];
    const dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    heads.forEach(h => h.removeAttribute('aria-sort'));
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    const rows = Array.from(tbody.rows);
    rows.sort((r, s) => {
      const a = key(r, col), b = key(s, col);
      if (a === '' || b === '') return compare(a, b);
      return dir * compare(a, b);
    });
    rows.forEach(r => tbody.appendChild(r));
  }
  heads.forEach((th, col) => {
    th.addEventListener('click', () => sortBy(col));
    th.addEventListener('keydown', ev => { if (ev.key === 'Enter') sortBy(col); });
  });
  const selects = Array.from(document.querySelectorAll('select[data-key]'));
  const text = document.getElementById('filter-text');
  const count = document.getElementById('count');
  function matches(el) {
    return selects.every(s => !s.value || el.dataset[s.dataset.key] === s.value);
  }
  function apply() {
    const words = text.value.toLowerCase().split(/\\s+/).filter(w => w);
    let shown = 0;
    Array.from(tbody.rows).forEach(r => {
      const hay = r.textContent.toLowerCase();
      r.hidden = !(matches(r) && words.every(w => hay.includes(w)));
      if (!r.hidden) shown += 1;
    });
    document.querySelectorAll('section.setting').forEach(s => { s.hidden = !matches(s); });
    count.textContent = shown + ' of ' + tbody.rows.length + ' rows';
  }
  selects.forEach(s => s.addEventListener('change', apply));
  text.addEventListener('input', apply);
  apply();
})();
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{generator}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>medtta-bench results</title><style>{css}</style></head>
<body>
<h1>medtta-bench results</h1>
<p class="meta">{n_entries} rows from {n_runs} runs · leaderboard schema {schema} · made {created} ·
<a href="leaderboard.json">leaderboard.json</a></p>
{matrices}
<h2>Leaderboard</h2>
<p class="meta">Click a column header to sort (again to reverse). PSNR and SSIM are mean ± std over the samples;
the config column links each run's config.yaml.</p>
<div class="filters">{filters}<label>text <input id="filter-text" type="search" placeholder="e.g. daps tda"></label>
<span id="count" class="count"></span></div>
<div class="wrap">{table}</div>
<h2>Figures</h2>
<p class="meta">Per problem setting, one row each for the target, zero-filled and every method: the samples'
images (one grey scale) and their |error| maps (one scale for the whole grid); then mean PSNR against NFE and
every sample's PSNR per method.</p>
{sections}
<script>{js}</script>
</body></html>
"""
