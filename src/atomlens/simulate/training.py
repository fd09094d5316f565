"""Detector training samples: a structure rendered like a real HAADF frame, plus labels.

:class:`Imaging` is one draw of everything that makes real frames differ (probe optics,
Z-contrast exponent, dose, film background, contamination, amorphous cover, scan
distortion, detector afterglow, line gain and drop-outs, 8-bit quantisation and
clipping); :func:`render_sample` renders a :class:`~atomlens.simulate.patches.Patch`
with it through :func:`~atomlens.simulate.image.render_image` (the one renderer) and
returns the image with the atoms' apparent positions; :func:`label_mask` makes the
per-pixel class mask from those positions.

Geometric augmentation (flip, shear, pixel-size error) is applied to the coordinates
before rendering, so the labels are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from atomlens.simulate.image import render_image
from atomlens.simulate.patches import Patch
from atomlens.simulate.probe import Probe
from atomlens.simulate.scan import ScanDistortion

Z_C, Z_SI = 6.0, 14.0


@dataclass
class Imaging:
    """Imaging of one rendered sample (intensities in units of a C atom's peak).

    probe : the probe optics; ``None`` = an aberration-free 60 kV probe widened by its
        source to ``probe_fwhm_A`` (:meth:`Probe.with_fwhm`).
    si_ratio : Si peak / C peak for an isolated atom; sets the Z exponent
        ``n = ln(si_ratio) / ln(14/6)`` (n = 1.7 gives 4.2).
    snr : C peak over shot noise on the film background at 0.2 Å/px (a finer pixel gets
        proportionally fewer counts, like a detector at a fixed dose per Å²).
    film_bg, offset : diffuse film signal (not in holes) and detector offset everywhere.
    scan : scan distortion (``jitter_px`` alone makes a white per-row jitter).
    afterglow_px : detector decay length along the fast scan, pixels.
    line_dropout : chance per frame of one or a few rows lost (zero or saturated).
    quantise : 8-bit quantisation with the low tail clipped at 0 (as exported images).
    """

    probe: Probe | None = None
    probe_fwhm_A: float = 0.9
    si_ratio: float = 4.2
    film_bg: float = 0.5
    offset: float = 0.3
    gradient: float = 0.0
    contamination: float = 0.0
    snr: float = 5.0
    read_noise: float = 0.0
    jitter_px: float = 0.0
    scan: ScanDistortion | None = None
    afterglow_px: float = 0.0
    line_gain: float = 0.0
    line_dropout: float = 0.0
    gamma: float = 1.0
    amorphous: float = 0.0
    amorphous_fraction: float = 0.0
    quantise: bool = False

    @property
    def z_exponent(self) -> float:
        return float(np.log(max(self.si_ratio, 1.01)) / np.log(Z_SI / Z_C))

    def get_probe(self) -> Probe:
        return self.probe if self.probe is not None else Probe.with_fwhm(self.probe_fwhm_A)

    def get_scan(self) -> ScanDistortion | None:
        if self.scan is not None:
            return self.scan
        return ScanDistortion(jitter_px=self.jitter_px) if self.jitter_px else None

    @classmethod
    def random(cls, rng: np.random.Generator, pixel_size_A: float = 0.1) -> Imaging:
        """A draw covering real 60 kV HAADF/MAADF graphene frames: corrected probe with
        random residual aberrations (:meth:`Probe.random`), Si/C 2.5-7, C-peak SNR
        0.9-30 at 0.2 Å/px, scan distortion scaled to ``pixel_size_A``."""
        return cls(
            probe=Probe.random(rng),
            si_ratio=float(rng.uniform(2.5, 7.0)),
            film_bg=float(rng.uniform(0, 1.5)),
            offset=float(rng.uniform(0, 1.5)),
            gradient=float(rng.uniform(0, 1.0)) if rng.random() < 0.4 else 0.0,
            contamination=float(rng.uniform(0.3, 4)) if rng.random() < 0.3 else 0.0,
            snr=float(np.exp(rng.uniform(np.log(0.9), np.log(30)))),
            read_noise=float(rng.uniform(0, 0.3)) if rng.random() < 0.3 else 0.0,
            scan=ScanDistortion.random(rng, pixel_size_A),
            afterglow_px=float(rng.uniform(0.2, 1.5) * 0.1 / pixel_size_A)
            if rng.random() < 0.4
            else 0.0,
            line_gain=float(rng.uniform(0, 0.05)) if rng.random() < 0.2 else 0.0,
            line_dropout=0.15,
            gamma=float(rng.uniform(0.8, 1.25)) if rng.random() < 0.25 else 1.0,
            amorphous=float(rng.uniform(0.4, 2.5)) if rng.random() < 0.3 else 0.0,
            amorphous_fraction=float(rng.uniform(0.03, 0.35)),
            quantise=bool(rng.random() < 0.3),
        )


def _smooth_field(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian random field, correlation length ``sigma`` pixels (periodic;
    filtered in Fourier space so wide fields stay cheap)."""
    f = np.fft.rfft2(rng.normal(size=shape))
    f = np.fft.irfft2(ndi.fourier_gaussian(f, sigma, n=shape[1]), s=shape)
    return f / (f.std() + 1e-12)


def label_mask(
    yx_px: np.ndarray, cls_index: np.ndarray, shape: tuple[int, int], radius_px: float
) -> np.ndarray:
    """(Y, X) uint8 mask: a disk of ``radius_px`` around each atom, value = class index.

    Higher class indices win where disks overlap (a dopant is never hidden by C).
    """
    mask = np.zeros(shape, np.uint8)
    if len(yx_px) == 0:
        return mask
    r = int(np.ceil(radius_px))
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    order = np.argsort(cls_index, kind="stable")
    yx, ci = np.asarray(yx_px)[order], np.asarray(cls_index)[order]
    cy = np.round(yx[:, 0]).astype(int)
    cx = np.round(yx[:, 1]).astype(int)
    py = cy[:, None] + oy.ravel()[None]
    px = cx[:, None] + ox.ravel()[None]
    d2 = (py - yx[:, :1]) ** 2 + (px - yx[:, 1:]) ** 2
    ok = (d2 <= radius_px**2) & (py >= 0) & (py < shape[0]) & (px >= 0) & (px < shape[1])
    val = np.broadcast_to(ci[:, None], py.shape)
    mask[py[ok], px[ok]] = val[ok]  # later (higher-class) writes win
    return mask


def amorphous_cover(
    shape: tuple[int, int],
    pixel_size: float,
    fraction: float,
    level: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Amorphous contamination: (soft cover 0..1, added intensity), both (Y, X)."""
    coarse = _smooth_field(shape, 8.0 / 2.5 / pixel_size, rng)
    texture = _smooth_field(shape, 1.2 / 2.5 / pixel_size, rng)
    thr = float(np.quantile(coarse, 1.0 - fraction))
    soft = np.clip((coarse - thr) / (0.25 * coarse.std()), 0.0, 1.0)
    amp = rng.uniform(0.2, 0.6)
    return soft, soft * level * np.clip(1.0 + amp * texture, 0.2, None)


def film_mask(yx_px: np.ndarray, shape: tuple[int, int], reach_px: float) -> np.ndarray:
    """(Y, X) bool: pixels within ``reach_px`` of an atom (the film; the rest is vacuum)."""
    pad = int(np.ceil(reach_px)) + 1
    occ = np.ones((shape[0] + 2 * pad, shape[1] + 2 * pad), bool)
    iy = np.round(yx_px[:, 0]).astype(int) + pad
    ix = np.round(yx_px[:, 1]).astype(int) + pad
    ok = (iy >= 0) & (iy < occ.shape[0]) & (ix >= 0) & (ix < occ.shape[1])
    occ[iy[ok], ix[ok]] = False
    return (ndi.distance_transform_edt(occ) < reach_px)[pad:-pad, pad:-pad]


def geometric_transform(
    yx_A: np.ndarray, size_A: float, rng: np.random.Generator, shear: float = 0.06
) -> np.ndarray:
    """Random flip + shear (+/- ``shear``) about the patch centre; positions in Å."""
    c = size_A / 2
    m = np.eye(2) + rng.uniform(-shear, shear, (2, 2)) * np.array([[0.3, 1], [1, 0.3]])
    if rng.random() < 0.5:
        m = m @ np.diag([1.0, -1.0])
    return (yx_A - c) @ m.T + c


def _background(
    shape: tuple[int, int],
    pixel_size: float,
    im: Imaging,
    film: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Offset + film signal + gradients + bright contamination blobs (C-peak units)."""
    film_f = ndi.gaussian_filter(film.astype(float), max(0.4 / pixel_size, 1.0))
    bg = im.offset + im.film_bg * film_f
    if im.gradient:
        bg = bg + im.gradient * (0.5 + 0.5 * _smooth_field(shape, max(shape) / 4, rng))
        yy, xx = np.mgrid[: shape[0], : shape[1]] / max(shape)
        bg = bg + im.gradient * 0.5 * (rng.normal() * yy + rng.normal() * xx)
    if im.contamination:
        blob = _smooth_field(shape, rng.uniform(4, 12) * 0.2 / pixel_size, rng)
        bg = bg + im.contamination * np.clip(blob - 0.8, 0, None)
    return bg


def _detector(img: np.ndarray, im: Imaging, rng: np.random.Generator) -> np.ndarray:
    """Row gain, gamma, line drop-outs and 8-bit export on a rendered image."""
    out = img.astype(np.float64)
    if im.line_gain:
        out = out * (1 + rng.normal(0, im.line_gain, (out.shape[0], 1)))
    if im.gamma != 1.0:
        out = np.clip(out, 0, None) ** im.gamma
    if im.line_dropout and rng.random() < im.line_dropout:
        r0 = int(rng.integers(0, out.shape[0]))
        n = int(rng.integers(1, 3))
        hi = np.percentile(out, 99.9)
        out[r0 : r0 + n] = 0.0 if rng.random() < 0.6 else hi * rng.uniform(1, 2)
    if im.quantise:
        lo, hi = np.percentile(out, [rng.uniform(0, 8), 99.95])
        out = np.round(np.clip((out - lo) / max(hi - lo, 1e-9), 0, 1) * 255) / 255
    return out.astype(np.float32)


def render_positions(
    yx_px: np.ndarray,
    species: np.ndarray,
    shape: tuple[int, int],
    pixel_size: float,
    im: Imaging,
    rng: np.random.Generator,
    film: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    extra: np.ndarray | None = None,
) -> np.ndarray:
    """Render atoms at ``yx_px`` (pixels, no scan distortion) into a noisy ``shape``
    image (float32), C-peak units, with ``im``'s probe, background and noise.
    ``film`` (Y, X) bool marks the graphene film; ``weights`` (N,) scale atoms;
    ``extra`` (Y, X) is added signal before noise."""
    film = np.ones(shape, bool) if film is None else film
    bg = _background(shape, pixel_size, im, film, rng)
    if extra is not None:
        bg = bg + extra
    img, _ = _render(
        np.asarray(yx_px, float) * pixel_size,
        species,
        shape,
        pixel_size,
        im,
        rng,
        weights,
        bg,
        scan=None,
    )
    return _detector(img, im, rng)


def _render(
    yx_A: np.ndarray,
    species: np.ndarray,
    shape: tuple[int, int],
    pixel_size: float,
    im: Imaging,
    rng: np.random.Generator,
    weights: np.ndarray | None,
    bg: np.ndarray,
    scan: ScanDistortion | None,
) -> tuple[np.ndarray, np.ndarray]:
    ref_bg = max(im.offset + im.film_bg, 0.3)
    counts_per_unit = im.snr**2 / ref_bg * (pixel_size / 0.2) ** 2
    eff = 0.05
    dose = counts_per_unit / (pixel_size**2 * eff)
    return render_image(
        yx_A,
        species,
        shape,
        pixel_size,
        im.get_probe(),
        rng,
        z_exponent=im.z_exponent,
        weights=rng.uniform(0.9, 1.1, len(yx_A)) * (1 if weights is None else weights),
        dose=dose,
        detector_efficiency=eff,
        read_noise=im.read_noise * (0.2 / pixel_size),
        afterglow_px=im.afterglow_px,
        scan=scan,
        background=bg,
    )


def render_sample(
    patch: Patch,
    shape: tuple[int, int],
    pixel_size: float,
    *,
    classes: tuple[str, ...],
    radius_A: float,
    rng: np.random.Generator,
    imaging: Imaging | None = None,
    label_pixel_size: float | None = None,
    zoom_range: tuple[float, float] = (1.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render the centre of ``patch``: (image (Y, X) float32, mask (Y, X) uint8,
    yx_px (N, 2) apparent positions of the atoms inside, species (N,)).

    ``pixel_size`` is the nominal Å/px of the output; the true sampling differs by a
    factor drawn from ``zoom_range`` (a wrong pixel-size calibration). Atoms are
    labelled with disks of ``radius_A`` (nominal). Atoms under ≥ 50 % amorphous cover
    are neither imaged nor labelled.
    """
    im = imaging or Imaging.random(rng, pixel_size)
    true_px = pixel_size * rng.uniform(*zoom_range)
    yx_A = geometric_transform(patch.yx_A, patch.size_A, rng)
    span_A = (np.array(shape) - 1) * true_px
    yx_A = yx_A - (patch.size_A - span_A) / 2  # centre the field on the patch
    yx_px0 = yx_A / true_px
    species = patch.species
    film = film_mask(yx_px0, shape, 1.6 / true_px)
    bg = _background(shape, true_px, im, film, rng)
    weights = None
    if im.amorphous > 0:
        soft, extra = amorphous_cover(shape, true_px, im.amorphous_fraction, im.amorphous, rng)
        iy = np.clip(np.round(yx_px0[:, 0]).astype(int), 0, shape[0] - 1)
        ix = np.clip(np.round(yx_px0[:, 1]).astype(int), 0, shape[1] - 1)
        cover = soft[iy, ix]
        keep = cover < 0.5
        yx_A, species, weights = yx_A[keep], species[keep], 1.0 - cover[keep]
        bg = bg + extra
    img, yx_px = _render(yx_A, species, shape, true_px, im, rng, weights, bg, im.get_scan())
    img = _detector(img, im, rng)
    inside = np.all((yx_px > -0.5) & (yx_px < np.array(shape) - 0.5), axis=1)
    yx_in, sp_in = yx_px[inside], species[inside]
    cls_index = np.array([classes.index(s) if s in classes else 1 for s in sp_in], np.int64)
    mask = label_mask(yx_in, cls_index, shape, radius_A / pixel_size)
    return img, mask, yx_in, sp_in
