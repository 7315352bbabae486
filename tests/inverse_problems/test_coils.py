"""MRI building blocks: centred FFT, birdcage coil maps, ESPIRiT."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inverse_problems.operators.coils import align_phase, birdcage_maps, rss
from inverse_problems.operators.espirit import espirit_maps, kernel_shape
from inverse_problems.operators.fft import fft2c, ifft2c
from inverse_problems.operators.masks import acs_region, make_mask


def test_fft2c_matches_numpy_centred_orthonormal_dft() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.complex(torch.randn(2, 3, 12, 15, generator=g), torch.randn(2, 3, 12, 15, generator=g)).to(torch.complex128)
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(fft2c(x).numpy(), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ifft2c(fft2c(x)).numpy(), x.numpy(), atol=1e-12)
    assert float(fft2c(x).abs().pow(2).sum() / x.abs().pow(2).sum()) == pytest.approx(1.0, abs=1e-12)
    dc = torch.zeros(8, 8, dtype=torch.complex64)
    dc[4, 4] = 1  # centred k-space: DC at (H // 2, W // 2) is a constant image
    assert torch.allclose(ifft2c(dc), torch.full((8, 8), 1 / 8, dtype=torch.complex64))
    with pytest.raises(TypeError, match="complex"):
        fft2c(torch.zeros(4, 4))


@pytest.mark.parametrize("coils", [1, 2, 5, 8, 12])
def test_birdcage_maps_are_rss_normalised(coils: int) -> None:
    maps = birdcage_maps(coils, (24, 32))
    assert maps.shape == (coils, 24, 32) and maps.dtype == torch.complex64
    assert torch.allclose(rss(maps, dim=0), torch.ones(1, 24, 32), atol=1e-5)
    if coils > 1:  # coil 0 sits at angle 0, on the +x side: more sensitive on the right than on the left
        assert float(maps[0, 12, -1].abs()) > 2 * float(maps[0, 12, 0].abs())
        assert not torch.allclose(maps[0], maps[1])


def test_birdcage_errors() -> None:
    with pytest.raises(ValueError, match="coils must be >= 1"):
        birdcage_maps(0, 16)
    with pytest.raises(ValueError, match="radius must exceed 1"):
        birdcage_maps(4, 16, radius=0.5)


def object_image(size: int, shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A complex ellipse with texture and a smooth phase, and its support."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    support = ((yy / 0.8) ** 2 + ((xx - shift) / 0.65) ** 2) < 1
    img = support * (1 + 0.5 * torch.sin(5 * xx) * torch.cos(3 * yy)) * torch.exp(0.7j * xx)
    return img.to(torch.complex64), support


def relative_map_error(est: torch.Tensor, true: torch.Tensor, support: torch.Tensor) -> float:
    """||est - e^{i theta} true|| / ||true|| inside the support, with the best global phase theta."""
    est, true = est[:, support], true[:, support]
    theta = torch.angle((true.conj() * est).sum())
    return float((est - torch.exp(1j * theta) * true).norm() / true.norm())


@pytest.mark.parametrize("acs,tol", [((slice(20, 44), slice(20, 44)), 0.01),   # 24 x 24 block
                                     ((slice(0, 64), slice(30, 35)), 0.05)])     # 5 fastMRI ACS columns
def test_espirit_recovers_maps_up_to_global_phase(acs: tuple[slice, slice], tol: float) -> None:
    """Tolerance: relative L2 error inside the object < 1 % (24 x 24 ACS) / 5 % (5 ACS lines), noiseless."""
    maps = birdcage_maps(8, 64)
    imgs = [object_image(64, s) for s in (0.0, 0.1)]
    k = torch.stack([fft2c(maps * im) for im, _ in imgs])
    est = espirit_maps(k, acs)
    assert est.shape == k.shape and est.dtype == torch.complex64
    for b, (_, support) in enumerate(imgs):
        assert relative_map_error(est[b], align_phase(maps), support) < tol
        # per pixel: unit norm and aligned with the true sensitivity vector inside the object
        assert torch.allclose(rss(est[b], 0)[0][support], torch.ones(int(support.sum())), atol=1e-4)
        assert float((est[b].conj() * maps).sum(0).abs()[support].min()) > 0.98
        # the far corners are outside the object: cropped to zero
        assert float(est[b][:, :4, :4].abs().max()) == 0.0
    # batched = one at a time
    assert torch.allclose(est[1:], espirit_maps(k[1:], acs), atol=1e-5)


def test_espirit_from_noisy_undersampled_data() -> None:
    """From a random R = 4 mask's ACS and noisy k-space: error inside the object < 6 %."""
    maps = birdcage_maps(8, 64)
    img, support = object_image(64)
    mask = make_mask("random", (64, 64), 4, center_fraction=0.08, seed=0)
    g = torch.Generator().manual_seed(0)
    noise = 0.005 * torch.complex(torch.randn(8, 64, 64, generator=g), torch.randn(8, 64, 64, generator=g))
    k = (fft2c(maps * img) + noise) * mask
    est = espirit_maps(k[None], acs_region(mask))[0]
    assert relative_map_error(est, align_phase(maps), support) < 0.06


def test_kernel_shape() -> None:
    assert kernel_shape((24, 24), 8, 6) == (6, 6)
    assert kernel_shape((64, 5), 8, 6) == (6, 3)  # 59 * 3 = 177 patches >= 8 * 18 unknowns
    with pytest.raises(ValueError, match="too small for ESPIRiT.*coil_maps=true"):
        kernel_shape((5, 5), 8, 6)


def test_snr_db_sets_the_noise_level() -> None:
    """snr_db: mean |A x|^2 over acquired samples / (2 sigma^2) = 10^(snr/10), per sample."""
    from inverse_problems.problems.cs_mri import CSMRIProblem
    from inverse_problems.problems.lowfield import LowFieldProblem

    img, _ = object_image(32)
    x = torch.stack([torch.stack([img.real, img.imag]), 2 * torch.stack([img.real, img.imag])])
    for problem in (CSMRIProblem(size=32, coils=4, center_fraction=0.25, snr_db=20.0), LowFieldProblem(size=32, snr_db=10.0)):
        op = problem.acquisition_operator(x)
        clean = op(x).detach()
        power = clean.abs().pow(2).sum((1, 2, 3)) / (op.mask.sum() * 4) if clean.is_complex() \
            else clean.pow(2).sum((1, 2, 3)) / (32 * 32)
        snr = 10 * torch.log10(power / (2 * op.noise_std.detach() ** 2))
        assert torch.allclose(snr, torch.full((2,), problem.snr_db), atol=1e-3)
        assert float(op.noise_std[1].detach() / op.noise_std[0].detach()) == pytest.approx(2.0, rel=1e-4)
