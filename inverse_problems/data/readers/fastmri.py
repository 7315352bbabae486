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

Measured k-space (docs/design.md, "Simulated and measured data"): every item also carries `kspace`, the
coil k-space of the same resampled coil images (C, size, size) in the file's units, and `data_scale`,
the constant the target was divided by, so that the target times data_scale is exactly the named
combination of the fully sampled `kspace` (`target_convention`:
`fastmri-rss` (multi-coil RSS magnitude), `fastmri-esc` (single-coil magnitude, fastMRI's
`reconstruction_esc`), `sense1-espirit` or `sense1-stored-maps` (InverseBench's complex SENSE-1/MVUE)).
Optional keys of a file: `sensitivity_maps` (slices, coils, H, W) complex (item `maps`, for
coil_maps=true) and `mask` ((W,) columns or (H, W); a prospective file: its k-space is zero off the
mask and it has no reference, so the item's `image` is None). A prospective file is cropped to the recon
FOV in image space along the readout axis (H, fully sampled) only; its phase-encode axis is cut in
k-space (central columns), so the mask stays the file's own columns; its data_scale is 1 (there is no
target). Items also carry `volume` (the file's stem: per-volume metrics group by it), `patient`
(the file's `patient_id` attribute, else its stem; docs/design.md's patient id) and `slice`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import h5py
import numpy as np
import torch
from torch import Tensor

from inverse_problems.operators.coils import birdcage_maps
from inverse_problems.operators.coils import rss as rss_combine
from inverse_problems.data.base import READ_ERRORS, DataError, ImageDataset, Item, check_allocation  # noqa: F401
from inverse_problems.data.readers.common import (MAPS_KEY, MAX_SLICE_GB, FastMRIFile, make_header,  # noqa: F401
                                                  parse_header)  # parse_header: re-exported (fastMRI's header)
from inverse_problems.operators.espirit import espirit_maps, kernel_shape
from inverse_problems.operators.fft import fft2c, ifft2c
from inverse_problems.operators.masks import acs_region, calibration_block, make_mask
from inverse_problems.data.readers.ismrmrd import IsmrmrdFile, is_ismrmrd

COMBINE = ("rss", "espirit")
T = TypeVar("T")


# ---------------------------------------------------------------- writing
def write_fastmri_h5(path: str | Path, kspace: Tensor | np.ndarray, reconstruction_rss: Tensor | np.ndarray | None = None,
                     header: str | None = None, attrs: dict[str, Any] | None = None,
                     ref_key: str = "reconstruction_rss", extra: dict[str, np.ndarray] | None = None) -> Path:
    """Write `kspace` (slices, coils, H, W) or single-coil (slices, H, W) complex64 [+ the reference under
    `ref_key` (reconstruction_rss | reconstruction_esc), ismrmrd_header, `extra` datasets] as fastMRI does."""
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
            f.create_dataset(ref_key, data=r)
            f.attrs["max"] = float(r.max())
            f.attrs["norm"] = float(np.linalg.norm(r))
        for key, value in (extra or {}).items():
            f.create_dataset(key, data=value)
        if header is not None:
            f.create_dataset("ismrmrd_header", data=np.bytes_(header.encode()))
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
    return path


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


def combine_coils(images: Tensor, method: str = "rss", acs: int = 24, maps: Tensor | None = None) -> Tensor:
    """(C, H, W) coil images -> (H, W) complex: 'rss' (magnitude, zero phase) or 'espirit' (SENSE-1:
    sum_c conj(S_c) m_c / sum_c |S_c|^2 with `maps` where given, else ESPIRiT maps from the central acs x acs
    block, `calibration_block`)."""
    if method == "rss":
        return rss_combine(images, dim=0)[0].to(torch.complex64)
    if method == "espirit":
        if images.shape[0] == 1:
            return images[0]
        if maps is not None:
            maps = maps.to(images.dtype)
            return (maps.conj() * images).sum(0) / (maps.abs() ** 2).sum(0).clamp_min(1e-12)
        k = fft2c(images)[None]
        maps = espirit_maps(k, calibration_block(tuple(images.shape[-2:]), acs))[0]
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


def open_raw(path: Path, max_slice_gb: float = MAX_SLICE_GB) -> FastMRIFile:
    """A fastMRI file, or a Cartesian ISMRMRD raw file read into the same layout (inverse_problems.data.readers.ismrmrd)."""
    return IsmrmrdFile(path, max_slice_gb) if is_ismrmrd(path) else FastMRIFile(path, max_slice_gb)


def check_file_acs(path: Path, mask: Tensor, coils: int) -> None:
    """A file's own mask must hold a calibration (ACS) block wide enough for ESPIRiT (2 x 2 kernel at least)."""
    h, w = mask.shape
    need = 1 + -(-4 * coils // (h - 1))  # (h - 1)(w - 1) >= 4 coils: as many 2x2 patches as unknowns
    try:
        rows, cols = acs_region(mask)
        width = cols.stop - cols.start
        kernel_shape((rows.stop - rows.start, width), coils, 2)
    except ValueError as exc:
        raise DataError(f"{path}: key 'mask': its fully sampled centre is too narrow for ESPIRiT with {coils} coils "
                        f"at {h}x{w} ({exc}); at least {need} central columns are needed: use a larger dataset.size, "
                        f"store coil maps in the file (key {MAPS_KEY!r}, then problem.coil_maps=true) or another "
                        f"file", path) from exc


def check_resolution(path: Path, available: tuple[int, int], size: int, what: str) -> None:
    """Refuse to make `size` x `size` images from data with fewer samples (that would be interpolation)."""
    if min(available) < size:
        raise DataError(f"{path}: {what} is {available[0]}x{available[1]}, smaller than the requested size "
                        f"{size}x{size} (it would be upsampled, not measured); the largest size this file gives is "
                        f"{min(available)}: set dataset.size={min(available)} or less (and problem.size to match), "
                        f"or remove the file", path)


class FastMRIDataset(ImageDataset):
    """fastMRI multi-coil h5 folder: coil-combined (RSS or ESPIRiT SENSE-1) slices, resampled to size.

    Cartesian ISMRMRD raw files (.h5, .mrd) in the folder are read into the same layout (ismrmrd_raw).

    A file that cannot be opened is one item that raises its DataError when read (a failed sample);
    `max_slice_gb` bounds the memory a file's declared slice shape may ask for.
    """

    def __init__(self, root: str | None = None, split: str = "test", size: int = 64, slices: str | int = "middle",
                 combine: str = "rss", crop: tuple[int, int] | None = None, max_slice_gb: float = MAX_SLICE_GB,
                 calib: int = 24) -> None:
        self.split = self.check_split(split)
        if isinstance(calib, bool) or not isinstance(calib, int) or calib < 2:
            raise ValueError(f"dataset.calib (the ESPIRiT calibration block of combine=espirit) must be an integer >= 2, "
                             f"got {calib!r}")
        self.calib = calib
        if combine not in COMBINE:
            raise ValueError(f"unknown coil combination {combine!r}; choose one of {COMBINE}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"dataset.size must be a positive integer, got {size!r}")
        self.folder = split_folder(root, split, kind="fastmri")
        paths = sorted(list(self.folder.glob("*.h5")) + list(self.folder.glob("*.hdf5")) + list(self.folder.glob("*.mrd")))
        if not paths:
            raise FileNotFoundError(f"fastmri: no .h5 files in {str(self.folder)!r}; point dataset.root at a fastMRI "
                                    f"folder (or export some with `bench export-data`)")
        self.paths = paths
        self.files = open_files(paths, lambda p: open_raw(p, max_slice_gb), "fastmri")
        self.index = [(fi, s) for fi, f in enumerate(self.files)
                      for s in ([None] if isinstance(f, DataError) else parse_slices(slices, f.n_slices))]
        self.size = (size, size)
        self.channels = 2
        self.combine = combine
        if crop is not None and (not isinstance(crop, (list, tuple)) or len(crop) != 2 or any(
                isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in crop)):
            raise ValueError(f"dataset.crop must be two positive integers [H, W] (the image-space field of view in "
                             f"pixels), got {crop!r}")
        self.crop = tuple(crop) if crop is not None else None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Item:
        self.check_index(i)
        fi, s = self.index[i]
        f = self.files[fi]
        if isinstance(f, DataError):
            raise DataError(str(f), self.paths[fi], self.paths[fi].stem)
        item_id = f"{f.path.stem}-s{s:03d}"
        try:
            return self.slice_item(f, s, item_id)
        except DataError as exc:
            exc.item_id = item_id
            raise
        except ValueError as exc:  # e.g. an image with no signal after the crop
            raise DataError(f"{f.path}: slice {s}: {exc}", f.path, item_id) from exc

    def slice_item(self, f: FastMRIFile, s: int, item_id: str) -> Item:
        """Target image (or None for a prospective file), measured k-space, optional maps and mask of slice s."""
        crop = self.crop or f.crop_size()
        prospective = f.file_mask is not None
        if prospective:  # crop the readout axis only: the phase-encode columns stay the file's own
            crop = (crop[0], f.shape[1])
        check_resolution(f.path, crop, self.size[0], f"k-space (field of view {crop[0]}x{crop[1]} pixels)")
        n = self.size[0]
        coil_images = resample_coil_images(f.kspace(s), crop, n)
        patient = f.attrs.get("patient_id", f.path.stem)
        patient = patient.decode(errors="replace") if isinstance(patient, bytes) else str(patient)
        item: Item = {"id": item_id, "image": None, "volume": f.path.stem, "slice": s, "patient": patient}
        maps = f.maps(s)
        if maps is not None:  # brought to the item's grid as the coil images are (image crop, Fourier resampling)
            maps = resample_coil_images(fft2c(maps), crop, n) * (float(np.sqrt(crop[0] * crop[1])) / n)
            item["maps"] = maps
        if prospective:
            if not bool((f.file_mask == f.file_mask[:1]).all()) and crop[0] != f.shape[0]:
                raise DataError(f"{f.path}: key 'mask' is a 2-D (H, W) mask, but the readout axis is cropped from "
                                f"{f.shape[0]} to {crop[0]} in image space, which mixes its rows; pass "
                                f"dataset.crop=[{f.shape[0]}, {f.shape[1]}] (no crop) or store a (W,) column mask", f.path)
            mask = center_crop(f.file_mask, (n, n))
            if not bool(mask[n // 2, n // 2]):
                raise DataError(f"{f.path}: key 'mask' does not acquire the k-space centre (the DC column {n // 2} of "
                                f"the {n}x{n} grid): a prospective mask always samples it (the image's mean and the "
                                f"calibration region lie there); the mask is corrupt or not centred: fix it, or "
                                f"remove the file", f.path)
            if f.coils > 1 and maps is None:
                check_file_acs(f.path, mask, f.coils)
            scale = torch.ones(())  # no target: reconstructions stay in the file's units
            item.update({"image": None, "mask": mask, "target_convention": None})
        else:
            z = combine_coils(coil_images, self.combine, acs=self.calib, maps=maps)
            target = torch.stack([z.real, z.imag]).to(torch.float32)
            scale = torch.quantile(target.pow(2).sum(0).sqrt().flatten(), 0.99)
            item.update({"image": target / scale, "target_convention": self.convention(f.coils, maps)})
        if not torch.isfinite(scale):
            raise DataError(f"{f.path}: slice {s}: the coil combination overflows float32 (scale {float(scale)}); the "
                            f"file's values are scaled absurdly: rescale it or remove the file", f.path)
        if scale <= 0:
            raise DataError(f"{f.path}: slice {s} has no signal in the cropped field of view; choose other slices "
                            f"(dataset.slices=...) or remove the file", f.path)
        item["kspace"] = fft2c(coil_images).to(torch.complex64)  # the file's units
        item["data_scale"] = float(scale)  # the target was divided by it: x data_scale gives the file's units
        return item

    def convention(self, coils: int, maps: Tensor | None) -> str:
        """The target's name: fastmri-rss | fastmri-esc (single coil) | sense1-espirit | sense1-stored-maps."""
        if self.combine == "rss":
            return "fastmri-esc" if coils == 1 else "fastmri-rss"
        return "sense1-stored-maps" if maps is not None else "sense1-espirit"


# ---------------------------------------------------------------- export
def smooth_phase(shape: tuple[int, int], amplitude: float) -> Tensor:
    """A known smooth phase field (radians): amplitude * (0.6 u + 0.4 v + 0.5 (u^2 - v^2)), u, v in [-1, 1)."""
    u = (torch.arange(shape[0], dtype=torch.float64) - shape[0] / 2) / (shape[0] / 2)
    v = (torch.arange(shape[1], dtype=torch.float64) - shape[1] / 2) / (shape[1] / 2)
    uu, vv = torch.meshgrid(u, v, indexing="ij")
    return amplitude * (0.6 * uu + 0.4 * vv + 0.5 * (uu**2 - vv**2))


def export_fastmri(dataset: ImageDataset, n: int, out: str | Path, coils: int = 1, radius: float = 1.5,
                   phase: float = 0.0, noise_std: float = 0.0, store_maps: bool = False, slices_per_file: int = 1,
                   encoded: tuple[int, int] | None = None, mask: dict[str, Any] | None = None,
                   seed: int = 0) -> list[Path]:
    """Write the first n items of a 2-channel dataset as fastMRI files (`slices_per_file` items per file).

    Coil c's k-space is fft2c(S_c exp(i phase) x) + noise: birdcage maps S (sum_c |S_c|^2 = 1) at the encoded
    matrix, a known smooth phase (`smooth_phase`, amplitude `phase` radians), complex Gaussian noise of
    `noise_std` per real component (seeded by `seed`). `encoded` (H, W) zero-pads the image to a larger
    encoded field of view (fastMRI's readout oversampling, e.g. 2x the recon H); the header's recon matrix
    is the image size. One coil writes the single-coil layout (kspace (slices, H, W), `reconstruction_esc`),
    more the multi-coil one (`reconstruction_rss` = RSS of the noiseless coil images, cropped to the recon
    matrix). `store_maps` adds the maps (key sensitivity_maps). `mask` ({kind, acceleration,
    center_fraction, seed}) writes a prospective file instead: k-space zero off that mask (its (W,) columns
    under key `mask`) and no reference.
    """
    if getattr(dataset, "channels", 2) != 2:
        raise ValueError(f"export needs complex (2-channel) images, the dataset has {dataset.channels} channel(s)")
    if n < 1 or n > len(dataset):
        raise ValueError(f"--n must be between 1 and the dataset length {len(dataset)}, got {n}")
    if slices_per_file < 1:
        raise ValueError(f"--slices-per-file must be >= 1, got {slices_per_file}")
    if noise_std < 0:
        raise ValueError(f"--noise-std must be >= 0, got {noise_std}")
    out = Path(out)
    gen = torch.Generator().manual_seed(seed)
    written = []
    for start in range(0, n, slices_per_file):
        items = [dataset[i] for i in range(start, min(start + slices_per_file, n))]
        ks, refs, maps_out = [], [], []
        for item in items:
            x = item["image"]
            z = torch.complex(x[0].double(), x[1].double())
            h, w = z.shape
            big = encoded or (h, w)
            if big[0] < h or big[1] < w:
                raise ValueError(f"--encoded {big} is smaller than the image {(h, w)}")
            z = center_crop(z, big) * torch.polar(torch.ones(big, dtype=torch.float64), smooth_phase(big, phase))
            maps = birdcage_maps(coils, big, radius=radius, dtype=torch.complex128)
            k = fft2c(maps * z)
            if noise_std > 0:
                k = k + noise_std * torch.complex(torch.randn(k.shape, generator=gen, dtype=torch.float64),
                                                  torch.randn(k.shape, generator=gen, dtype=torch.float64))
            ks.append(k)
            refs.append(center_crop((maps * z).abs().pow(2).sum(0).sqrt(), (h, w)).float())
            maps_out.append(maps)
        k = torch.stack(ks).to(torch.complex64)
        header = make_header((*k.shape[-2:], 1), (h, w, 1))
        name = items[0]["id"] if slices_per_file == 1 else f"{items[0]['id']}-vol{len(items)}"
        path = out / f"{name}.h5"
        ref: Tensor | None = torch.stack(refs)
        extra: dict[str, np.ndarray] = {}
        if store_maps and coils > 1:
            extra[MAPS_KEY] = torch.stack(maps_out).to(torch.complex64).numpy()
        if mask is not None:
            m = make_mask(mask.get("kind", "equispaced"), tuple(k.shape[-2:]), float(mask.get("acceleration", 4)),
                          float(mask.get("center_fraction", 0.08)), int(mask.get("seed", 0)))
            k, ref = k * m, None
            extra["mask"] = m[0].numpy().astype(np.float32)
        write_fastmri_h5(path, k[:, 0] if coils == 1 else k, ref, header,
                         attrs={"acquisition": "medtta-bench export", "patient_id": str(name)},
                         ref_key="reconstruction_esc" if coils == 1 else "reconstruction_rss", extra=extra)
        written.append(path)
    return written
