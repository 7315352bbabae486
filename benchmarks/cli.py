"""The `bench` command line: list, run, leaderboard, report, train-prior."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from benchmarks import registry

USAGE_ERRORS: tuple[type[BaseException], ...] = (LookupError, ValueError, TypeError, RuntimeError, FileNotFoundError)


def cmd_list(args: argparse.Namespace) -> int:
    from benchmarks.config import load_shift, shift_names

    groups = [args.group] if args.group else list(registry.GROUPS) + ["shifts"]
    for g in groups:
        if g == "shifts":
            print("shifts:")
            for s in shift_names():
                print(f"  {s:<22} {load_shift(s).get('description', '')}")
            continue
        print(f"{g}:")
        for name in registry.names(g):
            dist = registry.distribution(g, name)
            origin = "" if dist == "medtta-bench" else f"  [plugin: {dist}]"
            print(f"  {name:<22} {registry.describe(g, name)}{origin}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from benchmarks.config import Selection, compose_config, expand_sweeps, parse_algo
    from benchmarks.runner import execute, format_table

    algo, adapters = parse_algo(args.algo)
    sel = Selection(args.problem, algo, adapters, args.prior, args.dataset, args.shift)
    flags = {"run.n": args.n, "run.batch_size": args.batch_size, "run.device": args.device, "run.seed": args.seed,
             "run.scheme": args.scheme}
    base = [f"{k}={v}" for k, v in flags.items() if v is not None]
    jobs = expand_sweeps(list(args.overrides)) if args.multirun else [list(args.overrides)]
    if len(jobs) > 1 and not args.multirun:
        raise ValueError("sweep values need --multirun")
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not args.out:
        raise ValueError("with several processes, pass --out DIR so that every process writes the same run directory")
    if world > 1 and args.device is None:
        import torch

        if torch.cuda.is_available():  # accelerate launch / torchrun: one GPU per process
            base.append(f"run.device=cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    for j, job in enumerate(jobs):
        cfg = compose_config(sel, base + job)
        out = Path(args.out or default_out(cfg))
        if len(jobs) > 1:
            out = out / f"{j:03d}"
        try:
            summary = execute(cfg, out, resume=args.resume, progress=not args.quiet, rank=rank, world_size=world)
        finally:
            if world > 1:
                (out / f"rank{rank}.done").write_text("")
        if world > 1:
            summary = merge_ranks(cfg, out, world) if rank == 0 else None
        if rank == 0:
            title = f"{cfg.names.algorithm}{''.join('+' + a for a in cfg.names.adapters)} on {cfg.names.problem}"
            print(f"\n{title} ({cfg.names.dataset}, prior {cfg.names.prior}) -> {out}" + (f"  [{' '.join(job)}]" if job else ""))
            print(format_table(summary))
    return 0


def merge_ranks(cfg, out: Path, world: int, timeout: float = 7 * 24 * 3600):
    """Rank 0: wait for every process's done-marker, then summarise the merged samples files."""
    import time

    from benchmarks.results import RunDir
    from benchmarks.runner import summarise

    start = time.time()
    while not all((out / f"rank{r}.done").exists() for r in range(world)):
        if time.time() - start > timeout:
            raise RuntimeError(f"ranks did not finish within {timeout:.0f} s")
        time.sleep(0.5)
    for r in range(world):
        (out / f"rank{r}.done").unlink()
    return summarise(cfg, RunDir(out), cfg.run.device)


def default_out(cfg) -> str:
    import time

    n = cfg.names
    method = n.algorithm + "".join("+" + a for a in n.adapters)
    return os.path.join("runs", f"{n.problem}-{method}-{time.strftime('%Y%m%d-%H%M%S')}")


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from benchmarks import leaderboard

    board = leaderboard.build(args.runs)
    leaderboard.validate(board)
    Path(args.output).write_text(json.dumps(board, indent=2))
    md = leaderboard.markdown(board)
    if args.markdown:
        Path(args.markdown).write_text(md)
    print(md, end="")
    print(f"{len(board['entries'])} entries -> {args.output}")
    if args.html:
        from benchmarks.site import write_site

        print(f"results page -> {write_site(board, args.html)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from benchmarks.report import report

    print(report(Path(args.run_dir)))
    return 0


def cmd_export_data(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from configs import CONFIG_DIR
    from inverse_problems.fastmri import export_fastmri

    yaml = CONFIG_DIR / "dataset" / f"{args.dataset}.yaml"
    opts = OmegaConf.load(yaml) if yaml.exists() else OmegaConf.create({})
    opts = OmegaConf.to_container(OmegaConf.merge(opts, OmegaConf.from_dotlist(list(args.options))), resolve=True)
    dataset = registry.build("datasets", args.dataset, split=args.split, **opts)
    paths = export_fastmri(dataset, args.n, args.out, coils=args.coils)
    print(f"wrote {len(paths)} fastMRI file(s) ({args.coils} coil(s)) of {args.dataset} ({args.split}) -> {args.out}")
    return 0


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
    q.add_argument("-m", "--multirun", action="store_true", help="sweep: key=a,b runs one job per value")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.add_argument("overrides", nargs="*", help="hydra overrides key=value, e.g. algorithm.steps=50")
    q.set_defaults(func=cmd_run)

    q = sub.add_parser("leaderboard", help="aggregate run directories into a leaderboard")
    q.add_argument("runs", nargs="+", help="run directories (or folders holding them)")
    q.add_argument("-o", "--output", default="leaderboard.json")
    q.add_argument("--markdown", help="also write the markdown table here")
    q.add_argument("--html", metavar="DIR", help="also write the results page (static site, open DIR/index.html)")
    q.set_defaults(func=cmd_leaderboard)

    q = sub.add_parser("report", help="summary table and figures of one run directory")
    q.add_argument("run_dir")
    q.set_defaults(func=cmd_report)

    q = sub.add_parser("export-data", help="write dataset items as fastMRI multi-coil h5 files")
    q.add_argument("--dataset", required=True)
    q.add_argument("--n", type=int, required=True)
    q.add_argument("--out", required=True, help="output folder (one .h5 file per item)")
    q.add_argument("--coils", type=int, default=1, help="simulated birdcage receive coils")
    q.add_argument("--split", default="test", choices=["train", "val", "test"])
    q.add_argument("options", nargs="*", help="dataset options key=value, e.g. size=32")
    q.set_defaults(func=cmd_export_data)

    try:
        from priors.training import add_cli as add_train_prior  # the train-prior verb
    except ImportError:
        pass
    else:
        add_train_prior(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args, extra = p.parse_known_args(argv)
    # `key=value` words may stand anywhere, also after options (argparse stops filling a positional list early)
    for field in ("overrides", "dataset_options"):
        if hasattr(args, field):
            words = [e for e in extra if "=" in e and not e.startswith("-")]
            setattr(args, field, list(getattr(args, field) or []) + words)
            extra = [e for e in extra if e not in words]
    if extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except USAGE_ERRORS as exc:
        if os.environ.get("BENCH_DEBUG"):
            raise
        print(f"bench {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
