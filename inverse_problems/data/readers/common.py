"""What the raw k-space readers share: the ISMRMRD XML header (fastMRI files carry one too) and `FastMRIFile`, one
file read a slice at a time in fastMRI's k-space layout (slices, coils, H, W), which `ismrmrd.IsmrmrdFile` extends.

Both `fastmri` (which opens either kind of file) and `ismrmrd` import this module; it imports neither.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch
from torch import Tensor

from inverse_problems.data.base import (FLOAT32_SAFE, READ_ERRORS, DataError, check_allocation, check_magnitude,
                                        check_slice_count)

MAPS_KEY = "sensitivity_maps"  # coil maps stored beside the k-space (written by `bench export-data --store-maps`)
MAX_SLICE_GB = 4.0  # a declared slice above this many GiB is refused before it is read
ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"


# ---------------------------------------------------------------- header
def parse_header(xml: str | bytes, source: str = "header") -> dict[str, tuple[int, int, int] | None]:
    """{'encoded': (x, y, z) | None, 'recon': (x, y, z) | None} from an ISMRMRD XML header."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise DataError(f"{source}: 'ismrmrd_header' is not valid XML ({exc}); expected an ISMRMRD header",
                        source) from exc

    def child(node: ET.Element | None, name: str) -> ET.Element | None:
        if node is None:
            return None
        return next((c for c in node if c.tag.split("}")[-1] == name), None)

    out: dict[str, tuple[int, int, int] | None] = {"encoded": None, "recon": None}
    enc = child(root, "encoding")
    for key, space in (("encoded", "encodedSpace"), ("recon", "reconSpace")):
        m = child(child(enc, space), "matrixSize")
        if m is None:
            continue
        try:
            out[key] = tuple(int(child(m, a).text) for a in ("x", "y", "z"))  # type: ignore[union-attr,arg-type]
        except (AttributeError, TypeError, ValueError) as exc:
            raise DataError(f"{source}: 'ismrmrd_header' {space}/matrixSize needs integer x, y, z", source) from exc
        if min(out[key][:2]) < 1:  # type: ignore[index]
            raise DataError(f"{source}: 'ismrmrd_header' {space}/matrixSize is {out[key][0]}x{out[key][1]}; a field "
                            f"of view must be at least 1 x 1 pixels: the header is corrupt (fix it, or remove the "
                            f"file)", source)
    return out


def make_header(encoded: Sequence[int], recon: Sequence[int]) -> str:
    """A minimal ISMRMRD header with the encoded and recon matrix sizes (x, y, z)."""
    def matrix(v: Sequence[int]) -> str:
        return f"<matrixSize><x>{int(v[0])}</x><y>{int(v[1])}</y><z>{int(v[2])}</z></matrixSize>"
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<ismrmrdHeader xmlns="{ISMRMRD_NS}"><encoding>'
            f"<encodedSpace>{matrix(encoded)}</encodedSpace><reconSpace>{matrix(recon)}</reconSpace>"
            f"<trajectory>cartesian</trajectory></encoding></ismrmrdHeader>")


# ---------------------------------------------------------------- reading
class FastMRIFile:
    """One fastMRI h5 file, validated on open, read one slice at a time (nothing is held open).

    Every problem with the file raises a DataError naming it and the key: not HDF5 or truncated, a
    missing or malformed `kspace`, a declared slice larger than `max_slice_gb` GiB (checked before any
    read), NaN/Inf or all-zero values in the slice read.
    """

    def __init__(self, path: str | Path, max_slice_gb: float = MAX_SLICE_GB) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such fastMRI file")
        try:
            f = h5py.File(self.path, "r")
        except READ_ERRORS as exc:
            raise DataError(f"{self.path}: not an HDF5 file or truncated ({exc}); expected a fastMRI .h5 file "
                            f"(re-copy or remove it)", self.path) from exc
        try:
            with f:
                self._inspect(f, max_slice_gb)
        except READ_ERRORS as exc:
            raise DataError(f"{self.path}: corrupt HDF5 file ({exc}); re-copy or remove it", self.path) from exc
        self.header = parse_header(self.header_xml, f"{self.path}") if self.header_xml else {"encoded": None,
                                                                                          "recon": None}
        enc, rec = self.header["encoded"], self.header["recon"]
        if enc is not None and rec is not None and (rec[0] > enc[0] or rec[1] > enc[1]):
            raise DataError(f"{self.path}: key 'ismrmrd_header': reconSpace matrixSize {rec[0]}x{rec[1]} exceeds the "
                            f"encodedSpace matrixSize {enc[0]}x{enc[1]} (a recon field of view larger than the encoded "
                            f"one); fix the header, or pass dataset.crop=[H, W] within {enc[0]}x{enc[1]}", self.path)

    def _inspect(self, f: h5py.File, max_slice_gb: float) -> None:
        if "kspace" not in f:
            raise DataError(f"{self.path}: missing key 'kspace'; expected complex k-space (slices, coils, H, W) "
                            f"(found keys: {', '.join(sorted(f.keys())) or 'none'})", self.path)
        ks = f["kspace"]
        if not isinstance(ks, h5py.Dataset):
            raise DataError(f"{self.path}: key 'kspace' is a group, not an array; expected complex k-space", self.path)
        if ks.ndim not in (3, 4):
            raise DataError(f"{self.path}: key 'kspace' has shape {ks.shape} (rank {ks.ndim}); expected rank 4 "
                            f"(slices, coils, H, W), or rank 3 (slices, H, W) for single-coil data", self.path)
        if ks.dtype.kind != "c":
            raise DataError(f"{self.path}: key 'kspace' is real-valued ({ks.dtype}); expected complex k-space "
                            f"(complex64); store real and imaginary parts as one complex array", self.path)
        check_allocation(ks.shape[1:], 8, max_slice_gb, f"{self.path}: key 'kspace' (one slice as complex64)")
        if min(ks.shape) < 1:
            raise DataError(f"{self.path}: key 'kspace' has shape {ks.shape} with an empty axis", self.path)
        self.single_coil = ks.ndim == 3
        shape = ks.shape
        check_slice_count(int(shape[0]), f"{self.path}: key 'kspace'", self.path)
        self.n_slices = shape[0]
        self.coils = 1 if self.single_coil else shape[1]
        self.shape = tuple(shape[-2:])
        self.has_rss = "reconstruction_rss" in f or "reconstruction_esc" in f
        for key in ("reconstruction_rss", "reconstruction_esc"):
            if key not in f:
                continue
            rss = f[key]
            if not isinstance(rss, h5py.Dataset) or rss.ndim != 3:
                raise DataError(f"{self.path}: key {key!r} has shape {getattr(rss, 'shape', None)}; "
                                f"expected (slices, h, w)", self.path)
            check_allocation(rss.shape[1:], 4, max_slice_gb, f"{self.path}: key {key!r} (one slice)")
        self.rss_key = next((k for k in ("reconstruction_rss", "reconstruction_esc") if k in f), None)
        self.has_maps = MAPS_KEY in f
        if self.has_maps and tuple(f[MAPS_KEY].shape) != (shape[0], self.coils, *self.shape):
            raise DataError(f"{self.path}: key {MAPS_KEY!r} has shape {tuple(f[MAPS_KEY].shape)}; expected the k-space "
                            f"shape (slices, coils, H, W) = {(shape[0], self.coils, *self.shape)}; re-export the maps "
                            f"or remove the key", self.path)
        self.file_mask = self._inspect_mask(f["mask"][()]) if "mask" in f else None
        raw = f["ismrmrd_header"][()] if "ismrmrd_header" in f else None
        self.attrs = dict(f.attrs)
        if isinstance(raw, bytes):
            raw = raw.decode(errors="replace")
        self.header_xml = None if raw is None else str(raw)

    def _inspect_mask(self, m: np.ndarray) -> Tensor:
        """The file's own sampling mask as (H, W) float {0, 1}: fastMRI stores (W,) columns (or (H, W))."""
        h, w = self.shape
        m = np.asarray(m)
        if m.shape == (w,):
            m = np.broadcast_to(m[None, :], (h, w))
        if m.shape != (h, w) or not np.isfinite(m.astype(np.float64)).all():
            raise DataError(f"{self.path}: key 'mask' has shape {m.shape}; it must match the k-space: (W,) = ({w},) "
                            f"phase-encode columns or (H, W) = ({h}, {w}) for 'kspace' of shape (.., {h}, {w}); "
                            f"rewrite the mask with that shape (or remove the key to undersample retrospectively)",
                            self.path)
        return torch.from_numpy((m != 0).astype(np.float32).copy())

    def _check_slice(self, s: int) -> int:
        if not -self.n_slices <= s < self.n_slices:
            raise IndexError(f"{self.path}: slice {s} out of range for {self.n_slices} slices")
        return s % self.n_slices

    def _read(self, key: str, s: int) -> np.ndarray:
        try:
            with h5py.File(self.path, "r") as f:
                return np.asarray(f[key][s])
        except READ_ERRORS as exc:
            raise DataError(f"{self.path}: key {key!r} slice {s} cannot be read ({exc}); the file is truncated or "
                            f"corrupt: re-copy or remove it", self.path) from exc

    def kspace(self, s: int) -> Tensor:
        """Slice s as complex64 (coils, H, W); NaN/Inf or all-zero values raise a DataError."""
        s = self._check_slice(s)
        k = self._read("kspace", s)
        if not np.isfinite(k).all():
            raise DataError(f"{self.path}: key 'kspace' slice {s} contains NaN or Inf values; expected finite "
                            f"k-space (fix or remove the file)", self.path)
        if not k.any():
            raise DataError(f"{self.path}: key 'kspace' slice {s} is all zero (no signal); choose other slices "
                            f"(dataset.slices=...) or remove the file", self.path)
        # the orthonormal inverse FFT may sum every sample into one pixel: keep that pixel's square finite in float32
        check_magnitude(float(np.abs(k).max()), FLOAT32_SAFE / float(np.sqrt(k.shape[-1] * k.shape[-2])),
                        f"{self.path}: key 'kspace' slice {s}", self.path)
        t = torch.from_numpy(k.astype(np.complex64))
        return t[None] if self.single_coil else t

    def rss(self, s: int) -> Tensor | None:
        """`reconstruction_rss` (or single-coil `reconstruction_esc`) of slice s (h, w) float32, or None."""
        if self.rss_key is None:
            return None
        s = self._check_slice(s)
        r = self._read(self.rss_key, s).astype(np.float32)
        if not np.isfinite(r).all():
            raise DataError(f"{self.path}: key {self.rss_key!r} slice {s} contains NaN or Inf values", self.path)
        return torch.from_numpy(r)

    def maps(self, s: int) -> Tensor | None:
        """Stored coil maps of slice s (coils, H, W) complex64, or None where the file has none."""
        if not self.has_maps:
            return None
        m = self._read(MAPS_KEY, self._check_slice(s))
        if not np.isfinite(m).all():
            raise DataError(f"{self.path}: key {MAPS_KEY!r} slice {s} contains NaN or Inf values", self.path)
        if not m.any():
            raise DataError(f"{self.path}: key {MAPS_KEY!r} slice {s} is all zero (no coil is sensitive anywhere, so "
                            f"the forward model would measure nothing); re-export the maps, or remove the key and use "
                            f"problem.coil_maps=estimated (ESPIRiT)", self.path)
        check_magnitude(float(np.abs(m).max()), FLOAT32_SAFE, f"{self.path}: key {MAPS_KEY!r} slice {s}", self.path)
        return torch.from_numpy(m.astype(np.complex64))

    def crop_size(self) -> tuple[int, int]:
        """Image-space crop: the header's recon matrix (x, y) -> (H, W), else the largest centred square."""
        recon = self.header.get("recon")
        if recon is not None:
            return min(recon[0], self.shape[0]), min(recon[1], self.shape[1])
        m = min(self.shape)
        return m, m
