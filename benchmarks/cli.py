"""The `bench` command line: list, run, leaderboard, report, rescore, verify, submit, train-prior, train-recon,
train-interp."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from benchmarks import registry
from benchmarks.train_prior_cli import add_cli as add_train_prior
from benchmarks.train_recon_cli import add_cli as add_train_recon
from benchmarks.train_interp_cli import add_cli as add_train_interp
from benchmarks.finish import merge_ranks, print_run
from benchmarks.threads import passive_wait

USAGE_ERRORS: tuple[type[BaseException], ...] = (LookupError, ValueError, TypeError, RuntimeError, FileNotFoundError)


def source_note(models: dict) -> str:
    """`; networks' source model: unet brain-t2, varnet brain-t2; diffusion prior: knee-64` of a shift's
    configs/sources.yaml entry ('' without one)."""
    from configs import SOURCE_PRIOR

    if not isinstance(models, dict) or not models:
        return ""
    networks = {family: model for family, model in models.items() if family != SOURCE_PRIOR}
    note = ("; networks' source model: " + ", ".join(f"{family} {model}" for family, model in networks.items())
            if networks else "")
    return note + (f"; diffusion prior: {models[SOURCE_PRIOR]}" if models.get(SOURCE_PRIOR) else "")


def shift_descriptions() -> dict[str, str]:
    """Each shift's `description:` read from configs/shift/<name>.yaml with PyYAML (no hydra at `bench list`), with
    the trained networks' default source model under it (configs/sources.yaml)."""
    import yaml

    from configs import CONFIG_DIR

    sources_path = CONFIG_DIR / "sources.yaml"
    sources = (yaml.safe_load(sources_path.read_text(encoding="utf-8")) or {}) if sources_path.exists() else {}
    out = {}
    for path in sorted((CONFIG_DIR / "shift").glob("*.yaml"), key=lambda p: p.stem):
        node = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out[path.stem] = str(node.get("description", "")) if isinstance(node, dict) else ""
        out[path.stem] += source_note(sources.get(path.stem) if isinstance(sources, dict) else None)
    return out


def cmd_list(args: argparse.Namespace) -> int:
    """Names and one-line descriptions, read from sources and yamls without importing the components."""
    groups = [args.group] if args.group else list(registry.GROUPS) + ["shifts"]
    for g in groups:
        if g == "shifts":
            print("shifts:")
            for s, description in shift_descriptions().items():
                print(f"  {s:<22} {description}")
            continue
        print(f"{g}:")
        for name, description, dist in registry.listing(g):
            origin = "" if dist == "medtta-bench" else f"  [plugin: {dist}]"
            print(f"  {name:<22} {description}{origin}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from benchmarks.config import ConfigError, Selection, compose_config, parse_algo
    from benchmarks.runner import execute

    if args.multirun:
        return cmd_sweep(args)
    for flag, value in (("--problem", args.problem), ("--algo", args.algo), ("--prior", args.prior),
                        ("--dataset", args.dataset)):
        if value and "," in value:
            raise ConfigError(f"{flag} {value}: a comma list is a sweep; add -m (bench run -m ...)")
    algo, adapters = parse_algo(args.algo)
    sel = Selection(args.problem, algo, adapters, args.prior, args.dataset, args.shift)
    base = run_flags(args)
    overrides = list(args.overrides)
    tuning = None
    if args.tuned:
        from benchmarks.tune import tuned_overrides

        tuned, tuning = tuned_overrides(args.tuned, args.problem, args.algo, overrides)
        base += tuned
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not args.out:
        raise ValueError("with several processes, pass --out DIR so that every process writes the same run directory")
    if world > 1 and args.device is None:
        import torch

        if torch.cuda.is_available():  # accelerate launch / torchrun: one GPU per process
            base.append(f"run.device=cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    cfg = compose_config(sel, base + overrides)
    if tuning is not None:
        from omegaconf import OmegaConf, open_dict

        from benchmarks.tune import check_setting

        with open_dict(cfg):
            cfg.tuning = OmegaConf.create(tuning)
        check_setting(cfg)  # the study's setting (problem and options, dataset, prior weights, ...) or a refusal
    out = Path(args.out or default_out(cfg))
    try:
        summary = execute(cfg, out, resume=args.resume, progress=not args.quiet, rank=rank, world_size=world)
    finally:
        if world > 1:
            (out / f"rank{rank}.done").write_text("")
    if world > 1:
        summary = merge_ranks(cfg, out, world) if rank == 0 else None
    if rank == 0:
        print_run(cfg, out, summary, [])
    return 0


def run_flags(args: argparse.Namespace) -> list[str]:
    """The run.* flags of `bench run` / `bench tune` as overrides."""
    flags = {"run.n": getattr(args, "n", None), "run.batch_size": args.batch_size, "run.device": args.device,
             "run.seed": getattr(args, "seed", None), "run.scheme": args.scheme}
    return [f"{k}={v}" for k, v in flags.items() if v is not None]


def sweep_spec(args: argparse.Namespace, kind: str):
    """The SweepSpec of `bench run -m` / `bench tune`: comma lists in --problem/--algo/--prior/--dataset sweep."""
    from benchmarks.config import ConfigError, parse_algo
    from benchmarks.sweep import SweepSpec, default_name, split_list, sweep_dir

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("a sweep runs its jobs through hydra's launcher, not under torchrun/accelerate; shard one "
                          "run over processes without -m, or give each job several tasks with the submitit launcher "
                          "(hydra.launcher.tasks_per_node=N)")
    problems = split_list(args.problem, "--problem")
    algos = [parse_algo(a) for a in split_list(args.algo, "--algo")]
    adapters = algos[0][1]
    if any(a[1] != adapters for a in algos):
        raise ConfigError(f"--algo {args.algo}: every algorithm of a sweep takes the same adapters (here "
                          f"{sorted({'+'.join(a[1]) or '(none)' for a in algos})}); run one sweep per adapter set")
    names = [a[0] for a in algos]
    out = sweep_dir(args.out, list(args.overrides), default_name(kind, problems, names, adapters))
    return SweepSpec(problems, names, adapters, out, split_list(args.prior, "--prior"),
                     split_list(args.dataset, "--dataset"), args.shift, args.resume, not args.quiet)


def cmd_sweep(args: argparse.Namespace) -> int:
    """`bench run -m`: hydra's multirun; one directory with numbered job run directories."""
    from benchmarks.sweep import job_dirs, multirun
    from benchmarks.tune import check_setting, quiet_sweeper_best, sweep_exprs, tuned_overrides, write_study

    spec = sweep_spec(args, "sweep")
    base = run_flags(args)
    if args.tuned:
        if len(spec.problems) > 1 or len(spec.algorithms) > 1:
            raise ValueError("--tuned applies one study's options; sweep one problem and one algorithm with it")
        tuned, spec.tuning = tuned_overrides(args.tuned, args.problem, args.algo, list(args.overrides))
        spec.check = check_setting
        base += tuned
    with quiet_sweeper_best():  # one best is printed: the study's
        multirun(spec, base + list(args.overrides))
    if (spec.out / "optimization_results.yaml").exists():  # the Optuna sweeper: record the study
        study = write_study(spec.out, sweep_exprs(list(args.overrides)) or None)
        print(f"\nbest {study['split']} score {study['best']['score']:.4g} with {study['best']['options']} -> "
              f"{spec.out / 'study.json'}\nreproduce its setting with its options: {study['command']}")
    print(f"\nsweep: {len(job_dirs(spec.out))} job(s) in {spec.out}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from benchmarks.tune import tune

    spec = sweep_spec(args, "tune")
    study = tune(spec, args.trials, args.n_val, args.study_seed, run_flags(args) + list(args.overrides))
    best = study["best"]
    which = "the defaults (trial 0)" if best["defaults"] else f"trial {best['trial']}"
    print(f"\n{study['method']} on {study['problem']}: best val PSNR {best['score']:.4g} ({which} of "
          f"{study['n_trials']}, {study['n_val']} val item(s) each) with {best['options']}\n-> "
          f"{spec.out / 'study.json'}; run test in the study's setting with:\n  {study['command']}")
    return 0


def default_out(cfg) -> str:
    import time

    n = cfg.names
    method = n.algorithm + "".join("+" + a for a in n.adapters)
    base = os.path.join("runs", f"{n.problem}-{method}-{time.strftime('%Y%m%d-%H%M%S')}")
    out, k = base, 1
    while os.path.exists(out):  # two runs started in the same second get folders of their own
        k += 1
        out = f"{base}-{k}"
    return out


def describe_os_error(exc: OSError) -> str:
    """One line naming the path and the cause: `PATH: No space left on device`."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, getattr(exc, "filename2", None)) if p is not None]
    return f"{' -> '.join(paths)}: {cause}" if paths else f"{type(exc).__name__}: {cause}"


class OutputError(RuntimeError):
    """An output file that cannot be written (disk full, unwritable folder, not a regular file): path and cause."""


def write_output(path: str | os.PathLike, text: str, flag: str) -> Path:
    """Write an output file whole or not at all: into a temporary file beside it, then renamed over it (a full disk
    never leaves a truncated file that looks complete); a missing parent folder is made. Errors name the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.is_dir():
            raise OutputError(f"{flag} {path}: is a folder; pass a file name")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{flag} {path}: cannot write it ({describe_os_error(exc)}); nothing was written "
                          f"there") from exc
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass
    return path


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from benchmarks import leaderboard

    if bool(args.runs) == bool(args.from_json):
        raise leaderboard.LeaderboardError("pass run directories, or --from-json LEADERBOARD.json (not both)")
    if args.from_json:
        board = leaderboard.from_json(args.from_json, args.reference)
    else:
        board = leaderboard.build(args.runs, args.reference)
    for earlier in args.keep or []:
        board = leaderboard.keep(board, earlier)
    text = leaderboard.dumps(board)  # validated: a NaN or a schema violation stops here, before anything is written
    md = leaderboard.document(board)
    write_output(args.output, text, "-o")
    if args.markdown:
        write_output(args.markdown, md, "--markdown")
    print(md, end="")
    print(f"{len(board['entries'])} entries -> {args.output}")
    if args.reference and not any(e["comparison"]["role"] == "reference" for e in board["entries"]):
        print(f"note: no row is {args.reference!r} with its defaults in any setting, so no row has a paired "
              f"difference; name another with --reference (a method label of the table)", file=sys.stderr)
    if args.html:
        from benchmarks.site import write_site

        print(f"results page -> {write_site(board, args.html)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from benchmarks.report import report

    print(report(Path(args.run_dir)))
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    from benchmarks.rescore import rescore, run_dirs

    for run in run_dirs(args.run_dirs):
        print(rescore(run).line())
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from benchmarks.verify import SampleCheck, verify

    result = verify(Path(args.run_dir), args.samples, args.seed, args.force, args.device)
    for d in result["differences"]:
        print(f"compared anyway (--force): {d}")
    for s in result["samples"]:
        print(SampleCheck.from_dict(s).line())
    print(f"verified: {result['verified']} ({result['n_bit_identical']} bit-identical) on {result['device']} "
          f"({result['machine']}, {result['date']}) -> {result['written_to']}")
    return 0 if result["n_verified"] == result["samples_checked"] else 1


def cmd_submit(args: argparse.Namespace) -> int:
    from benchmarks.archive import pack

    out, n = pack(Path(args.run_dir), Path(args.output), args.with_recons)
    print(f"{n} file(s) and their sha256 manifest -> {out}")
    return 0


def cmd_export_data(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from configs import CONFIG_DIR
    from inverse_problems.data.readers.fastmri import export_fastmri

    yaml = CONFIG_DIR / "dataset" / f"{args.dataset}.yaml"
    opts = OmegaConf.load(yaml) if yaml.exists() else OmegaConf.create({})
    opts = OmegaConf.to_container(OmegaConf.merge(opts, OmegaConf.from_dotlist(list(args.options))), resolve=True)
    dataset = registry.build("datasets", args.dataset, split=args.split, **opts)
    mask = None if args.prospective is None else {"kind": "equispaced", "acceleration": args.prospective}
    paths = export_fastmri(dataset, args.n, args.out, coils=args.coils, phase=args.phase, noise_std=args.noise_std,
                           store_maps=args.store_maps, slices_per_file=args.slices_per_file,
                           encoded=tuple(args.encoded) if args.encoded else None, mask=mask, seed=args.seed)
    print(f"wrote {len(paths)} fastMRI file(s) ({args.coils} coil(s)) of {args.dataset} ({args.split}) -> {args.out}")
    return 0


def _run_argv(argv: list[str]) -> int:
    """One `bench` command in this process (a suite's run)."""
    return main(argv)


def cmd_suite(args: argparse.Namespace) -> int:
    """Run (or with --list print) the runs of configs/suites/NAME.yaml, each into OUT/<run name>; a finished run is
    skipped and a partly written one resumed, so a suite can be stopped and restarted. After running, print and
    write OUT/suite_cost.json: CPU-hours per run and in total; --list shows the last run's figures as estimates."""
    from benchmarks.suites import finished, last_suite_cost, load_suite, write_suite_cost

    suite = load_suite(args.name)
    out = Path(args.out or Path("runs") / "suites" / args.name)
    last = last_suite_cost(out) if args.list else None
    failed = []
    for job in suite.runs:
        if args.only and args.only not in job.name:
            continue
        argv = job.argv()
        n = args.n or job.n
        if args.n:
            argv = [w for k, w in enumerate(argv) if w != "--n" and (k == 0 or argv[k - 1] != "--n")]
            argv[5:5] = ["--n", str(args.n)]  # after run --problem P --algo A
        run_dir = out / job.name
        argv += [*args.overrides, "--out", str(run_dir)]
        if args.list:
            known = (last or {}).get("runs", {}).get(job.name)
            print("bench " + shlex.join(argv) + (f"  # last run: {known['cpu_hours']:.3f} CPU-h" if known else ""))
            continue
        if finished(run_dir, n):
            continue
        resume = ["--resume"] if (run_dir / "config.yaml").exists() else []
        code = _run_argv([*argv, "--quiet", *resume])
        print(f"{job.name}: exit {code}", flush=True)
        if code:
            failed.append(job.name)
    if args.list:
        if last:
            print(f"# last run ({last['date']}): {last['total_cpu_hours']:.3f} CPU-h in total"
                  + (f", {len(last['missing'])} run(s) without a cost" if last["missing"] else ""))
        return 0
    cost = write_suite_cost(suite, out)
    for name, row in cost["runs"].items():
        print(f"{name}: {row['cpu_hours']:.3f} CPU-h")
    print(f"bench suite {args.name}: {cost['total_cpu_hours']:.3f} CPU-h in total"
          + (f" ({len(cost['missing'])} run(s) without a recorded cost)" if cost["missing"] else "")
          + f" -> {out / 'suite_cost.json'}")
    if failed:
        print(f"bench suite {args.name}: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="medtta-bench: diffusion priors and test-time adaptation "
                                                          "for medical imaging inverse problems")
    sub = p.add_subparsers(dest="verb", required=True)

    q = sub.add_parser("list", help="list registered components (built-ins and plugins)")
    q.add_argument("group", nargs="?", choices=list(registry.GROUPS) + ["shifts"])
    q.set_defaults(func=cmd_list)

    q = sub.add_parser("run", help="run a benchmark into a run directory")
    q.add_argument("--problem", required=True)
    q.add_argument("--algo", required=True, help="ALGORITHM[+ADAPTER...], e.g. daps+tda")
    q.add_argument("--prior")
    q.add_argument("--dataset")
    q.add_argument("--shift")
    q.add_argument("--n", type=int)
    q.add_argument("--batch-size", type=int)
    q.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    q.add_argument("--seed", type=int)
    q.add_argument("--scheme", choices=["naive", "online", "minibatch"], help="test-time training scheme")
    q.add_argument("--out", help="run directory (default runs/<problem>-<method>-<time>)")
    q.add_argument("--resume", action="store_true", help="finish an interrupted run in --out")
    q.add_argument("-m", "--multirun", action="store_true",
                   help="hydra multirun: key=a,b (and --algo a,b) sweep, hydra/launcher=..., hydra/sweeper=...")
    q.add_argument("--tuned", metavar="STUDY_DIR", help="run with the best options of a `bench tune` study")
    q.add_argument("--quiet", action="store_true", help="no start line and no progress bar (on stderr); the results table still prints")
    q.add_argument("overrides", nargs="*", help="hydra overrides key=value, e.g. algorithm.n_steps=50")
    q.set_defaults(func=cmd_run)

    q = sub.add_parser("suite", help="run the runs of a suite (configs/suites/NAME.yaml), each into OUT/<run name>")
    q.add_argument("name", help="suite name (configs/suites/*.yaml: board, tta, ...)")
    q.add_argument("--list", action="store_true", help="print each run's `bench run` command instead of running it")
    q.add_argument("--only", default="", help="only the runs whose name contains this")
    q.add_argument("--n", type=int, help="samples per run (default: the suite's)")
    q.add_argument("--out", help="folder of the run directories (default runs/suites/NAME)")
    q.add_argument("overrides", nargs="*", help="hydra overrides key=value for every run")
    q.set_defaults(func=cmd_suite)

    q = sub.add_parser("tune", help="tune a method's search: block on the val split with the Optuna sweeper")
    q.add_argument("--problem", required=True)
    q.add_argument("--algo", required=True, help="ALGORITHM[+ADAPTER...]; the adapters' search spaces join in")
    q.add_argument("--trials", type=int, default=20, help="Optuna trials (the same budget for every method)")
    q.add_argument("--n-val", type=int, default=4, help="val samples per trial")
    q.add_argument("--study-seed", type=int, default=0, help="seed of the TPE sampler")
    q.add_argument("--prior")
    q.add_argument("--dataset")
    q.add_argument("--shift")
    q.add_argument("--batch-size", type=int)
    q.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    q.add_argument("--scheme", choices=["naive", "online", "minibatch"], help="test-time training scheme")
    q.add_argument("--out", help="study directory (default runs/tune-<problem>-<method>-<time>)")
    q.add_argument("--resume", action="store_true", help="finish an interrupted study in --out")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.add_argument("overrides", nargs="*", help="fixed options key=value, or hydra.sweeper.* settings")
    q.set_defaults(func=cmd_tune)

    q = sub.add_parser("leaderboard", help="aggregate run directories into a leaderboard")
    q.add_argument("runs", nargs="*", help="run directories (or folders holding them)")
    q.add_argument("-o", "--output", default="leaderboard.json")
    q.add_argument("--reference", metavar="NAME",
                   help="each setting's reference row for the paired differences: a method label, e.g. `cg-sense` or "
                        "`diffpir+tda` (default: l1-wavelet, with its defaults)")
    q.add_argument("--from-json", metavar="LEADERBOARD.json",
                   help="instead of run directories, an earlier leaderboard file: its rows as they are, compared "
                        "again (settings, duplicates, intervals, paired differences, ranks, matrices)")
    q.add_argument("--markdown", help="also write the markdown table here")
    q.add_argument("--keep", action="append", metavar="LEADERBOARD.json",
                   help="carry the rows of an earlier leaderboard file whose run directories are gone (repeatable)")
    q.add_argument("--html", metavar="DIR", help="also write the results page (static site, open DIR/index.html)")
    q.set_defaults(func=cmd_leaderboard)

    q = sub.add_parser("report", help="summary table and figures of one run directory")
    q.add_argument("run_dir")
    q.set_defaults(func=cmd_report)

    q = sub.add_parser("rescore", help="re-score finished runs by the current metric convention from their saved "
                                       "reconstructions and targets (no re-run)")
    q.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories, or folders holding them")
    q.set_defaults(func=cmd_rescore)

    q = sub.add_parser("verify", help="re-run K samples of a run from its provenance and compare them to the bit")
    q.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, or an entry of `bench submit` (.tar)")
    q.add_argument("--samples", type=int, default=2, help="how many finished samples to re-run (default 2)")
    q.add_argument("--seed", type=int, default=0, help="seed of the draw of the samples (default 0)")
    q.add_argument("--force", action="store_true",
                   help="compare even where the prior's fingerprint, the code, a package version or the device differ")
    q.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (default: the kind the run was made on)")
    q.set_defaults(func=cmd_verify)

    q = sub.add_parser("submit", help="pack a run into a leaderboard entry (tar with a sha256 manifest)")
    q.add_argument("run_dir", metavar="RUN_DIR")
    q.add_argument("-o", "--output", required=True, help="the entry file (.tar, .tar.gz or .tgz)")
    q.add_argument("--with-recons", action="store_true", help="also pack reconstructions/ and targets/")
    q.set_defaults(func=cmd_submit)

    q = sub.add_parser("export-data", help="write dataset items as fastMRI multi-coil h5 files")
    q.add_argument("--dataset", required=True)
    q.add_argument("--n", type=int, required=True)
    q.add_argument("--out", required=True, help="output folder (one .h5 file per item)")
    q.add_argument("--coils", type=int, default=1, help="simulated birdcage receive coils")
    q.add_argument("--split", default="test", choices=["train", "val", "test"])
    q.add_argument("--phase", type=float, default=0.0, help="amplitude (radians) of a known smooth image phase")
    q.add_argument("--noise-std", type=float, default=0.0, help="complex k-space noise, std per real component")
    q.add_argument("--store-maps", action="store_true", help="store the coil maps (key sensitivity_maps)")
    q.add_argument("--slices-per-file", type=int, default=1, help="items written as the slices of one volume")
    q.add_argument("--encoded", type=int, nargs=2, metavar=("H", "W"),
                   help="encoded matrix (zero-padded field of view, e.g. 2x readout oversampling)")
    q.add_argument("--prospective", type=float, metavar="R",
                   help="write prospective files: k-space zero off an equispaced mask of acceleration R (key mask), "
                        "no reference")
    q.add_argument("--seed", type=int, default=0, help="seed of the noise")
    q.add_argument("options", nargs="*", help="dataset options key=value, e.g. size=32")
    q.set_defaults(func=cmd_export_data)

    add_train_prior(sub)  # argparse and priors.training.config only: the loop (torch) is imported when the verb runs
    add_train_recon(sub)  # argparse and algorithms.networks.training_config only: the training is imported when run
    add_train_interp(sub)  # likewise: algorithms.networks.interp_training_config
    return p


def main(argv: list[str] | None = None) -> int:
    passive_wait()  # before torch loads: idle OpenMP threads sleep instead of spinning (benchmarks.threads)
    p = parser()
    args, extra = p.parse_known_args(argv)
    # `key=value` words may stand anywhere, also after options (argparse stops filling a positional list early)
    for field in ("overrides", "dataset_options", "train_options"):
        if hasattr(args, field):
            words = [e for e in extra if "=" in e and not e.startswith("-")]
            setattr(args, field, list(getattr(args, field) or []) + words)
            extra = [e for e in extra if e not in words]
    if extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:  # runner.RunInterrupted: lines and summary are written; say how to finish
        out = getattr(exc, "out", None)
        if out is None:
            raise
        words = [w for w in (sys.argv[1:] if argv is None else argv) if w != "--resume"]
        if "--out" not in words:
            words += ["--out", str(out)]
        print(f"\nbench {args.verb}: interrupted; the finished samples and the summary are in {out}.\n"
              f"Finish the run with:\n  bench {' '.join(shlex.quote(w) for w in words)} --resume", file=sys.stderr)
        return 130
    except USAGE_ERRORS as exc:
        if os.environ.get("BENCH_DEBUG"):
            raise
        print(f"bench {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, unwritable folder, file too large: one line naming the path and the cause
        if os.environ.get("BENCH_DEBUG"):
            raise
        print(f"bench {args.verb}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except MemoryError:
        if os.environ.get("BENCH_DEBUG"):
            raise
        print(f"bench {args.verb}: error: out of memory; use smaller inputs (--n, --batch-size, dataset.size) or a "
              f"machine with more memory", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
