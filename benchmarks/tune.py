"""`bench tune`: every method tuned on the val split with one budget, by hydra's Optuna sweeper.

The search space is the `search:` block of configs/algorithm/<name>.yaml (and of each adapter's yaml for
A+ADAPTER), in hydra's sweep syntax. The sweeper (TPE, seeded) runs `--trials` jobs of `--n-val` val samples
each, maximising `sweep.score` (mean val PSNR, a failed sample counting 0 dB). The study is written beside the
trials' run directories:

    STUDY_DIR/<trial>/                  one run directory per trial (run.split = val)
    STUDY_DIR/optimization_results.yaml hydra's Optuna sweeper: best_params, best_value
    STUDY_DIR/study.json                problem, method, search space, every trial (options, score), the best

`bench run ... --tuned STUDY_DIR` applies the best options and records them in the run's `tuning` block.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from benchmarks.config import ConfigError, search_space
from benchmarks.sweep import FAILED_PSNR, SweepSpec, check_plugins, job_dirs, multirun, score

STUDY = "study.json"
DEFAULTS = "defaults"  # the study's trial 0: the registered defaults


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
    sweeper = {"hydra/sweeper": "optuna", "hydra.sweeper.direction": "maximize", "hydra.sweeper.n_trials": trials,
               "hydra.sweeper.n_jobs": 1, "hydra.sweeper.sampler.seed": seed,
               "hydra.sweeper.study_name": f"{spec.problems[0]}-{algorithm}{''.join('+' + a for a in spec.adapters)}",
               "run.split": "val", "run.n": n_val}
    fixed = [f"{k}={v}" for k, v in sweeper.items() if k not in given]
    searched = [f"{k}={v}" for k, v in space.items() if k not in given]  # an option set by hand is not searched
    # Trial 0 of every study is the method with its registered defaults, so that a study never ends below the
    # defaults on val; the sampler spends the other trials - 1.
    swept = sweep_keys(overrides)  # a search space given on the command line, e.g. algorithm.lam=choice(1, 10)
    val = [o for o in fixed if o.startswith("run.")]
    multirun(replace(spec, out=spec.out / DEFAULTS), val + [o for o in overrides if _key(o) not in swept])
    if trials > 1:
        multirun(spec, [o for o in fixed if not o.startswith("hydra.sweeper.n_trials")]
                 + [f"hydra.sweeper.n_trials={trials - 1}"] * ("hydra.sweeper.n_trials" not in given)
                 + searched + list(overrides))
    return write_study(spec.out, [k for k in space if k not in given] + sorted(swept))


def sweep_keys(overrides: list[str]) -> set[str]:
    """The keys of the overrides that are sweeps (`choice(...)`, `interval(...)`, `a,b`, ...)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides([o for o in overrides if not o.startswith("hydra")])
    except HydraException as exc:
        raise ConfigError(f"bad override: {exc}") from exc
    return {o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}


def write_study(out: Path, keys: list[str] | None = None) -> dict[str, Any]:
    """study.json from the Optuna sweeper's optimization_results.yaml and the trials' run directories.

    The defaults trial (OUT/defaults/0, written by `bench tune`) is trial 0 and wins when the sampler found
    nothing better on val; the sampler's jobs OUT/<k> are trials k + 1."""
    results_path = out / "optimization_results.yaml"
    results = OmegaConf.to_container(OmegaConf.load(results_path)) if results_path.exists() else None
    best_params = results["best_params"] if results else {}
    keys = list(best_params) if keys is None else keys
    trials, names, split, n_val = [], set(), set(), set()
    default_dirs = job_dirs(out / DEFAULTS) if (out / DEFAULTS).is_dir() else []
    for d in default_dirs + job_dirs(out):
        cfg = OmegaConf.load(d / "config.yaml")
        summary = json.loads((d / "summary.json").read_text()) if (d / "summary.json").exists() else None
        names.add((cfg.names.problem, cfg.names.algorithm, tuple(cfg.names.adapters), cfg.names.dataset,
                   cfg.names.get("shift")))
        split.add(cfg.run.split)
        n_val.add(int(cfg.run.n))
        is_default = d.parent.name == DEFAULTS
        trials.append({"number": 0 if is_default else int(d.name) + len(default_dirs),
                       "run_dir": str(d.relative_to(out)), "defaults": is_default,
                       "options": {k: OmegaConf.select(cfg, k) for k in keys},
                       "score": None if summary is None else score(summary),
                       "n_ok": None if summary is None else summary["n_ok"],
                       "n_failed": None if summary is None else summary["n_failed"]})
    if len(names) != 1:
        raise ConfigError(f"{out}: the trials differ in problem/method/dataset ({sorted(names)}); a study tunes one "
                          f"method on one problem")
    problem, algorithm, adapters, dataset, shift = names.pop()
    best = [t for t in trials if results and not t["defaults"] and t["score"] is not None
            and all(t["options"][k] == v for k, v in best_params.items())
            and abs(t["score"] - results["best_value"]) <= 1e-9 * max(1.0, abs(t["score"]))]
    if results and not best:
        raise ConfigError(f"{out}: no trial directory matches the sweeper's best trial {best_params}; the study is "
                          f"incomplete (rerun it with --resume)")
    defaults = [t for t in trials if t["defaults"] and t["score"] is not None]
    if defaults and (not best or defaults[0]["score"] >= best[0]["score"]):
        best = defaults
    if not best:
        raise ConfigError(f"{out}: no finished trial; the study is incomplete (rerun it with --resume)")
    study = {"problem": problem, "algorithm": algorithm, "adapters": list(adapters),
             "method": algorithm + "".join("+" + a for a in adapters), "dataset": dataset, "shift": shift,
             "metric": "psnr", "split": split.pop() if len(split) == 1 else sorted(split),
             "n_val": n_val.pop() if len(n_val) == 1 else sorted(n_val), "n_trials": len(trials),
             "sampler": "optuna TPE (hydra-optuna-sweeper)", "failed_sample_psnr": FAILED_PSNR,
             "search_space": sorted(keys), "trials": trials,
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


def load_study(path: str | Path) -> tuple[Path, dict[str, Any]]:
    p = Path(path)
    f = p / STUDY if p.is_dir() else p
    if not f.is_file():
        raise ConfigError(f"--tuned {path}: no {STUDY} there; make a study with `bench tune --problem P --algo A "
                          f"--out DIR` and pass that DIR")
    try:
        study = json.loads(f.read_text())
        study["best"]["options"], study["problem"], study["method"], study["n_trials"]  # noqa: B018
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"--tuned {path}: {f} is not a study written by `bench tune` ({exc})") from exc
    return f.parent, study


def tuned_overrides(path: str | Path, problem: str, algo: str,
                    overrides: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The best options of the study at `path` as overrides, and the run's `tuning` block; a study of another
    problem or method, or an override of a tuned option, is refused."""
    folder, study = load_study(path)
    if study["problem"] != problem or study["method"] != algo:
        raise ConfigError(f"--tuned {path}: that study tuned {study['method']} on {study['problem']}, not {algo} on "
                          f"{problem}; pass a study of the same problem and method (bench tune --problem {problem} "
                          f"--algo {algo})")
    options = study["best"]["options"]
    clash = sorted({_key(o) for o in overrides} & set(options))
    if clash:
        raise ConfigError(f"--tuned {path} sets {', '.join(clash)}; drop the override (or run without --tuned)")
    nested = OmegaConf.create({})
    for k, v in options.items():
        OmegaConf.update(nested, k, v, force_add=True)
    tuning = {"study": str(folder.resolve()), "trials": int(study["n_trials"]), "metric": study.get("metric", "psnr"),
              "split": study.get("split", "val"), "score": study["best"]["score"],
              "options": OmegaConf.to_container(nested)}
    return [f"{k}={_value(v)}" for k, v in options.items()], tuning
