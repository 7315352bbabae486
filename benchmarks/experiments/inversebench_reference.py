"""Reference outputs of the roster's reference code, run outside the project (issue 28, "faithful").

The reference code is loaded from local checkouts, never copied or imported by the product packages: InverseBench's
`algo/*.py` (--inversebench), NVlabs/RED-diff's `algos/reddiff.py` and `algos/pgdm.py` (--red-diff; the ΠGDM
authors' implementation) and HJ-harry/score-MRI's `sampling.py` (--score-mri). Each runs on a 16 x 16 problem whose
prior is Gaussian, so that its exact denoiser (or score, or eps-network in VP variables) stands in for the network,
with the operator written on the reference's own interface. Random draws are replaced by a recorded sequence
(torch.Generator seed NOISE_SEED, in the reference's call order) so that the suite's solver can replay them. The
numbers go to tests/fixtures/inversebench_reference.json, which tests/algorithms/test_inversebench_reference.py
compares the suite's solvers with:
  - csgm: InverseBench's CSGMMRI at its MRI configuration (2311 levels 232 -> 0.0066, start 1155, 3 steps a level,
    step_lr 3e-5, mse 0.3) on random inpainting (`problem()`): the final image;
  - ddnm: InverseBench's DDNM (DDNM+ with time travel L = 1; its configuration: 100 steps of its VE grid 100 ->
    0.01, eta 0.85) on the same problem without noise: the final image and the grid (the suite's DDNM uses the
    official VP grid; the replay hands it this one);
  - lgd: InverseBench's LGD (VP schedule, 3 draws around x̂0, Euler-Maruyama steps) at STEPS steps and guidance
    scale LGD_SCALE on the same problem, N_LGD independent runs (torch's global generator, seed 0): the per-pixel
    mean and variance (its Euler-Maruyama draws cannot be replayed by the suite's ancestral step);
  - reddiff: RED-diff's REDDIFF (`reddiff.yaml`: lr 0.1, grad_term_weight 0.25 with the "linear" 1/SNR weight,
    obs_weight 1, sigma_x0 = 0) at RED_STEPS steps of its `get_timesteps` grid, from A^+ y: the final mu;
  - pigdm: the authors' PGDM (`pgdm.yaml`: grad_term_weight 1, eta 0, noiseless pseudo-inverse guidance) at
    RED_STEPS steps: the final image and the start's noise level;
  - score-mri: score-MRI's `get_pc_fouriercs_RI` (its single-coil sampler: the VE predictor on the real and the
    imaginary part separately, k-space replacement after each update, the last x_mean) with its VESDE (0.01 -> 378)
    at SCORE_STEPS levels and discrete labels, the corrector replaced by the identity (the official corrector
    normalises over each part, the suite's over the whole image: deviations table), on noiseless single-coil
    Cartesian MRI (`mri_problem()`): the final image.

    python benchmarks/experiments/inversebench_reference.py --inversebench PATH --only csgm ddnm lgd
    python benchmarks/experiments/inversebench_reference.py --red-diff PATH --only reddiff pigdm
    python benchmarks/experiments/inversebench_reference.py --score-mri PATH --only score-mri
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "inversebench_reference.json"
H, NOISE, NOISE_SEED = 16, 0.05, 7
STEPS, LGD_SCALE, LGD_MC, N_LGD = 1000, 0.3, 3, 384
SCORE_STEPS, SCORE_SIGMA = 50, (0.01, 378.0)
RED_STEPS, RED_CFG = 100, {"lr": 0.1, "grad_term_weight": 0.25, "denoise_term_weight": "linear", "obs_weight": 1.0}


def problem() -> dict[str, torch.Tensor]:
    """The prior's mean m and variance v (1, H, H), the mask (H, H) and one measurement y (1, 1, H, H)."""
    g = torch.Generator().manual_seed(0)
    mean = 0.1 * torch.randn((1, H, H), generator=g)
    var = 0.02 + 0.06 * torch.rand((1, H, H), generator=g)
    mask = (torch.rand((H, H), generator=g) < 0.5).float()
    x = mean + var.sqrt() * torch.randn((1, H, H), generator=g)
    y = (mask * x + NOISE * torch.randn((1, H, H), generator=g)).unsqueeze(0)
    return {"mean": mean, "var": var, "mask": mask, "y": y}


def replay(generator: torch.Generator) -> types.SimpleNamespace:
    """`torch` for a loaded module, with rand/randn/randn_like drawing from `generator` in call order."""
    ns = types.SimpleNamespace(**{k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")})
    ns.rand = lambda *shape, device=None, **kw: torch.rand(tuple(shape), generator=generator)
    ns.randn = lambda *shape, device=None, **kw: torch.randn(
        tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], tuple) else tuple(shape), generator=generator)
    ns.randn_like = lambda x, **kw: torch.randn(x.shape, generator=generator)
    return ns


def load_file(name: str, path: Path) -> types.ModuleType:
    """The file `path` executed as module `name` (registered in sys.modules, so its relative imports resolve)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def package(name: str, path: Path) -> None:
    """An empty package `name` whose submodules are the files of the folder `path` (without its __init__.py)."""
    pkg = types.ModuleType(name)
    pkg.__path__ = [str(path)]
    sys.modules[name] = pkg


def gaussian_denoiser(p: dict, x: torch.Tensor, sigma) -> torch.Tensor:
    """D(x, sigma) = m + v/(v + sigma^2) (x - m): the exact denoiser of `problem()`'s pixel-diagonal prior."""
    s2 = torch.as_tensor(sigma, dtype=torch.float32) ** 2
    return p["mean"] + p["var"] / (p["var"] + s2) * (x - p["mean"])


def load(ib: Path, name: str) -> types.ModuleType:
    """InverseBench's algo/<name>.py as module `algo.<name>` (its `from .base import Algo` resolves in the checkout)."""
    if "algo" not in sys.modules:
        package("algo", ib / "algo")
        sys.modules.setdefault("wandb", types.SimpleNamespace(run=None, log=lambda *a, **k: None))
        sys.path.insert(0, str(ib))  # its `utils.scheduler`
    return load_file(f"algo.{name}", ib / "algo" / f"{name}.py")


def harness(ib: Path, p: dict) -> tuple[object, object]:
    """InverseBench's `net` (the exact Gaussian denoiser) and forward operator (masking, on its BaseOperator)."""
    base = load_file("inversebench_base", ib / "inverse_problems" / "base.py")
    mask = p["mask"]

    class Net(torch.nn.Module):
        img_channels, img_resolution = 1, H

        def forward(self, x, sigma):
            return gaussian_denoiser(p, x, sigma)

    class Masked(base.BaseOperator):
        def forward(self, inputs, **kwargs):
            return mask * inputs

    return Net(), Masked(device="cpu")


def csgm(ib: Path, p: dict) -> dict:
    mod = load(ib, "csgm_mri")
    mod.torch = replay(torch.Generator().manual_seed(NOISE_SEED))
    cfg = types.SimpleNamespace(sigma_dist="geometric", sigma_begin=232, sigma_end=0.0066, num_steps=2311)
    net, op = harness(ib, p)
    x = mod.CSGMMRI(net, op, cfg, start_iter=1155, n_steps_each=3, step_lr=3.0e-5, mse=0.3).inference(p["y"])
    return {"config": {"sigma_begin": 232, "sigma_end": 0.0066, "num_steps": 2311, "start_iter": 1155,
                       "n_steps_each": 3, "step_lr": 3e-5, "mse": 0.3},
            "noise": f"torch.Generator().manual_seed({NOISE_SEED}): torch.rand((1, 1, {H}, {H})), then per Langevin "
                     f"step torch.randn((1, 1, {H}, {H}))",
            "sigmas": [float(s) for s in mod.get_sigmas(cfg)[[1156, 1800, 2310]]],
            "x": [round(float(v), 7) for v in x.detach().flatten()]}


def ddnm(ib: Path, p: dict) -> dict:
    """InverseBench's DDNM (DDNM+, time travel L = 1) at its configuration on the noiseless problem (sigma_noise = 0:
    its floor 1e-4 keeps lambda = 1), its draws replayed: the final image and its sigma grid."""
    mod = load(ib, "ddnm")
    mod.torch = replay(torch.Generator().manual_seed(NOISE_SEED))
    net, op = harness(ib, p)
    mask = p["mask"]
    op.M, op.S = mask, torch.ones_like(mask)  # pixel inpainting's SVD: U = V = I, singular values 1 on the mask
    op.U = op.Ut = op.V = op.Vt = lambda v: v
    cfg = {"num_steps": 100, "schedule": "sqrt", "timestep": "log"}
    algo = mod.DDNM(net, op, cfg, eta=0.85, L=1)
    x = algo.inference(p["y"])
    return {"config": {"scheduler_config": cfg, "eta": 0.85, "L": 1, "sigma_noise": 0.0},
            "sigmas": [float(v) for v in algo.scheduler.sigma_steps],
            "noise": f"torch.Generator().manual_seed({NOISE_SEED}): the start, then per step the re-noising draw "
                     "(also at step 0, where it is multiplied by 0) and one draw per inner step",
            "x": [round(float(v), 7) for v in x.flatten()]}


def lgd(ib: Path, p: dict) -> dict:
    mod = load(ib, "lgd")
    net, op = harness(ib, p)
    cfg = {"num_steps": STEPS, "schedule": "vp", "timestep": "vp", "scaling": "vp"}
    algo = mod.LGD(net, op, cfg, guidance_scale=LGD_SCALE, num_samples=LGD_MC)
    torch.manual_seed(0)
    xs = torch.cat([algo.inference(p["y"]).detach() for _ in range(N_LGD)])
    return {"config": {"diffusion_scheduler_config": cfg, "guidance_scale": LGD_SCALE, "num_samples": LGD_MC},
            "n": N_LGD, "final_sigma": float(algo.scheduler.sigma_steps[-1]),
            "mean": [round(float(v), 6) for v in xs.mean(0).flatten()],
            "var": [round(float(v), 7) for v in xs.var(0).flatten()]}


def red_diff_repo(rd: Path, p: dict, algo: str) -> tuple[types.ModuleType, object, object, list[int], object]:
    """NVlabs/RED-diff's algos/<algo>.py loaded with what it needs: its Diffusion (CUDA placement kept on the CPU),
    DDRM-style inpainting H (H keeps the observed pixels, H_pinv puts them back with zeros elsewhere), an eps-network
    made from the exact denoiser in VP variables (x_vp = sqrt(abar) (x0 + sigma eps)), its `get_timesteps` grid."""
    for name in [m for m in sys.modules if m == "utils" or m.startswith(("utils.", "models", "algos"))]:
        del sys.modules[name]
    torch.Tensor.cuda = lambda self, *a, **k: self
    to = torch.Tensor.to
    torch.Tensor.to = lambda self, *a, **k: self if a[:1] == ("cuda",) else to(self, *a, **k)
    for name in ("models", "algos", "utils"):
        package(name, rd / name)
    observed = p["mask"].flatten().bool()

    class Inpaint:
        @staticmethod
        def H(x):
            return x.reshape(x.shape[0], -1)[:, observed]

        @staticmethod
        def H_pinv(v):
            out = torch.zeros(v.shape[0], H * H)
            out[:, observed] = v
            return out

    sys.modules["utils.degredations"] = types.SimpleNamespace(build_degredation_model=lambda cfg: Inpaint)
    diffusion = load_file("models.diffusion", rd / "models" / "diffusion.py").Diffusion()
    load_file("models.classifier_guidance_model", rd / "models" / "classifier_guidance_model.py")
    load_file("algos.ddim", rd / "algos" / "ddim.py")
    mod = load_file(f"algos.{algo}", rd / "algos" / f"{algo}.py")
    mod.torch = replay(torch.Generator().manual_seed(NOISE_SEED))

    class Model:
        def __init__(self):
            self.diffusion = diffusion

        def __call__(self, xt, y, t, scale=1.0):
            abar = diffusion.alpha(t).view(-1, 1, 1, 1)
            sigma = ((1 - abar) / abar).sqrt()
            x = xt / abar.sqrt()
            x0 = gaussian_denoiser(p, x, sigma)
            return (x - x0) / sigma, x0

    functions = load_file("utils.functions", rd / "utils" / "functions.py")
    ts = functions.get_timesteps(types.SimpleNamespace(exp=types.SimpleNamespace(start_step=1000, end_step=0,
                                                                                 num_steps=RED_STEPS)))
    return mod, Model(), Inpaint, ts, diffusion


def _cfg(algo: dict):
    from omegaconf import OmegaConf
    return OmegaConf.create({"algo": {"awd": True, "cond_awd": False, "eta": 0.0, "sigma_y": 0.0, "deg": "inp",
                                      "mcg": False, **algo}, "exp": {"save_evolution": False}})


def reddiff(rd: Path, p: dict) -> dict:
    """The official REDDIFF.sample on the problem, from A^+ y."""
    red, model, inpaint, ts, _ = red_diff_repo(rd, p, "reddiff")
    _, mu = red.REDDIFF(model, _cfg({"sigma_x0": 0.0, **RED_CFG})).sample(torch.zeros_like(p["y"]), None, ts,
                                                                          y_0=inpaint.H(p["y"]))
    return {"config": {**RED_CFG, "awd": True, "sigma_x0": 0.0, "eta": 0.0, "num_steps": RED_STEPS,
                       "ts": [ts[0], ts[1], ts[-1]]},
            "observed_fraction": float(p["mask"].mean()),
            "noise": f"torch.Generator().manual_seed({NOISE_SEED}): per step two torch.randn((1, 1, {H}, {H})), "
                     "noise_x0 then noise_xt",
            "x": [round(float(v), 7) for v in mu.detach().flatten()]}


def pigdm(rd: Path, p: dict) -> dict:
    """The authors' PGDM.sample (RED-diff repository, `pgdm.yaml`: awd, grad_term_weight 1, eta 0, noiseless
    pseudo-inverse guidance) on the problem: the final image, and the start's draw for the replay."""
    pg, model, inpaint, ts, diffusion = red_diff_repo(rd, p, "pgdm")
    xs, _ = pg.PGDM(model, _cfg({"grad_term_weight": 1.0})).sample(torch.zeros_like(p["y"]), None, ts,
                                                                   y_0=inpaint.H(p["y"]))
    abar = float(diffusion.alpha(torch.tensor([ts[-1]])))
    return {"config": {"grad_term_weight": 1.0, "eta": 0.0, "awd": True, "sigma_y": 0.0, "num_steps": RED_STEPS},
            "start_sigma": ((1 - abar) / abar) ** 0.5,
            "noise": f"torch.Generator().manual_seed({NOISE_SEED}): torch.randn((1, 1, {H}, {H})) for the start "
                     "sqrt(abar_T) A^+ y + sqrt(1 - abar_T) z, then per step one draw (times c1 = 0 at eta = 0)",
            "x": [round(float(v), 7) for v in xs[0].detach().flatten()]}


def mri_problem() -> dict[str, torch.Tensor]:
    """Single-coil Cartesian MRI at H x H: a stationary Gaussian prior per channel (real, imaginary), with spectrum
    `spec` (H, H) in the orthonormal DFT basis, a random mask (H, H) on the centred k-space grid (DC at (H/2, H/2),
    the suite's and score-MRI's convention), one image `x` (2, H, H) drawn from the prior."""
    g = torch.Generator().manual_seed(1)
    ky, kx = torch.fft.fftfreq(H).view(-1, 1), torch.fft.fftfreq(H).view(1, -1)
    spec = 0.05 * (torch.sqrt(kx**2 + ky**2).clamp_min(1 / H) * H) ** -1.5
    spec = spec * H * H / spec.sum()
    mask = (torch.rand((H, H), generator=g) < 0.5).float()
    mask[H // 2, H // 2] = 1.0
    eps = torch.randn((2, H, H), generator=g)
    x = torch.fft.ifft2(spec.sqrt() * torch.fft.fft2(eps, norm="ortho"), norm="ortho").real
    return {"spec": spec, "mask": mask, "x": x}


def score_mri(sm: Path, p: dict) -> dict:
    """The official RI Fourier-CS sampler (predictor only) on `mri_problem()`."""
    q = mri_problem()
    for name in [m for m in sys.modules if m in ("utils", "sde_lib", "sampling", "fastmri_utils") or
                 m.startswith(("utils.", "models"))]:
        del sys.modules[name]
    sys.path.insert(0, str(sm))
    sys.modules["sigpy"] = types.ModuleType("sigpy")
    sys.modules["sigpy.mri"] = types.SimpleNamespace(poisson=None)  # imported by its utils.py, unused here
    package("models", sm / "models")
    sde_lib = load_file("sde_lib", sm / "sde_lib.py")
    sampling = load_file("sampling", sm / "sampling.py")
    sampling.torch = sde_lib.torch = replay(torch.Generator().manual_seed(NOISE_SEED))  # the start is sde_lib's draw
    sde = sde_lib.VESDE(sigma_min=SCORE_SIGMA[0], sigma_max=SCORE_SIGMA[1], N=SCORE_STEPS)
    sigmas_desc = sde.discrete_sigmas.flip(0)  # label i (discrete, 0 at t = T) is the i-th level from the top
    spec = q["spec"]

    class Model(torch.nn.Module):  # score of one real part: (D(x, sigma) - x) / sigma^2 of the stationary prior
        def forward(self, x, labels):
            s2 = sigmas_desc[labels].view(-1, 1, 1, 1) ** 2
            d = torch.fft.ifft2(spec / (spec + s2) * torch.fft.fft2(x, norm="ortho"), norm="ortho").real
            return (d - x) / s2

    class Identity(sampling.Corrector):
        def update_fn(self, x, t):
            return x, x

    img = torch.complex(q["x"][0], q["x"][1])[None, None]
    mask = q["mask"][None, None]  # its fft2 is centred (fftshift), like the mask
    fy = sampling.fft2(img) * mask
    pc = sampling.get_pc_fouriercs_RI(sde, sampling.ReverseDiffusionPredictor, Identity, lambda v: v, snr=0.16,
                                      n_steps=1, continuous=False, denoise=True)
    sampling.tqdm = lambda it, **kw: it
    out = pc(Model(), img, mask, Fy=fy)
    return {"config": {"N": SCORE_STEPS, "sigma_min": SCORE_SIGMA[0], "sigma_max": SCORE_SIGMA[1],
                       "continuous": False, "corrector": "identity", "denoise": True},
            "noise": f"torch.Generator().manual_seed({NOISE_SEED}): torch.randn((1, 1, {H}, {H})) for the start "
                     "(real), then per level the real part's and the imaginary part's predictor draws",
            "x": [[round(float(v), 7) for v in part.flatten()] for part in (out.real, out.imag)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inversebench", type=Path, help="a checkout of devzhk/InverseBench (csgm, ddnm, lgd)")
    ap.add_argument("--red-diff", type=Path, help="a checkout of NVlabs/RED-diff (reddiff, pigdm)")
    ap.add_argument("--score-mri", type=Path, help="a checkout of HJ-harry/score-MRI (score-mri)")
    ap.add_argument("--only", nargs="*", default=["csgm", "ddnm", "lgd", "reddiff", "pigdm", "score-mri"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    sources = {"csgm": ("inversebench", "devzhk/InverseBench"), "lgd": ("inversebench", "devzhk/InverseBench"),
               "ddnm": ("inversebench", "devzhk/InverseBench"),
               "reddiff": ("red_diff", "NVlabs/RED-diff"), "pigdm": ("red_diff", "NVlabs/RED-diff"),
               "score-mri": ("score_mri", "HJ-harry/score-MRI")}
    p = problem()
    out = json.loads(OUT.read_text()) if OUT.exists() else {}
    out.update({"torch": torch.__version__, "problem": {"H": H, "noise_std": NOISE,
                                                         "recipe": "inversebench_reference.problem()"}})
    for name in args.only:
        arg, repo = sources[name]
        path = getattr(args, arg)
        if path is None:
            ap.error(f"{name} runs {repo}'s code: give --{arg.replace('_', '-')} PATH (a checkout of it)")
        path = path.resolve()
        commit = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        out[name] = {"source": f"{repo} {commit.strip() or '(commit not recorded)'}",
                     **{"csgm": csgm, "lgd": lgd, "ddnm": ddnm, "reddiff": reddiff, "pigdm": pigdm,
                                                       "score-mri": score_mri}[name](path, p)}
        print(name, "done", flush=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
