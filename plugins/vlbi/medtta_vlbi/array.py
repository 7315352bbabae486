"""The EHT-2017-like array, Earth-rotation uv tracks and minimal independent closure sets (numpy, made once).

Baseline (i, j) at Greenwich hour angle H of a source at declination delta (Thompson, Moran & Swenson 2017,
eq. 4.1), with B = X_j - X_i in Earth-fixed metres (X toward the Greenwich meridian, Y toward 90 deg E):
    u = ( sin H B_x + cos H B_y) / lambda
    v = (-sin delta cos H B_x + sin delta sin H B_y + cos delta B_z) / lambda
A station sees the source when its elevation, sin e = sin(lat) sin(delta) + cos(lat) cos(delta) cos(H + lon),
is above the cut. Thermal noise per real component (ibid., eq. 6.50): sigma_ij = sqrt(SEFD_i SEFD_j / (2 dnu tau)) / eta.

Closure phases psi = arg(V_ij V_jk V_ki) and log closure amplitudes log(|V_ij||V_kl| / (|V_ik||V_jl|)) are linear
in the baseline phases and log amplitudes; per timestamp with n stations a minimal independent set has
(n-1)(n-2)/2 phases (triangles through a reference station) and n(n-3)/2 amplitudes (chosen greedily by rank from
the quadrangles, reference station first), the counts of eht-imaging's count='min'.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

# Earth-fixed station positions (metres) and 2017 median system-equivalent flux densities (Jy).
# Positions: the EHT 2017 array table distributed with eht-imaging (arrays/EHT2017.txt).
# SEFDs: EHT Collaboration 2019, "First M87 Event Horizon Telescope Results. II/III" (ApJL 875, L2 and L3),
# the 2017 array's median SEFDs at 230 GHz.
STATIONS: dict[str, tuple[float, float, float, float]] = {
    #        X (m)          Y (m)           Z (m)          SEFD (Jy)
    "ALMA": (2225061.164, -5440057.370, -2481681.150, 74.0),
    "APEX": (2225039.530, -5441197.630, -2479303.360, 4200.0),
    "SMT": (-1828796.200, -5054406.800, 3427865.200, 17100.0),
    "JCMT": (-5464584.680, -2493001.170, 2150653.980, 10500.0),
    "SMA": (-5464555.493, -2492927.989, 2150797.176, 6200.0),
    "LMT": (-768715.632, -5988507.072, 2063354.852, 4500.0),
    "PV": (5088967.750, -301681.186, 3825012.206, 1900.0),
    "SPT": (0.010, 0.010, -6359609.700, 19300.0),
}
# M87*: RA 12h30m49.42s, Dec +12d23m28.0s (J2000); observing frequency 230 GHz (lambda = 1.3 mm)
M87_RA_DEG = 15 * (12 + 30 / 60 + 49.42 / 3600)
M87_DEC_DEG = 12 + 23 / 60 + 28.0 / 3600
C_LIGHT = 299_792_458.0
UAS = math.pi / 180 / 3600 / 1e6  # radians per microarcsecond


@dataclass(frozen=True)
class Observation:
    """One synthetic observation's geometry: per visibility its time index and stations, (u, v) in wavelengths,
    the thermal sigma (Jy), and the closure index sets (rows of visibility indices)."""

    times: np.ndarray        # (M,) hour angle of Greenwich (hours) per visibility
    station1: np.ndarray     # (M,) int
    station2: np.ndarray     # (M,) int, station1 < station2
    uv: np.ndarray           # (M, 2)
    sigma: np.ndarray        # (M,) Jy per real component
    cphase: np.ndarray       # (Ncp, 3) visibility indices of V_ij V_jk V_ki (each baseline stored i<j; sign below)
    cphase_sign: np.ndarray  # (Ncp, 3) +1 (V) or -1 (conjugate V)
    lcamp: np.ndarray        # (Nca, 4) indices of |V_ij| |V_kl| / (|V_ik| |V_jl|)
    names: tuple[str, ...]

    @property
    def n_vis(self) -> int:
        return len(self.times)


def geodetic(xyz: np.ndarray) -> tuple[float, float]:
    """Geocentric latitude and east longitude (radians) of an Earth-fixed position (a sphere suffices for a cut)."""
    x, y, z = xyz
    return math.atan2(z, math.hypot(x, y)), math.atan2(y, x)


def minimal_closures(stations: list[int]) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int, int]]]:
    """Minimal independent closure triangles (i, j, k) and quadrangles (i, j, k, l) for the given visible stations
    (the first is the reference): (n-1)(n-2)/2 triangles (ref, j, k) and n(n-3)/2 quadrangles chosen by rank."""
    n = len(stations)
    if n < 3:
        return [], []
    ref, rest = stations[0], stations[1:]
    tri = [(ref, j, k) for j, k in itertools.combinations(rest, 2)]
    quads: list[tuple[int, int, int, int]] = []
    if n >= 4:
        pairs = {p: q for q, p in enumerate(itertools.combinations(stations, 2))}

        def col(a: int, b: int) -> int:
            return pairs[(a, b) if (a, b) in pairs else (b, a)]

        rows = np.zeros((0, len(pairs)))
        target = n * (n - 3) // 2
        for i, j, k, l in itertools.permutations(stations, 4):  # reference station first in the order
            if i != ref and i > min(j, k, l):
                continue
            row = np.zeros(len(pairs))
            row[col(i, j)] += 1
            row[col(k, l)] += 1
            row[col(i, k)] -= 1
            row[col(j, l)] -= 1
            trial = np.vstack([rows, row])
            if np.linalg.matrix_rank(trial) > rows.shape[0]:
                rows, quads = trial, quads + [(i, j, k, l)]
                if len(quads) == target:
                    break
    return tri, quads


def eht_observation(hours: float = 24.0, step_min: float = 20.0, elevation_cut_deg: float = 10.0,
                    freq_ghz: float = 230.0, bandwidth_ghz: float = 2.0, integration_s: float = 120.0,
                    efficiency: float = 0.88, dec_deg: float = M87_DEC_DEG, ra_deg: float = M87_RA_DEG,
                    stations: tuple[str, ...] = tuple(STATIONS)) -> Observation:
    """uv tracks of the array over `hours` of Greenwich hour angle around transit at Greenwich, one snapshot per
    `step_min` minutes (stations above `elevation_cut_deg`, at least 3), with thermal noise and closure sets."""
    names = tuple(stations)
    pos = np.array([STATIONS[s][:3] for s in names])
    sefd = np.array([STATIONS[s][3] for s in names])
    lam = C_LIGHT / (freq_ghz * 1e9)
    dec = math.radians(dec_deg)
    ll = [geodetic(p) for p in pos]
    sig = np.sqrt(np.outer(sefd, sefd) / (2 * bandwidth_ghz * 1e9 * integration_s)) / efficiency
    times, s1, s2, uv, sigma, cps, cpsign, lcas = [], [], [], [], [], [], [], []
    n_steps = int(round(hours * 60 / step_min))
    for t in range(n_steps):
        h_hours = -hours / 2 + t * step_min / 60
        h = h_hours * math.pi / 12
        up = [s for s, (lat, lon) in enumerate(ll)
              if math.sin(lat) * math.sin(dec) + math.cos(lat) * math.cos(dec) * math.cos(h + lon)
              > math.sin(math.radians(elevation_cut_deg))]
        if len(up) < 3:
            continue
        index: dict[tuple[int, int], int] = {}
        for i, j in itertools.combinations(up, 2):
            b = pos[j] - pos[i]
            u = (math.sin(h) * b[0] + math.cos(h) * b[1]) / lam
            v = (-math.sin(dec) * math.cos(h) * b[0] + math.sin(dec) * math.sin(h) * b[1] + math.cos(dec) * b[2]) / lam
            index[(i, j)] = len(times)
            times.append(h_hours), s1.append(i), s2.append(j), uv.append((u, v)), sigma.append(sig[i, j])

        def vis(a: int, b: int) -> tuple[int, int]:
            return (index[(a, b)], 1) if a < b else (index[(b, a)], -1)

        tri, quads = minimal_closures(up)
        for i, j, k in tri:
            (a, sa), (b, sb), (c, sc) = vis(i, j), vis(j, k), vis(k, i)
            cps.append((a, b, c)), cpsign.append((sa, sb, sc))
        for i, j, k, l in quads:
            lcas.append((vis(i, j)[0], vis(k, l)[0], vis(i, k)[0], vis(j, l)[0]))
    return Observation(np.array(times), np.array(s1), np.array(s2), np.array(uv), np.array(sigma),
                       np.array(cps, dtype=np.int64).reshape(-1, 3), np.array(cpsign, dtype=np.int64).reshape(-1, 3),
                       np.array(lcas, dtype=np.int64).reshape(-1, 4), names)
