"""`bench tune`: every method tuned on the val split with one budget, by hydra's Optuna sweeper.

The search space is the `search:` block of configs/algorithm/<name>.yaml (and of each adapter's yaml for
A+ADAPTER), in hydra's sweep syntax. The sweeper (TPE, seeded) runs `--trials` jobs of `--n-val` val samples
each, maximising `sweep.score` (mean val PSNR, a failed sample counting 0 dB). The study is written beside the
trials' run directories:

    STUDY_DIR/<trial>/                  one run directory per trial (run.split = val)
    STUDY_DIR/optimization_results.yaml hydra's Optuna sweeper: best_params, best_value
    STUDY_DIR/study.json                problem, method, search space, every trial (options, score), the best

`bench run ... --tuned STUDY_DIR` applies the best options and records them in the run's `tuning` block.

A study is data, validated (issue 26): `--tuned` applies only the keys of the method's search space (the yaml's
`search:` blocks, or the sweep expressions the study was run with, recorded in study.json `space`), each inside its
declared range, type or choices, and only to a run of the study's setting: the same problem and problem options,
dataset and its options (other than which items: split, length, seed, slices, slab), algorithm and adapters with
their fixed options, run.scheme, prior and prior fingerprint; the study must have been made on the val split.
Anything else is refused, naming the key. study.json `command` is the `bench run` command that reproduces the
study's setting (its fixed options included).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf

from benchmarks.config import ConfigError, component_defaults, search_space
from benchmarks.sweep import FAILED_PSNR, SweepSpec, check_plugins, check_sweep_dir, job_dirs, multirun, score

STUDY = "study.json"
DEFAULTS = "defaults"  # the study's trial 0: the registered defaults
VAL = "val"
# dataset options that pick which items or how many, not how they look (as benchmarks.runner.SAMPLING_OPTIONS): a
# study's val items and a run's test items differ in them by design
SAMPLING = frozenset({"split", "length", "seed", "slices", "slab"})
SETTING = ("problem", "dataset", "algorithm", "adapters", "prior")  # the option groups a study's setting fixes


def method_space(algorithm: str, adapters: list[str]) -> dict[str, str]:
    """{override key: sweep expression} over the algorithm's and the adapters' `search:` blocks."""
    space = {f"algorithm.{k}": v for k, v in search_space("algorithms", algorithm).items()}
    for a in adapters:
        space.update({f"adapters.{a}.{k}": v for k, v in search_space("adapters", a).items()})
    return space


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def tune(spec: SweepSpec, trials: int, n_val: int, seed: int, overrides: list[str]) -> dict[str, Any]:
    """Run the study of one problem and method into spec.out and return study.json's content."""
    if len(spec.problems) > 1 or len(spec.algorithms) > 1:
        raise ConfigError("bench tune studies one problem and one method; run one `bench tune` per pair")
    if trials < 1 or n_val < 1:
        raise ConfigError(f"--trials and --n-val must be >= 1, got {trials} and {n_val}")
    check_plugins(["hydra/sweeper=optuna"])
    algorithm = spec.algorithms[0]
    space = method_space(algorithm, spec.adapters)
    if not space:
        raise ConfigError(f"{algorithm}{''.join('+' + a for a in spec.adapters)} declares no search space; add a "
                          f"`search:` block to configs/algorithm/{algorithm}.yaml (see docs/scale-out.md, Tuning)")
    given = {_key(o) for o in overrides}
    if "run.split" in given:
        raise ConfigError("bench tune always tunes on run.split=val; drop the run.split override")
    check_sweep_dir(spec.out, spec.resume)  # a foreign non-empty --out is refused before anything is written
    sweeper = {"hydra/sweeper": "optuna", "hydra.sweeper.direction": "maximize", "hydra.sweeper.n_trials": trials,
               "hydra.sweeper.n_jobs": 1, "hydra.sweeper.sampler.seed": seed,
               "hydra.sweeper.study_name": f"{spec.problems[0]}-{algorithm}{''.join('+' + a for a in spec.adapters)}",
               "run.split": "val", "run.n": n_val}
    fixed = [f"{k}={v}" for k, v in sweeper.items() if k not in given]
    searched = [f"{k}={v}" for k, v in space.items() if k not in given]  # an option set by hand is not searched
    # Trial 0 of every study is the method with its registered defaults, so that a study never ends below the
    # defaults on val; the sampler spends the other trials - 1.
    swept = sweep_exprs(overrides)  # a search space given on the command line, e.g. algorithm.lam=choice(1, 10)
    for key in swept:
        check_method_key(key, algorithm, spec.adapters, "bench tune")
    studied = {**{k: v for k, v in space.items() if k not in given}, **swept}
    check_space(studied)  # every range is checked before trial 0, naming its key
    val = [o for o in fixed if o.startswith("run.")]
    multirun(replace(spec, out=spec.out / DEFAULTS), val + [o for o in overrides if _key(o) not in swept])
    if trials > 1:
        with quiet_sweeper_best():  # one best is reported: the study's (trial 0 included), not the sampler's too
            multirun(spec, [o for o in fixed if not o.startswith("hydra.sweeper.n_trials")]
                     + [f"hydra.sweeper.n_trials={trials - 1}"] * ("hydra.sweeper.n_trials" not in given)
                     + searched + list(overrides))
    return write_study(spec.out, studied)


@contextlib.contextmanager
def quiet_sweeper_best() -> Iterator[None]:
    """Drop the Optuna sweeper's own "Best parameters/value" log lines: its best ignores the defaults trial, so
    printing it beside the study's best would report two different bests."""
    logger = logging.getLogger("hydra_plugins.hydra_optuna_sweeper._impl")

    def drop(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Best parameters", "Best value"))

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _parse(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(
            [o for o in overrides if not o.lstrip("+~").startswith("hydra")])
    except HydraException as exc:
        raise ConfigError(f"bad override: {exc}") from exc


def sweep_keys(overrides: list[str]) -> set[str]:
    """The keys of the overrides that are sweeps (`choice(...)`, `interval(...)`, `a,b`, ...)."""
    return set(sweep_exprs(overrides))


def sweep_exprs(overrides: list[str]) -> dict[str, str]:
    """{key: sweep expression} of the overrides that are sweeps, e.g. {'algorithm.lam': 'choice(1.0, 10.0)'}."""
    return {o.get_key_element().lstrip("+~"): o.input_line.split("=", 1)[1] for o in _parse(overrides)
            if o.is_sweep_override()}


def method_options(algorithm: str, adapters: list[str]) -> set[str]:
    """Every option key of the method: algorithm.<option>, adapters.<adapter>.<option>."""
    keys = {f"algorithm.{k}" for k in component_defaults("algorithms", algorithm)}
    for a in adapters:
        keys |= {f"adapters.{a}.{k}" for k in component_defaults("adapters", a)}
    return keys


def check_method_key(key: str, algorithm: str, adapters: list[str], what: str) -> None:
    """A searched (or tuned) key must be an option of the method: not a run, problem, dataset or prior setting."""
    if key not in method_options(algorithm, adapters):
        method = algorithm + "".join("+" + a for a in adapters)
        raise ConfigError(f"{what}: {key} is not an option of {method} (a study tunes the method's own options, "
                          f"algorithm.* and adapters.<name>.*; a problem, dataset, prior or run setting is fixed for "
                          f"the whole study: give it as key=value)")


def parse_sweep(key: str, expr: str) -> Any:
    """The hydra sweep object (ChoiceSweep, IntervalSweep, RangeSweep) of `key=expr`, or a ConfigError naming key."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        override = OverridesParser.create().parse_override(f"{key}={expr}")
    except HydraException as exc:
        raise ConfigError(f"search space {key}={expr}: not a hydra sweep expression ({exc}); write e.g. "
                          f"interval(0.1, 10.0), tag(log, interval(0.1, 10.0)) or choice(5, 10, 20)") from exc
    if not override.is_sweep_override():
        raise ConfigError(f"search space {key}={expr}: a single value, not a range; write e.g. interval(0.1, 10.0) "
                          f"or choice(5, 10, 20)")
    return override.value()


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_space(space: dict[str, str]) -> None:
    """Every sweep expression parses and describes a non-empty range the Optuna sampler can draw from (an interval
    low < high of finite numbers, low > 0 on a log scale; a non-empty choice or range), else a ConfigError naming
    the key, before any trial runs."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    for key, expr in space.items():
        sweep = parse_sweep(key, expr)
        if isinstance(sweep, IntervalSweep):
            lo, hi = sweep.start, sweep.end
            if not (_number(lo) and _number(hi)) or not lo < hi:
                raise ConfigError(f"search space {key}={expr}: an interval needs finite bounds low < high, got "
                                  f"{lo} and {hi}; write interval(LOW, HIGH)")
            if "log" in sweep.tags and lo <= 0:
                raise ConfigError(f"search space {key}={expr}: a log-scale interval needs low > 0, got {lo}; raise "
                                  f"the lower bound or drop tag(log, ...)")
        elif isinstance(sweep, ChoiceSweep):
            if not sweep.list:
                raise ConfigError(f"search space {key}={expr}: an empty choice; list at least one value")
        elif isinstance(sweep, RangeSweep):
            if not (_number(sweep.start) and _number(sweep.stop)) or not sweep.start < sweep.stop:
                raise ConfigError(f"search space {key}={expr}: an empty range; write range(START, STOP) with "
                                  f"START < STOP")


def outside(value: Any, key: str, expr: str) -> str | None:
    """Why `value` is not a value the sweep `expr` can give (wrong type, out of range, not a choice), or None."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    sweep = parse_sweep(key, expr)
    if isinstance(sweep, IntervalSweep):
        if not _number(value):
            return f"{value!r} is not a number"
        if "int" in sweep.tags and float(value) != int(value):
            return f"{value!r} is not a whole number"
        if not sweep.start <= value <= sweep.end:
            return f"{value!r} is outside [{sweep.start}, {sweep.end}]"
        return None
    if isinstance(sweep, ChoiceSweep):
        same = [c for c in sweep.list if c == value and isinstance(c, bool) == isinstance(value, bool)
                and isinstance(c, str) == isinstance(value, str)]
        return None if same else f"{value!r} is not one of the choices {sweep.list}"
    if isinstance(sweep, RangeSweep):
        step = sweep.step or 1
        if not _number(value) or not sweep.start <= value < sweep.stop or (value - sweep.start) % step:
            return f"{value!r} is not in range({sweep.start}, {sweep.stop}, {step})"
        return None
    return f"{expr} is not a search space"


def setting_of(cfg: DictConfig, searched: set[str] | list[str]) -> dict[str, Any]:
    """The study-relevant options of a resolved config, flattened (`problem.coils`, `adapters.tda.n_steps`, ...):
    the problem, dataset (but not which items), algorithm, adapters and prior options, and run.scheme; the searched
    keys left out (they are what the study chooses)."""
    from benchmarks.results import flatten

    out: dict[str, Any] = {}
    for group in SETTING:
        node = cfg.get(group)
        if node is None:
            continue
        for k, v in flatten(OmegaConf.to_container(node, resolve=True), f"{group}.").items():
            if "." not in k or k in searched or (group == "dataset" and k.split(".")[1] in SAMPLING):
                continue  # an empty group, a searched option, or which dataset items
            out[k] = v
    run = cfg.get("run") or {}
    out["run.scheme"] = run.get("scheme", "online")
    return out


def neutral_prior_hash(cfg: DictConfig) -> str | None:
    """The fingerprint (benchmarks.fingerprint) of the config's prior as built from its options, before any execution
    setting (device, precision, memory layout) is applied: what tells a study's weights from a run's. None without a
    prior."""
    from benchmarks.build import build_prior
    from benchmarks.fingerprint import prior_fingerprint

    if (cfg.get("names") or {}).get("prior") is None:
        return None
    return prior_fingerprint(build_prior(cfg))


def hydra_value(v: Any) -> str:
    """A plain value as hydra override syntax (strings quoted, lists and dicts in hydra's grammar)."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {hydra_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(hydra_value(x) for x in v) + "]"
    return _value(v)


def reproducing_command(names: dict[str, Any], setting: dict[str, Any], out: Path) -> str:
    """`bench run ... --tuned OUT`: every option of the study's setting that differs from what `bench run` composes
    for the same names, so that the command run as printed is the study's setting."""
    from benchmarks.config import Selection, compose_config

    sel = Selection(names["problem"], names["algorithm"], list(names["adapters"]), names.get("prior"),
                    names.get("dataset"), names.get("shift"))
    default = setting_of(compose_config(sel, []), set())
    words = ["bench", "run", "--problem", sel.problem, "--algo", sel.algorithm + "".join("+" + a for a in sel.adapters)]
    for flag, value in (("--dataset", sel.dataset), ("--prior", sel.prior), ("--shift", sel.shift)):
        if value is not None:
            words += [flag, str(value)]
    if setting.get("run.scheme") != default.get("run.scheme"):
        words += ["--scheme", str(setting["run.scheme"])]
    words += [f"{k}={hydra_value(v)}" if k in default else f"+{k}={hydra_value(v)}"
              for k, v in setting.items() if k != "run.scheme" and default.get(k, KeyError) != v]
    words += ["--tuned", str(out)]
    return " ".join(shlex.quote(w) for w in words)


def write_study(out: Path, space: dict[str, str] | list[str] | None = None) -> dict[str, Any]:
    """study.json from the Optuna sweeper's optimization_results.yaml and the trials' run directories.

    `space` is the searched keys' sweep expressions (a list of keys: their expressions from the yaml `search:`
    blocks). The defaults trial (OUT/defaults/0, written by `bench tune`) is trial 0 and wins when the sampler found
    nothing better on val; the sampler's jobs OUT/<k> are trials k + 1. Every trial must have the same setting
    (setting_of); the study records it, its prior's fingerprint, the items used per trial (n_val: the samples the
    runs wrote, not the number asked for) and the command that reproduces it."""
    results_path = out / "optimization_results.yaml"
    results = OmegaConf.to_container(OmegaConf.load(results_path)) if results_path.exists() else None
    best_params = results["best_params"] if results else {}
    if space is None:
        space = dict.fromkeys(best_params)
    elif not isinstance(space, dict):
        space = dict.fromkeys(space)
    keys = list(space)
    trials, names, split, n_val, settings = [], set(), set(), set(), {}
    default_dirs = job_dirs(out / DEFAULTS) if (out / DEFAULTS).is_dir() else []
    cfg = None
    for d in default_dirs + job_dirs(out):
        if not (d / "config.yaml").is_file():
            continue  # a job killed before its run directory was made
        cfg = OmegaConf.load(d / "config.yaml")
        summary = json.loads((d / "summary.json").read_text()) if (d / "summary.json").is_file() else None
        names.add((cfg.names.problem, cfg.names.algorithm, tuple(cfg.names.adapters), cfg.names.dataset,
                   cfg.names.get("shift"), cfg.names.get("prior")))
        split.add(cfg.run.split)
        if summary is not None:
            n_val.add(int(summary["n_ok"]) + int(summary["n_failed"]))  # the items the trial actually used
        settings[json.dumps(setting_of(cfg, keys), sort_keys=True, default=str)] = str(d.relative_to(out))
        is_default = d.parent.name == DEFAULTS
        trials.append({"number": 0 if is_default else int(d.name) + len(default_dirs),
                       "run_dir": str(d.relative_to(out)), "defaults": is_default,
                       "options": {k: OmegaConf.select(cfg, k) for k in keys},
                       "score": None if summary is None else score(summary),
                       "n_ok": None if summary is None else summary["n_ok"],
                       "n_failed": None if summary is None else summary["n_failed"]})
    if len(names) != 1 or cfg is None:
        raise ConfigError(f"{out}: the trials differ in problem/method/dataset/prior ({sorted(names, key=str)}); a "
                          f"study tunes one method on one problem" if names else
                          f"{out}: no trial run directory; the study is incomplete (rerun it with --resume)")
    if len(settings) > 1:
        a, b = list(settings.values())[:2]
        diff = [f"{k}: {x.get(k)!r} in {a} vs {y.get(k)!r} in {b}" for x, y in [tuple(map(json.loads, settings))[:2]]
                for k in sorted(set(x) | set(y)) if x.get(k, KeyError) != y.get(k, KeyError)]
        raise ConfigError(f"{out}: the trials ran in different settings ({'; '.join(diff[:4])}); a study searches "
                          f"the method's options only, in one setting")
    problem, algorithm, adapters, dataset, shift, prior = names.pop()
    best = [t for t in trials if results and not t["defaults"] and t["score"] is not None
            and all(t["options"].get(k) == v for k, v in best_params.items())
            and abs(t["score"] - results["best_value"]) <= 1e-9 * max(1.0, abs(t["score"]))]
    if results and not best:
        raise ConfigError(f"{out}: no trial directory matches the sweeper's best trial {best_params}; the study is "
                          f"incomplete (rerun it with --resume)")
    defaults = [t for t in trials if t["defaults"] and t["score"] is not None]
    if defaults and (not best or defaults[0]["score"] >= best[0]["score"]):
        best = defaults
    if not best:
        raise ConfigError(f"{out}: no finished trial; the study is incomplete (rerun it with --resume)")
    setting = json.loads(next(iter(settings)))
    study_names = {"problem": problem, "algorithm": algorithm, "adapters": list(adapters), "dataset": dataset,
                   "shift": shift, "prior": prior}
    expressions = {k: v for k, v in space.items() if v is not None}
    declared = method_space(algorithm, list(adapters))
    study = {"problem": problem, "algorithm": algorithm, "adapters": list(adapters),
             "method": algorithm + "".join("+" + a for a in adapters), "dataset": dataset, "shift": shift,
             "prior": prior, "prior_hash": neutral_prior_hash(cfg), "metric": "psnr",
             "split": split.pop() if len(split) == 1 else sorted(split),
             "n_val": n_val.pop() if len(n_val) == 1 else sorted(n_val), "n_trials": len(trials),
             "sampler": "optuna TPE (hydra-optuna-sweeper)", "failed_sample_psnr": FAILED_PSNR,
             "search_space": sorted(keys), "space": {k: expressions.get(k, declared.get(k)) for k in sorted(keys)},
             "setting": setting, "command": reproducing_command(study_names, setting, out), "trials": trials,
             "best": {"trial": best[0]["number"], "defaults": best[0]["defaults"], "options": best[0]["options"],
                      "score": best[0]["score"]}}
    (out / STUDY).write_text(json.dumps(study, indent=2))
    return study


def _value(v: Any) -> str:
    """A Python value as a hydra override value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(v)


class StudyError(ConfigError):
    """A study that cannot be applied to this run (tampered, incomplete, or of another setting): key and fix named."""


def _fail(path: Any, what: str) -> StudyError:
    return StudyError(f"--tuned {path}: {what}")


def load_study(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """study.json read and checked as data: its fields of the right type and range, the val split, a best that is
    one of its trials; a StudyError naming the field otherwise."""
    p = Path(path)
    f = p / STUDY if p.is_dir() else p
    if not f.is_file():
        raise ConfigError(f"--tuned {path}: no {STUDY} there; make a study with `bench tune --problem P --algo A "
                          f"--out DIR` and pass that DIR")
    try:
        study = json.loads(f.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"bare {c}")))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(path, f"{f} is not a study written by `bench tune` (not valid JSON: {exc})") from exc
    if not isinstance(study, dict):
        raise _fail(path, f"{f} holds a JSON {type(study).__name__}, not a study (an object written by `bench tune`)")
    for key, kind in (("problem", str), ("method", str), ("algorithm", str), ("adapters", list), ("best", dict)):
        if not isinstance(study.get(key), kind):
            raise _fail(path, f"{f}: field {key!r} is missing or not a {kind.__name__}; not a study written by "
                              f"`bench tune` (tune again)")
    best = study["best"]
    if not isinstance(best.get("options"), dict):
        raise _fail(path, f"{f}: field 'best.options' is missing or not an object; tune again")
    n_trials = study.get("n_trials")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise _fail(path, f"{f}: field 'n_trials' is {n_trials!r}; a study has a whole number >= 1 of trials")
    trials = study.get("trials")
    if isinstance(trials, list) and len(trials) != n_trials:
        raise _fail(path, f"{f}: field 'n_trials' is {n_trials} but the study lists {len(trials)} trials")
    n_val = study.get("n_val")
    if n_val is not None and not (isinstance(n_val, int) and not isinstance(n_val, bool) and n_val >= 1):
        raise _fail(path, f"{f}: field 'n_val' is {n_val!r}; the val items per trial are a whole number >= 1")
    if study.get("split", VAL) != VAL:
        raise _fail(path, f"{f}: field 'split' is {study.get('split')!r}; a study is made on the val split "
                          f"(bench tune), so that the test items it is applied to were never used to choose options")
    score_ = best.get("score")
    if score_ is not None and not _number(score_):
        raise _fail(path, f"{f}: field 'best.score' is {score_!r}, not a finite number")
    return f.parent, study


def check_best(path: Any, study: dict[str, Any], algorithm: str, adapters: list[str]) -> dict[str, Any]:
    """The study's best options, each a key of the method's search space (the yaml's `search:` blocks, or the
    expressions the study recorded in `space`, which must name options of the method) with a value that space can
    give; a StudyError naming the first key that is not."""
    declared = method_space(algorithm, adapters)
    recorded = study.get("space") if isinstance(study.get("space"), dict) else {}
    options = study["best"]["options"]
    for key, value in options.items():
        expr = recorded.get(key) or declared.get(key)
        if not isinstance(key, str) or expr is None:
            raise _fail(path, f"best option {key}={value!r} is not in {study['method']}'s search space "
                              f"({', '.join(sorted(set(declared) | set(recorded))) or 'none'}); a study may only "
                              f"choose the method's searched options: tune again, or fix the study")
        check_method_key(key, algorithm, adapters, f"--tuned {path}")
        if not isinstance(expr, str):
            raise _fail(path, f"field 'space.{key}' is {expr!r}, not a sweep expression")
        why = outside(value, key, expr)
        if why is not None:
            raise _fail(path, f"best option {key}: {why} (its search space is {expr}); the study was edited or "
                              f"made with another search space: tune again")
    return options


def tuned_overrides(path: str | Path, problem: str, algo: str,
                    overrides: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The best options of the study at `path` as overrides, and the run's `tuning` block; a study of another
    problem or method, a tampered one (load_study, check_best), or an override of a tuned option, is refused.
    The run's setting is checked against the study's once composed (check_setting)."""
    from benchmarks.config import parse_algo

    folder, study = load_study(path)
    if study["problem"] != problem or study["method"] != algo:
        raise ConfigError(f"--tuned {path}: that study tuned {study['method']} on {study['problem']}, not {algo} on "
                          f"{problem}; pass a study of the same problem and method (bench tune --problem {problem} "
                          f"--algo {algo})")
    algorithm, adapters = parse_algo(algo)
    options = check_best(path, study, algorithm, adapters)
    clash = sorted({_key(o) for o in overrides} & set(options))
    if clash:
        raise ConfigError(f"--tuned {path} sets {', '.join(clash)}; drop the override (or run without --tuned)")
    nested = OmegaConf.create({})
    for k, v in options.items():
        OmegaConf.update(nested, k, v, force_add=True)
    tuning = {"study": str(folder.resolve()), "trials": int(study["n_trials"]), "metric": study.get("metric", "psnr"),
              "split": study.get("split", VAL), "score": study["best"]["score"],
              "options": OmegaConf.to_container(nested)}
    return [f"{k}={_value(v)}" for k, v in options.items()], tuning


def check_setting(cfg: DictConfig) -> None:
    """A `--tuned` run's composed config against its study (cfg.tuning.study): the same dataset, shift, prior and
    prior fingerprint, and every option of the study's setting (setting_of) the same; the first difference is a
    StudyError naming the key, the two values and the study's own command."""
    tuning = cfg.get("tuning")
    if tuning is None:
        return
    path = tuning.get("study")
    _, study = load_study(path)
    command = study.get("command")
    fix = f"run the study's command: {command}" if isinstance(command, str) else "tune again for this setting"
    names = cfg.names
    if cfg.run.get("split") == study.get("split", VAL):
        raise _fail(path, f"this run is on the {cfg.run.split!r} split, the one the study chose its options on; a "
                          f"tuned run is scored on other items: drop run.split (test)")
    for key in ("dataset", "shift", "prior"):
        if key in study and study[key] != names.get(key):
            raise _fail(path, f"the study was made with {key} {study[key]!r}, this run has {names.get(key)!r}; "
                              f"{fix}")
    setting = study.get("setting")
    if not isinstance(setting, dict):
        raise _fail(path, f"the study records no setting (made before issue 26, or edited), so it cannot be "
                          f"checked against this run: tune again")
    mine = setting_of(cfg, set(study["best"]["options"]))
    for key in sorted(setting):
        if key not in mine:
            raise _fail(path, f"the study was made with {key}={setting[key]!r}, which this run does not have; {fix}")
        if mine[key] != setting[key]:
            raise _fail(path, f"the study was made with {key}={setting[key]!r}, this run has {key}={mine[key]!r}; "
                              f"its options were chosen for that setting: {fix}")
    if "prior_hash" not in study:
        raise _fail(path, "the study records no prior fingerprint; tune again")
    mine_hash = neutral_prior_hash(cfg)
    if study["prior_hash"] != mine_hash:
        raise _fail(path, f"the study's prior weights (fingerprint {str(study['prior_hash'])[:19]}) are not this "
                          f"run's ({str(mine_hash)[:19]}): the checkpoint changed since the study; tune again with "
                          f"these weights")
