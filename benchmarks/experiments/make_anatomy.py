"""Derive the fuzzy tissue model `inverse_problems/data/anatomy_colin27.npz` from the Colin27 T1 brain.

Source: Debian's `mricron-data` (apt-get install mricron-data): /usr/share/mricron/templates/ch2.nii.gz
(Colin27, 1 mm, T1-weighted average of 27 scans of one subject; Holmes et al., JCAT 22:324 (1998)) and
its brain-extracted version ch2bet.nii.gz (the brain mask). Licence: BSD-3-clause (Debian copyright
file of mricron-data, Copyright 2006-2010 Chris Rorden); the text is stored beside the maps.

The suite's own segmentation (BrainWeb's fuzzy-model idea, Collins et al., IEEE TMI 17:463 (1998)):
1. head mask: T1 > Otsu threshold of the volume, closed (3 voxels), holes filled per axial slice,
   largest 3-D component;
2. brain mask: ch2bet > 0, holes filled;
3. inside the brain a 3-class 1-D Gaussian mixture on T1 intensity (EM) finds the class intensities
   of CSF (dark), grey matter and white matter (bright) (the histogram peak each component
   claims); a voxel between two class intensities is their linear partial-volume mixture, which
   gives fuzzy memberships in [0, 1] that sum to 1;
4. in the head outside the brain the same with 3 classes gives skull (dark: bone, sinuses, dura),
   muscle/skin (intermediate) and fat (bright: scalp fat, marrow);
5. axial slices every `--step` mm where the brain covers >= `--min-brain` of its largest
   cross-section, each padded to a square field of view of `--fov` mm about the head's centre and
   area-resampled to `--size` pixels; memberships are quantised to uint8 by flooring m * 255, so
   every pixel's memberships sum to <= 1 (the rest is air).

Run: python benchmarks/experiments/make_anatomy.py   (a few seconds; deterministic).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

TEMPLATES = Path("/usr/share/mricron/templates")
LICENCE = Path("/usr/share/doc/mricron-data/copyright")
OUT = Path(__file__).resolve().parents[2] / "inverse_problems" / "data" / "assets"
CLASSES = ("csf", "grey_matter", "white_matter", "skull", "muscle", "fat")


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Threshold maximising the between-class variance of a histogram (Otsu, IEEE SMC 9:62 (1979))."""
    hist, edges = np.histogram(values, bins=bins)
    centres = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    return float(centres[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def gmm_classes(x: np.ndarray, k: int, iters: int = 300) -> np.ndarray:
    """Class intensities of k tissues, sorted: for each component of a 1-D Gaussian mixture (fitted by
    EM on every 7th voxel, initialised at the quantiles (i + 0.5) / k) a peak of the smoothed
    histogram it claims: the lowest for the darkest class, the highest for the brightest, the one
    nearest its mean otherwise (its mean if it claims none). Partial-volume voxels pull the
    mixture's means, and the outer classes' secondary peaks, towards the middle.
    """
    xs = x[::7].astype(np.float64)
    mu = np.quantile(xs, (np.arange(k) + 0.5) / k)
    sd = np.full(k, xs.std() / k)
    w = np.full(k, 1.0 / k)
    for _ in range(iters):
        logp = -0.5 * ((xs[:, None] - mu) / sd) ** 2 - np.log(sd) + np.log(w)
        r = np.exp(logp - logp.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        nk = r.sum(0) + 1e-9
        mu_new = (r * xs[:, None]).sum(0) / nk
        sd = np.sqrt((r * (xs[:, None] - mu_new) ** 2).sum(0) / nk) + 1e-3
        w = nk / nk.sum()
        done = np.allclose(mu_new, mu, atol=1e-4)
        mu = mu_new
        if done:
            break
    hist, edges = np.histogram(xs, bins=128)
    hist = ndimage.gaussian_filter1d(hist.astype(np.float64), 1.5)
    centres = 0.5 * (edges[1:] + edges[:-1])
    is_peak = (hist[1:-1] > hist[:-2]) & (hist[1:-1] >= hist[2:]) & (hist[1:-1] >= 0.02 * hist.max())
    peaks = centres[1:-1][is_peak]  # local maxima holding >= 2 % of the highest (not noise)
    logc = -0.5 * ((peaks[:, None] - mu) / sd) ** 2 - np.log(sd) + np.log(w)
    owner = logc.argmax(1)  # the component that claims each histogram peak
    order = np.argsort(mu)
    modes = []
    for rank, j in enumerate(order):
        own = np.sort(peaks[owner == j])
        if own.size == 0:
            modes.append(mu[j])
        else:  # partial volume pulls the outer classes inwards: take their outermost peak
            modes.append(own[0] if rank == 0 else own[-1] if rank == k - 1 else own[np.argmin(np.abs(own - mu[j]))])
    modes = np.sort(np.array(modes))
    print(f"  mixture means {np.round(np.sort(mu), 1)} -> class intensities (modes) {np.round(modes, 1)}")
    return modes


def pv_memberships(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Partial-volume memberships (N, k): x between adjacent class intensities l_j < l_{j+1} is the
    mixture (1 - f) l_j + f l_{j+1}, f = (x - l_j) / (l_{j+1} - l_j); below l_0 (above l_k-1) pure.
    """
    x = np.clip(x.astype(np.float64), levels[0], levels[-1])
    j = np.clip(np.searchsorted(levels, x, side="right") - 1, 0, len(levels) - 2)
    f = (x - levels[j]) / (levels[j + 1] - levels[j])
    m = np.zeros((x.size, len(levels)))
    m[np.arange(x.size), j] = 1 - f
    m[np.arange(x.size), j + 1] += f
    return m


def segment(t1: np.ndarray, bet: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fuzzy memberships (len(CLASSES), X, Y, Z) float32 and the brain mask."""
    head = t1 > otsu(t1[t1 > 0])
    head = ndimage.binary_closing(head, iterations=3)
    for z in range(head.shape[2]):
        head[:, :, z] = ndimage.binary_fill_holes(head[:, :, z])
    lab, n = ndimage.label(head)
    head = lab == (1 + np.argmax(ndimage.sum(head, lab, range(1, n + 1))))
    brain = np.zeros_like(head)
    for z in range(bet.shape[2]):
        brain[:, :, z] = ndimage.binary_fill_holes(bet[:, :, z] > 0)
    brain &= head
    rest = head & ~brain
    m = np.zeros((len(CLASSES), *t1.shape), np.float32)
    print("brain (CSF, GM, WM):")
    pb = pv_memberships(t1[brain], gmm_classes(t1[brain], 3))
    print("head outside the brain (skull, muscle/skin, fat):")
    pr = pv_memberships(t1[rest], gmm_classes(t1[rest], 3))
    for j in range(3):
        m[j][brain] = pb[:, j]
        m[3 + j][rest] = pr[:, j]
    return m, brain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--templates", type=Path, default=TEMPLATES)
    ap.add_argument("--out", type=Path, default=OUT / "anatomy_colin27.npz")
    ap.add_argument("--size", type=int, default=160, help="stored in-plane pixels")
    ap.add_argument("--fov", type=float, default=224.0, help="square field of view in mm")
    ap.add_argument("--step", type=int, default=2, help="axial slice spacing in mm (voxels of ch2)")
    ap.add_argument("--min-brain", type=float, default=0.3, help="keep slices whose brain area >= this x max")
    args = ap.parse_args()
    t1_img = nib.load(args.templates / "ch2.nii.gz")
    t1 = np.asarray(t1_img.dataobj, np.float32)
    bet = np.asarray(nib.load(args.templates / "ch2bet.nii.gz").dataobj, np.float32)
    zooms = t1_img.header.get_zooms()[:3]
    if not np.allclose(zooms, 1.0) or t1.shape != bet.shape:
        raise SystemExit(f"expected 1 mm ch2 and ch2bet of one shape, got zooms {zooms}, {t1.shape} vs {bet.shape}")
    m, brain = segment(t1, bet)
    area = brain.sum((0, 1))
    zs = [z for z in range(0, t1.shape[2], args.step) if area[z] >= args.min_brain * area.max()]
    head_xy = (m.sum(0) > 0.5).any(2)
    cx, cy = (np.round(ndimage.center_of_mass(head_xy))).astype(int)
    half = int(round(args.fov / 2))
    # axial slice in radiological display: rows anterior -> posterior (y reversed), columns x
    pad = np.pad(m[:, :, :, zs], ((0, 0), (half, half), (half, half), (0, 0)))
    crop = pad[:, cx:cx + 2 * half, cy:cy + 2 * half, :]               # (K, X, Y, Z) about the centre
    slices = np.ascontiguousarray(crop[:, :, ::-1, :].transpose(0, 3, 2, 1))  # (K, Z, rows=-Y, cols=X)
    t = torch.from_numpy(slices.copy()).flatten(0, 1)[:, None]
    small = F.interpolate(t, size=(args.size, args.size), mode="area")[:, 0].view(len(CLASSES), len(zs), args.size,
                                                                                  args.size).numpy()
    q = np.floor(np.clip(small, 0, 1) * 255).astype(np.uint8)
    assert (q.astype(np.int32).sum(0) <= 255).all()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, memberships=q, classes=np.array(CLASSES), z_mm=np.array(
        [float(t1_img.affine[2, 3] + z) for z in zs]), pixel_mm=np.float32(2 * half / args.size),
        source=np.array("Colin27 ch2.nii.gz / ch2bet.nii.gz from Debian mricron-data; "
                        "benchmarks/experiments/make_anatomy.py"))
    shutil.copyfile(LICENCE, args.out.parent / "anatomy_colin27.LICENSE")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {q.shape} (classes, slices, rows, cols), "
          f"z {zs[0]}..{zs[-1]} step {args.step} mm, {2 * half / args.size:.2f} mm pixels")


if __name__ == "__main__":
    main()
