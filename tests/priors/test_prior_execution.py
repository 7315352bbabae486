"""How the prior's network runs: run.precision (autocast around the network only), run.memory_format
(channels_last), prior.compile; the options reach the prior and leave the solvers' state float32."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from algorithms.base import Step
from algorithms.diffusion.daps import DAPS
from algorithms.diffusion.dps import DPS
from benchmarks.config import ConfigError, Selection, compose_config
from benchmarks.build import build_components, check_run_options, memory_format
from inverse_problems.operators.inpainting import Inpainting
from priors.diffusers_prior import DiffusersPrior

H = 16


def tiny_prior() -> DiffusersPrior:
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=H, in_channels=2, out_channels=2, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    config = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear",
              "prediction_type": "epsilon"}
    return DiffusersPrior(unet=unet, scheduler_config=config).eval().requires_grad_(False)


def conv_inputs(prior: DiffusersPrior) -> list[torch.Tensor]:
    """Record what the UNet's first convolution receives."""
    seen: list[torch.Tensor] = []
    prior.unet.conv_in.register_forward_hook(lambda m, args, out: seen.append(out))
    prior.unet.conv_in.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    return seen


def test_channels_last_output_equals_contiguous():
    g = torch.Generator().manual_seed(0)
    x = torch.randn((3, 2, H, H), generator=g)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    ref = tiny_prior()
    nhwc = tiny_prior().set_execution(memory_format="channels_last")
    seen = conv_inputs(nhwc)
    with torch.no_grad():
        a, b = ref.denoise(x, sigma), nhwc.denoise(x, sigma)
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()
    assert nhwc.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert b.is_contiguous() and b.dtype == torch.float32
    torch.testing.assert_close(b, a, rtol=0, atol=2e-4)  # D = x - sigma eps: eps rounding times sigma <= 10


@pytest.mark.parametrize("precision,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_reduced_precision_runs_the_network_only_and_keeps_the_solver_float32(precision, dtype):
    prior = tiny_prior().set_execution(precision=precision)
    seen = conv_inputs(prior)
    g = torch.Generator().manual_seed(1)
    op = Inpainting((torch.rand((H, H), generator=g) < 0.5).float(), 2, noise_std=0.05)
    y = op.measure(torch.randn((2, 2, H, H), generator=g), g)
    states: list[tuple[torch.dtype, torch.dtype]] = []

    def record(step: Step) -> None:
        states.append((step.x.dtype, step.x0.dtype))

    for algo in (DAPS(budget=None, n_steps=3, ode_steps=1, langevin_steps=2), DPS(n_steps=3)):
        rec = algo.reconstruct(y, op, prior, torch.Generator().manual_seed(0), record)
        assert rec.image.dtype == torch.float32 and torch.isfinite(rec.image).all()
    assert states and all(s == (torch.float32, torch.float32) for s in states)
    assert seen[1].dtype == dtype  # the convolution computed in reduced precision under autocast
    assert prior.unet.conv_in.weight.dtype == torch.float32  # the weights themselves are untouched
    with torch.no_grad():
        x = torch.randn((2, 2, H, H), generator=g)
        out, ref = prior.denoise(x, 1.0), tiny_prior().denoise(x, 1.0)
    assert out.dtype == torch.float32
    assert 0 < (out - ref).abs().max() < 0.05  # reduced precision differs, slightly


def test_options_reach_the_prior_through_the_harness():
    over = ["run.precision=bf16", "run.memory_format=channels_last", "prior.compile=true", "problem.coils=1",
            "run.device=cpu"]
    cfg = compose_config(Selection("cs_mri", "diffpir", [], "phantom-brain-64"), over)
    prior = build_components(cfg, torch.device("cpu")).prior
    assert (prior.precision, prior.memory_format) == ("bf16", "channels_last")
    assert prior.unet._compiled_call_impl is not None  # nn.Module.compile: compiled in place, same parameter names
    assert all(not k.startswith("_orig_mod") for k in prior.state_dict())
    default = build_components(compose_config(Selection("cs_mri", "diffpir", [], "phantom-brain-64"),
                                              ["problem.coils=1"]), torch.device("cpu")).prior
    assert (default.precision, default.memory_format) == ("fp32", "channels_last")  # auto on CPU
    assert default.unet._compiled_call_impl is None
    assert memory_format("auto", torch.device("cuda")) == "contiguous"
    assert memory_format("contiguous", torch.device("cpu")) == "contiguous"


def test_bad_execution_options_are_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        tiny_prior().set_execution(precision="fp8")
    with pytest.raises(ValueError, match="memory_format must be one of"):
        tiny_prior().set_execution(memory_format="nhwc")
    for over, match in ((["run.precision=half"], "run.precision must be one of"),
                        (["run.memory_format=nhwc"], "run.memory_format must be one of")):
        cfg = compose_config(Selection("cs_mri", "zero-filled", [], None), over)
        with pytest.raises(ConfigError, match=match):
            check_run_options(cfg)

    class NoNet(DiffusersPrior):
        network_attr = None

    with pytest.raises(ValueError, match="no network to compile"):
        NoNet.compile_network(tiny_prior().__class__.__new__(NoNet))
    assert isinstance(tiny_prior().unet, nn.Module)
