"""Low-field MRI enhancement (`lowfield`): k-space truncation with a PSF and low SNR, complex images (B, 2, H, W).

Data are simulated with the true operator; the reconstruction gets the PSF width it assumes. The per-sample scale
is the base class's: the 99th percentile of |A^H y| under the reconstruction operator.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from inverse_problems.operators.base import ForwardOperator

from inverse_problems.problems.base import Problem, check_int, check_number, check_snr_db, noise_std_for_snr
from inverse_problems.operators.lowfield import LowField

class LowFieldProblem(Problem):
    """Low-field MRI y = PSF(L_k(x)) + n (DiffDeuR): k-space truncation by k per axis, Gaussian PSF, noise.

    Options: size, k, fwhm (pixels), noise_std (per real component, image domain) or snr_db (overrides
    it), fwhm_recon (the PSF width the reconstruction assumes; null = the true one; a wrong value is an
    operator shift).
    """

    def __init__(self, size: int = 64, k: float = 2.0, fwhm: float = 2.0, noise_std: float = 0.01,
                 fwhm_recon: float | None = None, snr_db: float | None = None) -> None:
        size = check_int("size", size, 2)
        k, fwhm, noise_std = check_number("k", k), check_number("fwhm", fwhm), check_number("noise_std", noise_std)
        if snr_db is not None:
            snr_db = check_snr_db(snr_db)
        if k < 1:
            raise ValueError(f"k must be >= 1 (k = 2 keeps the central half of each k-space axis), got {k}")
        if fwhm < 0 or (fwhm_recon is not None and fwhm_recon < 0):
            raise ValueError(f"fwhm and fwhm_recon must be >= 0 pixels, got {fwhm} and {fwhm_recon}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.image_shape = (2, size, size)
        self.k, self.fwhm, self.noise_std, self.snr_db = k, fwhm, noise_std, snr_db
        self.fwhm_recon = fwhm if fwhm_recon is None else fwhm_recon

    def acquisition_operator(self, x: Tensor, generator: torch.Generator | None = None) -> LowField:
        op = LowField(self.image_shape[1:], self.k, self.fwhm, self.noise_std).to(x.device)
        if self.snr_db is not None:
            with torch.no_grad():
                op.set_noise_std(noise_std_for_snr(op(x), self.snr_db))
        return op

    def reconstruction_operator(self, y: Tensor, true_operator: ForwardOperator) -> LowField:
        return LowField(self.image_shape[1:], self.k, self.fwhm_recon, true_operator.noise_std.detach().clone()).to(y.device)

    def info(self, operator: ForwardOperator) -> dict[str, Any]:
        assert isinstance(operator, LowField)
        return {"acceleration": 1.0 / operator.kept_fraction, "fwhm": self.fwhm, "fwhm_recon": self.fwhm_recon}
