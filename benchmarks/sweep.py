"""`bench run -m`: hydra's own multirun over benchmark runs (one sweep = one directory of numbered jobs).

The sweep's primary config is built from configs/bench.yaml and put, with every selected component's
options (constructor defaults overlaid by its yaml, as for a single run) and the yaml files under
configs/hydra/, into hydra's ConfigStore under the components' own names, so `algorithm=cg-sense,l1-wavelet`
is a sweep over the choice. Hydra then composes, sweeps and launches as it documents: any installed sweeper
(basic, optuna) or launcher (basic, joblib, submitit_local, submitit_slurm) plugin works, `hydra.*` keys are
overrides, and the launchers that run jobs in other processes carry the ConfigStore with hydra's singleton
state. Each job is `runner.execute` into SWEEP_DIR/<job number>, so a job directory is an ordinary run
directory (resume, JSON lines, leaderboard), and its return value is the run's val score (`score`), the
objective of the Optuna sweeper.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf, open_dict

from benchmarks import registry
from benchmarks.config import (ConfigError, Selection, _store, check_known_keys, load_shift, problem_options,
                               resolve, shift_source_model, store_node)
from configs import CONFIG_DIR

PRIMARY = "bench_sweep"
FAILED_PSNR = 0.0  # a failed sample's PSNR in the tuning score: a clear penalty, below any real reconstruction


@dataclass
class SweepSpec:
    """What `bench run -m` was asked for; lists are swept (one value: fixed)."""

    problems: list[str]
    algorithms: list[str]
    adapters: list[str]
    out: Path
    priors: list[str] | None = None
    datasets: list[str] | None = None
    shift: str | None = None
    resume: bool = False
    progress: bool = True
    tuning: dict[str, Any] | None = None
    check: Callable[[DictConfig], None] | None = None  # a tuned sweep's check of each job against its study


def score(summary: dict[str, Any]) -> float:
    """Mean PSNR over all samples of a run, a failed sample counting FAILED_PSNR (0 dB)."""
    n_ok, n_failed = int(summary["n_ok"]), int(summary["n_failed"])
    if n_ok + n_failed == 0:
        raise ConfigError("the run has no samples to score; pass --n-val (or run.n) >= 1")
    mean = summary["metrics"].get("psnr", {}).get("mean")
    total = (mean or 0.0) * n_ok + FAILED_PSNR * n_failed
    return float(total / (n_ok + n_failed))


def ranks() -> tuple[int, int, int]:
    """(rank, world size, local rank): torchrun/accelerate variables, else a submitit job's tasks, else one."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    if os.environ.get("SUBMITIT_EXECUTOR"):
        import submitit

        env = submitit.JobEnvironment()
        return env.global_rank, env.num_tasks, env.local_rank
    return 0, 1, 0


class Job:
    """The task function of every job: compose names, run `execute` into the job directory, return the score.

    A plain picklable object, so that joblib and submitit can send it to other processes."""

    def __init__(self, spec: SweepSpec) -> None:
        self.adapters = list(spec.adapters)
        self.prior_given = spec.priors is not None
        self.dataset_given = spec.datasets is not None
        self.shift = spec.shift
        self.resume, self.progress, self.tuning, self.check = spec.resume, spec.progress, spec.tuning, spec.check

    def __call__(self, cfg: DictConfig) -> float | None:
        from hydra.core.hydra_config import HydraConfig

        from benchmarks.finish import merge_ranks, print_run
        from benchmarks.runner import execute

        hc = HydraConfig.get()
        out = Path(hc.runtime.output_dir)
        ch = hc.runtime.choices
        sel = resolve(Selection(ch["problem"], ch["algorithm"], self.adapters,
                                ch.get("prior") if self.prior_given else None,
                                ch.get("dataset") if self.dataset_given else None, self.shift))
        cfg = run_config(cfg, sel, self.tuning)
        if self.tuning is not None and self.check is not None:  # a tuned job: the study's setting, or a refusal
            self.check(cfg)
        rank, world, local = ranks()
        if world > 1 and cfg.run.device == "auto":
            import torch

            if torch.cuda.is_available():  # one GPU per task
                cfg.run.device = f"cuda:{local}"
        # a SLURM job requeued after a timeout or preemption finishes its run directory
        resume = self.resume or int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
        try:
            summary = execute(cfg, out, resume=resume, progress=self.progress, rank=rank, world_size=world)
        finally:
            if world > 1:
                (out / f"rank{rank}.done").write_text("")
        if world > 1:
            summary = merge_ranks(cfg, out, world) if rank == 0 else None
        if summary is None:
            return None
        print_run(cfg, out, summary, list(hc.overrides.task))
        return score(summary)


def run_config(cfg: DictConfig, sel: Selection, tuning: dict[str, Any] | None = None) -> DictConfig:
    """A job's composed config in the layout of a single run's (`config.compose_config`): names added, no prior
    options for an algorithm that uses none, and the `tuning` block of a `--tuned` run."""
    with open_dict(cfg):
        if sel.prior is None or "prior" not in cfg:
            cfg.prior = {}
        if "adapters" not in cfg:
            cfg.adapters = {}
        cfg.names = OmegaConf.create({"problem": sel.problem, "algorithm": sel.algorithm, "adapters": sel.adapters,
                                      "prior": sel.prior, "dataset": sel.dataset, "shift": sel.shift})
        if tuning is not None:
            cfg.tuning = OmegaConf.create(tuning)
    check_known_keys(cfg)
    return cfg


def _choice(names: list[str], given: list[str] | None, default_of: dict[str, str | None],
            alias: str) -> tuple[list[str], str | None, dict[str, str]]:
    """The options of the dataset (or prior) group, its defaults-list value and {option: name} aliases.

    Given names are options of their own. Else the problems' defaults: one shared name is the option; differing
    ones get an option per problem, `<problem>-<alias>`, chosen by interpolating the problem choice."""
    if given:
        return given, given[0], {}
    found = {p: d for p, d in default_of.items() if d is not None}
    if not found:
        return [], None, {}
    if len(set(found.values())) == 1 and len(found) == len(names):
        name = next(iter(found.values()))
        return [name], name, {}
    aliases = {f"{p}-{alias}": d for p, d in found.items()}
    return list(aliases), "${problem}-" + alias, aliases


def sweep_problem_options(problems: list[str], group: str, name: str) -> dict[str, Any]:
    """The problems' declared options for the algorithm `name` (config.problem_options), which a sweep lays under its
    overrides as a single run does; problems that declare different ones cannot share one algorithm node."""
    declared = {p: problem_options(p, group, name) for p in problems}
    if len({repr(sorted(d.items())) for d in declared.values()}) > 1:
        raise ConfigError(f"problems {', '.join(problems)} declare different options for {name!r} "
                          f"({'; '.join(f'{p}: {d or {}}' for p, d in declared.items())}); sweep them separately")
    return declared[problems[0]] if problems else {}


def store_adapter(problems: list[str], name: str) -> str:
    """Store adapter `name`'s node(s) with the problems' declared options (config.problem_options) and return its
    defaults-list value: one shared node, or one per problem (`<problem>-<name>`, chosen by interpolating the
    problem choice, as the datasets are) where the problems declare different options (cs_mri's and lowfield's TDA)."""
    declared = {p: problem_options(p, "adapters", name) for p in problems}
    if len({repr(sorted(d.items())) for d in declared.values()}) <= 1:
        _store("adapters", name, name, over=declared[problems[0]] if problems else {})
        return name
    for p, opts in declared.items():
        _store("adapters", name, f"{p}-{name}", over=opts)
    return "${problem}-" + name


def store_configs(spec: SweepSpec) -> None:
    """Put the sweep's primary config, its components and configs/hydra/**.yaml in hydra's ConfigStore."""
    sels = [resolve(Selection(p, a, spec.adapters, (spec.priors or [None])[0], (spec.datasets or [None])[0],
                              spec.shift)) for p in spec.problems for a in spec.algorithms]
    uses_prior = any(s.prior is not None for s in sels)
    datasets, dataset_choice, d_alias = _choice(spec.problems, spec.datasets,
                                                {s.problem: s.dataset for s in sels}, "dataset")
    priors, prior_choice, p_alias = _choice(spec.problems, spec.priors,
                                            {s.problem: s.prior for s in sels if s.prior is not None}, "prior")
    for p in spec.problems:
        _store("problems", p, p)
    for a in spec.algorithms:
        _store("algorithms", a, a, over=sweep_problem_options(spec.problems, "algorithms", a))
    for d in datasets:
        _store("datasets", d_alias.get(d, d), d)
    if uses_prior:
        for pr in priors:
            _store("priors", p_alias.get(pr, pr), pr)
    adapter_choice = {a: store_adapter(spec.problems, a) for a in spec.adapters}
    defaults: list[Any] = ["_self_", {"problem": spec.problems[0]}, {"algorithm": spec.algorithms[0]},
                           {"dataset": dataset_choice}]
    if uses_prior and prior_choice is not None:
        defaults.append({"optional prior": prior_choice} if p_alias and len(p_alias) < len(spec.problems)
                        else {"prior": prior_choice})
    defaults += [{f"adapter@adapters.{a}": adapter_choice[a]} for a in spec.adapters]
    defaults.append({"override hydra/job_logging": "stdout"})  # no log file inside a run directory
    primary = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "bench.yaml"))
    primary.pop("defaults", None)
    primary = {"defaults": defaults, **primary,
               "hydra": {"sweep": {"dir": str(spec.out), "subdir": "${hydra.job.num}"}, "output_subdir": None,
                         "job": {"chdir": False}}}
    store_node(name=PRIMARY, node=OmegaConf.create(primary))
    for path in sorted((CONFIG_DIR / "hydra").rglob("*.yaml")):
        group = path.parent.relative_to(CONFIG_DIR).as_posix()
        store_node(name=path.stem, node=OmegaConf.load(path), group=group)


def sweep_dir(spec_out: str | None, overrides: list[str], default: str) -> Path:
    """--out, or a literal `hydra.sweep.dir=` override, or the default; the two given and different is an error."""
    given = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "hydra.sweep.dir"]
    if given and "${" in given[-1]:
        raise ConfigError(f"hydra.sweep.dir={given[-1]}: give a literal folder (or use --out DIR)")
    if given and spec_out and Path(given[-1]).resolve() != Path(spec_out).resolve():
        raise ConfigError(f"--out {spec_out} and hydra.sweep.dir={given[-1]} disagree; pass one of them")
    return Path(spec_out or (given[-1] if given else default))


SWEEP_FILES = {"optimization_results.yaml", "study.json", "multirun.yaml"}


def _sweep_entry(p: Path) -> bool:
    """What a sweep or study directory holds: job folders (numbered, or named by hydra.sweep.subdir: run directories,
    or empty where a job stopped before writing), `defaults/` (a study's trial 0), the sweeper's and the study's files,
    hidden files."""
    if p.name.startswith(".") or p.name in SWEEP_FILES:
        return True
    if not p.is_dir():
        return False
    return p.name.isdigit() or p.name == "defaults" or (p / "config.yaml").is_file() or not any(p.iterdir())


def check_sweep_dir(out: Path, resume: bool) -> None:
    """The directory contract of runs, for sweeps and studies: a path that is not a folder, or a non-empty folder
    that is not a sweep or study directory, is refused before anything is written; one whose jobs have finished
    samples needs --resume (as a run directory does)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose another --out")
    if not out.is_dir():
        return
    foreign = sorted(p.name for p in out.iterdir() if not _sweep_entry(p))
    if foreign:
        raise ConfigError(f"--out {out} is a folder that is not empty and is not a sweep or study directory (it holds "
                          f"{', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}); nothing was written there: "
                          f"choose a new or empty --out")
    if resume:
        return
    done = [d.name for d in sorted(out.iterdir()) if d.is_dir() and d.name.isdigit() and any(d.glob("samples*.jsonl"))]
    if done:
        raise ConfigError(f"{out} already holds the sweep jobs {', '.join(done)}; pass --resume to finish that sweep "
                          f"(the same command), or choose another --out")


def default_name(kind: str, problems: list[str], algorithms: list[str], adapters: list[str]) -> str:
    method = "_".join(algorithms) + "".join("+" + a for a in adapters)
    return os.path.join("runs", f"{kind}-{'_'.join(problems)}-{method}-{time.strftime('%Y%m%d-%H%M%S')}")


# hydra's plugins that `bench run -m` / `bench tune` name, by the module each installs under hydra_plugins
PLUGINS = {("sweeper", "optuna"): "hydra_optuna_sweeper", ("launcher", "joblib"): "hydra_joblib_launcher",
           ("launcher", "submitit_local"): "hydra_submitit_launcher",
           ("launcher", "submitit_slurm"): "hydra_submitit_launcher"}


def check_plugins(overrides: list[str]) -> None:
    """A `hydra/sweeper=` or `hydra/launcher=` choice whose plugin is not installed: say what to install (the base
    install has hydra's basic sweeper and launcher only)."""
    import importlib.util

    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if key in ("hydra/sweeper", "hydra/launcher"):
            module = PLUGINS.get((key.split("/")[1], value.strip()))
            try:
                missing = module is not None and importlib.util.find_spec(f"hydra_plugins.{module}") is None
            except ModuleNotFoundError:  # no hydra plugin at all: no hydra_plugins namespace
                missing = True
            if missing:
                raise ConfigError(f"{key}={value} needs hydra's {module.replace('_', '-')} plugin, which is not "
                                  f"installed; install the sweep extra: pip install -e '.[sweep]'")


def multirun(spec: SweepSpec, overrides: list[str]) -> Any:
    """Hydra's multirun (`Hydra.multirun`, what `@hydra.main` runs for `--multirun`) of `Job` over the overrides."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    if spec.shift and len(spec.problems) > 1:
        raise ConfigError(f"--shift {spec.shift} belongs to one problem ({load_shift(spec.shift).get('problem')}); "
                          f"sweep several problems without --shift")
    check_plugins(overrides)
    check_sweep_dir(spec.out, spec.resume)
    store_configs(spec)
    choices = []
    for group, names in (("problem", spec.problems), ("algorithm", spec.algorithms), ("dataset", spec.datasets),
                         ("prior", spec.priors)):
        if names and len(names) > 1:
            choices.append(f"{group}={','.join(names)}")
    shift: list[str] = []
    if spec.shift:
        # a shift is one target for every algorithm; an end-to-end network's default source model under it
        # (configs/sources.yaml) is an `algorithm.model` that the other algorithms do not take
        views = {a: ([f"algorithm.model={m}"] if (m := shift_source_model(spec.shift, a)) and getattr(
            registry.load("algorithms", a), "end_to_end", False) else []) for a in spec.algorithms}
        if len({tuple(v) for v in views.values()}) > 1:
            raise ConfigError(f"--shift {spec.shift} runs the end-to-end networks from another source model than "
                              f"the other algorithms take ({views}); sweep them in separate `bench run -m` calls")
        shift = views[spec.algorithms[0]] + [str(o) for o in load_shift(spec.shift).get("overrides", [])]
    overrides = choices + shift + [o for o in overrides if o.split("=", 1)[0].lstrip("+") != "hydra.sweep.dir"]
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name="bench", config_search_path=create_config_search_path(None))
    try:
        return hydra.multirun(config_name=PRIMARY, task_function=Job(spec), overrides=overrides)
    except HydraException as exc:
        raise ConfigError(f"bad override: {exc}") from exc
    finally:
        GlobalHydra.instance().clear()


def job_dirs(out: Path) -> list[Path]:
    """The numbered job directories of a sweep, in job order."""
    return sorted((d for d in out.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))


def split_list(value: str | None, what: str) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",")]
    if not all(names):
        raise ConfigError(f"bad {what} {value!r}: write NAME or NAME,NAME,... (a sweep)")
    return names

