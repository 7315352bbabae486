"""The paired comparison of a leaderboard's rows, setting by setting, and the per-family matrices built from it.

A *setting* is everything that makes two rows' samples the same samples: problem, dataset, tier, target convention,
shift, metric convention and every problem and dataset option (R and coils among them). Within a setting:

- every row with per-sample values gets, per metric, a seeded 95 % bootstrap interval of its mean (benchmarks.stats);
- one row is the *reference* (by default L1-wavelet with its defaults; `bench leaderboard --reference NAME`), and every
  other row gets its paired difference to it, row - reference, on the sample ids: mean, interval, Wilcoxon p and n.
  Rows are paired only when they hold exactly the same sample ids; a row whose ids differ is labelled
  "unpaired: sample ids differ (k shared of n)" and gets no difference (a difference on the shared ids alone would
  not be the difference of the two means the board shows);
- the *headline* rows are ranked on PSNR with shared ranks (benchmarks.stats.shared_ranks). A tuned row whose tuning
  kept the defaults repeats the defaults row: it is collapsed into it (kept in the JSON, `collapsed_into`, and named
  in the defaults row's notes). Rows of a former prior (not the problem's current default prior) stay in the JSON
  and the full table but are neither ranked nor shown in the matrices.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks import stats
from benchmarks.labels import KEY, SOLVER_FACING_OPTIONS, freeze, method_label, tuning_label

DEFAULT_REFERENCE = "l1-wavelet"
STAT_METRICS = ("psnr", "ssim", "nmse")
LOWER_IS_BETTER = frozenset({"nmse"})
RANK_METRIC = "psnr"
TIE_MARK = "≈"
SETTING_FIELDS = ("problem", "dataset", "tier", "target_convention", "shift", "metric_convention")
# A problem's reference row where the board's default reference (L1-wavelet) does not reconstruct its data.
PROBLEM_REFERENCES = {"mrsi": "mrsi-tv"}


# --- per-sample values ---------------------------------------------------------------------------------------

def per_sample_block(ok: list[dict[str, Any]], sample_id: Callable[[dict[str, Any]], str]) -> dict[str, list[Any]]:
    """{"ids": [...], metric: [value or None, ...]} of a row's finished samples, in id order (what the statistics
    are computed from, so a board can be re-analysed without its run directories)."""
    rows = sorted(ok, key=lambda r: str(sample_id(r)))
    block: dict[str, list[Any]] = {"ids": [str(sample_id(r)) for r in rows]}
    for m in STAT_METRICS:
        block[m] = [float(r[m]) if _finite(r.get(m)) else None for r in rows]
    return block


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def values(entry: dict[str, Any], metric: str) -> dict[str, float]:
    """sample id -> finite value of `metric` (empty where the row recorded no per-sample values)."""
    block = entry.get("per_sample") or {}
    return {i: float(v) for i, v in zip(block.get("ids") or [], block.get(metric) or []) if _finite(v)}


# --- settings, row ids, reference --------------------------------------------------------------------------

def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:10]


def row_id(entry: dict[str, Any]) -> str:
    """A short stable id of a row: a digest of its key (what tells rows apart)."""
    return "r" + _digest([freeze(entry.get(k)) for k in KEY])


def _canonical(value: Any) -> Any:
    """Numbers that are whole as ints (a recorded 4.0 and 4 are one R), containers recursively."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _with_id(fields: dict[str, Any]) -> dict[str, Any]:
    return {"id": "s" + _digest({k: v for k, v in fields.items() if k != "assumed"}), **fields}


def setting_of(entry: dict[str, Any]) -> dict[str, Any]:
    """The row's setting: the fields its samples depend on, with R and coils pulled out, and an id (a digest)."""
    opts, info = entry.get("problem_options") or {}, entry.get("problem_info") or {}
    opts = {k: v for k, v in opts.items() if k not in SOLVER_FACING_OPTIONS}
    fields = {k: entry.get(k) for k in SETTING_FIELDS}
    fields.update(R=opts.get("acceleration", info.get("acceleration")), coils=opts.get("coils", info.get("coils")),
                  problem_options=opts, dataset_options=entry.get("dataset_options") or {})
    return _with_id(_canonical(fields))


def fill_unrecorded(entries: list[dict[str, Any]]) -> None:
    """Options that some rows of a problem do not record (their runs predate the option) are taken, in the setting, as
    the value every other row of that problem records, where they all record one value; the setting lists them under
    `assumed`. Where recorded values differ, an unrecorded option stays unknown and its rows a setting of their own."""
    for problem in {e["problem"] for e in entries}:
        rows = [e for e in entries if e["problem"] == problem]
        for group in ("problem_options", "dataset_options"):
            for key in {k for e in rows for k in e["setting"][group]}:
                recorded = {json.dumps(e["setting"][group][key], sort_keys=True) for e in rows
                            if key in e["setting"][group]}
                if len(recorded) != 1 or all(key in e["setting"][group] for e in rows):
                    continue
                value = json.loads(recorded.pop())
                for e in rows:
                    if key not in e["setting"][group]:
                        e["setting"][group] = {**e["setting"][group], key: value}
                        e["setting"]["assumed"] = sorted(set(e["setting"].get("assumed", [])) | {f"{group}.{key}"})
        for e in rows:
            e["setting"] = _with_id({k: v for k, v in e["setting"].items() if k != "id"})


def method_name(entry: dict[str, Any]) -> str:
    """algorithm[+adapters]; a tuned row that changed options says "(tuned on SPLIT)" instead of its values."""
    if entry.get("tuning") and entry.get("changed_options"):
        base = entry["algorithm"] + (f"+{entry['adapters']}" if entry["adapters"] else "")
        return f"{base} (tuned on {entry['tuning'].get('split')})"
    return method_label(entry)


def is_reference(entry: dict[str, Any], name: str) -> bool:
    return name in (entry.get("label"), method_label(entry), method_name(entry))


def pick_reference(rows: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The setting's reference row: the row named `name` with its defaults (untuned, not collapsed), a headline row
    before a former prior's; None where the setting has no such row."""
    found = [e for e in rows if is_reference(e, name) and not e.get("collapsed_into")]
    found.sort(key=lambda e: (e.get("tuning") is not None, bool(e.get("former_prior")), e["row_id"]))
    return found[0] if found else None


# --- duplicates and former priors -----------------------------------------------------------------------------

def current_prior(problem: str, shift: str | None = None) -> str | None:
    """The prior a run of `problem` gets by default: the shift's where it names one, else the problem's
    (configs/problem/<name>.yaml); None where none is declared or it cannot be read."""
    from benchmarks.config import ConfigError, load_shift, problem_choices

    try:
        named = load_shift(shift).get("prior") if shift else None
        return str(named) if named else problem_choices(problem).prior
    except (ConfigError, OSError, LookupError):
        return None


def mark_former_priors(entries: list[dict[str, Any]]) -> None:
    """`former_prior: true` on rows whose prior is not the one their problem (or shift) now uses by default."""
    defaults: dict[tuple[str, str | None], str | None] = {}
    for e in entries:
        where = (e["problem"], e.get("shift"))
        if where not in defaults:
            defaults[where] = current_prior(*where)
        now = defaults[where]
        e["former_prior"] = bool(e.get("prior") and now and e["prior"] != now)


OPTION_KEYS = ("prior_options", "algorithm_options", "adapter_options")


def _agree(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Options equal wherever both record them (an option one run predates is not a difference)."""
    return all(json.dumps(a[k], sort_keys=True) == json.dumps(b[k], sort_keys=True) for k in a.keys() & b.keys())


def _same_computation(tuned: dict[str, Any], plain: dict[str, Any]) -> bool:
    exact = [k for k in KEY if k != "tuning" and not k.endswith("_options")]  # problem, dataset: the setting
    return (tuned["setting"]["id"] == plain["setting"]["id"] and all(tuned[k] == plain[k] for k in exact)
            and all(_agree(tuned[k] or {}, plain[k] or {}) for k in OPTION_KEYS))


def collapse_duplicates(entries: list[dict[str, Any]]) -> None:
    """A tuned row that kept the defaults (its options are the defaults row's) and is otherwise the computation of a
    defaults row (same setting, method, prior and fingerprint; options equal wherever both record them) repeats it: `collapsed_into` names
    that row, whose `collapsed` and notes name the tuned one."""
    plain = [e for e in entries if e.get("tuning") is None]
    for e in entries:
        # the options are compared with the defaults row's, not with the constructor's defaults: a problem's yaml
        # may set options (cs_mri's DAPS budget), which both rows then record as changed
        if e.get("tuning") is None:
            continue
        twin = next((p for p in plain if _same_computation(e, p)), None)
        if twin is None:
            continue
        e["collapsed_into"] = twin["row_id"]
        twin["collapsed"] = sorted(set(twin.get("collapsed", [])) | {e["row_id"]})
        twin["notes"] = [n for n in twin["notes"] if not n.startswith(f"{e['row_id']}:")] + [
            f"{e['row_id']}: {tuning_label(e)}; the same options as this row, collapsed into it"]


# --- the statistics of one setting -----------------------------------------------------------------------

def add_intervals(entry: dict[str, Any]) -> None:
    """`ci95: [low, high]` on each of the row's STAT_METRICS with per-sample values (null for n < 2)."""
    for m in STAT_METRICS:
        v = values(entry, m)
        if v and m in entry["metrics"]:
            ci = stats.bootstrap_interval(list(v.values()))
            entry["metrics"][m]["ci95"] = None if ci.low is None else [ci.low, ci.high]


def unpaired_note(row: dict[str, float], ref: dict[str, float]) -> str:
    shared = len(set(row) & set(ref))
    return f"unpaired: sample ids differ ({shared} shared of {len(row)}; the reference holds {len(ref)})"


def paired_block(entry: dict[str, Any], ref: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Per metric, row - reference paired on sample id: {diff, low, high, p_wilcoxon, n, sd}; and the unpaired label,
    where the rows' sample ids differ."""
    out: dict[str, Any] = {}
    note = None
    for m in STAT_METRICS:
        a, b = values(entry, m), values(ref, m)
        if not a or not b:
            continue
        p = stats.paired(a, b)
        if p is None:
            note = note or unpaired_note(a, b)
            continue
        if not math.isfinite(p.diff.mean):  # a difference past the float limit: none written
            continue
        out[m] = {"diff": p.diff.mean, "low": p.diff.low, "high": p.diff.high, "p_wilcoxon": p.p_wilcoxon,
                  "n": p.diff.n, "sd": p.sd}
    return out, note


def compare_setting(rows: list[dict[str, Any]], reference: str) -> None:
    """Fill each row's `comparison` block: its reference, paired differences, rank and best/tie marks."""
    ref = pick_reference(rows, reference)
    own = PROBLEM_REFERENCES.get(rows[0]["problem"]) if reference == DEFAULT_REFERENCE else None
    if ref is None and own:
        ref, reference = pick_reference(rows, own), own
    for e in rows:
        add_intervals(e)
        c: dict[str, Any] = {"reference": ref["row_id"] if ref else None, "role": "compared", "paired": {},
                             "note": None, "rank": None, "best": False, "tied_with_best": False,
                             "headline": not e.get("collapsed_into") and not e.get("former_prior")}
        if e.get("collapsed_into"):
            c["role"], c["note"] = "collapsed", f"collapsed into row {e['collapsed_into']} (tuning kept the defaults)"
        elif ref is None:
            c["role"], c["note"] = "no reference", f"no {reference!r} row in this setting"
        elif e is ref:
            c["role"] = "reference"
        elif not e.get("per_sample") or not ref.get("per_sample"):
            old = "per_sample" not in e or "per_sample" not in ref
            c["role"] = "not paired"
            c["note"] = "no per-sample values recorded" + (" (a row of a board before schema 2.3)" if old else "")
        else:
            c["paired"], note = paired_block(e, ref)
            if note:
                c["role"], c["note"] = "unpaired", note
        e["comparison"] = c
    rank_setting([e for e in rows if e["comparison"]["headline"]], ref)


def rank_setting(rows: list[dict[str, Any]], ref: dict[str, Any] | None = None) -> None:
    """Shared ranks on RANK_METRIC among the headline rows that hold the reference's sample ids (without a reference
    row: the id set most rows hold), so that every ranked row is paired with every other (benchmarks.stats)."""
    scored = {e["row_id"]: values(e, RANK_METRIC) for e in rows}
    scored = {k: v for k, v in scored.items() if v}
    anchor = _anchor_ids(list(scored.values()), values(ref, RANK_METRIC) if ref else {})
    ranks = stats.shared_ranks({k: v for k, v in scored.items() if set(v) == anchor},
                               RANK_METRIC not in LOWER_IS_BETTER)
    for e in rows:
        rank = ranks.get(e["row_id"])
        e["comparison"]["rank"] = rank
        if e["row_id"] in scored and rank is None:
            e["comparison"]["note"] = e["comparison"]["note"] or "not ranked: sample ids differ from the ranked rows'"
    mark_best(rows)


def mark_best(rows: list[dict[str, Any]]) -> None:
    """`best`: the highest mean among the rank-1 rows (or, where nothing could be ranked, among all the rows with a
    mean); `tied_with_best`: the other rank-1 rows."""
    sign = -1.0 if RANK_METRIC in LOWER_IS_BETTER else 1.0
    firsts = [e for e in rows if e["comparison"]["rank"] == 1]
    if not any(e["comparison"]["rank"] is not None for e in rows):
        firsts = [e for e in rows if (e["metrics"].get(RANK_METRIC) or {}).get("mean") is not None]
    if not firsts:
        return
    best = max(firsts, key=lambda e: sign * e["metrics"][RANK_METRIC]["mean"])
    for e in firsts:
        e["comparison"]["best"] = e is best
        e["comparison"]["tied_with_best"] = e is not best and e["comparison"]["rank"] == 1


def _anchor_ids(sets: list[dict[str, float]], ref: dict[str, float]) -> set[str]:
    """The sample ids the ranked rows must hold: the reference's, else the most common set (ties: the larger)."""
    if ref:
        return set(ref)
    counts: dict[frozenset[str], int] = {}
    for v in sets:
        counts[frozenset(v)] = counts.get(frozenset(v), 0) + 1
    return set(max(counts, key=lambda k: (counts[k], len(k), sorted(k)))) if counts else set()


def annotate(board: dict[str, Any], reference: str = DEFAULT_REFERENCE) -> dict[str, Any]:
    """Add row ids, settings, duplicate and former-prior marks, intervals, paired differences and ranks to a board."""
    entries = board["entries"]
    for e in entries:
        e["row_id"] = row_id(e)
        e["setting"] = setting_of(e)
        e.pop("collapsed_into", None)
        e.pop("collapsed", None)
    fill_unrecorded(entries)
    mark_former_priors(entries)
    collapse_duplicates(entries)
    groups: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        groups.setdefault(e["setting"]["id"], []).append(e)
    for rows in groups.values():
        compare_setting(rows, reference)
    board["statistics"] = {"reference": reference, "confidence": stats.CONFIDENCE, "resamples": stats.RESAMPLES,
                           "seed": stats.SEED, "interval": "scipy.stats.bootstrap, BCa", "rank_metric": RANK_METRIC,
                           "pairing": "identical sample ids only"}
    return board


# --- matrices ---------------------------------------------------------------------------------------------------

@dataclass
class Matrix:
    """One problem family: settings as columns (id, label), methods as rows (name -> setting id -> entry)."""

    family: str
    columns: list[tuple[str, str]]
    rows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    common: str = ""


def _common(settings: list[dict[str, Any]]) -> str:
    """What every column of a family shares (dataset, shift, tier, target, metric convention), for its title."""
    parts = []
    for k in ("dataset", "shift", "tier", "target_convention", "metric_convention"):
        vals = {str(s.get(k)) for s in settings}
        if len(vals) == 1 and (k != "shift" or settings[0].get(k)):
            parts.append(f"{'shift ' if k == 'shift' else 'target ' if k == 'target_convention' else ''}{vals.pop()}")
    return ", ".join(parts)


def _varying(settings: list[dict[str, Any]]) -> set[str]:
    keys = {k for s in settings for k in s if k not in ("id", "assumed", "problem_options", "dataset_options")}
    out = {k for k in keys if len({json.dumps(s.get(k), default=str) for s in settings}) > 1}
    for group in ("problem_options", "dataset_options"):
        opts = {k for s in settings for k in s[group]} - {"acceleration", "coils"}
        out |= {f"{group}.{k}" for k in opts if len({json.dumps(s[group].get(k), default=str) for s in settings}) > 1}
    return out


def setting_label(s: dict[str, Any], varying: set[str]) -> str:
    """A column title: R and coils always (where the problem has them), then whatever else varies in the family."""
    parts = []
    if s.get("R") is not None:
        parts.append(f"R = {float(s['R']):g}")
    if isinstance(s.get("coils"), (int, float)) and s["coils"]:
        parts.append(f"{s['coils']:g} coil{'s' if s['coils'] != 1 else ''}")
    for k in ("dataset", "shift", "tier", "target_convention", "metric_convention"):
        if k in varying:
            parts.append(f"{'shift ' if k == 'shift' else ''}{s.get(k) or 'none'}")
    for k in sorted(v for v in varying if "." in v):
        group, _, opt = k.partition(".")
        parts.append(f"{opt}={s[group].get(opt)}")
    return ", ".join(parts) or s["problem"]


def matrices(board: dict[str, Any]) -> list[Matrix]:
    """One matrix per problem family over its headline rows (collapsed duplicates and former priors left out)."""
    head = [e for e in board["entries"] if (e.get("comparison") or {}).get("headline")]
    out = []
    for family in sorted({e["problem"] for e in head}):
        rows = [e for e in head if e["problem"] == family]
        settings = sorted({e["setting"]["id"]: e["setting"] for e in rows}.values(), key=_column_order)
        varying = _varying(settings)
        m = Matrix(family, [(s["id"], setting_label(s, varying)) for s in settings], common=_common(settings))
        names = _row_names(rows)
        for e in rows:
            m.rows.setdefault(names[e["row_id"]], {})[e["setting"]["id"]] = e
        _sort_rows(m)
        out.append(m)
    return out


def _column_order(s: dict[str, Any]) -> tuple:
    """Columns by dataset, shift, tier, then R up and coils down (8 coils before 1), then the id."""
    r = s.get("R") if isinstance(s.get("R"), (int, float)) else 0.0
    coils = s.get("coils") if isinstance(s.get("coils"), (int, float)) else 0.0
    return (str(s.get("dataset")), str(s.get("shift") or ""), str(s.get("tier")), r, -coils, s["id"])


def _row_names(rows: list[dict[str, Any]]) -> dict[str, str]:
    """A matrix row name per entry: method_name, or the full label where two entries of a cell would share one."""
    seen: dict[tuple[str, str], int] = {}
    for e in rows:
        key = (method_name(e), e["setting"]["id"])
        seen[key] = seen.get(key, 0) + 1
    return {e["row_id"]: method_name(e) if seen[(method_name(e), e["setting"]["id"])] == 1 else e["label"]
            for e in rows}


def _mean(e: dict[str, Any]) -> float:
    mean = (e["metrics"].get(RANK_METRIC) or {}).get("mean")
    return -math.inf if mean is None else float(mean)


def _positions(m: Matrix) -> dict[str, float]:
    """Per entry, its place in its column: its shared rank; the rows not ranked after the ranked ones, by mean."""
    place: dict[str, float] = {}
    sign = -1.0 if RANK_METRIC in LOWER_IS_BETTER else 1.0
    for sid, _ in m.columns:
        cells = [c[sid] for c in m.rows.values() if sid in c]
        ranked = [e for e in cells if e["comparison"]["rank"] is not None]
        place.update({e["row_id"]: e["comparison"]["rank"] for e in ranked})
        rest = sorted((e for e in cells if e["comparison"]["rank"] is None),
                      key=lambda e: -sign * _mean(e))
        place.update({e["row_id"]: len(ranked) + k for k, e in enumerate(rest, start=1)})
    return place


def _sort_rows(m: Matrix) -> None:
    """Rows by their mean place over the columns they have, then by name."""
    place = _positions(m)

    def key(item: tuple[str, dict[str, dict[str, Any]]]) -> tuple[float, str]:
        places = [place[e["row_id"]] for e in item[1].values()]
        return (sum(places) / len(places), item[0])

    m.rows = dict(sorted(m.rows.items(), key=key))


def cell_text(e: dict[str, Any], metric: str = RANK_METRIC) -> str:
    """"mean [low, high] n=N" (no interval: "[–]"), the tie mark after a row tied with the best."""
    mm = e["metrics"].get(metric) or {}
    mean, ci = mm.get("mean"), mm.get("ci95")
    text = "–" if mean is None else f"{mean:.2f}"
    text += f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else " [–]"
    text += f" n={e['n']}"
    return text + (f" {TIE_MARK}" if e["comparison"]["tied_with_best"] else "")


LEGEND = (f"Cells: mean PSNR (dB) [seeded 95 % bootstrap interval of the mean] and n, the number of test samples. "
          f"**Bold**: the best row of the column (the highest mean among the rows of rank 1). "
          f"{TIE_MARK}: the paired 95 % interval of the difference to the best row includes 0, so the row shares "
          f"rank 1 with it (indistinguishable on these samples). [–]: no interval (fewer than 2 samples, or a row kept "
          f"from a board that recorded no per-sample values, which cannot be tied or ranked either). Collapsed "
          f"duplicates and rows of a former prior are in the full table only.")


def matrix_markdown(board: dict[str, Any], md_cell: Callable[[Any], str]) -> str:
    """The matrices as Markdown tables, each under a bold family title, with the legend after them."""
    parts = []
    for m in matrices(board):
        head = ["method"] + [label for _, label in m.columns]
        lines = ["| " + " | ".join(map(md_cell, head)) + " |", "|" + "---|" * len(head)]
        for name, cells in m.rows.items():
            row = [md_cell(name)]
            for sid, _ in m.columns:
                e = cells.get(sid)
                text = md_cell(cell_text(e)) if e else "–"
                row.append(f"**{text}**" if e and e["comparison"]["best"] else text)
            lines.append("| " + " | ".join(row) + " |")
        parts.append(f"**{md_cell(m.family)}**: PSNR (dB){md_cell('; ' + m.common) if m.common else ''}\n\n"
                     + "\n".join(lines))
    return "\n\n".join(parts + [LEGEND]) + "\n" if parts else ""


def reference_cell(e: dict[str, Any], metric: str = RANK_METRIC) -> str:
    """The full table's "vs reference" cell: "+0.58 [0.21, 0.93] p=0.12", "reference", or why there is none."""
    c = e.get("comparison") or {}
    if c.get("role") == "reference":
        return "reference"
    d = (c.get("paired") or {}).get(metric)
    if d is None:
        return c.get("note") or "–"
    ci = f" [{d['low']:+.2f}, {d['high']:+.2f}]" if d["low"] is not None else ""
    p = f" p={d['p_wilcoxon']:.2g}" if d["p_wilcoxon"] is not None else ""
    return f"{d['diff']:+.2f}{ci}{p} (n={d['n']})"
