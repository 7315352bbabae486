"""What tells leaderboard rows apart, and how a row is named: the row key, method and tuning labels.

Below both benchmarks.leaderboard (which aggregates runs into rows) and benchmarks.comparison (which compares rows);
benchmarks.leaderboard re-exports these names.
"""
from __future__ import annotations

import json
from typing import Any

KEY = ("problem", "dataset", "tier", "target_convention", "metric_convention", "shift", "algorithm", "adapters", "prior",
       "prior_hash", "scheme", "split", "tuning", "problem_options", "dataset_options", "prior_options",
       "algorithm_options", "adapter_options")


def freeze(value: Any) -> Any:
    """A key part made hashable: dicts and lists as sorted JSON text."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def option_text(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


# Problem options that change how the reconstruction is handed its operator, not the data or the physics: rows that
# differ only in them share a setting (benchmarks.comparison.setting_of), and the label names the ones set.
SOLVER_FACING_OPTIONS = frozenset({"forward_only"})


def method_label(entry: dict[str, Any]) -> str:
    """algorithm[+adapters], then the changed options and the adapters that adapted nothing, e.g.
    `diffpir (lam=30)`, `cg-sense (+tda adapted nothing)`."""
    name = entry["algorithm"] + (f"+{entry['adapters']}" if entry["adapters"] else "")
    opts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={option_text(v)}"  # a tuned float: 4 significant digits
            for part in entry["changed_options"].values() for k, v in part.items()]
    opts += [f"+{a} adapted nothing" for a in entry.get("adapters_noop", [])]
    problem = entry.get("problem_options") or {}
    opts[:0] = [k.replace("_", "-") for k in sorted(SOLVER_FACING_OPTIONS) if problem.get(k)]
    return name + (f" ({', '.join(opts)})" if opts else "")


def tuning_label(entry: dict[str, Any]) -> str:
    t = entry.get("tuning")
    if not t:
        return "defaults"
    # the study's trial 0 (the defaults) won: nothing changed, or the row repeats a defaults row (collapsed into it)
    kept = "" if entry.get("changed_options") and not entry.get("collapsed_into") else ": defaults kept"
    return f"tuned on {t.get('split')}, {t.get('trials')} trials{kept}"
