"""Image formation: Gaussian probe spots with Z^1.7 contrast, shot and read noise,
scan-line jitter. Usable on its own, e.g. to make detector training images.

Intensity unit: the noise-free peak of one carbon atom (C = 1, Si ≈ 4.22, vacuum = 0).
Shot noise: ``dose`` electrons per Å² per frame reach the sample; a carbon peak yields
``dose * pixel_size**2 * detector_efficiency`` detected counts per pixel, Poisson noise
is drawn on counts and the image is scaled back to C-peak units.
"""

from __future__ import annotations

import numpy as np

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
SPECIES_Z = {"C": 6, "Si": 14, "N": 7, "B": 5, "O": 8, "P": 15}


def species_to_z(species: np.ndarray | list) -> np.ndarray:
    """Atomic numbers from names (``'C'``, ``'Si'``...) or numbers; (N,) int array."""
    arr = np.asarray(species)
    if arr.dtype.kind in "iuf":
        return arr.astype(np.int64)
    try:
        return np.array([SPECIES_Z[str(s)] for s in arr.ravel()], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(
            f"unknown species {exc.args[0]!r}; use one of {sorted(SPECIES_Z)} or atomic numbers"
        ) from None


def render(
    yx_px: np.ndarray,
    z: np.ndarray | list,
    shape: tuple[int, int],
    pixel_size: float,
    probe_fwhm_A: float = 1.0,
    dose: float | None = None,
    read_noise: float = 0.0,
    rng: np.random.Generator | int | None = None,
    *,
    z_exponent: float = 1.7,
    detector_efficiency: float = 0.05,
    row_shift_px: np.ndarray | None = None,
    background: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Render atoms as probe-blurred Gaussian spots.

    Parameters
    ----------
    yx_px : (N, 2) atom centres (y, x) in pixels (pixel (0, 0) centred at 0.0).
    z : (N,) atomic numbers or species names; peak height ``(Z / 6) ** z_exponent``.
    shape : (Y, X) of the image in pixels.
    pixel_size : Å per pixel.
    probe_fwhm_A : FWHM of the Gaussian spot, Å.
    dose : e-/Å² per frame for Poisson shot noise; ``None`` = noise-free.
    read_noise : standard deviation of added Gaussian noise (C-peak units).
    rng : generator or seed for the noise.
    row_shift_px : (Y,) scan-line jitter: row ``r`` shows the sample displaced by
        ``+row_shift_px[r]`` in x, so row ``r`` of an atom's spot is centred on
        ``x + row_shift_px[r]`` (the spot's centroid moves by :func:`apparent_shift`).
    background : (Y, X) extra signal (e.g. contamination) added before noise.
    weights : (N,) extra factor on each atom's peak (e.g. partial coverage).

    Returns
    -------
    (Y, X) float32 image in C-peak units.
    """
    ny, nx = int(shape[0]), int(shape[1])
    yx = np.asarray(yx_px, dtype=np.float64).reshape(-1, 2)
    zz = species_to_z(z) if len(yx) else np.zeros(0, np.int64)
    if len(zz) != len(yx):
        raise ValueError(f"got {len(yx)} positions but {len(zz)} species")
    if not pixel_size > 0 or not probe_fwhm_A > 0:
        raise ValueError("pixel_size and probe_fwhm_A must be positive (Å)")
    rng = np.random.default_rng(rng)
    amp = (zz / 6.0) ** z_exponent
    if weights is not None:
        amp = amp * np.asarray(weights, float)
    sigma = probe_fwhm_A * FWHM_TO_SIGMA / pixel_size
    radius = int(np.ceil(3.5 * sigma))
    offs = np.arange(-radius, radius + 1)
    img = np.zeros(ny * nx, dtype=np.float64)
    # drop atoms whose spot cannot reach the image
    shift_max = float(np.abs(row_shift_px).max()) if row_shift_px is not None else 0.0
    ok = (
        (yx[:, 0] > -radius - 1)
        & (yx[:, 0] < ny + radius)
        & (yx[:, 1] > -radius - 1 - shift_max)
        & (yx[:, 1] < nx + radius + shift_max)
    )
    yx, amp = yx[ok], amp[ok]
    inv2s2 = 1.0 / (2.0 * sigma * sigma)
    for start in range(0, len(yx), 4096):  # bounded memory per chunk
        p, a = yx[start : start + 4096], amp[start : start + 4096]
        rows = np.rint(p[:, 0]).astype(np.int64)[:, None] + offs  # (n, P)
        gy = np.exp(-((rows - p[:, 0:1]) ** 2) * inv2s2).astype(np.float32)  # (n, P)
        if row_shift_px is not None:
            shift = np.asarray(row_shift_px, float)[np.clip(rows, 0, ny - 1)]  # (n, P)
            centre_x = p[:, 1] + np.interp(p[:, 0], np.arange(ny), row_shift_px)
            cols = np.rint(centre_x).astype(np.int64)[:, None] + offs  # (n, P)
            dx = (cols[:, None, :] - p[:, 1, None, None] - shift[:, :, None]).astype(np.float32)
            g = gy[:, :, None] * np.exp(-(dx * dx) * np.float32(inv2s2))  # (n, P, P)
        else:
            cols = np.rint(p[:, 1]).astype(np.int64)[:, None] + offs
            gx = np.exp(-((cols - p[:, 1:2]) ** 2) * inv2s2).astype(np.float32)
            g = gy[:, :, None] * gx[:, None, :]
        g *= a[:, None, None].astype(np.float32)
        rr = np.broadcast_to(rows[:, :, None], g.shape)
        cc = np.broadcast_to(cols[:, None, :], g.shape)
        inside = (rr >= 0) & (rr < ny) & (cc >= 0) & (cc < nx)
        img += np.bincount((rr * nx + cc)[inside], weights=g[inside], minlength=ny * nx)
    out = img.reshape(ny, nx)
    if background is not None:
        out = out + np.asarray(background, dtype=np.float64)
    if dose is not None:
        scale = float(dose) * pixel_size**2 * detector_efficiency  # counts per C-peak unit
        out = rng.poisson(np.clip(out, 0, None) * scale) / scale
    if read_noise > 0:
        out = out + rng.normal(0.0, read_noise, out.shape)
    return out.astype(np.float32)


def apparent_shift(y_px: np.ndarray, row_shift_px: np.ndarray, sigma_px: float) -> np.ndarray:
    """Where scan-line jitter puts a spot: the x shift (pixels) of the intensity centroid
    of a Gaussian spot of ``sigma_px`` centred on rows ``y_px`` (N,), i.e. the row shifts
    averaged with the spot's row profile as weights. Returns (N,)."""
    y = np.asarray(y_px, float).reshape(-1)
    shift = np.asarray(row_shift_px, float)
    radius = int(np.ceil(3.5 * sigma_px))
    rows = np.rint(y).astype(np.int64)[:, None] + np.arange(-radius, radius + 1)
    w = np.exp(-((rows - y[:, None]) ** 2) / (2 * sigma_px**2))
    w *= (rows >= 0) & (rows < len(shift))
    total = w.sum(1)
    value = (w * shift[np.clip(rows, 0, len(shift) - 1)]).sum(1)
    return np.where(total > 0, value / np.where(total > 0, total, 1), 0.0)
