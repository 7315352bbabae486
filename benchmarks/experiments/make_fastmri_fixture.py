"""Write the small real-format fastMRI fixture the default test suite runs (tests/fixtures/fastmri/).

Three folders, each a dataset root, made from the procedural brain phantoms by `export_fastmri`:

    multicoil/brain-t2-test-00000-vol2.h5    2 slices, 8 coils, encoded 80 x 46 (readout oversampled 2x and a
                                              phase-encode matrix wider than the recon one, the shape of fastMRI's
                                              640 x 368 knee files at 1/8 scale), recon 40 x 40, a known smooth
                                              phase and k-space noise (std 1e-3), maps stored (sensitivity_maps)
    singlecoil/brain-t2-test-00002-vol2.h5   2 slices, single-coil layout (kspace (slices, H, W), reconstruction_esc),
                                              32 x 32
    prospective/brain-t2-test-00004-vol2.h5  2 slices, 8 coils, 32 x 32, k-space zero off its own equispaced mask
                                              (R = 2, key `mask` (W,)), no reference

complex64, uncompressed, about 0.65 MB in all. Deterministic: rerunning rewrites the same numbers.

    python benchmarks/experiments/make_fastmri_fixture.py [--out tests/fixtures/fastmri]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from inverse_problems.data.readers.fastmri import export_fastmri
from inverse_problems.data.phantoms.datasets import BrainT2

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "fastmri"


class Offset:
    """Items start..start+n of a dataset (so that every fixture file holds other phantoms)."""

    def __init__(self, dataset: BrainT2, start: int) -> None:
        self.dataset, self.start, self.channels = dataset, start, dataset.channels

    def __len__(self) -> int:
        return len(self.dataset) - self.start

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.start + i]


def make(out: Path = FIXTURE) -> list[Path]:
    """Write the three fixture folders under `out`; returns the files written."""
    paths = export_fastmri(BrainT2("test", size=40), 2, out / "multicoil", coils=8, phase=1.0, noise_std=1e-3,
                           store_maps=True, slices_per_file=2, encoded=(80, 46), seed=1)
    paths += export_fastmri(Offset(BrainT2("test", size=32), 2), 2, out / "singlecoil", coils=1, phase=0.5,
                            slices_per_file=2)
    paths += export_fastmri(Offset(BrainT2("test", size=32), 4), 2, out / "prospective", coils=8, phase=0.5,
                            noise_std=1e-3, slices_per_file=2, seed=2,
                            mask={"kind": "equispaced", "acceleration": 2, "center_fraction": 0.16})
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=FIXTURE)
    args = p.parse_args()
    for path in make(args.out):
        print(f"{path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
