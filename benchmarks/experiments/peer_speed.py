"""DPS and DiffPIR in this suite against DeepInverse (optional extra `peers`) on the same work, in one process.

Same denoiser: the suite's shipped prior (`brain-64` by default) in the suite's fastest exact execution setting
(float32, run.memory_format=channels_last on CPU), handed to DeepInverse as a `deepinv.models.Denoiser`
(`SuiteDenoiser`) that calls the same `prior.denoise` on the same tensors; only DeepInverse's [0, 1] image convention
is mapped affinely around the call. Same operator: the 64 x 64 single-coil `cs_mri` problem (R = 4, random mask)
as the suite's `SingleCoilMRI` and as `deepinv.physics.MRI` with the same mask; the script checks that both give the
same A x and A^H y on random input and records the largest difference. Same NFE: both libraries' denoiser calls are
counted and must match. Batch 4, float32, one thread. The runs are interleaved (suite, DeepInverse, suite, ...)
`--repeats` times and the medians taken, so that load on a shared machine affects both alike; the figure is the
ratio suite / DeepInverse of the process's CPU seconds (one thread: what the process computed, which other jobs
move far less than wall seconds; the wall-clock ratio is reported too). Inside each run the seconds spent in
`prior.denoise` are added up, so each library's time outside the network's forward pass is reported as well,
and one short run of each is profiled (cProfile, the functions with the most own time).

DeepInverse works on u = (x / c + 1) / 2 with c = sigma_n / min(sigma_n) >= 1 per sample (x: the suite's scaled
image), so that its one scalar noise level sigma_n / (2 c) is every sample's own; its clipping to [-1, 1] acts on
x / c.

Each library's options (stated in the output):
- DPS (Chung et al. 2023): the suite's defaults (zeta = 0.5, VP step); DeepInverse's `DPS` at its defaults
  (VP schedule, DDPM solver, weight 1.0, norm guidance, denoised output clipped to [-1, 1]) with dtype float32.
- DiffPIR (Zhu et al. 2023): the suite's defaults (lambda = 1, zeta = 1, closed-form SVD data step); DeepInverse's
  `DiffPIR` with zeta = 1 and lambda_ = 2 (its rho_t = lambda sigma_n^2 / sigma_t^2 is taken in [0, 1] units,
  which makes its lambda_ = 2 the suite's lambda = 1) and the L2 data fidelity (closed-form prox of its
  decomposable MRI physics); `--deepinv-defaults` also scores its defaults (zeta = 0.1, lambda_ = 7).

    pip install -e '.[peers]'
    python benchmarks/experiments/peer_speed.py [--dps-nfe 1000] [--diffpir-nfe 100] [--batch 4] [--repeats 3]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import platform
import pstats
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

try:
    import deepinv as dinv
except ImportError as exc:  # the optional extra
    raise SystemExit("peer_speed.py needs DeepInverse: pip install -e '.[peers]' (deepinv==0.5.0)") from exc

from algorithms.diffusion.diffpir import DiffPIR
from algorithms.diffusion.dps import DPS
from benchmarks.metrics import image_metrics
from inverse_problems.operators.complex import to_real
from inverse_problems.operators.linalg import per_sample
from inverse_problems.operators.mri import MultiCoilMRI, SingleCoilMRI
from inverse_problems.data.phantoms.datasets import BrainT2
from inverse_problems.problems.cs_mri import CSMRIProblem
from priors.base import Prior
from priors.shipped import brain_64, phantom_brain_64

PRIORS = {"brain-64": brain_64, "phantom-brain-64": phantom_brain_64}


class SuiteDenoiser(dinv.models.Denoiser):
    """The suite's `prior.denoise` as a DeepInverse denoiser on DeepInverse's [0, 1] images.

    DeepInverse images u relate to the suite's scaled images x by u = (x / c + 1) / 2 (c > 0 per sample), so
    D_u(u, s) = (D(c (2u - 1), 2 c s) / c + 1) / 2: the same network call on the same x and sigma. `calls` counts
    the calls (the NFE check).
    """

    def __init__(self, prior: Prior, c: Tensor) -> None:
        super().__init__()
        self.prior, self.c, self.calls = prior, c, 0

    def forward(self, x: Tensor, sigma: float | Tensor, *args: Any, **kwargs: Any) -> Tensor:
        self.calls += 1
        s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
        s = s.expand(x.shape[0]) if s.numel() == 1 else s.reshape(x.shape[0])
        c = per_sample(self.c, x)
        return (self.prior.denoise(c * (2 * x - 1), 2 * self.c * s) / c + 1) / 2


def deepinv_physics(op: MultiCoilMRI, noise_std: float = 0.0) -> "dinv.physics.MRI":
    """DeepInverse's MRI with the suite operator's mask (and Gaussian noise of std `noise_std`): `MRI` for the
    single-coil operator, `MultiCoilMRI` with the operator's effective coil maps (one per sample) otherwise."""
    noise = dinv.physics.GaussianNoise(sigma=noise_std)
    if isinstance(op, SingleCoilMRI):
        return dinv.physics.MRI(mask=op.mask, img_size=(2, *op.image_shape[1:]), device=op.mask.device,
                                noise_model=noise)
    return dinv.physics.MultiCoilMRI(mask=op.mask, coil_maps=op.effective_maps().detach(),
                                     img_size=tuple(op.image_shape[1:]), device=op.mask.device, noise_model=noise)


def as_deepinv(y: Tensor, op: MultiCoilMRI) -> Tensor:
    """A suite measurement (B, coils, H, W) complex in DeepInverse's layout: (B, 2, H, W) for one coil, else
    (B, 2, coils, H, W)."""
    return to_real(y[:, 0]) if isinstance(op, SingleCoilMRI) else torch.view_as_real(y).permute(0, 4, 1, 2, 3)


@torch.no_grad()
def operator_difference(op: MultiCoilMRI, physics: "dinv.physics.MRI", seed: int = 0) -> float:
    """max |A x - A_dinv x| and |A^H y - A_dinv^H y| on random x and masked random y (the two operators agree),
    at the operator's batch (its phase parameter is per sample)."""
    g, batch = torch.Generator().manual_seed(seed), op.phase.shape[0]
    x = torch.randn((batch, *op.image_shape), generator=g)
    y = torch.complex(torch.randn((batch, *op.measurement_shape), generator=g),
                      torch.randn((batch, *op.measurement_shape), generator=g)) * op.mask
    fwd = (as_deepinv(op.forward(x), op) - physics.A(x)).abs().max()
    adj = (op.adjoint(y) - physics.A_adjoint(as_deepinv(y, op))).abs().max()
    return float(torch.maximum(fwd, adj))


def to_unit(y: Tensor, physics: "dinv.physics.MRI", c: Tensor, op: MultiCoilMRI | None = None) -> Tensor:
    """The suite's measurement y (scaled units, complex (B, coils, H, W); one coil unless `op` says otherwise) as
    DeepInverse's measurement of u = (x / c + 1) / 2: y_u = A u = (y / c + A 1) / 2 (its noise std becomes
    sigma / (2 c))."""
    ones = torch.ones((y.shape[0], 2, *y.shape[-2:]), device=y.device)
    y_d = to_real(y[:, 0]) if op is None else as_deepinv(y, op)
    return (y_d / per_sample(c, y_d) + physics.A(ones)) / 2


class NetworkClock:
    """Wraps `prior.denoise` (on the instance, for both libraries alike) and adds up the wall and CPU seconds spent
    inside it: the network's forward share of a run."""

    def __init__(self, prior: Prior) -> None:
        self.wall = self.cpu = 0.0
        inner = prior.denoise

        def denoise(x: Tensor, sigma: float | Tensor) -> Tensor:
            w, c = time.perf_counter(), time.process_time()
            out = inner(x, sigma)
            self.wall += time.perf_counter() - w
            self.cpu += time.process_time() - c
            return out
        prior.denoise = denoise  # type: ignore[method-assign]


def timed(fn: Callable[[], Any], clock: NetworkClock) -> tuple[Any, dict[str, float]]:
    """fn() and its wall and CPU (process) seconds, in total and inside the network. With one thread the CPU
    seconds are what the process itself computed: other jobs on a shared machine move them far less than wall
    seconds."""
    clock.wall = clock.cpu = 0.0
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"wall": time.perf_counter() - w, "cpu": time.process_time() - c, "network_wall": clock.wall,
                 "network_cpu": clock.cpu}


def top_functions(fn: Callable[[], Any], n: int = 12) -> list[str]:
    """cProfile of one call: the n functions with the largest own time, as pstats prints them."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(n)
    lines = [ln.strip() for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("ncalls"))
    return lines[start:start + n + 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", default="brain-64", choices=list(PRIORS))
    ap.add_argument("--dps-nfe", type=int, default=1000)
    ap.add_argument("--diffpir-nfe", type=int, default=100)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=["diffpir", "dps"], choices=["diffpir", "dps"])
    ap.add_argument("--memory-format", default="channels_last", choices=["contiguous", "channels_last"])
    ap.add_argument("--deepinv-defaults", action="store_true", help="also score DeepInverse's DiffPIR defaults")
    ap.add_argument("--profile-steps", type=int, default=5, help="steps of the profiled run of each (0: none)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "peer_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    prior = PRIORS[args.prior]("cpu").requires_grad_(False)
    prior.set_execution("fp32", args.memory_format)
    clock = NetworkClock(prior)

    data = BrainT2(split="test", size=64)
    x_true = torch.stack([data[i]["image"] for i in range(args.batch)])
    inst = CSMRIProblem(size=64, coils=1).simulate(x_true, torch.Generator().manual_seed(1))
    y, op, scale = inst.y, inst.operator.requires_grad_(False), inst.scale
    sigma_n = op.noise_std.detach().reshape(-1).expand(args.batch)
    # per-sample c >= 1 so that DeepInverse's one scalar noise level sigma_n / (2 c) is every sample's own
    c = sigma_n / sigma_n.min()
    sigma_u = float(sigma_n.min()) / 2
    physics = deepinv_physics(op, sigma_u)
    y_u = to_unit(y, physics, c)
    den = SuiteDenoiser(prior, c)

    def psnr(x_scaled: Tensor) -> float:
        return statistics.mean(r["psnr"] for r in image_metrics(x_scaled * per_sample(scale, x_scaled), x_true))

    def from_unit(u: Tensor) -> Tensor:
        return per_sample(c, u) * (2 * u - 1)

    def suite_run(method: str, nfe: int) -> Callable[[], Tensor]:
        algo = DPS(n_steps=nfe) if method == "dps" else DiffPIR(n_steps=nfe + 1)

        def run() -> Tensor:
            rec = algo.reconstruct(y, op, prior, torch.Generator().manual_seed(0))
            if rec.nfe != nfe:
                raise RuntimeError(f"suite {method}: NFE {rec.nfe}, expected {nfe}")
            return rec.image
        return run

    def deepinv_run(method: str, nfe: int, defaults: bool = False) -> Callable[[], Tensor]:
        if method == "dps":
            model = dinv.sampling.DPS(den, num_steps=nfe + 1, dtype=torch.float32, device="cpu",
                                      rng=torch.Generator().manual_seed(0))
        elif defaults:
            model = dinv.sampling.DiffPIR(den, dinv.optim.data_fidelity.L2(), sigma=sigma_u, max_iter=nfe)
        else:
            model = dinv.sampling.DiffPIR(den, dinv.optim.data_fidelity.L2(), sigma=sigma_u, max_iter=nfe,
                                          zeta=1.0, lambda_=2.0)

        def run() -> Tensor:
            den.calls = 0
            if method == "dps":
                u = model(y_u, physics, seed=0)
            else:
                torch.manual_seed(0)
                u = model(y_u, physics)
            if den.calls != nfe:
                raise RuntimeError(f"deepinv {method}: NFE {den.calls}, expected {nfe}")
            return from_unit(u.detach())
        return run

    out: dict[str, Any] = {
        "device": "cpu", "torch": torch.__version__, "deepinv": dinv.__version__, "threads": torch.get_num_threads(),
        "platform": platform.platform(), "batch": args.batch, "size": 64, "prior": args.prior,
        "dataset": "phantom-brain-t2 (test split)", "problem": "cs_mri coils=1, R = 4 random mask, noise_std 0.005",
        "memory_format": args.memory_format, "precision": "fp32", "repeats": args.repeats,
        "command": f"python benchmarks/experiments/peer_speed.py --prior {args.prior} --dps-nfe {args.dps_nfe} "
                   f"--diffpir-nfe {args.diffpir_nfe} --batch {args.batch} --repeats {args.repeats}"
                   + (f" --methods {' '.join(args.methods)}" if args.methods != ["diffpir", "dps"] else "")
                   + (" --deepinv-defaults" if args.deepinv_defaults else ""),
        "operator_max_difference": operator_difference(op, physics),
        "note": "the runs of the two libraries alternate within one process; seconds are medians over the repeats "
                "on a shared, loaded 2-core machine (under load): the CPU (process) seconds, which other jobs move "
                "far less than wall seconds, give the ratio to read; network_forward: seconds inside prior.denoise "
                "(DPS's backward pass through the network is outside it, in both libraries)",
        "options": {
            "units": "DeepInverse on u = (x / c + 1) / 2, c = sigma_n / min(sigma_n) >= 1 per sample",
            "dps": {"suite": "DPS(n_steps=NFE): zeta 0.5, vp_step (defaults)",
                    "deepinv": "dinv.sampling.DPS(num_steps=NFE + 1, dtype=float32): VP schedule, DDPM solver, "
                               "weight 1.0, guidance 'norm', clip [-1, 1] (defaults)"},
            "diffpir": {"suite": "DiffPIR(n_steps=NFE + 1): lam 1, zeta 1, sigma_n_min 1e-3, SVD data step "
                                 "(defaults; its last step takes no network call)",
                        "deepinv": "dinv.sampling.DiffPIR(max_iter=NFE, zeta=1.0, lambda_=2.0, sigma=sigma_n/2c) "
                                   "with L2 data fidelity (closed-form prox); x0 clipped to [-1, 1] in its units"}},
        "target_ratio": 0.8, "methods": {}}
    print(f"operators agree to {out['operator_max_difference']:.3g}", flush=True)
    for method in args.methods:
        nfe = args.dps_nfe if method == "dps" else args.diffpir_nfe
        runs = {"suite": suite_run(method, nfe), "deepinv": deepinv_run(method, nfe)}
        times: dict[str, list[dict[str, float]]] = {k: [] for k in runs}
        images: dict[str, Tensor] = {}
        # a short profiled run of each first (it also warms both up), then the timed runs, alternating which
        # library goes first
        profile = {lib: top_functions(run(method, args.profile_steps)) for lib, run in
                   (("suite", suite_run), ("deepinv", deepinv_run))} if args.profile_steps else None
        for rep in range(args.repeats):
            for lib, run in (runs.items() if rep % 2 == 0 else reversed(runs.items())):
                images[lib], t = timed(run, clock)
                times[lib].append(t)
                print(f"{method} {lib:8s} rep {rep}: {t['wall']:8.2f} s wall, {t['cpu']:8.2f} s CPU per batch; "
                      f"network forward {t['network_cpu'] / t['cpu']:.1%} of the CPU time", flush=True)
        med = {lib: {k: statistics.median(t[k] for t in ts) for k in ts[0]} for lib, ts in times.items()}
        row: dict[str, Any] = {
            "nfe": nfe,
            "seconds_per_sample_wall": {lib: m["wall"] / args.batch for lib, m in med.items()},
            "seconds_per_sample_cpu": {lib: m["cpu"] / args.batch for lib, m in med.items()},
            "ratio_suite_over_deepinv_wall": med["suite"]["wall"] / med["deepinv"]["wall"],
            "ratio_suite_over_deepinv_cpu": med["suite"]["cpu"] / med["deepinv"]["cpu"],
            "network_forward_cpu_seconds_per_sample": {lib: m["network_cpu"] / args.batch for lib, m in med.items()},
            "outside_network_forward_cpu_seconds_per_sample": {
                lib: (m["cpu"] - m["network_cpu"]) / args.batch for lib, m in med.items()},
            "runs": times,
            "psnr_db": {k: psnr(v) for k, v in images.items()}}
        if method == "diffpir" and args.deepinv_defaults:
            row["psnr_db"]["deepinv_defaults(zeta=0.1,lambda_=7)"] = psnr(deepinv_run(method, nfe, defaults=True)())
        if profile:
            row["profile"] = {"steps": args.profile_steps, **profile}
        out["methods"][method] = row
        print(f"{method}: ratio (CPU) {row['ratio_suite_over_deepinv_cpu']:.3f}, (wall) "
              f"{row['ratio_suite_over_deepinv_wall']:.3f}, PSNR {row['psnr_db']}", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
