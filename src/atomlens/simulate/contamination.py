"""Amorphous contamination: smooth bright patches fixed to the sample (they drift with it)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


class Contamination:
    """A soft patch mask and an intensity map on a grid over the sample.

    The grid has one cell per image pixel (``pixel_size`` Å) and its cell (0, 0) sits
    at ``origin_A`` (y, x) Å. ``soft`` (0..1) is the coverage, ``intensity`` the added
    signal in C-peak units; atoms where ``soft >= 0.5`` are hidden (not rendered, not in
    the truth tables).
    """

    def __init__(
        self,
        bounds: tuple[float, float, float, float],
        pixel_size: float,
        fraction: float,
        level: float,
        fov_A: float,
        rng: np.random.Generator,
    ) -> None:
        y0, y1, x0, x1 = bounds
        self.origin_A = np.array([y0, x0])
        self.pixel_size = pixel_size
        shape = (int(np.ceil((y1 - y0) / pixel_size)) + 2, int(np.ceil((x1 - x0) / pixel_size)) + 2)
        self.shape = shape
        if fraction <= 0:
            self.soft = np.zeros(shape, np.float32)
            self.intensity = np.zeros(shape, np.float32)
        else:
            coarse = _smooth_field(shape, 8.0 / pixel_size, rng)
            texture = _smooth_field(shape, 1.2 / pixel_size, rng)
            # threshold so that ``fraction`` of the field of view is covered
            iy0, ix0 = int(-y0 / pixel_size), int(-x0 / pixel_size)
            n = int(fov_A / pixel_size)
            view = coarse[max(iy0, 0) : iy0 + n, max(ix0, 0) : ix0 + n]
            thr = float(np.quantile(view, 1.0 - fraction))
            width = 0.25 * float(coarse.std())
            self.soft = np.clip((coarse - thr) / width, 0.0, 1.0).astype(np.float32)
            self.intensity = (self.soft * level * np.clip(1.0 + 0.35 * texture, 0.2, None)).astype(
                np.float32
            )
        covered = self.soft > 0
        if covered.any():
            self._clear_A = ndimage.distance_transform_edt(~covered) * pixel_size
        else:
            self._clear_A = np.full(shape, np.inf)

    def _index(self, yx_A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ij = np.rint((np.asarray(yx_A).reshape(-1, 2) - self.origin_A) / self.pixel_size).astype(
            int
        )
        return (np.clip(ij[:, 0], 0, self.shape[0] - 1), np.clip(ij[:, 1], 0, self.shape[1] - 1))

    def coverage_at(self, yx_A: np.ndarray) -> np.ndarray:
        """Coverage 0..1 at sample positions (N, 2) Å."""
        return self.soft[self._index(yx_A)]

    def clearance_at(self, yx_A: np.ndarray) -> np.ndarray:
        """Distance (Å) from sample positions (N, 2) to the nearest contaminated cell."""
        return self._clear_A[self._index(yx_A)]

    def frame(self, shape: tuple[int, int], offset_px: np.ndarray) -> np.ndarray:
        """Contamination intensity for a frame: image pixel (r, c) shows the sample at
        ``((r, c) - offset_px) * pixel_size`` Å (bilinear). Returns (Y, X) float32."""
        if not self.soft.any():
            return np.zeros(shape, np.float32)
        start = -np.asarray(offset_px, float) - self.origin_A / self.pixel_size
        i0 = np.floor(start).astype(int)
        f = start - i0
        ny, nx = shape
        pad = np.pad(self.intensity, 2, mode="edge")
        i0 = i0 + 2
        if i0.min() < 0 or i0[0] + ny + 1 > pad.shape[0] or i0[1] + nx + 1 > pad.shape[1]:
            raise RuntimeError("drift moved the field of view off the simulated sample")
        block = pad[i0[0] : i0[0] + ny + 1, i0[1] : i0[1] + nx + 1]
        top = block[:-1, :-1] * (1 - f[1]) + block[:-1, 1:] * f[1]
        bottom = block[1:, :-1] * (1 - f[1]) + block[1:, 1:] * f[1]
        return (top * (1 - f[0]) + bottom * f[0]).astype(np.float32)


def _smooth_field(shape: tuple[int, int], corr_px: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std random field with correlation length ``corr_px`` pixels
    (coarse Gaussian noise upsampled with cubic splines)."""
    step = max(corr_px, 1.0)
    coarse_shape = (int(np.ceil(shape[0] / step)) + 4, int(np.ceil(shape[1] / step)) + 4)
    coarse = rng.standard_normal(coarse_shape)
    zoom = (shape[0] + 4 * step) / coarse_shape[0], (shape[1] + 4 * step) / coarse_shape[1]
    fine = ndimage.zoom(coarse, zoom, order=3)
    off = int(2 * step)
    fine = fine[off : off + shape[0], off : off + shape[1]]
    if fine.shape != shape:
        fine = np.pad(
            fine, [(0, shape[0] - fine.shape[0]), (0, shape[1] - fine.shape[1])], mode="edge"
        )
    return (fine - fine.mean()) / max(float(fine.std()), 1e-9)
