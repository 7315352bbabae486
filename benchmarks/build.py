"""The components of a run, built from its config and checked to fit together before any compute (`Components`,
`build_components`), and the checks of the run's own options (run.*: sizes, seed, device, precision, memory format).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig
from torch.utils.data import Dataset

from adaptation.base import AdaptedAlgorithm, Adapter
from algorithms.base import Algorithm
from benchmarks import registry
from benchmarks.config import ConfigError, options
from benchmarks.items import first_readable, image_shape
from benchmarks.results import run_defaults
from inverse_problems.data.base import Item
from inverse_problems.problems.base import Problem
from priors.base import MEMORY_FORMATS, PRECISIONS, Prior


@dataclass
class Components:
    """What a run is made of: the items, the problem that measures them, the algorithm that reconstructs them
    (an AdaptedAlgorithm over `adapters` when there are any), its prior (None for an algorithm without one) and the
    adapters (the TTT scheme resets or carries their state between batches)."""

    dataset: Dataset[Item]
    problem: Problem
    algorithm: Algorithm
    prior: Prior | None = None
    adapters: list[Adapter] = field(default_factory=list)


def check_run_options(cfg: DictConfig) -> None:
    """Refuse unknown run.* keys and values that would give an empty or wrong run, naming key and fix."""
    valid = run_defaults()
    unknown = sorted(set(cfg.run) - set(valid))
    if unknown:
        raise ConfigError(f"unknown run option {', '.join('run.' + k for k in unknown)}; valid run options: "
                          f"{', '.join('run.' + k for k in valid)}")
    for key, flag in (("n", "--n"), ("batch_size", "--batch-size")):
        value = cfg.run.get(key, valid[key])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"run.{key} ({flag}) must be a whole number >= 1, got {value!r}")
    seed = cfg.run.get("seed", valid["seed"])
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"run.seed (--seed) must be a whole number, got {seed!r}")
    for key in ("save_reconstructions", "tensorboard", "prior_per_sample"):
        value = cfg.run.get(key, valid.get(key, False))
        if not isinstance(value, bool):
            raise ConfigError(f"run.{key} must be true or false, got {value!r}")
    threads = cfg.run.get("threads", valid.get("threads", "auto"))
    if threads != "auto" and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"run.threads must be auto or a whole number >= 1, got {threads!r}")
    for key, allowed in (("precision", tuple(PRECISIONS)), ("memory_format", ("auto", *MEMORY_FORMATS))):
        value = cfg.run.get(key, valid[key])
        if value not in allowed:
            raise ConfigError(f"run.{key} must be one of {', '.join(allowed)}, got {value!r}")



def memory_format(spec: str, device: torch.device) -> str:
    """run.memory_format: `auto` is channels_last on CPU (the shipped UNet's convolutions run faster in NHWC
    there, benchmarks/results/denoiser_speed.json) and contiguous elsewhere (not measured on a GPU)."""
    if spec != "auto":
        return spec
    return "channels_last" if device.type == "cpu" else "contiguous"



def resolve_device(spec: str) -> torch.device:
    """auto | cpu | cuda | cuda:N | mps, with a clear error where the device is absent."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as exc:
        raise ConfigError(f"bad --device {spec!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"--device {spec}: no such CUDA device here (found {torch.cuda.device_count()}); use --device cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps: MPS is not available here; use --device cpu")
    return dev



def build_dataset(name: str, cfg: DictConfig, split: str) -> Dataset[Item]:
    return registry.build("datasets", name, split=split, **options(cfg, "dataset"))



class PerSamplePrior(Prior):
    """A prior evaluated one sample at a time (run.prior_per_sample): a network's batched kernels (oneDNN
    convolutions, gemm against gemv) round differently for different batch sizes (~1e-6); batch-1 calls make
    every sample's numbers those of batch size 1, whatever the batch, at the cost of the network's batching."""

    def __init__(self, base: Prior) -> None:
        super().__init__()
        self.base = base
        self.channels, self.resolution = base.channels, base.resolution
        self.sigma_min, self.sigma_max = base.sigma_min, base.sigma_max
        self.source_domain = getattr(base, "source_domain", None)

    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(sigma)
        per = s.ndim > 0 and s.numel() == x.shape[0]
        return torch.cat([self.base.denoise(x[k:k + 1], sigma[k:k + 1] if per else sigma)  # type: ignore[index]
                          for k in range(x.shape[0])])



def forward_only_refusal(name: str, algorithm: Algorithm) -> str:
    """Why `name` cannot run on a forward-only problem, and the registered solvers that can."""
    usable = [n for n in registry.names("algorithms")
              if getattr(registry.load("algorithms", n), "derivative_free", False)]
    return (f"algorithm {name!r} {algorithm.operator_use()}; this problem's operator is forward-only "
            f"(problem.forward_only=true: no adjoint, no gradient through it); use one of: {', '.join(usable)}")


def build_prior(cfg: DictConfig, device: torch.device | None = None,
                image_shape: tuple[int, ...] | None = None, made_on: torch.device | None = None) -> Prior:
    """The prior that cfg names (names.prior), built from its options (a dataset named in them: its train split).
    With `device`, as a run uses it: checked against the problem's `image_shape`, moved there, frozen, set to the
    run's precision and memory layout (`auto` resolved for `made_on`, default `device`: a run made on another kind of
    device is rebuilt as it ran), wrapped per sample when run.prior_per_sample (its fingerprint is the run's
    names.prior_hash); without, as built (the fingerprint a tuning study records)."""
    prior_opts = options(cfg, "prior")
    if isinstance(prior_opts.get("dataset"), str):  # a prior fitted to a named dataset
        prior_opts["dataset"] = registry.build("datasets", prior_opts.pop("dataset"), split="train",
                                               **prior_opts.pop("dataset_options", {}))
    prior: Prior = registry.build("priors", str(cfg.names.prior), **prior_opts)
    if device is None:
        return prior.eval()
    if image_shape is not None:
        prior.check_compatible(image_shape, f"problem {cfg.names.problem!r}")
    prior = prior.to(device).eval()
    for p in prior.parameters():
        p.requires_grad_(False)
    prior.set_execution(cfg.run.get("precision", "fp32"),
                        memory_format(cfg.run.get("memory_format", "auto"), made_on or device))
    if cfg.run.get("prior_per_sample", False):
        prior = PerSamplePrior(prior)
    return prior


def build_components(cfg: DictConfig, device: torch.device) -> Components:
    """Instantiate every component and check that they fit together, before any compute."""
    names = cfg.names
    dataset = build_dataset(names.dataset, cfg, cfg.run.split)
    problem: Problem = registry.build("problems", names.problem, **options(cfg, "problem"))
    first = first_readable(dataset)
    if getattr(problem, "tier", "simulated") == "measured" and "kspace" not in first:
        raise ConfigError(f"problem {names.problem!r} with data=measured needs a dataset of measurements (items with "
                          f"'kspace', e.g. --dataset fastmri); dataset {names.dataset!r} gives images only: use "
                          f"problem.data=simulated")
    item_shape = image_shape(first)
    if item_shape != tuple(problem.image_shape):
        raise ConfigError(
            f"dataset {names.dataset!r} yields images of shape {item_shape} but problem {names.problem!r} takes "
            f"{tuple(problem.image_shape)}; set the sizes to match (e.g. dataset.size=... problem.size=...)"
        )
    algorithm: Algorithm = registry.build("algorithms", names.algorithm, **options(cfg, "algorithm"))
    if getattr(problem, "forward_only", False) and not algorithm.derivative_free:
        raise ConfigError(forward_only_refusal(names.algorithm, algorithm))
    if getattr(problem, "forward_only", False) and names.adapters:
        raise ConfigError(f"adapters ({', '.join(names.adapters)}) fit the operator or the image through A^H or "
                          f"gradients, which this problem's forward-only operator does not offer "
                          f"(problem.forward_only=true): run --algo {names.algorithm} without them")
    prior: Prior | None = None
    if algorithm.uses_prior:
        if names.prior is None:
            raise ConfigError(f"algorithm {names.algorithm!r} needs a prior and problem {names.problem!r} has no "
                              f"default; pass --prior NAME (`bench list priors`)")
        prior = build_prior(cfg, device, tuple(problem.image_shape))
    adapters: list[Adapter] = [registry.build("adapters", a, **dict(options(cfg, "adapters").get(a, {})))
                               for a in names.adapters]
    adapters = [a.to(device) for a in adapters]
    if adapters:
        algorithm = AdaptedAlgorithm(algorithm, adapters)
    return Components(dataset=dataset, problem=problem, algorithm=algorithm, prior=prior, adapters=adapters)

