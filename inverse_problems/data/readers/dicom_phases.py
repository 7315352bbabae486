"""Respiratory-gated CT phases from DICOM series (the TCIA 4D-Lung layout), through the optional pydicom.

A patient folder holds, at any depth, one CT series per breathing phase. Files are grouped by SeriesInstanceUID;
a series' phase is the percentage in its SeriesDescription (`... Gated, 50.0%`), or else the last number there; its
volume is the slices sorted by ImagePositionPatient's z, in Hounsfield units (pixel x RescaleSlope +
RescaleIntercept), stored (x, y, z) as NIfTI volumes are.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from inverse_problems.data.base import DataError, MissingPackage

INSTALL = "pip install pydicom (or pip install 'medtta-bench[realdata]')"


def _pydicom():
    try:
        import pydicom
    except ImportError as exc:
        raise MissingPackage(f"4dlung reads DICOM series through pydicom, which is not installed: {INSTALL}; or "
                             f"convert the series to NIfTI (one volume per phase)") from exc
    return pydicom


def dicom_files(folder: Path) -> list[Path]:
    """The .dcm files under a folder, at any depth, in name order."""
    return sorted(p for p in folder.rglob("*.dcm") if p.is_file())


def phase_of(description: str, path: Path) -> float:
    """A series' phase from its description: the percentage (`Gated, 50.0%` -> 50), else the last number."""
    found = re.findall(r"(\d+(?:\.\d+)?)\s*%", description) or re.findall(r"\d+(?:\.\d+)?", description)
    if not found:
        raise DataError(f"{path}: no breathing phase in the series description {description!r} (expected e.g. "
                        f"'Gated, 50.0%')", path)
    return float(found[-1])


def phase_series(folder: Path) -> list[list[Path]]:
    """The patient's series in phase order, each its files (headers read, pixels not)."""
    pydicom = _pydicom()
    series: dict[str, list[Path]] = {}
    phases: dict[str, float] = {}
    for path in dicom_files(folder):
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        uid = str(ds.SeriesInstanceUID)
        series.setdefault(uid, []).append(path)
        phases.setdefault(uid, phase_of(str(getattr(ds, "SeriesDescription", "")), path))
    return [series[uid] for uid in sorted(series, key=lambda u: phases[u])]


def series_shape(files: list[Path]) -> tuple[int, int, int]:
    """(x, y, z) of a series' volume from its first header and its number of files."""
    ds = _pydicom().dcmread(str(files[0]), stop_before_pixels=True)
    return int(ds.Columns), int(ds.Rows), len(files)


def read_volume(files: list[Path]) -> np.ndarray:
    """(x, y, z) float64 volume in HU of one series' slices, sorted by their z position."""
    pydicom = _pydicom()
    slices = [pydicom.dcmread(str(p)) for p in files]
    slices.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    planes = [d.pixel_array.astype(np.float64) * float(getattr(d, "RescaleSlope", 1.0))
              + float(getattr(d, "RescaleIntercept", 0.0)) for d in slices]
    if len({p.shape for p in planes}) != 1:
        raise DataError(f"{files[0].parent}: the series' slices differ in size", files[0])
    return np.stack(planes, axis=-1).transpose(1, 0, 2)
