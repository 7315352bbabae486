"""Compressed-sensing MRI (`cs_mri`): multi-coil or single-coil Cartesian sampling of complex images (B, 2, H, W).

Data are simulated with the true operator; the reconstruction gets an operator built from the measurements only
(ESPIRiT coil maps from the ACS of y). The per-sample scale is the base class's: the 99th percentile of |A^H y|
under the reconstruction operator.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from inverse_problems.operators.base import ForwardOperator

from inverse_problems.problems.base import (Problem, ProblemInstance, check_int, check_number, check_snr_db,
                                            noise_std_for_snr)
from inverse_problems.operators.coils import birdcage_maps
from inverse_problems.operators.espirit import espirit_maps, kernel_shape
from inverse_problems.operators.masks import MASK_TYPES, acs_region, calibration_block, make_mask, realised_acceleration
from inverse_problems.operators.mri import MultiCoilMRI, SingleCoilMRI

COIL_MAPS = ("estimated", "true")
DATA = ("simulated", "measured")


class CSMRIProblem(Problem):
    """Cartesian compressed-sensing MRI y_c = M F S_c x + n: single-coil (coils=1) or SENSE multi-coil.

    Options: size, coils, acceleration, center_fraction (ACS), mask (random | equispaced | gaussian1d |
    poisson2d | vd2d), mask_seed, noise_std (per real k-space component) or snr_db (overrides it; SNR of
    the acquired samples, per sample), coil_maps (estimated: ESPIRiT from the ACS of y, data made with
    the true simulated maps | true: oracle; a YAML boolean true/false means true/estimated), coil_radius (birdcage), correction_size (r of the adaptable
    coil-map correction, 0 = none), espirit_kernel / espirit_threshold / espirit_crop, forward_only (hand the
    reconstruction a forward-only operator: no adjoint, no gradient; only the derivative-free solvers run).
    """

    def __init__(self, size: int = 64, coils: int = 8, acceleration: float = 4.0, center_fraction: float = 0.08,
                 mask: str = "random", mask_seed: int = 0, noise_std: float = 0.005, snr_db: float | None = None,
                 coil_maps: str | bool = "estimated", coil_radius: float = 1.5, correction_size: int = 4,
                 espirit_kernel: int = 6, espirit_threshold: float = 0.02, espirit_crop: float = 0.95,
                 data: str = "simulated", espirit_calib: int | None = None, forward_only: bool = False) -> None:
        size, coils = check_int("size", size, 2), check_int("coils", coils, 1)
        if data not in DATA:
            raise ValueError(f"data must be one of {DATA} (simulated: the suite makes the k-space; measured: the "
                             f"dataset's own k-space), got {data!r}")
        if data == "measured" and snr_db is not None:
            raise ValueError("snr_db sets the noise the suite adds; with data=measured no noise is added (the data "
                             "carry their own): drop problem.snr_db, or set problem.noise_std to the assumed level")
        self.tier = data
        self.forward_only = bool(forward_only)
        acceleration = check_number("acceleration", acceleration, 1.0)
        center_fraction = check_number("center_fraction", center_fraction)
        noise_std = check_number("noise_std", noise_std)
        if snr_db is not None:
            snr_db = check_snr_db(snr_db)
        if mask not in MASK_TYPES:
            raise ValueError(f"unknown mask {mask!r}; choose one of {', '.join(MASK_TYPES)}")
        if isinstance(coil_maps, bool):  # YAML / hydra read a bare `true` as a boolean
            coil_maps = "true" if coil_maps else "estimated"
        if coil_maps not in COIL_MAPS:
            raise ValueError(f"coil_maps must be one of {COIL_MAPS} (estimated: ESPIRiT; true: oracle), got {coil_maps!r}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.image_shape = (2, size, size)
        self.coils = coils
        self.mask = make_mask(mask, (size, size), acceleration, center_fraction, mask_seed)
        self.maps = birdcage_maps(coils, size, coil_radius)
        self.noise_std, self.snr_db = noise_std, snr_db
        self.coil_maps = coil_maps
        self.correction_size = correction_size
        self.espirit = {"kernel_size": espirit_kernel, "threshold": espirit_threshold, "crop": espirit_crop}
        if espirit_calib is not None:
            espirit_calib = check_int("espirit_calib", espirit_calib, 2)
        self.espirit_calib = espirit_calib
        if coils > 1 and coil_maps == "estimated" and data == "simulated":  # measured: checked on the data's coils
            rows, cols = acs_region(self.mask)
            try:
                kernel_shape((rows.stop - rows.start, cols.stop - cols.start), coils, espirit_kernel)
            except ValueError as exc:
                raise ValueError(f"cs_mri with mask={mask!r}, center_fraction={center_fraction}: {exc}") from exc

    def instance(self, items: list[dict[str, Any]], device: torch.device | str, generator: Any = None
                 ) -> ProblemInstance:
        """Simulated tier: the base class's. Measured tier: y = M k from the items' own k-space (see the class)."""
        if self.tier == "simulated":
            return super().instance(items, device, generator)
        return self.measured(items, device)

    def measured(self, items: list[dict[str, Any]], device: torch.device | str) -> ProblemInstance:
        """y = M k: the acquired k-space enters only through this product (unacquired samples never reach the
        reconstruction); ESPIRiT maps from the ACS of y (or the items' stored maps); scale from y alone. The
        item's `data_scale` (k-space units per target unit) only converts the reported reconstruction."""
        missing = [str(it.get("id")) for it in items if not isinstance(it.get("kspace"), Tensor)]
        if missing:
            raise ValueError(f"cs_mri with data=measured needs items with measured k-space (key 'kspace'); items "
                             f"{', '.join(missing)} have none: use a dataset of measurements (--dataset fastmri) or "
                             f"problem.data=simulated")
        masks = [it["mask"] if isinstance(it.get("mask"), Tensor) else self.mask for it in items]
        if any(not torch.equal(m, masks[0]) for m in masks[1:]):
            raise ValueError("the items of one batch carry different sampling masks (prospective files); one "
                             "operator takes one mask: run with --batch-size 1")
        mask = masks[0].to(device)
        shapes = sorted({tuple(it["kspace"].shape) for it in items})
        if len(shapes) > 1:
            raise ValueError(f"the items of one batch carry k-space of shapes {shapes} (e.g. single- and multi-coil "
                             f"files, or other coil counts); run with --batch-size 1 or one folder per kind")
        k = torch.stack([it["kspace"] for it in items]).to(device)
        if tuple(k.shape[-2:]) != tuple(mask.shape):
            raise ValueError(f"measured k-space is {tuple(k.shape[-2:])} but the mask is {tuple(mask.shape)}; set "
                             f"problem.size to the dataset's size")
        y = k * mask
        del k
        b, coils = y.shape[:2]
        if coils == 1:
            op: MultiCoilMRI = SingleCoilMRI(mask, self.noise_std, batch=b)
        else:
            if self.coil_maps == "true":
                if any(not isinstance(it.get("maps"), Tensor) for it in items):
                    raise ValueError("coil_maps=true with data=measured uses the coil maps stored with the data "
                                     "(fastMRI key 'sensitivity_maps'), and these items have none: use "
                                     "problem.coil_maps=estimated (ESPIRiT from the ACS)")
                maps = torch.stack([it["maps"] for it in items]).to(device)
            else:
                rows, cols = acs_region(mask)
                if self.espirit_calib is not None:  # the dataset's calibration block: InverseBench's "same maps"
                    rows, cols = calibration_block(tuple(mask.shape), self.espirit_calib, (rows, cols))
                try:
                    kernel_shape((rows.stop - rows.start, cols.stop - cols.start), coils, self.espirit["kernel_size"])
                except ValueError as exc:
                    raise ValueError(f"cs_mri with data=measured ({coils} coils in the data, items "
                                     f"{', '.join(str(it.get('id')) for it in items)}): {exc}") from exc
                maps = espirit_maps(y, (rows, cols), **self.espirit)
            op = MultiCoilMRI(maps, mask, self.noise_std, self.correction_size, batch=b)
        scale = self.measurement_scale(y, op)
        y = y / scale.view(-1, 1, 1, 1)  # noise_std is already in these units (see the class docstring)
        units = torch.tensor([float(it.get("data_scale") or 1.0) for it in items], device=scale.device)
        # the reported scale also converts to the target's units (the file's units / data_scale); y never sees it
        return ProblemInstance(y, self.handed(op), copy.deepcopy(op), scale / units, self.info(op))

    def acquisition_operator(self, x: Tensor, generator: torch.Generator | None = None) -> ForwardOperator:
        mask = self.mask.to(x.device)
        if self.coils == 1:
            op: MultiCoilMRI = SingleCoilMRI(mask, self.noise_std)
        else:
            op = MultiCoilMRI(self.maps.to(x.device), mask, self.noise_std, self.correction_size)
        if self.snr_db is not None:
            with torch.no_grad():
                op.set_noise_std(noise_std_for_snr(op(x), self.snr_db, mask))
        return op

    def reconstruction_operator(self, y: Tensor, true_operator: ForwardOperator) -> ForwardOperator:
        """Per-sample adaptable parameters; ESPIRiT maps from the ACS of y unless coil_maps='true'."""
        assert isinstance(true_operator, MultiCoilMRI)
        b, noise = y.shape[0], true_operator.noise_std.detach().clone()
        if self.coils == 1:
            return SingleCoilMRI(true_operator.mask, noise, batch=b)
        if self.coil_maps == "true":
            maps = true_operator.maps
        else:
            maps = espirit_maps(y, acs_region(true_operator.mask), **self.espirit)
        return MultiCoilMRI(maps, true_operator.mask, noise, self.correction_size, batch=b)

    def info(self, operator: ForwardOperator) -> dict[str, Any]:
        assert isinstance(operator, MultiCoilMRI)
        return {"acceleration": realised_acceleration(operator.mask), "coils": operator.coils}
