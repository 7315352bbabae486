"""Cartesian ISMRMRD raw files (a scanner converter's output) read into fastMRI's k-space layout.

ISMRMRD (Inati et al., MRM 2017) stores an HDF5 group `dataset` with `xml` (the header) and `data`, one
compound record per acquired readout line: `head` (flags, number_of_samples, active_channels,
center_sample, idx.kspace_encode_step_1, idx.slice, ...), `traj` and `data` (interleaved float32 real,
imaginary, channel by channel). Read here with h5py alone (the `ismrmrd` package writes them in the tests).

A slice becomes (coils, H, W) centred k-space as fastMRI stores it: H the readout (sample `center_sample`
at H // 2), W the phase encodes (step `encodingLimits/kspace_encoding_step_1/center` at W // 2), W =
encodedSpace matrixSize y. Readout oversampling is removed (ifft along the readout, keep the central
H = x * FOV_recon_x / FOV_encoded_x samples, fft back) where the encoded readout FOV exceeds the recon one.
Noise, navigator, phase-correction, dummy, feedback and phase-stabilisation lines are skipped. Columns
not acquired in every slice make a prospective file: its `file_mask` holds the columns acquired in all
slices. Refused with the file, key and fix: a non-Cartesian trajectory, 3-D encoding, several contrasts,
phases, repetitions or sets, a recon matrix larger than the encoded one.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor

from inverse_problems.data.base import READ_ERRORS, DataError, check_allocation
from inverse_problems.data.readers.common import MAX_SLICE_GB, FastMRIFile, parse_header
from inverse_problems.operators.fft import fft2c, ifft2c

# ISMRMRD acquisition flags (1-based bit numbers) of lines that are not image k-space
SKIP_FLAGS = {19: "noise measurement", 23: "navigation", 24: "phase correction", 26: "HP feedback",
              27: "dummy scan", 28: "RT feedback", 29: "surface-coil correction", 30: "phase stabilisation reference",
              31: "phase stabilisation"}
REVERSE_FLAG = 22
SKIP_MASK = sum(1 << (b - 1) for b in SKIP_FLAGS)


def is_ismrmrd(path: str | Path) -> bool:
    """An HDF5 file with ISMRMRD's `dataset/data` and `dataset/xml` and no fastMRI `kspace`."""
    try:
        with h5py.File(path, "r") as f:
            return "kspace" not in f and isinstance(f.get("dataset"), h5py.Group) and "data" in f["dataset"] \
                and "xml" in f["dataset"]
    except READ_ERRORS:
        return False


def _find(node: ET.Element | None, *names: str) -> ET.Element | None:
    for name in names:
        if node is None:
            return None
        node = next((c for c in node if c.tag.split("}")[-1] == name), None)
    return node


def _number(node: ET.Element | None, *names: str) -> float | None:
    n = _find(node, *names)
    try:
        return None if n is None or n.text is None else float(n.text)
    except ValueError:
        return None


class IsmrmrdFile(FastMRIFile):
    """One Cartesian ISMRMRD file with FastMRIFile's interface (n_slices, coils, shape, kspace(s), file_mask, ...)."""

    def __init__(self, path: str | Path, max_slice_gb: float = MAX_SLICE_GB) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ISMRMRD file")
        try:
            with h5py.File(self.path, "r") as f:
                xml = f["dataset/xml"][()]
                heads = f["dataset/data"].fields("head")[()]
        except (KeyError, *READ_ERRORS) as exc:
            raise DataError(f"{self.path}: cannot read ISMRMRD 'dataset/xml' and 'dataset/data' ({exc}); expected an "
                            f"ISMRMRD raw file (re-convert or remove it)", self.path) from exc
        xml = xml[0] if isinstance(xml, np.ndarray) else xml
        self.header_xml = xml.decode(errors="replace") if isinstance(xml, bytes) else str(xml)
        self._read_header(self.header_xml)
        self._index(heads)
        self.single_coil = self.coils == 1
        self.rss_key, self.has_rss, self.has_maps, self.attrs = None, False, False, {}
        check_allocation((self.coils, self.n_samples, self.shape[1]), 8, max_slice_gb,
                         f"{self.path}: key 'dataset/data' (one slice as complex64)")

    def _read_header(self, xml: str) -> None:
        src = f"{self.path}: key 'dataset/xml'"
        self.header = parse_header(xml, str(self.path))
        root = ET.fromstring(xml)
        enc = _find(root, "encoding")
        traj = _find(enc, "trajectory")
        kind = (traj.text or "").strip().lower() if traj is not None else "cartesian"
        if kind != "cartesian":
            raise DataError(f"{src}: the trajectory is {kind!r}; only Cartesian data can be read into a k-space grid "
                            f"(grid non-Cartesian data, e.g. with a NUFFT, before using this suite)", self.path)
        if self.header["encoded"] is None:
            raise DataError(f"{src}: no encoding/encodedSpace/matrixSize; the reader needs the encoded matrix",
                            self.path)
        ex, ey, ez = self.header["encoded"]
        if ez > 1:
            raise DataError(f"{src}: 3-D encoding (matrixSize z = {ez}); only 2-D (multi-slice) Cartesian data are "
                            f"read", self.path)
        rec = self.header["recon"] or (ex, ey, 1)
        if rec[0] > ex or rec[1] > ey:
            raise DataError(f"{src}: reconSpace matrixSize {rec[0]}x{rec[1]} exceeds the encodedSpace matrixSize "
                            f"{ex}x{ey}; fix the header", self.path)
        fov_e = _number(enc, "encodedSpace", "fieldOfView_mm", "x")
        fov_r = _number(enc, "reconSpace", "fieldOfView_mm", "x")
        ratio = fov_e / fov_r if fov_e and fov_r and fov_e > fov_r else 1.0
        self.n_samples = int(ex)
        self.readout = int(round(ex / ratio))  # H after removing the readout oversampling
        centre = _number(enc, "encodingLimits", "kspace_encoding_step_1", "center")
        self.ky_centre = int(centre) if centre is not None else ey // 2
        self.shape = (self.readout, int(ey))
        self.header = {"encoded": (self.readout, int(ey), 1), "recon": (rec[0] if ratio == 1.0 else
                                                                        min(rec[0], self.readout), rec[1], 1)}

    def _index(self, heads: np.ndarray) -> None:
        src = f"{self.path}: key 'dataset/data'"
        keep = (heads["flags"].astype(np.uint64) & np.uint64(SKIP_MASK)) == 0
        idx = heads["idx"]
        for name in ("contrast", "phase", "repetition", "set"):
            if keep.any() and int(idx[name][keep].max()) > 0:
                raise DataError(f"{src}: acquisitions of several {name}s ({int(idx[name][keep].max()) + 1}); the reader "
                                f"takes one {name}: split the file by {name} first", self.path)
        if keep.any() and int(idx["kspace_encode_step_2"][keep].max()) > 0:
            raise DataError(f"{src}: kspace_encode_step_2 > 0 (3-D encoding); only 2-D Cartesian data are read",
                            self.path)
        if keep.any() and int(heads["trajectory_dimensions"][keep].max()) > 0:
            raise DataError(f"{src}: acquisitions carry trajectories (non-Cartesian); only Cartesian data are read",
                            self.path)
        self.rows = np.flatnonzero(keep)
        if not len(self.rows):
            raise DataError(f"{src}: no imaging acquisitions (only noise/navigator/calibration lines)", self.path)
        coils = np.unique(heads["active_channels"][self.rows])
        if len(coils) != 1:
            raise DataError(f"{src}: acquisitions with different channel counts {coils.tolist()}", self.path)
        self.coils = int(coils[0])
        self.slice_of = idx["slice"][self.rows].astype(int)
        self.slices = sorted(set(self.slice_of.tolist()))
        self.n_slices = len(self.slices)
        self.column = idx["kspace_encode_step_1"][self.rows].astype(int) - self.ky_centre + self.shape[1] // 2
        if self.column.min() < 0 or self.column.max() >= self.shape[1]:
            raise DataError(f"{src}: phase-encode steps fall outside the encoded matrix y = {self.shape[1]} (centre "
                            f"{self.ky_centre}); fix encodingLimits or encodedSpace in the header", self.path)
        self.samples = heads["number_of_samples"][self.rows].astype(int)
        self.centre_sample = heads["center_sample"][self.rows].astype(int)
        self.reverse = (heads["flags"][self.rows].astype(np.uint64) & np.uint64(1 << (REVERSE_FLAG - 1))) != 0
        sampled = np.ones(self.shape[1], dtype=bool)
        for s in self.slices:
            cols = np.zeros(self.shape[1], dtype=bool)
            cols[self.column[self.slice_of == s]] = True
            sampled &= cols
        self.file_mask = None if sampled.all() else torch.from_numpy(
            np.broadcast_to(sampled[None].astype(np.float32), self.shape).copy())

    def kspace(self, s: int) -> Tensor:
        """Slice s (coils, H, W) complex64: the readout lines placed on the grid (repeats averaged), readout
        oversampling removed."""
        s = self._check_slice(s)
        sel = np.flatnonzero(self.slice_of == self.slices[s])
        try:
            with h5py.File(self.path, "r") as f:
                data = f["dataset/data"].fields("data")[self.rows[sel]]
        except READ_ERRORS as exc:
            raise DataError(f"{self.path}: key 'dataset/data' slice {s} cannot be read ({exc}); re-convert or remove "
                            f"the file", self.path) from exc
        h, w = self.n_samples, self.shape[1]
        k = np.zeros((self.coils, h, w), np.complex64)
        count = np.zeros(w, np.int64)
        for j, line in zip(sel, data):
            n = self.samples[j]
            z = line.reshape(self.coils, n, 2).astype(np.float32)
            z = z[..., 0] + 1j * z[..., 1]
            if self.reverse[j]:
                z = z[:, ::-1]
            start = h // 2 - self.centre_sample[j]
            if start < 0 or start + n > h:
                raise DataError(f"{self.path}: key 'dataset/data': a line of {n} samples with centre sample "
                                f"{self.centre_sample[j]} does not fit the encoded readout of {h}", self.path)
            k[:, start:start + n, self.column[j]] += z
            count[self.column[j]] += 1
        k /= np.maximum(count, 1)[None, None, :]
        if not np.isfinite(k).all():
            raise DataError(f"{self.path}: key 'dataset/data' slice {s} contains NaN or Inf values", self.path)
        t = torch.from_numpy(k)
        if self.readout != h:  # remove the readout oversampling: central FOV along x
            img = ifft2c(t)
            top = (h - self.readout) // 2
            t = fft2c(img[:, top:top + self.readout]).to(torch.complex64)
        if not bool(t.abs().amax() > 0):
            raise DataError(f"{self.path}: slice {s} is all zero (no signal); choose other slices", self.path)
        return t

    def maps(self, s: int) -> Tensor | None:
        return None

    def rss(self, s: int) -> Tensor | None:
        return None
