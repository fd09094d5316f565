"""Incoherent Z-contrast images formed by a real probe: the renderer for any material.

:func:`render_image` puts each atom's weight ``(Z/6)^n`` (a carbon atom = 1) at its
position on a fine grid (≤ 0.06 Å), convolves with the probe intensity of
:class:`~atomlens.simulate.probe.Probe` (Airy rings and aberration tails included),
samples the result where a distorted scan put the probe
(:class:`~atomlens.simulate.scan.ScanDistortion`), and adds detector effects: Poisson
shot noise from the dose, scintillator afterglow along the fast scan, read noise.

Intensity unit: the noise-free peak of one carbon atom imaged alone (C = 1, Si ≈ 4.2
at n = 1.7). Coordinates: pixel (i, j) is centred at (i, j) · pixel_size Å.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi
from scipy.signal import lfilter

from atomlens.simulate.probe import FWHM_TO_SIGMA, Probe
from atomlens.simulate.render import species_to_z
from atomlens.simulate.scan import ScanDistortion

FINE_PIXEL_A = 0.06
"""Largest sampling (Å/px) of the internal grid on which the probe is convolved."""
MARGIN_A = 4.0
"""Atoms up to this far outside the field still put their probe tails into it (Å)."""


def _splat(yx: np.ndarray, w: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear deposit of weights ``w`` (N,) at sub-pixel ``yx`` (N, 2) on a ``shape`` grid."""
    img = np.zeros(shape[0] * shape[1], np.float64)
    y0 = np.floor(yx[:, 0]).astype(np.int64)
    x0 = np.floor(yx[:, 1]).astype(np.int64)
    fy, fx = yx[:, 0] - y0, yx[:, 1] - x0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            ok = (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
            img += np.bincount(yy[ok] * shape[1] + xx[ok], (w * wy * wx)[ok], minlength=img.size)
    return img.reshape(shape)


def render_image(
    yx_A: np.ndarray,
    z: np.ndarray | list,
    shape: tuple[int, int],
    pixel_size_A: float,
    probe: Probe | None = None,
    rng: np.random.Generator | int | None = None,
    *,
    z_exponent: float = 1.7,
    weights: np.ndarray | None = None,
    dose: float | None = None,
    detector_efficiency: float = 0.05,
    read_noise: float = 0.0,
    afterglow_px: float = 0.0,
    scan: ScanDistortion | None = None,
    background: np.ndarray | float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render an incoherent (HAADF/MAADF) STEM image of atoms with a real probe.

    Parameters
    ----------
    yx_A : (N, 2) atom positions (y, x) in Å; pixel (0, 0) is centred at (0, 0) Å.
    z : (N,) atomic numbers or species names ('C', 'Si', 'Mo', ...).
    shape : (Y, X) output size in pixels.
    pixel_size_A : Å per output pixel (any value; the probe is convolved on a grid of
        at most :data:`FINE_PIXEL_A`).
    probe : the probe optics (default: a 60 kV, 31 mrad corrected probe, no aberrations).
    rng : generator or seed (noise and scan distortion).
    z_exponent : ``n`` in the weight ``(Z/6)^n`` (1.6-1.8 for HAADF, lower for MAADF).
    weights : (N,) extra factor on each atom (partial occupancy, contamination cover).
    dose : electrons per Å² for Poisson noise; ``None`` = noise free. A C peak gives
        ``dose · pixel_size² · detector_efficiency`` counts.
    read_noise : std of Gaussian noise added after the counts, C-peak units.
    afterglow_px : decay length (pixels) of the detector's exponential response along
        the fast scan (x); it smears each row and shifts spots by about that much.
    scan : scan distortion (jitter, drift, fly-back); ``None`` = a perfect raster.
    background : (Y, X) array or scalar added to the noise-free signal (C-peak units),
        e.g. an amorphous film or contamination.

    Returns
    -------
    image : (Y, X) float32 in C-peak units.
    yx_px : (N, 2) float64, where each atom appears in ``image`` (pixels), after the
        scan distortion and afterglow lag: use these for labels.
    """
    ny, nx = int(shape[0]), int(shape[1])
    yx = np.asarray(yx_A, dtype=np.float64).reshape(-1, 2)
    zz = species_to_z(z) if len(yx) else np.zeros(0, np.int64)
    if len(zz) != len(yx):
        raise ValueError(
            f"render_image: got {len(yx)} positions but {len(zz)} species; "
            "pass one Z (or name) per atom"
        )
    if not pixel_size_A > 0:
        raise ValueError(f"render_image: pixel_size_A must be positive Å/px, got {pixel_size_A}")
    if ny < 1 or nx < 1:
        raise ValueError(f"render_image: shape must be positive (Y, X), got {shape}")
    probe = probe or Probe()
    rng = np.random.default_rng(rng)
    amp = (zz / 6.0) ** z_exponent
    if weights is not None:
        amp = amp * np.asarray(weights, float).reshape(-1)

    offsets = scan.offsets((ny, nx), rng) if scan is not None else np.zeros((2, ny, nx))
    reach = np.abs(offsets).max() * pixel_size_A if scan is not None else 0.0
    margin = MARGIN_A + reach
    s = max(1, int(np.ceil(pixel_size_A / FINE_PIXEL_A - 1e-9)))
    fine = pixel_size_A / s
    fshape = (
        sfft.next_fast_len(
            int(np.ceil(((ny - 1) * pixel_size_A + 2 * margin) / fine)) + 1, real=True
        ),
        sfft.next_fast_len(
            int(np.ceil(((nx - 1) * pixel_size_A + 2 * margin) / fine)) + 1, real=True
        ),
    )
    pf = (yx + margin) / fine
    keep = np.all((pf >= 0) & (pf < np.array(fshape) - 1), axis=1)
    delta = _splat(pf[keep], amp[keep], fshape)
    otf = probe.otf(fshape, fine)
    conv = sfft.irfft2(sfft.rfft2(delta) * otf, s=fshape)
    unit_peak = float(sfft.irfft2(otf, s=fshape)[0, 0])  # one atom's peak on this grid
    conv /= unit_peak
    rr, cc = np.mgrid[0:ny, 0:nx].astype(np.float64)
    coords = np.stack(
        [
            ((rr + offsets[0]) * pixel_size_A + margin) / fine,
            ((cc + offsets[1]) * pixel_size_A + margin) / fine,
        ]
    )
    out = ndi.map_coordinates(conv, coords, order=1, mode="nearest")
    if background is not None:
        out = out + background
    out = np.clip(out, 0, None)
    if dose is not None:
        k = float(dose) * pixel_size_A**2 * detector_efficiency  # counts per C-peak unit
        out = rng.poisson(out * k) / k
    lag = 0.0
    if afterglow_px > 0:
        a = float(np.exp(-1.0 / afterglow_px))
        out = lfilter([1 - a], [1, -a], out, axis=1)
        lag = a / (1 - a)
    if read_noise > 0:
        out = out + rng.normal(0.0, read_noise, out.shape)
    # spot width for averaging the distortion over the rows a spot covers (approximate:
    # diffraction limit 0.51 λ/α and the source in quadrature)
    fwhm = np.hypot(0.51 * probe.wavelength_A / (probe.alpha_mrad * 1e-3), probe.source_fwhm_A)
    sigma_px = fwhm * FWHM_TO_SIGMA / pixel_size_A
    app = (
        ScanDistortion.apparent(yx / pixel_size_A, offsets, sigma_px) if scan else yx / pixel_size_A
    )
    app = app + np.array([0.0, lag])
    return out.astype(np.float32), app
