"""Regularised MRSI baselines through the MRSI operator (inverse_problems.operators.mrsi), beside `csi-fit`.

- `mrsi-lowrank`: partial separability (Liang, ISBI 2007; SPICE: Lam & Liang, MRM 75:1346 (2016)): the voxel
  FIDs, demodulated by the operator's known field map h(r, t) (B0, drift, linewidth, phase), lie in an L-dimensional
  temporal subspace, s(r, t) = h(r, t) sum_l U_l(r) V_l(t). V comes either from the data (the L leading right
  singular vectors of the Casorati matrix of the demodulated zero-filled FIDs) or from the known line shapes
  (the M nominal lines g_m(t) and their first-order frequency/width derivatives t g_m(t), orthonormalised). The
  spatial coefficients solve

      U = argmin 1/2 ||M F [h (U V)] - y||^2 + lam_eff ||grad U||_{2,1} + eps/2 ||U||^2

  by ADMM (Boyd et al., FnT ML 3:1 (2011)): U-steps by warm-started conjugate gradient on
  (P^H P + rho grad^H grad + eps) U = P^H y + rho grad^H (z - w), z-steps by joint isotropic shrinkage of grad U
  over the L components (edges shared by all metabolites). The phase encodes are the same for every t, so the
  subspace alone cannot fill the missing k-space (a quadratic smoothness penalty only blurs it): the spatial
  TV does, in place of SPICE's anatomy-weighted spatial penalty. lam_eff = lam x the 99th percentile of
  |grad P^H y| (from the data alone). The metabolite maps are the per-voxel line-shape fit (MRSI.fit_signals)
  of the subspace FIDs.
- `mrsi-tv`: min_{x >= 0} 1/2 ||A x - y||^2 + sum_m lam_m TV(x_m), one isotropic TV per metabolite map with
  lam_m = lam * q_m, q_m the 99th percentile of |x_fit,m| (the CSI fit of y: each map's own scale, from the
  data alone, so Lac at ~1/7 of water is not flattened by water's weight), non-negative concentrations; by
  Chambolle-Pock PDHG (the `tv` solver's iteration; Chambolle & Pock, JMIV 40:120 (2011)).

Both need an MRSI operator (its line-shape basis and fit), declared as `operator_needs`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm
from algorithms.classical.compressed_sensing import TotalVariation, gradient, gradient_adjoint
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.fft import fft2c
from inverse_problems.operators.linalg import conjugate_gradient, per_sample
from priors.base import Prior

LINE_SHAPE_METHODS = ("fit", "fit_signals", "voxel_signals", "modulation", "lines")
BASES = ("data", "lines")


def check_line_shape_operator(name: str, operator: ForwardOperator) -> None:
    """Refuse an operator without the MRSI line-shape model (basis, modulation, per-voxel fit)."""
    missing = [m for m in LINE_SHAPE_METHODS if not hasattr(operator, m)]
    if missing:
        raise ValueError(f"{name} reconstructs metabolite maps through spectral line shapes and needs an MRSI "
                         f"operator (problem mrsi); {type(operator).__name__} lacks {', '.join(missing)}: use "
                         f"zero-filled, cg-sense, l1-wavelet or tv")


def line_shape_subspace(lines: Tensor, times: Tensor) -> Tensor:
    """(2M, N_t) orthonormal rows spanning the nominal lines g_m(t) and t g_m(t) (first order in drift/width)."""
    t = (times / times.max().clamp_min(1e-12)).to(lines.dtype)
    stack = torch.cat([lines, lines * t[None]], 0)  # (2M, N_t)
    q, _ = torch.linalg.qr(stack.T)  # (N_t, 2M), orthonormal columns
    return q.T


class MRSILowRank(Algorithm):
    """Partial-separability (subspace) MRSI: s = h (U V), V from the data or the line shapes, TV on U by ADMM
    (CG U-steps), then a per-voxel line-shape fit."""

    uses_prior = False
    operator_needs = LINE_SHAPE_METHODS

    def __init__(self, rank: int = 8, basis: str = "data", lam: float = 0.03, rho: float = 0.5, n_outer: int = 30,
                 n_cg: int = 8, eps: float = 1e-4, damping: float = 0.0) -> None:
        super().__init__()
        if basis not in BASES:
            raise ValueError(f"mrsi-lowrank basis must be one of {', '.join(BASES)}, got {basis!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"mrsi-lowrank rank must be an integer >= 1, got {rank!r}")
        if not (lam >= 0 and rho > 0 and eps >= 0 and damping >= 0) or n_outer < 1 or n_cg < 1:
            raise ValueError(f"mrsi-lowrank needs lam, eps, damping >= 0, rho > 0, n_outer, n_cg >= 1; got lam={lam}, "
                             f"rho={rho}, eps={eps}, damping={damping}, n_outer={n_outer}, n_cg={n_cg}")
        self.rank, self.basis, self.lam, self.rho, self.eps = rank, basis, float(lam), float(rho), float(eps)
        self.n_outer, self.n_cg, self.damping = n_outer, n_cg, float(damping)

    def check(self, operator: ForwardOperator, prior: Prior | None) -> None:
        check_line_shape_operator("mrsi-lowrank", operator)
        if self.basis == "data" and self.rank > operator.n_t:
            raise ValueError(f"mrsi-lowrank rank {self.rank} exceeds the {operator.n_t} spectral points; use rank <= "
                             f"{operator.n_t}")
        super().check(operator, prior)

    def temporal_basis(self, y: Tensor, operator: ForwardOperator, h: Tensor) -> Tensor:
        """(B, L, N_t) orthonormal temporal basis: data-driven (Casorati SVD) or the line shapes'."""
        if self.basis == "lines":
            v = line_shape_subspace(operator.lines, operator.times)
            return v.unsqueeze(0).expand(y.shape[0], *v.shape)
        d = operator.voxel_signals(y) * h.conj()  # demodulated zero-filled FIDs (B, N_t, H, W)
        casorati = d.flatten(2).transpose(1, 2)  # (B, HW, N_t)
        _, _, vh = torch.linalg.svd(casorati, full_matrices=False)
        return vh[:, : self.rank]

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: torch.Generator | None,
            callback=None) -> Tensor:
        h = operator.modulation()  # (B', N_t, H, W)
        v = self.temporal_basis(y, operator, h).to(h.dtype)  # (B, L, N_t)
        mask = operator.mask

        def synth(u: Tensor) -> Tensor:  # voxel FIDs h (U V), (B, N_t, H, W)
            return h * torch.einsum("blt,blhw->bthw", v, u)

        def adjoint(k: Tensor) -> Tensor:
            z = operator.voxel_signals(k) * h.conj()
            return torch.einsum("blt,bthw->blhw", v.conj(), z)

        def normal(u: Tensor) -> Tensor:
            return adjoint(fft2c(synth(u)) * mask) + self.rho * gradient_adjoint(gradient(u)) + self.eps * u

        rhs0 = adjoint(y)
        # the TV weight relative to the coefficients' own scale (the 99th percentile of |grad P^H y|), from y alone
        g0 = gradient(rhs0).abs().pow(2).sum(dim=(1, 2)).sqrt().flatten(1)
        lam = self.lam * torch.quantile(g0.float(), 0.99, dim=1).clamp_min(1e-12)
        u = rhs0  # the zero-filled subspace coefficients P^H y
        z = gradient(u)
        w = torch.zeros_like(z)
        for i in range(self.n_outer):
            u = conjugate_gradient(normal, rhs0 + self.rho * gradient_adjoint(z - w), x0=u, n_iter=self.n_cg)
            gu = gradient(u)
            a = gu + w  # (B, L, 2, H, W): joint isotropic shrinkage over components and directions
            mag = a.abs().pow(2).sum(dim=(1, 2), keepdim=True).sqrt()
            z = a * (1 - per_sample(lam / self.rho, mag) / mag.clamp_min(1e-30)).clamp_min(0)
            w = w + gu - z
            u = self.monitor.check(i, u)
        return operator.fit_signals(synth(u), self.damping)


class MRSITV(TotalVariation):
    """Per-metabolite TV on non-negative maps through the MRSI operator, each map's weight scaled by its CSI fit."""

    uses_prior = False
    channelwise = True
    operator_needs = LINE_SHAPE_METHODS

    def __init__(self, lam: float = 0.02, n_iter: int = 150, power_iter: int = 30, nonnegative: bool = True) -> None:
        super().__init__(lam, n_iter, power_iter)
        self.nonnegative = bool(nonnegative)

    def check(self, operator: ForwardOperator, prior: Prior | None) -> None:
        check_line_shape_operator("mrsi-tv", operator)
        super().check(operator, prior)

    def weights(self, y: Tensor, operator: ForwardOperator) -> Tensor:
        """lam_m = lam * (99th percentile of |x_fit,m|) per sample, from the CSI fit of y: (B, M, 1, 1, 1)."""
        q = torch.quantile(operator.fit(y).abs().flatten(2).float(), 0.99, dim=2).clamp_min(1e-12)
        return (self.lam * q).view(*q.shape, 1, 1, 1)

    def primal_prox(self, x: Tensor) -> Tensor:
        return x.clamp_min(0) if self.nonnegative else x
