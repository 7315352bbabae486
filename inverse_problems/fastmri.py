"""fastMRI multi-coil h5 files: read (lazily), validate, resample, coil-combine, write, export.

File format (Zbontar et al. 2018, facebookresearch/fastMRI): dataset `kspace` (slices, coils, H, W)
complex64, centred (DC at index H//2, W//2); optional `reconstruction_rss` (slices, h, w) float32;
`ismrmrd_header`, an ISMRMRD XML string with encoding/encodedSpace/matrixSize (x = H, y = W) and
encoding/reconSpace/matrixSize (the field of view fastMRI crops to, e.g. 320 x 320). Single-coil
files have `kspace` (slices, H, W) and are read as one coil.

Ground truth of an item: coil images ifft2c(k), centre-cropped to the recon matrix in image space
(as fastMRI does), brought to `size` x `size` by keeping the central k-space (Fourier resampling:
the honest low-resolution image), then combined over coils: `rss` (root-sum-of-squares magnitude,
zero phase: the fastMRI target) or `espirit` (SENSE-1 with ESPIRiT maps estimated from the central
k-space: sum_c conj(S_c) m_c, a complex image whose phase is the object's plus coil 0's), and scaled so
the 99th percentile of the magnitude is 1 (as the phantoms).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import h5py
import numpy as np
import torch
from torch import Tensor

from inverse_problems.coils import birdcage_maps
from inverse_problems.coils import rss as rss_combine
from inverse_problems.datasets import READ_ERRORS, DataError, ImageDataset, check_allocation
from inverse_problems.espirit import espirit_maps
from inverse_problems.fft import fft2c, ifft2c
from inverse_problems.phantom_datasets import normalise_p99

COMBINE = ("rss", "espirit")
T = TypeVar("T")
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
    return out


def make_header(encoded: Sequence[int], recon: Sequence[int]) -> str:
    """A minimal ISMRMRD header with the encoded and recon matrix sizes (x, y, z)."""
    def matrix(v: Sequence[int]) -> str:
        return f"<matrixSize><x>{int(v[0])}</x><y>{int(v[1])}</y><z>{int(v[2])}</z></matrixSize>"
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<ismrmrdHeader xmlns="{ISMRMRD_NS}"><encoding>'
            f"<encodedSpace>{matrix(encoded)}</encodedSpace><reconSpace>{matrix(recon)}</reconSpace>"
            f"<trajectory>cartesian</trajectory></encoding></ismrmrdHeader>")


# ---------------------------------------------------------------- writing
def write_fastmri_h5(path: str | Path, kspace: Tensor | np.ndarray, reconstruction_rss: Tensor | np.ndarray | None = None,
                     header: str | None = None, attrs: dict[str, Any] | None = None) -> Path:
    """Write `kspace` (slices, coils, H, W) complex64 [+ reconstruction_rss, ismrmrd_header] as fastMRI does."""
    k = kspace.detach().cpu().numpy() if isinstance(kspace, Tensor) else np.asarray(kspace)
    if not np.iscomplexobj(k) or k.ndim not in (3, 4):
        raise ValueError(f"write_fastmri_h5: kspace must be complex (slices, coils, H, W), got {k.shape} {k.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=k.astype(np.complex64))
        if reconstruction_rss is not None:
            r = reconstruction_rss.detach().cpu().numpy() if isinstance(reconstruction_rss, Tensor) else reconstruction_rss
            r = np.asarray(r, dtype=np.float32)
            f.create_dataset("reconstruction_rss", data=r)
            f.attrs["max"] = float(r.max())
            f.attrs["norm"] = float(np.linalg.norm(r))
        if header is not None:
            f.create_dataset("ismrmrd_header", data=np.bytes_(header.encode()))
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
    return path


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
        self.n_slices = shape[0]
        self.coils = 1 if self.single_coil else shape[1]
        self.shape = tuple(shape[-2:])
        self.has_rss = "reconstruction_rss" in f
        if self.has_rss:
            rss = f["reconstruction_rss"]
            if not isinstance(rss, h5py.Dataset) or rss.ndim != 3:
                raise DataError(f"{self.path}: key 'reconstruction_rss' has shape {getattr(rss, 'shape', None)}; "
                                f"expected (slices, h, w)", self.path)
            check_allocation(rss.shape[1:], 4, max_slice_gb, f"{self.path}: key 'reconstruction_rss' (one slice)")
        raw = f["ismrmrd_header"][()] if "ismrmrd_header" in f else None
        self.attrs = dict(f.attrs)
        if isinstance(raw, bytes):
            raw = raw.decode(errors="replace")
        self.header_xml = None if raw is None else str(raw)

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
        t = torch.from_numpy(k.astype(np.complex64))
        return t[None] if self.single_coil else t

    def rss(self, s: int) -> Tensor | None:
        """`reconstruction_rss` of slice s (h, w) float32, or None where the file has none."""
        if not self.has_rss:
            return None
        s = self._check_slice(s)
        r = self._read("reconstruction_rss", s).astype(np.float32)
        if not np.isfinite(r).all():
            raise DataError(f"{self.path}: key 'reconstruction_rss' slice {s} contains NaN or Inf values", self.path)
        return torch.from_numpy(r)

    def crop_size(self) -> tuple[int, int]:
        """Image-space crop: the header's recon matrix (x, y) -> (H, W), else the largest centred square."""
        recon = self.header.get("recon")
        if recon is not None:
            return min(recon[0], self.shape[0]), min(recon[1], self.shape[1])
        m = min(self.shape)
        return m, m


def read_fastmri_h5(path: str | Path) -> dict[str, Any]:
    """The whole file: {'kspace': (S, C, H, W) complex64, 'reconstruction_rss', 'header' (dict), 'header_xml', 'attrs'}."""
    f = FastMRIFile(path)
    return {"kspace": torch.stack([f.kspace(s) for s in range(f.n_slices)]),
            "reconstruction_rss": torch.stack([f.rss(s) for s in range(f.n_slices)]) if f.has_rss else None,
            "header": f.header, "header_xml": f.header_xml, "attrs": f.attrs}


# ---------------------------------------------------------------- image formation
def center_crop(x: Tensor, shape: tuple[int, int]) -> Tensor:
    """Central (h, w) block of the last two axes (fastMRI's center_crop); zero-pads where shape is larger."""
    h, w = x.shape[-2:]
    th, tw = shape
    if th > h or tw > w:
        pad = torch.zeros((*x.shape[:-2], max(th, h), max(tw, w)), dtype=x.dtype, device=x.device)
        top, left = (max(th, h) - h) // 2, (max(tw, w) - w) // 2
        pad[..., top:top + h, left:left + w] = x
        x, h, w = pad, max(th, h), max(tw, w)
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top:top + th, left:left + tw]


def resample_coil_images(kspace: Tensor, crop: tuple[int, int], size: int) -> Tensor:
    """(C, H, W) centred k-space -> (C, size, size) coil images of the cropped FOV at `size` resolution.

    ifft2c, centre-crop the image to `crop`, fft2c, keep the central size x size k-space, ifft2c;
    scaled by size / sqrt(crop_h * crop_w) so intensities do not depend on the resolution.
    """
    img = center_crop(ifft2c(kspace), crop)
    k = center_crop(fft2c(img), (size, size))
    return ifft2c(k) * (size / float(np.sqrt(crop[0] * crop[1])))


def combine_coils(images: Tensor, method: str = "rss", acs: int = 24) -> Tensor:
    """(C, H, W) coil images -> (H, W) complex: 'rss' (magnitude, zero phase) or 'espirit' (SENSE-1)."""
    if method == "rss":
        return rss_combine(images, dim=0)[0].to(torch.complex64)
    if method == "espirit":
        if images.shape[0] == 1:
            return images[0]
        k = fft2c(images)[None]
        h, w = images.shape[-2:]
        a = min(acs, h, w)
        rows, cols = slice(h // 2 - a // 2, h // 2 - a // 2 + a), slice(w // 2 - a // 2, w // 2 - a // 2 + a)
        maps = espirit_maps(k, (rows, cols))[0]
        return (maps.conj() * images).sum(0) / (maps.abs() ** 2).sum(0).clamp_min(1e-12)
    raise ValueError(f"unknown coil combination {method!r}; choose one of {COMBINE}")


def parse_slices(spec: str | int, n: int) -> list[int]:
    """'middle' | 'all' | 'middle:K' (K central slices) | 'a:b' (Python range) | an int -> slice indices."""
    if isinstance(spec, int):
        return [range(n)[spec]]
    s = str(spec).strip()
    try:
        if s == "all":
            return list(range(n))
        if s == "middle":
            return [n // 2]
        if s.startswith("middle:"):
            k = min(int(s.split(":", 1)[1]), n)
            start = n // 2 - k // 2
            return list(range(start, start + k))
        if ":" in s:
            a, b = s.split(":", 1)
            return list(range(n))[slice(int(a) if a else None, int(b) if b else None)]
        return [range(n)[int(s)]]
    except (ValueError, IndexError) as exc:
        raise ValueError(f"bad slices {spec!r} for a volume of {n} slices; use 'middle', 'all', 'middle:K', 'a:b' "
                         f"or an index") from exc


def split_folder(root: str | Path | None, split: str, prefixes: Sequence[str] = ("", "multicoil_", "singlecoil_"),
                 kind: str = "dataset") -> Path:
    """root/<prefix><split> where it exists, else root itself (then every split reads the same files)."""
    if root is None:
        raise ValueError(f"{kind} needs a folder: pass root=/path/to/data (dataset.root=... on the command line)")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{kind} root {str(root)!r} is not a folder; pass dataset.root=/path/to/data")
    for p in prefixes:
        if (root / f"{p}{split}").is_dir():
            return root / f"{p}{split}"
    return root


def open_files(paths: Sequence[Path], opener: Callable[[Path], T], kind: str) -> list[T | DataError]:
    """Open every file; an unusable one stays in the list as its DataError (read as one failed item).

    Only when no file at all can be used is the first error raised (with the count), so one bad file
    in a folder costs one failed sample while a folder of nothing usable is refused at once.
    """
    files: list[T | DataError] = []
    for p in paths:
        try:
            files.append(opener(p))
        except DataError as exc:
            files.append(exc)
    if files and all(isinstance(f, DataError) for f in files):
        first = files[0]
        raise DataError(f"{kind}: none of the {len(files)} file(s) can be read; the first: {first}", paths[0])
    return files


def check_resolution(path: Path, available: tuple[int, int], size: int, what: str) -> None:
    """Refuse to make `size` x `size` images from data with fewer samples (that would be interpolation)."""
    if min(available) < size:
        raise DataError(f"{path}: {what} is {available[0]}x{available[1]}, smaller than the requested size "
                        f"{size}x{size} (it would be upsampled, not measured); the largest size this file gives is "
                        f"{min(available)}: set dataset.size={min(available)} or less (and problem.size to match), "
                        f"or remove the file", path)


class FastMRIDataset(ImageDataset):
    """fastMRI multi-coil h5 folder: coil-combined (RSS or ESPIRiT SENSE-1) slices, resampled to size.

    A file that cannot be opened is one item that raises its DataError when read (a failed sample);
    `max_slice_gb` bounds the memory a file's declared slice shape may ask for.
    """

    def __init__(self, root: str | None = None, split: str = "test", size: int = 64, slices: str | int = "middle",
                 combine: str = "rss", crop: tuple[int, int] | None = None, max_slice_gb: float = MAX_SLICE_GB) -> None:
        self.split = self.check_split(split)
        if combine not in COMBINE:
            raise ValueError(f"unknown coil combination {combine!r}; choose one of {COMBINE}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"dataset.size must be a positive integer, got {size!r}")
        self.folder = split_folder(root, split, kind="fastmri")
        paths = sorted(list(self.folder.glob("*.h5")) + list(self.folder.glob("*.hdf5")))
        if not paths:
            raise FileNotFoundError(f"fastmri: no .h5 files in {str(self.folder)!r}; point dataset.root at a fastMRI "
                                    f"folder (or export some with `bench export-data`)")
        self.paths = paths
        self.files = open_files(paths, lambda p: FastMRIFile(p, max_slice_gb), "fastmri")
        self.index = [(fi, s) for fi, f in enumerate(self.files)
                      for s in ([None] if isinstance(f, DataError) else parse_slices(slices, f.n_slices))]
        self.size = (size, size)
        self.channels = 2
        self.combine = combine
        self.crop = tuple(crop) if crop is not None else None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, object]:
        self.check_index(i)
        fi, s = self.index[i]
        f = self.files[fi]
        if isinstance(f, DataError):
            raise DataError(str(f), self.paths[fi], self.paths[fi].stem)
        try:
            crop = self.crop or f.crop_size()
            check_resolution(f.path, crop, self.size[0], f"k-space (field of view {crop[0]}x{crop[1]} pixels)")
            coil_images = resample_coil_images(f.kspace(s), crop, self.size[0])
            z = combine_coils(coil_images, self.combine)
            image = normalise_p99(torch.stack([z.real, z.imag]).to(torch.float32))
        except DataError as exc:
            exc.item_id = f"{f.path.stem}-s{s:03d}"
            raise
        except ValueError as exc:  # e.g. an image with no signal after the crop
            raise DataError(f"{f.path}: slice {s}: {exc}", f.path, f"{f.path.stem}-s{s:03d}") from exc
        return {"id": f"{f.path.stem}-s{s:03d}", "image": image}


# ---------------------------------------------------------------- export
def export_fastmri(dataset: ImageDataset, n: int, out: str | Path, coils: int = 1, radius: float = 1.5) -> list[Path]:
    """Write the first n items of a 2-channel dataset as fastMRI multi-coil files (one slice each).

    k-space of coil c is fft2c(S_c x) with birdcage maps S (sum_c |S_c|^2 = 1), so the stored
    `reconstruction_rss` equals |x|; the header's encoded and recon matrices are the image size.
    """
    if getattr(dataset, "channels", 2) != 2:
        raise ValueError(f"export needs complex (2-channel) images, the dataset has {dataset.channels} channel(s)")
    if n < 1 or n > len(dataset):
        raise ValueError(f"--n must be between 1 and the dataset length {len(dataset)}, got {n}")
    out = Path(out)
    written = []
    for i in range(n):
        item = dataset[i]
        x = item["image"]
        z = torch.complex(x[0].double(), x[1].double()).to(torch.complex128)
        h, w = z.shape
        maps = birdcage_maps(coils, (h, w), radius=radius, dtype=torch.complex128)
        k = fft2c(maps * z)[None].to(torch.complex64)
        rss = (maps * z).abs().pow(2).sum(0).sqrt()[None].float()
        header = make_header((h, w, 1), (h, w, 1))
        written.append(write_fastmri_h5(out / f"{item['id']}.h5", k, rss, header,
                                        attrs={"acquisition": "medtta-bench export", "patient_id": str(item["id"])}))
    return written
