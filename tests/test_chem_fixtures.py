"""Tiny honeycomb fixtures for the chemistry tests (positions built in Å); helpers only,
no tests (named test_chem_* to stay inside the chemistry test files)."""

from __future__ import annotations

import numpy as np
import pandas as pd

A = 2.46  # graphene lattice constant, Å
BOND = A / np.sqrt(3)  # 1.42 Å


def honeycomb(nx_cells: int = 10, ny_cells: int = 10) -> np.ndarray:
    """(N, 2) (y, x) positions in Å of a graphene patch (zigzag along x)."""
    a1 = np.array([0.0, A])
    a2 = np.array([A * np.sqrt(3) / 2, A / 2])
    basis = [np.zeros(2), np.array([BOND, 0.0])]
    pts = []
    for i in range(nx_cells):
        for j in range(ny_cells):
            origin = i * a1 + j * a2
            origin = origin - np.array([0.0, (j // 2) * A])  # keep the patch rectangular
            for b in basis:
                pts.append(origin + b)
    return np.array(pts) + 2.0


def table(yx_A: np.ndarray, pixel_size: float, cls=None, frame: int = 0) -> pd.DataFrame:
    """Atom table in pixels from positions in Å."""
    n = len(yx_A)
    return pd.DataFrame(
        {
            "frame": np.full(n, frame, dtype=int),
            "y": yx_A[:, 0] / pixel_size,
            "x": yx_A[:, 1] / pixel_size,
            "cls": ["C"] * n if cls is None else list(cls),
            "prob": np.ones(n),
        }
    )


def central_bond(yx: np.ndarray) -> tuple[int, int]:
    """The two atoms of the bond nearest the patch centre."""
    c = yx.mean(axis=0)
    i = int(np.argmin(np.hypot(*(yx - c).T)))
    d = np.hypot(*(yx - yx[i]).T)
    d[i] = np.inf
    return i, int(np.argmin(d))


def central_atom(yx: np.ndarray) -> int:
    return int(np.argmin(np.hypot(*(yx - yx.mean(axis=0)).T)))


def stone_wales(yx: np.ndarray, at: tuple[int, int] | None = None) -> np.ndarray:
    """Rotate one bond by 90° about its midpoint (5-7-7-5), shortened to 1.30 Å."""
    i, j = at if at is not None else central_bond(yx)
    out = yx.copy()
    mid = (yx[i] + yx[j]) / 2
    d = (yx[j] - yx[i]) / np.linalg.norm(yx[j] - yx[i])
    perp = np.array([-d[1], d[0]])
    out[i] = mid + 0.65 * perp
    out[j] = mid - 0.65 * perp
    return out


def si_divacancy(yx: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Remove the central bond's two atoms and put one Si at its midpoint (4-fold)."""
    i, j = central_bond(yx)
    mid = (yx[i] + yx[j]) / 2
    keep = np.setdiff1d(np.arange(len(yx)), [i, j])
    out = np.vstack([yx[keep], mid])
    return out, ["C"] * len(keep) + ["Si"]


def si_substitution(yx: np.ndarray, push_A: float = 0.15) -> tuple[np.ndarray, list[str], int]:
    """Central atom becomes Si; its three neighbours move out by ``push_A``."""
    i = central_atom(yx)
    out = yx.copy()
    d = np.hypot(*(yx - yx[i]).T)
    for k in np.flatnonzero((d > 0.1) & (d < 1.6)):
        v = (yx[k] - yx[i]) / d[k]
        out[k] = yx[k] + push_A * v
    cls = ["C"] * len(yx)
    cls[i] = "Si"
    return out, cls, i


def lattice_image(
    size: int,
    pixel_size: float,
    a: float = A,
    angle_deg: float = 17.0,
    noise: float = 0.3,
    seed: int = 0,
    sublattice_ratio: float = 1.0,
) -> np.ndarray:
    """(size, size) image of a honeycomb with lattice constant ``a`` (Å): Gaussian atoms
    (sigma 0.35 Å) at the two sublattices (second one scaled by ``sublattice_ratio``),
    rotated by ``angle_deg``, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    fov = size * pixel_size
    th = np.radians(angle_deg)
    a1 = a * np.array([np.sin(th), np.cos(th)])
    a2 = a * np.array([np.sin(th + np.pi / 3), np.cos(th + np.pi / 3)])
    bond = a / np.sqrt(3)
    b = bond * np.array([np.sin(th + np.pi / 6), np.cos(th + np.pi / 6)])
    n = int(2 * fov / a) + 2
    i, j = np.meshgrid(np.arange(-n, n), np.arange(-n, n), indexing="ij")
    base = i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2
    img = np.zeros((size, size))
    yy, xx = np.mgrid[:size, :size] * pixel_size
    sig = 0.35
    for pts, w in ((base, 1.0), (base + b, sublattice_ratio)):
        pts = pts[
            (pts[:, 0] > -1) & (pts[:, 0] < fov + 1) & (pts[:, 1] > -1) & (pts[:, 1] < fov + 1)
        ]
        ij = np.rint(pts / pixel_size).astype(int)
        grid = np.zeros((size + 2, size + 2))
        # splat with sub-pixel accuracy via direct Gaussians on a small window
        r = int(np.ceil(3 * sig / pixel_size))
        for (py, px), (iy, ix) in zip(pts, ij):
            y0, y1 = max(iy - r, 0), min(iy + r + 1, size)
            x0, x1 = max(ix - r, 0), min(ix + r + 1, size)
            if y0 >= y1 or x0 >= x1:
                continue
            img[y0:y1, x0:x1] += w * np.exp(
                -((yy[y0:y1, x0:x1] - py) ** 2 + (xx[y0:y1, x0:x1] - px) ** 2) / (2 * sig**2)
            )
        del grid
    return (img + rng.normal(0, noise, img.shape)).astype(np.float32)
