"""Aggregate run directories into one leaderboard (JSON, validated by a shipped schema) and markdown.

A row holds the runs that computed the same thing. Its key is everything that changes a number:
problem, dataset, shift (only when the shift changed the run's config), algorithm, adapters (those that
adapted something), prior name, prior options and the fingerprint of its weights (`names.prior_hash`,
benchmarks.fingerprint; "unknown" for runs made before it was recorded), `run.scheme`, `run.split`, the
tuning provenance (`tuning.trials/metric/split`, or defaults), the data tier (simulated | measured k-space) and
target convention (both from the sample lines; runs written before they were recorded: simulated, "dataset
image") and every option of the problem, dataset, algorithm and adapters. Per-volume metrics (fastMRI's
convention, `volume_*`) come from the runs' summary.json `volumes`, each volume once. Per row: mean and std of every metric over the finished samples, n, device, NFE,
seconds per sample, the run ids and the per-sample values of PSNR, SSIM and NMSE by sample id. Samples are read from
samples*.jsonl (the source of truth). Rows of one setting are then compared paired (benchmarks.comparison: bootstrap
intervals, the paired difference to the setting's reference row, shared ranks, per-family matrices).

Honesty rules: a sample id counted twice in one row is an error naming both run directories; a run whose
shift or adapter changed nothing (`--shift operator` = the default coil maps, `cg-sense+tda`: no sampler
step to adapt at) joins the row of the plain computation and is labelled so; when the plain run covers the
same samples, those samples are counted once.
"""
from __future__ import annotations

import html
import json
import math
import os
import stat
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf

from benchmarks.archive import entry_run, run_label
from benchmarks.labels import KEY, freeze, method_label, option_text, tuning_label
from benchmarks.metrics import METRIC_CONVENTION, line_conventions
from benchmarks.results import METRICS
from benchmarks.verify import read_verification, row_verification

SCHEMA_VERSION = "2.3"
READABLE_VERSIONS = ("2.1", "2.2", "2.3")  # older boards validate too: 2.2 and 2.3 only added optional fields
SCHEMA_PATH = Path(__file__).resolve().parent / "leaderboard.schema.json"
TABLE = ("psnr", "ssim", "nmse", "data_misfit", "seconds", "nfe")
UNKNOWN_HASH = "unknown"


class LeaderboardError(ValueError):
    """Run directories that cannot be put on one leaderboard honestly (the message names them and the fix)."""


class LeaderboardWarning(UserWarning):
    """A directory skipped because it is not a run directory."""


# --- reading run directories --------------------------------------------------------------------------

def regular_file(path: Path) -> str | None:
    """None when `path` is a regular file (or a link to one) that can be read without blocking; else why not (a
    FIFO named config.yaml would block a reader forever, a folder cannot be read as text)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"{path.name} cannot be examined ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file")
    return f"{path.name} is {kind}, not a regular file"


def read_text(path: Path) -> str:
    """A regular file's text, or a LeaderboardError naming the path and the cause (never blocks on a FIFO)."""
    why = regular_file(path)
    if why is not None:
        raise LeaderboardError(f"{path}: {why}")
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        raise LeaderboardError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def read_jsonl(path: Path, what: str = "samples") -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of every line; a corrupted line other than the last is an error naming the file
    and the line. A torn last line (a run killed mid-write) is skipped, as resume does."""
    lines = read_text(path).split("\n")
    filled = [i for i, line in enumerate(lines) if line.strip()]
    out = []
    for i in filled:
        try:
            obj = json.loads(lines[i])
        except json.JSONDecodeError as exc:
            if i == filled[-1]:
                continue
            raise LeaderboardError(f"{path}, line {i + 1}: corrupted {what} line ({exc.msg}); repair or delete that "
                                   f"line (the sample is then redone by `bench run --resume`), or leave this run "
                                   f"directory out") from exc
        if not isinstance(obj, dict):
            raise LeaderboardError(f"{path}, line {i + 1}: a {what} line must be a JSON object, got {lines[i][:40]!r}")
        out.append((i + 1, obj))
    return out


def run_marks(path: Path) -> tuple[DictConfig | None, str]:
    """The run's config when `path` is a run directory (config.yaml with `names` and a samples file), else
    (None, why not)."""
    why = regular_file(path / "config.yaml")
    if why is not None:
        return None, why
    try:
        cfg = OmegaConf.load(path / "config.yaml")
    except Exception as exc:  # noqa: BLE001 - any unreadable yaml is "not a run directory", said with the cause
        return None, f"its config.yaml is unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(cfg, DictConfig) or not isinstance(cfg.get("names"), DictConfig):
        return None, "its config.yaml has no `names` block (not written by `bench run`)"
    missing = [k for k in ("problem", "algorithm") if not cfg.names.get(k)]
    if missing:
        return None, f"its config.yaml names no {' or '.join(missing)}"
    if not any(path.glob("samples*.jsonl")):
        return None, "it has no samples.jsonl (no sample finished yet)"
    for p in sorted(path.glob("samples*.jsonl")):
        why = regular_file(p)
        if why is not None:
            return None, why
    return cfg, ""


TEST_SPLIT = "test"


def split_of(cfg: DictConfig) -> str:
    """The run's split (runs written before run.split existed ran on test)."""
    run = cfg.get("run")
    split = run.get("split") if isinstance(run, DictConfig) else None
    return TEST_SPLIT if split is None else str(split)


def find_runs(paths: Iterable[str | Path], skipped: list[dict[str, str]] | None = None) -> list[Path]:
    """Run directories among the paths: each path itself or, recursively, those below it. Folders with a
    config.yaml that are not run directories are skipped with a warning (and listed in `skipped`); folders
    whose name starts with a dot (e.g. hydra's `.hydra/`) are not searched. A path that is an entry of `bench
    submit` (.tar) is unpacked and checked against its manifest first (benchmarks.archive)."""
    paths = list(paths)
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise LeaderboardError(f"{p} does not exist")
        p = entry_run(p)
        below = [q.parent for q in p.rglob("config.yaml")
                 if not any(part.startswith(".") for part in q.relative_to(p).parts[:-1])]
        for d in sorted(set(([p] if (p / "config.yaml").exists() else []) + below)):
            cfg, why = run_marks(d)
            if cfg is not None and split_of(cfg) != TEST_SPLIT:
                # a val run is a tuning trial (`bench tune` writes them): scores on the data the options were chosen
                # on are not test results, so they never become a row (the split is not shown in the table)
                cfg, why = None, (f"a run on the {split_of(cfg)!r} split (a `bench tune` trial, or run.split="
                                  f"{split_of(cfg)}), not counted: the leaderboard ranks test-split runs only")
            elif cfg is None:
                why = f"not a run directory, {why}"
            if cfg is not None:
                found.append(d)
            else:
                warnings.warn(f"skipped {d}: {why}", LeaderboardWarning, stacklevel=3)
                if skipped is not None:
                    skipped.append({"path": str(d), "reason": why})
    found = sorted(set(found))
    if not found:
        why = [f"{s['path']}: {s['reason']}" for s in (skipped or [])[:3]]
        raise LeaderboardError(f"no run directories under {', '.join(map(str, paths))} (a run directory has a "
                               f"config.yaml with `names` and a samples.jsonl, as `bench run` writes)"
                               + (f"; skipped: {'; '.join(why)}" if why else ""))
    return found


def _container(node: Any) -> dict[str, Any]:
    if node is None:
        return {}
    value = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    return dict(value) if isinstance(value, dict) else {}


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


_ABSENT = object()


def shift_changed_config(cfg: DictConfig) -> bool:
    """Whether the run's shift changed its resolved config: for each thing the shift sets (dataset, prior,
    each override's key), the run's value against the value without any shift (the problem's default
    dataset and prior, the component's registered default option with the problem's choices laid over it:
    configs/problem/<name>.yaml). A shift no longer defined, or a key
    that cannot be checked, counts as a change (its runs keep a row of their own). A run whose target is its model's
    source domain (`benchmarks.domains.in_distribution`: the network's or the prior's training data) measures no
    shift either, whatever it changed."""
    from benchmarks import registry
    from benchmarks.config import ConfigError, component_defaults, load_shift, problem_choices, problem_options
    from configs import CONFIG_DIR

    names = cfg.names
    if not names.get("shift"):
        return False
    from benchmarks.domains import config_source_domain, in_distribution

    if in_distribution(cfg, config_source_domain(cfg)[1]):
        return False
    try:
        shift = load_shift(names.shift)
        registry.load("problems", names.problem)
        chosen = problem_choices(names.problem)
    except (ConfigError, LookupError):
        return True
    if shift.get("dataset") is not None and names.get("dataset") != chosen.dataset:
        return True
    if shift.get("prior") is not None and names.get("prior") != chosen.prior:
        return True
    groups = {v: k for k, v in registry.CONFIG_DIR.items()}  # "problem" -> "problems"
    for override in shift.get("overrides", []) or []:
        key = str(override).split("=", 1)[0].lstrip("+~")
        head, _, rest = key.partition(".")
        try:
            if head == "adapters":
                adapter, _, rest = rest.partition(".")
                defaults: Any = {**component_defaults("adapters", adapter),
                                 **problem_options(names.problem, "adapters", adapter)}
            elif head == "run":
                defaults = _container(OmegaConf.load(CONFIG_DIR / "bench.yaml").get("run"))
            elif head in groups and names.get(head):
                defaults = component_defaults(groups[head], names[head])
                if groups[head] == "algorithms":
                    defaults = {**defaults, **problem_options(names.problem, "algorithms", names[head])}
            else:
                return True
        except (LookupError, OSError, ConfigError):
            return True
        default = OmegaConf.select(OmegaConf.create(defaults), rest, default=_ABSENT)
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if _plain(value) != _plain(default):
            return True
    return False


def _record_adapted_nothing(record: dict[str, Any]) -> bool:
    """One batch's trace record of an adapter says it changed nothing: TDA with no adapted step, AIR with no
    non-zero guidance weight (both: no sampler step to act at). A frozen pass (`adapting: false`, the naive
    scheme's predict pass) may use what a warm-up pass learned, so it never counts as nothing."""
    if record.get("adapting") is False:
        return False
    if "steps_adapted" in record:
        return record["steps_adapted"] == 0
    if "w_data" in record or "w_tv" in record:
        weights = list(record.get("w_data") or []) + list(record.get("w_tv") or [])
        return not any(weights)
    return False


def adapters_adapted_nothing(path: Path, adapters: list[str]) -> list[str]:
    """The adapters of a run that adapted nothing in any batch, read from adaptation*.jsonl (the per-batch
    trace). An adapter without trace records, or a run whose trace is damaged, counts as having adapted."""
    records: dict[str, list[dict[str, Any]]] = {}
    try:
        for p in sorted(path.glob("adaptation*.jsonl")):
            for _, line in read_jsonl(p, "adaptation"):
                for rec in line.get("trace") or []:
                    if isinstance(rec, dict) and isinstance(rec.get("adapter"), str):
                        records.setdefault(rec["adapter"], []).append(rec)
    except LeaderboardError:
        return []
    return [a for a in adapters if records.get(a) and all(map(_record_adapted_nothing, records[a]))]


def _tuning_key(cfg: DictConfig) -> dict[str, Any] | None:
    t = cfg.get("tuning")
    if t is None:
        return None
    t = _container(t)
    trials = t.get("trials")
    return {"trials": trials if isinstance(trials, int) and not isinstance(trials, bool) else None,
            "metric": None if t.get("metric") is None else str(t["metric"]),
            "split": None if t.get("split") is None else str(t["split"])}


def sample_id(row: dict[str, Any]) -> str:
    return str(row["id"]) if row.get("id") is not None else f"index {row.get('index')}"


def load_run(path: Path) -> dict[str, Any]:
    """One run directory: its row key, the no-op parts it asked for, and its sample rows (with their line)."""
    path = Path(path)
    cfg, why = run_marks(path)
    if cfg is None:
        raise LeaderboardError(f"{path} is not a run directory: {why}; pass directories made by `bench run`")
    rows: list[tuple[dict[str, Any], str]] = []
    for p in sorted(path.glob("samples*.jsonl")):
        for line_no, row in read_jsonl(p):
            if row.get("id") is None and row.get("index") is None:
                raise LeaderboardError(f"{p}, line {line_no}: a sample line without `id` or `index`")
            rows.append((row, f"{p.name} line {line_no}"))
    env: dict[str, Any] = {}
    if (path / "environment.json").exists():
        try:
            env = json.loads(read_text(path / "environment.json"))
        except (json.JSONDecodeError, LeaderboardError):
            env = {}
        env = env if isinstance(env, dict) else {}
    names = cfg.names
    requested = [str(a) for a in (names.get("adapters") or [])]
    noop = adapters_adapted_nothing(path, requested)
    adapters = [a for a in requested if a not in noop]
    all_adapter_opts = _container(cfg.get("adapters"))
    shift = names.get("shift")
    shift_noop = None
    if shift and not shift_changed_config(cfg):
        shift, shift_noop = None, str(shift)
    prior = names.get("prior")
    prior_hash = names.get("prior_hash", UNKNOWN_HASH if prior is not None else None)
    # a line that carries no tier (a failed line of an item that could not be read, or a run from before tiers were
    # recorded) says nothing about the run's tier: only the lines that state one count
    tiers = sorted({str(r["tier"]) for r, _ in rows if r.get("tier")}) or ["simulated"]
    if len(tiers) > 1:
        raise LeaderboardError(f"{path}: its samples mix the tiers {tiers}; a run is simulated or measured, not both")
    targets = sorted({str(r["target_convention"]) for r, _ in rows if r.get("target_convention")}) or ["dataset image"]
    scored = line_conventions([r for r, _ in rows])  # a run scored under two conventions is never one row's numbers
    if len(scored) > 1:
        raise LeaderboardError(f"{path}: its samples were scored under {len(scored)} metric conventions ({scored}); "
                               f"re-score it with `bench rescore {path}`")
    volumes: list[dict[str, Any]] = []
    if (path / "summary.json").exists():
        try:
            volumes = list(json.loads(read_text(path / "summary.json")).get("volumes") or [])
        except (json.JSONDecodeError, AttributeError, TypeError, LeaderboardError):
            volumes = []
    run = cfg.get("run") or {}
    key = {"problem": names.problem, "dataset": names.get("dataset"), "tier": tiers[0],
           "target_convention": "+".join(targets), "metric_convention": (scored or [METRIC_CONVENTION["fastmri"]])[0],
           "shift": shift, "algorithm": names.algorithm,
           "adapters": "+".join(adapters), "prior": prior, "prior_hash": prior_hash,
           "scheme": run.get("scheme"), "split": run.get("split"), "tuning": _tuning_key(cfg),
           "problem_options": _container(cfg.get("problem")), "dataset_options": _container(cfg.get("dataset")),
           "prior_options": _container(cfg.get("prior")) if prior is not None else {},
           "algorithm_options": _container(cfg.get("algorithm")),
           "adapter_options": {a: all_adapter_opts.get(a, {}) for a in adapters}}
    tuning = _container(cfg.get("tuning")) if cfg.get("tuning") is not None else None
    return {"key": key, "rows": rows, "device": str(env.get("device", "unknown")), "run_id": run_label(path),
            "verification": read_verification(path),
            "adapters_noop": noop, "shift_noop": shift_noop, "variant": (tuple(noop), shift_noop or ""),
            "tuning": tuning, "volumes": volumes}


# --- aggregation ----------------------------------------------------------------------------------------

def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def robust_stats(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and population std, sqrt(sum (v - mean)^2 / n), without overflow: both computed on v / max|v| (in
    [-1, 1]) and scaled back (both are at most max|v|, so finite for finite values; a result rounded past the
    largest float is None)."""
    if not values:
        return None, None
    scale = max(abs(v) for v in values)
    if scale == 0:
        return 0.0, 0.0
    u = [v / scale for v in values]
    mu = math.fsum(u) / len(u)
    var = math.fsum((x - mu) ** 2 for x in u) / len(u)
    mean, std = mu * scale, math.sqrt(var) * scale
    return (mean if math.isfinite(mean) else None), (std if math.isfinite(std) else None)


def _metric_stats(ok: list[dict[str, Any]], metrics: Iterable[str], notes: list[str]) -> dict[str, Any]:
    out = {}
    for m in metrics:
        present = [r[m] for r in ok if r.get(m) is not None]
        vals = [float(v) for v in present if _finite(v)]
        bad = len(present) - len(vals)
        mean, std = robust_stats(vals)
        if bad:
            notes.append(f"{m}: {bad} non-finite or non-numeric value(s) left out of the mean")
        if vals and (mean is None or std is None):
            notes.append(f"{m}: the {'mean' if mean is None else 'std'} overflows a float; written as null")
        out[m] = {"mean": mean, "std": std, "n": len(vals), "n_nonfinite": bad}
    return out


def problem_metrics_block(problem: str, ok: list[dict[str, Any]], notes: list[str]) -> dict[str, Any] | None:
    """The problem's own metrics of an entry: {version, per_sample: {name: stats}, per_run: {name: value}};
    per-sample means over the ok rows' `problem_metrics`, per-run values from their `problem_record`s
    (Problem.run_metrics over the merged rows). None where the rows carry neither."""
    from benchmarks import registry

    names = sorted({m for r in ok for m in (r.get("problem_metrics") or {})})
    records = [r["problem_record"] for r in ok if r.get("problem_record")]
    if not names and not records:
        return None
    cls = registry.load_optional("problems", problem)
    per_run: dict[str, Any] = {}
    if records and cls is not None:
        per_run = {k: (float(v) if _finite(v) else None) for k, v in cls.run_metrics(records).items()}
    return {"version": str(getattr(cls, "metrics_version", None) or "unknown"),
            "per_sample": _metric_stats([r.get("problem_metrics") or {} for r in ok], names, notes),
            "per_run": per_run}


def _problem_info(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean over samples of each finite `problem_*` fact (e.g. the realised acceleration), prefix dropped."""
    info = {}
    for k in sorted({k for r in rows for k in r if k.startswith("problem_")}):
        mean, _ = robust_stats([float(r[k]) for r in rows if _finite(r.get(k))])
        if mean is not None:
            info[k.removeprefix("problem_")] = mean
    return info


def _dedupe(runs: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    """The rows of one leaderboard row, each sample id once. Two runs of one variant (the same no-op shift
    and adapters, if any) holding the same id: an error naming both. A run whose only difference is a no-op
    shift or adapter repeats the same computation: its copy of an id the plainer run holds is counted once."""
    kept: list[dict[str, Any]] = []
    kept_ids: dict[str, str] = {}
    by_variant: dict[tuple, dict[str, str]] = {}
    folded: dict[tuple[str, str], int] = {}
    for run in sorted(runs, key=lambda r: (len(r["variant"][0]) + bool(r["variant"][1]), r["variant"], r["run_id"])):
        seen = by_variant.setdefault(run["variant"], {})
        for row, where in run["rows"]:
            sid = sample_id(row)
            here = f"{run['run_id']} ({where})"
            if sid in seen:
                raise LeaderboardError(
                    f"sample {sid!r} is counted twice in one leaderboard row: in {seen[sid]} and in {here}. "
                    f"The same samples run again are not new samples; leave one run directory out (or, for a "
                    f"larger n, run other samples, e.g. another split or --n beyond the first run's)")
            seen[sid] = here
            if sid in kept_ids:
                pair = (run["run_id"], kept_ids[sid])
                folded[pair] = folded.get(pair, 0) + 1
                continue
            kept_ids[sid] = run["run_id"]
            kept.append(row)
    for (run_id, plain), k in sorted(folded.items()):
        notes.append(f"{k} sample(s) of {run_id} repeat {plain} (the same computation: its shift or adapter changed "
                     f"nothing); counted once")
    return kept


def changed_options(key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per component (the algorithm, each adapter), the options that differ from its registered defaults.

    Rows of one method with other options are separate entries; this is what tells them apart. A component
    no longer registered shows all its options."""
    from benchmarks.config import component_defaults
    from benchmarks.registry import RegistryError

    parts = [("algorithms", key["algorithm"], "algorithm", key["algorithm_options"])]
    parts += [("adapters", name, name, opts) for name, opts in key["adapter_options"].items()]
    changed = {}
    for group, name, label, opts in parts:
        try:
            defaults = component_defaults(group, name)
        except RegistryError:
            defaults = {}
        diff = {k: v for k, v in opts.items() if k not in defaults or defaults[k] != v}
        if diff:
            changed[label] = diff
    return changed


def _flat(entry: dict[str, Any]) -> dict[str, str]:
    """Every keyed value of an entry as `group.option` -> text (what may tell two Markdown rows apart)."""
    flat = {}
    for group in ("problem", "dataset", "prior", "algorithm"):
        for k, v in entry[f"{group}_options"].items():
            flat[f"{group}.{k}"] = option_text(v)
    for a, opts in entry["adapter_options"].items():
        for k, v in opts.items():
            flat[f"adapters.{a}.{k}"] = option_text(v)
    h = entry.get("prior_hash")
    flat["prior_hash"] = str(h)[:19] if h else str(h)  # "sha256:" + 12 hex digits
    flat["run.scheme"], flat["run.split"] = str(entry.get("scheme")), str(entry.get("split"))
    flat["tuning"] = option_text(entry.get("tuning"))
    return flat


def _cells(e: dict[str, Any], label: str) -> list[str]:
    accel = e["problem_info"].get("acceleration")
    coils = e["problem_info"].get("coils") or e["problem_options"].get("coils")  # measured: the data's own
    return [e["problem"], f"{accel:.1f}" if accel else "–", f"{coils:g}" if isinstance(coils, (int, float)) and coils else "–", str(e["dataset"]),
            e["shift"] or "–", label, e["prior"] or "–", tuning_label(e), e.get("tier") or "simulated",
            e.get("target_convention") or "dataset image"]


def _label_entries(entries: list[dict[str, Any]]) -> None:
    """Set each entry's `label`: its method label, plus, where the Markdown cells of two rows would be the
    same, the keyed values that differ between them (e.g. `cg-sense [problem.mask=equispaced]`)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for e in entries:
        e["label"] = method_label(e)
        groups.setdefault(tuple(_cells(e, e["label"])), []).append(e)
    for same in groups.values():
        if len(same) < 2:
            continue
        flats = [_flat(e) for e in same]
        keys = sorted({k for f in flats for k in f if len({g.get(k, "–") for g in flats}) > 1})
        for e, f in zip(same, flats):
            e["label"] += " [" + ", ".join(f"{k}={f.get(k, '–')}" for k in keys) + "]"


def _order(e: dict[str, Any]) -> tuple:
    return (e["problem"], e["problem_info"].get("acceleration", 0), -int(e["problem_options"].get("coils") or 0),
            str(e["dataset"]), str(e["shift"]), str(e["prior"]), e["algorithm"], e["adapters"],
            json.dumps({k: e[k] for k in KEY}, sort_keys=True, default=str))


def build(paths: Iterable[str | Path], reference: str | None = None) -> dict[str, Any]:
    """The leaderboard of the run directories under `paths`: {schema_version, created, entries, skipped, statistics},
    each setting's rows compared with its `reference` row (benchmarks.comparison; default L1-wavelet)."""
    from benchmarks import comparison

    skipped: list[dict[str, str]] = []
    run_dirs = find_runs(paths, skipped)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    failed: list[str] = []
    for d in run_dirs:
        try:
            run = load_run(d)
        except (LeaderboardError, OSError, UnicodeDecodeError) as exc:  # one bad run costs its row, not the board
            reason = str(exc) if isinstance(exc, LeaderboardError) else f"{type(exc).__name__}: {exc}"
            warnings.warn(f"skipped {d}: {reason}", LeaderboardWarning, stacklevel=2)
            skipped.append({"path": str(d), "reason": reason})
            failed.append(reason)
            continue
        groups.setdefault(tuple(freeze(run["key"][k]) for k in KEY), []).append(run)
    if not groups:
        raise LeaderboardError("no run directory could be put on the leaderboard: " + "; ".join(failed))
    entries = []
    for key, runs in groups.items():
        notes: list[str] = []
        rows = _dedupe(runs, notes)
        ok = [r for r in rows if r.get("status") == "ok"]
        metrics = _metric_stats(ok, METRICS, notes)
        volumes = {str(v.get("volume")): v for run in runs for v in run["volumes"] if isinstance(v, dict)}
        if volumes:
            vm = _metric_stats(list(volumes.values()), ("psnr", "ssim", "nmse"), notes)
            metrics.update({f"volume_{m}": v for m, v in vm.items()})
        tuning = None
        if runs[0]["key"]["tuning"] is not None:
            studies = {str(r["tuning"].get("study")): r["tuning"].get("score") for r in runs}
            tuning = {**runs[0]["key"]["tuning"], "studies": [{"study": s, "score": sc if _finite(sc) else None}
                                                              for s, sc in sorted(studies.items())]}
        entries.append({
            **{k: (json.loads(v) if k.endswith("_options") else v) for k, v in zip(KEY, key)},
            "tuning": tuning,
            "adapters_noop": sorted({a for r in runs for a in r["adapters_noop"]}),
            "shift_noop": sorted({r["shift_noop"] for r in runs if r["shift_noop"]}),
            "changed_options": changed_options(runs[0]["key"]),
            "n": len(ok),
            "n_failed": len(rows) - len(ok),
            "metrics": metrics,
            "nfe": metrics["nfe"]["mean"],
            "seconds_per_sample": metrics["seconds"]["mean"],
            "device": sorted({run["device"] for run in runs}),
            "problem_info": _problem_info(rows),
            "run_ids": sorted(run["run_id"] for run in runs),
            "metric_convention": f"per-slice ({key[KEY.index('metric_convention')]})" + (" + per-volume (fastMRI)"
                                                                                      if volumes else ""),
            "notes": notes,
            "per_sample": comparison.per_sample_block(ok, sample_id),
        })
        verified = row_verification(runs)  # `bench verify` of its runs (benchmarks.verify)
        if verified is not None:
            entries[-1]["verification"] = verified
        block = problem_metrics_block(runs[0]["key"]["problem"], ok, notes)
        if block is not None:
            entries[-1]["problem_metrics"] = block
    entries.sort(key=_order)
    _label_entries(entries)
    board = {"schema_version": SCHEMA_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "entries": entries,
             "skipped": skipped}
    return comparison.annotate(board, reference or comparison.DEFAULT_REFERENCE)


def _no_constant(name: str) -> Any:
    raise ValueError(f"a bare {name}, which JSON does not have (a missing number is null)")


def read_board(path: Path, flag: str) -> dict[str, Any]:
    """A leaderboard file read strictly: a regular file, JSON without NaN/Infinity, an object valid under the shipped
    schema; anything else is a LeaderboardError naming the file, the place and the problem."""
    import jsonschema

    if not path.exists():
        raise LeaderboardError(f"{flag} {path}: no such file")
    try:
        old = json.loads(read_text(path), parse_constant=_no_constant)
    except LeaderboardError as exc:
        raise LeaderboardError(f"{flag} {exc}") from exc
    except json.JSONDecodeError as exc:
        raise LeaderboardError(f"{flag} {path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                               f"pass a leaderboard.json written by `bench leaderboard`") from exc
    except ValueError as exc:
        raise LeaderboardError(f"{flag} {path}: holds {exc}; the file was edited by hand or written by another "
                               f"program: rebuild it with `bench leaderboard`") from exc
    if not isinstance(old, dict):
        raise LeaderboardError(f"{flag} {path}: holds a JSON {type(old).__name__.replace('dict', 'object')}, not a "
                               f"leaderboard (an object with schema_version and entries, as `bench leaderboard -o` "
                               f"writes)")
    version = str(old.get("schema_version", ""))
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise LeaderboardError(f"{flag} {path}: schema {version or 'unknown'} cannot join schema {SCHEMA_VERSION} "
                               f"(another major version); rebuild it from its run directories")
    try:
        jsonschema.validate(old, json.loads(SCHEMA_PATH.read_text()))
    except jsonschema.ValidationError as exc:
        where = "/".join(map(str, exc.absolute_path)) or "(top)"
        raise LeaderboardError(f"{flag} {path}: at {where}: {exc.message}; the file is not a valid leaderboard "
                               f"(tampered or hand-edited): rebuild it from its run directories") from exc
    return old


def keep(board: dict[str, Any], earlier: str | Path) -> dict[str, Any]:
    """Carry into `board` the entries of an earlier leaderboard file (rows whose run directories are gone, e.g.
    those of a former default prior): each is kept as it was, with a note naming the file. Its schema must have
    the same major version; an entry whose key is also a row of `board` is an error (the two would merge unlike
    or repeated runs), naming the row and the fix."""
    path = Path(earlier)
    old = read_board(path, "--keep")
    version = str(old.get("schema_version", ""))
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise LeaderboardError(f"--keep {path}: schema {version or 'unknown'} cannot join schema {SCHEMA_VERSION} "
                               f"(another major version); rebuild it from its run directories")
    have = {tuple(freeze(e.get(k)) for k in KEY): e for e in board["entries"]}
    for e in old.get("entries", []):
        key = tuple(freeze(e.get(k)) for k in KEY)
        if key in have:
            raise LeaderboardError(
                f"--keep {path}: its row {e.get('label') or method_label(e)!r} ({e['problem']}, {e['dataset']}, prior "
                f"{e['prior']}) has the same key as the row of runs {have[key]['run_ids']}; the same computation "
                f"would be counted twice: drop --keep or leave those run directories out")
        kept = {**e, "notes": list(e.get("notes", [])) + [f"kept from {path.name} (created {old.get('created')}); "
                                                          f"its run directories are not part of this build"]}
        board["entries"].append(kept)
        have[key] = kept
    return restat(board)


def restat(board: dict[str, Any], reference: str | None = None) -> dict[str, Any]:
    """The board's rows re-sorted, re-labelled and compared again (settings, duplicates, intervals, paired differences,
    ranks) with `reference` (default: the board's own, else L1-wavelet); written as the current schema version."""
    from benchmarks import comparison

    reference = reference or (board.get("statistics") or {}).get("reference") or comparison.DEFAULT_REFERENCE
    board["entries"].sort(key=_order)
    _label_entries(board["entries"])
    board["schema_version"] = SCHEMA_VERSION
    return comparison.annotate(board, reference)


def from_json(path: str | Path, reference: str | None = None) -> dict[str, Any]:
    """An earlier leaderboard file's rows, as they are, compared again under the current rules (`restat`)."""
    return restat(read_board(Path(path), "--from-json"), reference)


def _non_finite(value: Any, where: str = "") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return where or "(top)"
    if isinstance(value, dict):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        found = _non_finite(v, f"{where}/{k}")
        if found:
            return found
    return None


def validate(board: dict[str, Any]) -> None:
    """The shipped JSON Schema, and no NaN or infinity anywhere (JSON has none: they are written as null)."""
    import jsonschema

    jsonschema.validate(board, json.loads(SCHEMA_PATH.read_text()))
    bad = _non_finite(board)
    if bad:
        raise jsonschema.ValidationError(f"non-finite number at {bad}; JSON has no NaN or infinity (use null)")


def _options_as_json(obj: Any, in_options: bool = False) -> Any:
    """obj with every non-finite number inside an options mapping (`*_options`, `changed_options`) written as the
    string "inf", "-inf" or "nan": a configuration may hold one (e.g. lowfield's TDA `param_sigma_max: .inf`), and
    JSON has none. Metrics are left alone, so that a NaN there still fails validation."""
    if isinstance(obj, dict):
        return {k: _options_as_json(v, in_options or str(k).endswith("_options")) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_options_as_json(v, in_options) for v in obj]
    if in_options and isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def dumps(board: dict[str, Any]) -> str:
    """The board as strict JSON (validated first; a NaN would fail here rather than be written as `NaN`); infinite
    option values are written as strings (`_options_as_json`)."""
    board = _options_as_json(board)
    validate(board)
    return json.dumps(board, indent=2, allow_nan=False)


def _fmt(v: float | None, m: str) -> str:
    if v is None:
        return "–"
    if m in ("nmse", "data_misfit"):
        return f"{v:.3g}"
    if m in ("seconds",):
        return f"{v:.2f}"
    if m == "nfe":
        return f"{v:.0f}"
    return f"{v:.4f}" if m == "ssim" else f"{v:.2f}"


def md_cell(value: Any) -> str:
    """Text quoted into a Markdown table cell, inert: HTML (`<script>`, `<b onmouseover=...>`) escaped; pipes,
    backticks and backslashes as character references (they would split the row, open code spans or escape what
    follows); an inline link `](` broken; control characters (newlines, ANSI escapes) shown as `\\n`, `\\x1b`, so
    one row stays one line in a file and on a terminal."""
    text = html.escape(str(value), quote=False)
    for char, ref in (("\\", "&#92;"), ("|", "&#124;"), ("`", "&#96;"), ("](", "]&#40;")):
        text = text.replace(char, ref)
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def _tuning_cell(e: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> str:
    """The tuning label, plus the tuned rows collapsed into this one (their tuning kept these defaults)."""
    also = [tuning_label(by_id[r]) for r in e.get("collapsed") or [] if r in by_id]
    return tuning_label(e) + (f" (= {'; '.join(also)})" if also else "")


def _ci_cell(e: dict[str, Any], m: str) -> str:
    ci = (e["metrics"].get(m) or {}).get("ci95")
    return f"[{_fmt(ci[0], m)}, {_fmt(ci[1], m)}]" if ci else "–"


def markdown(board: dict[str, Any], metrics: tuple[str, ...] = TABLE) -> str:
    """The full table, one line per row except collapsed duplicates (named in their defaults row's tuning cell):
    PSNR/SSIM/NMSE are per-slice means (± std), `PSNR 95 % CI` the bootstrap interval of the mean, `vs ref` the paired
    PSNR difference to the setting's reference row (benchmarks.comparison), `rank` the shared PSNR rank in the setting;
    `vol PSNR`/`vol SSIM` (fastMRI's per-volume convention) are added where some row has them."""
    from benchmarks.comparison import reference_cell

    if any("volume_psnr" in e["metrics"] for e in board["entries"]):
        metrics = tuple(metrics) + ("volume_psnr", "volume_ssim")
    names = {"seconds": "s/sample", "volume_psnr": "vol PSNR", "volume_ssim": "vol SSIM"}
    head = ["problem", "R", "coils", "dataset", "shift", "method", "prior", "tuning", "tier", "target", "n", "rank"]
    for m in metrics:
        head.append(names.get(m, m.upper() if m in ("psnr", "ssim", "nmse", "nfe") else m))
        head += ["PSNR 95 % CI", "vs ref (PSNR)"] if m == "psnr" else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_id = {e["row_id"]: e for e in board["entries"] if e.get("row_id")}
    for e in board["entries"]:
        if e.get("collapsed_into"):
            continue
        cells = _cells(e, e.get("label") or method_label(e)) + [str(e["n"])]
        cells[head.index("tuning")] = _tuning_cell(e, by_id)
        rank = (e.get("comparison") or {}).get("rank")
        cells.append("–" if rank is None else str(rank))
        for m in metrics:
            mm = e["metrics"].get(m, {"mean": None, "std": None})
            cell = _fmt(mm["mean"], m.removeprefix("volume_"))
            if m.removeprefix("volume_") in ("psnr", "ssim") and mm["std"] is not None:
                cell += f" ± {_fmt(mm['std'], m)}"
            cells.append(cell)
            cells += [_ci_cell(e, m), reference_cell(e)] if m == "psnr" else []
        lines.append("| " + " | ".join(map(md_cell, cells)) + " |")
    return "\n".join(lines) + "\n"


def document(board: dict[str, Any]) -> str:
    """What `bench leaderboard --markdown` writes: the per-family matrices, then the full table."""
    from benchmarks.comparison import matrix_markdown

    mats = matrix_markdown(board, md_cell)
    return (mats + "\n**All rows**\n\n" if mats else "") + markdown(board)
