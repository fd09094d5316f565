"""Scan distortions of a STEM image: where the probe really was for each pixel.

A distortion is a map from output pixel (row, col) to the specimen position (pixels of
the nominal grid) that the probe sampled: fast-scan jitter (each row shifted in x, white
plus a random walk), slow-scan drift (rows shifted in y and sheared), fly-back
distortion (the first columns of each line compressed) and a slow scale/shear. The
renderer samples its fine image at those positions; :meth:`ScanDistortion.apparent`
tells where an atom shows up in the distorted image (for labels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


@dataclass(frozen=True)
class ScanDistortion:
    """Scan-distortion parameters (all in output pixels unless named otherwise).

    jitter_px : std of the white per-row x shift.
    walk_px : std of the per-row step of a random walk in x (low-frequency wobble).
    drift : (dy, dx) specimen drift per row, pixels per row (shears and stretches the
        image along the slow scan).
    flyback_px, flyback_len_px : the start of each line lags by ``flyback_px``,
        decaying over ``flyback_len_px`` columns.
    row_y_jitter_px : std of a per-row y shift (line-to-line position noise).
    """

    jitter_px: float = 0.0
    walk_px: float = 0.0
    drift: tuple[float, float] = (0.0, 0.0)
    flyback_px: float = 0.0
    flyback_len_px: float = 10.0
    row_y_jitter_px: float = 0.0

    @classmethod
    def random(cls, rng: np.random.Generator, pixel_size_A: float) -> ScanDistortion:
        """A draw over what real HAADF frames show (amplitudes scaled to 0.1 Å/px: about
        0-0.05 Å white jitter, 0-0.02 Å/row walk, up to 1 % drift, 0-0.2 Å fly-back)."""
        f = 0.1 / pixel_size_A  # amplitudes were judged at 0.1 Å/px
        return cls(
            jitter_px=float(rng.uniform(0, 0.5) * f) if rng.random() < 0.6 else 0.0,
            walk_px=float(rng.uniform(0, 0.2) * f) if rng.random() < 0.4 else 0.0,
            drift=(float(rng.normal(0, 0.004)), float(rng.normal(0, 0.006)))
            if rng.random() < 0.5
            else (0.0, 0.0),
            flyback_px=float(rng.uniform(0, 2.0) * f) if rng.random() < 0.3 else 0.0,
            flyback_len_px=float(rng.uniform(4, 20) * f),
            row_y_jitter_px=float(rng.uniform(0, 0.25) * f) if rng.random() < 0.3 else 0.0,
        )

    def offsets(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """(2, Y, X) displacement (dy, dx) in pixels: output pixel (r, c) shows the
        specimen at (r + dy, c + dx)."""
        ny, nx = int(shape[0]), int(shape[1])
        r = np.arange(ny, dtype=float)[:, None]
        c = np.arange(nx, dtype=float)[None, :]
        dx_row = np.zeros(ny)
        if self.jitter_px:
            dx_row += rng.normal(0, self.jitter_px, ny)
        if self.walk_px:
            walk = np.cumsum(rng.normal(0, self.walk_px, ny))
            dx_row += walk - walk.mean()
        dy_row = rng.normal(0, self.row_y_jitter_px, ny) if self.row_y_jitter_px else np.zeros(ny)
        rc = r - ny / 2
        dy = np.broadcast_to(dy_row[:, None] + self.drift[0] * rc, (ny, nx))
        dx = dx_row[:, None] + self.drift[1] * rc + np.zeros((1, nx))
        if self.flyback_px:
            dx = dx - self.flyback_px * np.exp(-c / max(self.flyback_len_px, 1e-3))
        return np.stack([np.array(dy, float), np.array(dx, float)])

    @staticmethod
    def apparent(yx_px: np.ndarray, offsets: np.ndarray, spot_sigma_px: float) -> np.ndarray:
        """Where atoms at specimen positions ``yx_px`` (N, 2) appear in the distorted
        image: ``yx - d`` with the displacement ``d`` averaged over the rows a spot of
        ``spot_sigma_px`` covers (one fixed-point iteration). Returns (N, 2) pixels."""
        yx = np.asarray(yx_px, float).reshape(-1, 2)
        if len(yx) == 0:
            return yx.copy()
        d = ndi.gaussian_filter1d(offsets, max(spot_sigma_px, 0.3), axis=1, mode="nearest")
        out = yx.copy()
        ny, nx = offsets.shape[1:]
        for _ in range(2):
            iy = np.clip(np.rint(out[:, 0]).astype(int), 0, ny - 1)
            ix = np.clip(np.rint(out[:, 1]).astype(int), 0, nx - 1)
            out = yx - np.stack([d[0, iy, ix], d[1, iy, ix]], 1)
        return out
