"""Training structures and images for the atom finder.

Two halves, kept apart so either can be swapped:

* structures: graphene patches with Si dopants, vacancies, Stone-Wales defects, holes
  with edges and grain boundaries, as atom positions in Å plus species
  (:func:`graphene_patch`), or crops of :mod:`atomlens.simulate` truth tables;
* imaging: a fast incoherent (Gaussian-probe) renderer at any pixel size with a wide
  range of probe sizes, Si/C contrast, film background, contamination, gradients,
  scan jitter, Poisson + read noise (:func:`render_sample`), and the label mask (a disk
  per atom, value = class index) that matches it (:func:`label_mask`).

Geometric augmentation (rotation, zoom = pixel-size error, shear, flips, jitter) is
applied to the coordinates before rendering, so labels are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

CC_BOND_A = 1.42  # graphene C-C bond length, Å
LATTICE_A = CC_BOND_A * np.sqrt(3.0)  # graphene lattice constant, 2.46 Å


@dataclass
class Patch:
    """Atom positions of a structure.

    yx_A : (N, 2) float positions in Å; species : (N,) str array ('C', 'Si', ...);
    film : callable-free description of the film region as a boolean raster is made by
    the renderer from ``hole_centres_A`` / ``hole_radii_A`` (vacuum where holes are).
    """

    yx_A: np.ndarray
    species: np.ndarray
    size_A: float
    hole_centres_A: np.ndarray
    hole_radii_A: np.ndarray


def _lattice(size_A: float, angle: float, offset: np.ndarray, strain: np.ndarray) -> np.ndarray:
    """Graphene atoms covering a ``size_A`` square (Å), rotated and strained; (N, 2) yx."""
    a = LATTICE_A
    a1 = np.array([a, 0.0])
    a2 = np.array([a / 2, a * np.sqrt(3) / 2])
    basis = np.array([[0.0, 0.0], (a1 + a2) / 3])
    n = int(np.ceil(size_A * 1.5 / a)) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    cells = i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2
    pts = (cells[:, None, :] + basis[None]).reshape(-1, 2)  # (x, y) in the lattice frame
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    pts = pts @ (rot @ strain).T + offset
    yx = pts[:, ::-1] + size_A / 2
    keep = np.all((yx > -2) & (yx < size_A + 2), axis=1)
    return yx[keep]


def graphene_patch(size_A: float, rng: np.random.Generator, *, si_frac: float | None = None,
                   defects: bool = True) -> Patch:
    """A random graphene structure in a ``size_A`` x ``size_A`` Å square.

    Random orientation and small strain; Si substitutions (isolated and clustered),
    vacancies, Stone-Wales rotations, holes (vacuum, edge atoms kept, Si often at edges)
    and, sometimes, a grain boundary between two rotated grains. Positions in Å.
    """
    strain = np.eye(2) + rng.normal(0, 0.012, (2, 2))
    yx = _lattice(size_A, rng.uniform(0, np.pi / 3), rng.uniform(-2, 2, 2), strain)
    if defects and rng.random() < 0.25:  # grain boundary: a second grain across a line
        yx2 = _lattice(size_A, rng.uniform(0, np.pi / 3), rng.uniform(-2, 2, 2), strain)
        theta = rng.uniform(0, np.pi)
        normal = np.array([np.cos(theta), np.sin(theta)])
        c0 = size_A / 2 + rng.uniform(-0.3, 0.3) * size_A
        wav = rng.uniform(0, 3)
        k = rng.uniform(0.05, 0.3)

        def side(p: np.ndarray) -> np.ndarray:
            t = p @ np.array([-normal[1], normal[0]])
            return (p @ normal) - c0 - wav * np.sin(k * t)

        a, b = yx[side(yx) < 0], yx2[side(yx2) >= 0]
        if len(a) and len(b):
            from scipy.spatial import cKDTree

            d, _ = cKDTree(a).query(b)
            b = b[d > 1.15]
        yx = np.concatenate([a, b])
    n = len(yx)
    species = np.full(n, "C", dtype=object)
    holes_c = np.zeros((0, 2))
    holes_r = np.zeros(0)
    keep = np.ones(n, bool)
    if defects:
        # Stone-Wales-like bond rotations
        from scipy.spatial import cKDTree

        tree = cKDTree(yx)
        for _ in range(rng.poisson(size_A**2 / 1500)):
            i = rng.integers(n)
            d, j = tree.query(yx[i], k=2)
            if d[1] < 1.6:
                j = j[1]
                mid = (yx[i] + yx[j]) / 2
                for m in (i, j):
                    v = yx[m] - mid
                    yx[m] = mid + np.array([-v[1], v[0]])
        # vacancies
        keep &= rng.random(n) > rng.uniform(0, 0.02)
        # holes
        n_holes = rng.choice([0, 0, 1, 1, 2, 3])
        if n_holes:
            holes_c = rng.uniform(0, size_A, (n_holes, 2))
            holes_r = rng.uniform(2.5, max(3.0, size_A / 5), n_holes)
            for c, r in zip(holes_c, holes_r):
                # irregular outline: radius modulated by angle
                v = yx - c
                ang = np.arctan2(v[:, 0], v[:, 1])
                rr = r * (1 + 0.25 * np.sin(3 * ang + rng.uniform(0, 6))
                          + 0.15 * np.sin(5 * ang + rng.uniform(0, 6)))
                keep &= np.hypot(v[:, 0], v[:, 1]) > rr
    yx, species = yx[keep], species[keep]
    n = len(yx)
    if n:
        frac = rng.choice([0.0, 0.003, 0.01, 0.03]) if si_frac is None else si_frac
        is_si = rng.random(n) < frac
        n_extra = rng.poisson(1.5) if si_frac is None else 0
        if n_extra:
            is_si[rng.integers(0, n, n_extra)] = True
        if defects and len(holes_c) and rng.random() < 0.6:
            # Si likes edges: dope a few atoms that have < 3 neighbours
            from scipy.spatial import cKDTree

            cnt = np.array([len(v) - 1 for v in cKDTree(yx).query_ball_point(yx, 1.7)])
            edge = np.flatnonzero(cnt < 3)
            if len(edge):
                is_si[rng.choice(edge, min(len(edge), rng.integers(1, 4)), replace=False)] = True
        if defects and rng.random() < 0.15 and is_si.any():
            # small Si clusters (dimers, trimers)
            from scipy.spatial import cKDTree

            tree = cKDTree(yx)
            for i in np.flatnonzero(is_si)[:2]:
                nb = tree.query_ball_point(yx[i], 1.7)
                is_si[rng.choice(nb, min(len(nb), 2), replace=False)] = True
        species[is_si] = "Si"
    # thermal / strain noise
    yx = yx + rng.normal(0, rng.uniform(0, 0.05), yx.shape)
    return Patch(yx, species.astype(str), float(size_A), holes_c, holes_r)


@dataclass
class Imaging:
    """Imaging parameters of one rendered sample (contrast in units of a C atom's peak)."""

    probe_fwhm_A: float = 0.8
    tail_frac: float = 0.0  # fraction of intensity in a wide probe tail
    si_ratio: float = 3.5  # Si peak / C peak
    film_bg: float = 2.0  # diffuse background on the film (not in holes)
    offset: float = 0.3  # detector offset everywhere
    gradient: float = 0.0  # amplitude of a smooth background variation
    contamination: float = 0.0  # amplitude of smooth bright blobs
    snr: float = 5.0  # C peak / noise std on the film background, at 0.2 Å/px
    read_noise: float = 0.0  # extra Gaussian noise, fraction of C peak
    jitter_px: float = 0.0  # std of per-row horizontal scan jitter (pixels)
    line_gain: float = 0.0  # std of per-row gain variation
    gamma: float = 1.0
    noise_blur_px: float = 0.0
    amorphous: float = 0.0  # level of textured amorphous cover that hides atoms beneath
    amorphous_fraction: float = 0.0  # fraction of the field it covers

    @classmethod
    def random(cls, rng: np.random.Generator) -> Imaging:
        """A draw covering the experimental range (probe 0.6-1.3 Å FWHM, SNR 1-40...)."""
        return cls(
            probe_fwhm_A=rng.uniform(0.6, 1.3),
            tail_frac=rng.uniform(0, 0.3) if rng.random() < 0.5 else 0.0,
            si_ratio=rng.uniform(1.8, 6.0),
            film_bg=rng.uniform(0, 5),
            offset=rng.uniform(0, 2),
            gradient=rng.uniform(0, 1.5) if rng.random() < 0.5 else 0.0,
            contamination=rng.uniform(0.3, 4) if rng.random() < 0.3 else 0.0,
            snr=float(np.exp(rng.uniform(np.log(1.3), np.log(40)))),
            read_noise=rng.uniform(0, 0.3) if rng.random() < 0.3 else 0.0,
            jitter_px=rng.uniform(0, 0.4) if rng.random() < 0.3 else 0.0,
            line_gain=rng.uniform(0, 0.05) if rng.random() < 0.2 else 0.0,
            gamma=rng.uniform(0.75, 1.35) if rng.random() < 0.3 else 1.0,
            noise_blur_px=rng.uniform(0, 0.7) if rng.random() < 0.3 else 0.0,
            amorphous=rng.uniform(0.4, 2.5) if rng.random() < 0.35 else 0.0,
            amorphous_fraction=rng.uniform(0.03, 0.35),
        )


def _splat(yx: np.ndarray, w: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear deposit of weights ``w`` at sub-pixel positions ``yx`` (pixels)."""
    img = np.zeros(shape, np.float64)
    y0 = np.floor(yx[:, 0]).astype(int)
    x0 = np.floor(yx[:, 1]).astype(int)
    fy, fx = yx[:, 0] - y0, yx[:, 1] - x0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            ok = (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
            np.add.at(img, (yy[ok], xx[ok]), (w * wy * wx)[ok])
    return img


def _smooth_field(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    f = ndi.gaussian_filter(rng.normal(size=shape), sigma, mode="wrap")
    return f / (f.std() + 1e-12)


def render_positions(yx_px: np.ndarray, species: np.ndarray, shape: tuple[int, int],
                     pixel_size: float, im: Imaging, rng: np.random.Generator,
                     film: np.ndarray | None = None, weights: np.ndarray | None = None,
                     extra: np.ndarray | None = None) -> np.ndarray:
    """Render atoms at ``yx_px`` (pixels) into a noisy ``shape`` image (float32).

    Units: the noiseless C peak is 1; noise is scaled so that ``im.snr`` holds at a
    0.2 Å/px sampling (a finer pixel gets proportionally fewer counts, like a detector).
    ``film`` (Y, X) bool marks where the graphene film is (background ``film_bg``);
    ``weights`` (N,) scale each atom (e.g. partial contamination cover); ``extra`` (Y, X)
    is added signal (e.g. amorphous contamination) before noise.
    """
    sigma_px = im.probe_fwhm_A / 2.3548 / pixel_size
    w = np.where(species == "Si", im.si_ratio, 1.0) * rng.uniform(0.9, 1.1, len(species))
    if weights is not None:
        w = w * weights
    delta = _splat(yx_px, w, shape)
    sig = ndi.gaussian_filter(delta, sigma_px, mode="constant") * (2 * np.pi * sigma_px**2)
    if im.tail_frac > 0:
        tail = ndi.gaussian_filter(delta, 3 * sigma_px, mode="constant") * (2 * np.pi * sigma_px**2)
        sig = (1 - im.tail_frac) * sig + im.tail_frac * tail
    if film is None:
        film = np.ones(shape, bool)
    film_f = ndi.gaussian_filter(film.astype(float), max(sigma_px, 1.0))
    bg = im.offset + im.film_bg * film_f
    if im.gradient:
        bg = bg + im.gradient * (0.5 + 0.5 * _smooth_field(shape, max(shape) / 4, rng))
        yy, xx = np.mgrid[: shape[0], : shape[1]] / max(shape)
        bg = bg + im.gradient * 0.5 * (rng.normal() * yy + rng.normal() * xx)
    if im.contamination:
        blob = _smooth_field(shape, rng.uniform(4, 12) * 0.2 / pixel_size, rng)
        bg = bg + im.contamination * np.clip(blob - 0.8, 0, None)
    if extra is not None:
        bg = bg + extra
    clean = np.clip(sig + bg, 0, None)
    if im.gamma != 1.0:
        clean = clean ** im.gamma
    # counts per pixel: snr at 0.2 Å/px on the film background; scale by pixel area
    ref_bg = max(im.offset + im.film_bg, 0.3)
    k = im.snr**2 / ref_bg * (pixel_size / 0.2) ** 2
    noisy = rng.poisson(clean * k) / k
    if im.read_noise:
        noisy = noisy + rng.normal(0, im.read_noise, shape) * (0.2 / pixel_size)
    if im.line_gain:
        noisy = noisy * (1 + rng.normal(0, im.line_gain, (shape[0], 1)))
    if im.noise_blur_px:
        noisy = ndi.gaussian_filter(noisy, im.noise_blur_px)
    return noisy.astype(np.float32)


def label_mask(yx_px: np.ndarray, cls_index: np.ndarray, shape: tuple[int, int],
               radius_px: float) -> np.ndarray:
    """(Y, X) uint8 mask: a disk of ``radius_px`` around each atom, value = class index.

    Higher class indices win where disks overlap (a dopant is never hidden by C).
    """
    mask = np.zeros(shape, np.uint8)
    r = int(np.ceil(radius_px))
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    order = np.argsort(cls_index, kind="stable")
    yx, ci = yx_px[order], cls_index[order]
    cy = np.round(yx[:, 0]).astype(int)
    cx = np.round(yx[:, 1]).astype(int)
    py = cy[:, None] + oy.ravel()[None]
    px = cx[:, None] + ox.ravel()[None]
    d2 = (py - yx[:, :1]) ** 2 + (px - yx[:, 1:]) ** 2
    ok = (d2 <= radius_px**2) & (py >= 0) & (py < shape[0]) & (px >= 0) & (px < shape[1])
    val = np.broadcast_to(ci[:, None], py.shape)
    mask[py[ok], px[ok]] = val[ok]  # later (higher-class) writes win
    return mask


def amorphous_cover(shape: tuple[int, int], pixel_size: float, fraction: float, level: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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


def geometric_transform(yx_A: np.ndarray, size_A: float, rng: np.random.Generator,
                        shear: float = 0.06) -> np.ndarray:
    """Random flip + shear (+/- ``shear``) about the patch centre; positions in Å."""
    c = size_A / 2
    m = np.eye(2) + rng.uniform(-shear, shear, (2, 2)) * np.array([[0.3, 1], [1, 0.3]])
    if rng.random() < 0.5:
        m = m @ np.diag([1.0, -1.0])
    return (yx_A - c) @ m.T + c


def render_sample(patch: Patch, shape: tuple[int, int], pixel_size: float, *,
                  classes: tuple[str, ...], radius_A: float, rng: np.random.Generator,
                  imaging: Imaging | None = None, label_pixel_size: float | None = None,
                  zoom_range: tuple[float, float] = (1.0, 1.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render a patch crop: (image (Y, X) float32, mask (Y, X) uint8, yx_px (N, 2), cls (N,)).

    ``pixel_size`` is the nominal Å/px of the output; the true sampling differs by a
    factor drawn from ``zoom_range`` (simulating a wrong pixel-size calibration).
    Atoms are labelled with disks of ``radius_A`` (in nominal pixels).
    """
    im = imaging or Imaging.random(rng)
    true_px = pixel_size * rng.uniform(*zoom_range)
    yx_A = geometric_transform(patch.yx_A, patch.size_A, rng)
    span_A = np.array(shape) * true_px
    origin = (patch.size_A - span_A) / 2
    yx_px = (yx_A - origin) / true_px
    if im.jitter_px:
        row_shift = np.cumsum(rng.normal(0, im.jitter_px * 0.3, shape[0] + 2))
        row_shift = row_shift - row_shift.mean() + rng.normal(0, im.jitter_px, shape[0] + 2)
        rows = np.clip(np.round(yx_px[:, 0]).astype(int) + 1, 0, shape[0] + 1)
        yx_px = yx_px.copy()
        yx_px[:, 1] += row_shift[rows]
    species = patch.species
    film = film_mask(yx_px, shape, 1.6 / true_px)
    weights = extra = None
    if im.amorphous > 0:
        # amorphous contamination: soft cover from a coarse field (~8 Å), textured at
        # ~1.2 Å; atoms under >= 50 % cover are hidden (not imaged, not labelled)
        soft, extra = amorphous_cover(shape, true_px, im.amorphous_fraction, im.amorphous, rng)
        iy = np.clip(np.round(yx_px[:, 0]).astype(int), 0, shape[0] - 1)
        ix = np.clip(np.round(yx_px[:, 1]).astype(int), 0, shape[1] - 1)
        cover = soft[iy, ix]
        keep = cover < 0.5
        yx_px, species, weights = yx_px[keep], species[keep], 1.0 - cover[keep]
    image = render_positions(yx_px, species, shape, true_px, im, rng, film, weights, extra)
    inside = np.all((yx_px > -0.5) & (yx_px < np.array(shape) - 0.5), axis=1)
    yx_in, sp_in = yx_px[inside], species[inside]
    cls_index = np.array([classes.index(s) if s in classes else 1 for s in sp_in], np.int64)
    mask = label_mask(yx_in, cls_index, shape, radius_A / pixel_size)
    return image, mask, yx_in, sp_in
