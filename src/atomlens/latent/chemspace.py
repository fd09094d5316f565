"""Chemical-space maps: the latent plane of an rVAE read as chemistry.

Following the skip-rVAE paper: decode a grid over the 2-D content-latent plane; in each
decoded image, units above an intensity threshold (0.5 of the image normalised to
[0, 1]) are atoms (blobs -> centroids); atoms ``0.5 l < d < 1.2 l`` apart are bonded
(``l`` the bond length in pixels); the rings are the bounded faces of that planar graph
(:func:`atomlens.geometry.planar_faces`, up to 8 members), and we count the 5-, 6-, 7-
and 8-membered rings touching the central atom (atom-centred descriptors) or take the
size of the ring around the centre (ring-centred, hollow-site descriptors). ``-1`` marks
unphysical decodings: no central atom, too few or fragmented atoms, smeared blobs,
crossing bonds.

Everything is batched: decoding in chunks, thresholding and blob labelling over the
whole stack at once (one 3-D labelling with in-plane connectivity), centroids with
``bincount``; only the small per-image graph step is a Python loop over images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from atomlens.errors import AtomLensError
from atomlens.geometry import planar_faces

RING_SIZES = (5, 6, 7, 8)

# reasons a decoding is unphysical (``reason`` column / map)
OK, NO_CENTRE, TOO_FEW, FRAGMENTED, SMEARED, CROSSING, NO_RING = range(7)
REASONS = ("ok", "no central atom", "too few atoms", "fragmented", "smeared blob",
           "crossing bonds", "no ring at centre")  # fmt: skip


class ChemSpaceError(AtomLensError):
    """Bad input for a chemical-space map; the message names the fix."""


def _normalise(images: np.ndarray) -> np.ndarray:
    """Min-max normalise each (h, w) image of an (N, h, w) stack to [0, 1]."""
    arr = np.asarray(images, dtype=np.float32)
    lo = arr.min(axis=(1, 2), keepdims=True)
    hi = arr.max(axis=(1, 2), keepdims=True)
    rng = np.where(hi > lo, hi - lo, 1.0)
    return (arr - lo) / rng


def find_blobs(images: np.ndarray, threshold: float = 0.5, min_area: int = 2) -> pd.DataFrame:
    """Atoms in a stack of images: connected pixels above ``threshold`` -> centroids.

    Parameters
    ----------
    images : (N, h, w) images; each is normalised to [0, 1] (min-max) first.
    threshold : fraction of the normalised intensity (paper: 0.5).
    min_area : blobs with fewer pixels are dropped (noise specks).

    Returns
    -------
    One row per blob: ``image`` (index into the stack), ``y``, ``x`` (intensity-weighted
    centroid, pixels), ``area`` (pixels), ``peak`` (max normalised intensity); sorted by
    image.
    """
    arr = _normalise(images)
    if arr.ndim != 3:
        raise ChemSpaceError(f"expected (N, h, w) images, got shape {arr.shape}")
    mask = arr > threshold
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndi.generate_binary_structure(2, 1)  # 4-connected, never across images
    lab, n = ndi.label(mask, structure=structure)
    if n == 0:
        return pd.DataFrame({"image": [], "y": [], "x": [], "area": [], "peak": []})
    flat = lab.ravel()
    on = np.flatnonzero(flat)
    ids = flat[on]
    img_idx, yy, xx = np.unravel_index(on, lab.shape)
    w = arr.ravel()[on].astype(np.float64)
    area = np.bincount(ids, minlength=n + 1)[1:]
    wsum = np.bincount(ids, weights=w, minlength=n + 1)[1:]
    cy = np.bincount(ids, weights=w * yy, minlength=n + 1)[1:] / wsum
    cx = np.bincount(ids, weights=w * xx, minlength=n + 1)[1:] / wsum
    image = np.zeros(n + 1, np.int64)
    image[ids] = img_idx  # all pixels of a label share one image
    peak = np.zeros(n + 1)
    np.maximum.at(peak, ids, w)
    out = pd.DataFrame({"image": image[1:], "y": cy, "x": cx, "area": area, "peak": peak[1:]})
    out = out[out["area"] >= min_area]
    return out.sort_values("image", kind="stable").reset_index(drop=True)


def _segments_cross(p: np.ndarray, edges: np.ndarray) -> bool:
    """Whether any two bonds (segments between points ``p`` (n, 2)) properly cross."""
    if len(edges) < 2:
        return False
    a, b = p[edges[:, 0]], p[edges[:, 1]]
    i, j = np.triu_indices(len(edges), 1)
    shared = (
        (edges[i, 0] == edges[j, 0]) | (edges[i, 0] == edges[j, 1])
        | (edges[i, 1] == edges[j, 0]) | (edges[i, 1] == edges[j, 1])
    )  # fmt: skip
    i, j = i[~shared], j[~shared]
    if len(i) == 0:
        return False

    def orient(p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
        return (p2[:, 0] - p1[:, 0]) * (p3[:, 1] - p1[:, 1]) - (p2[:, 1] - p1[:, 1]) * (
            p3[:, 0] - p1[:, 0]
        )

    o1 = orient(a[i], b[i], a[j])
    o2 = orient(a[i], b[i], b[j])
    o3 = orient(a[j], b[j], a[i])
    o4 = orient(a[j], b[j], b[i])
    return bool(np.any((o1 * o2 < 0) & (o3 * o4 < 0)))


def _point_in_polygon(y: float, x: float, poly: np.ndarray) -> bool:
    py, px = poly[:, 0], poly[:, 1]
    qy, qx = np.roll(py, -1), np.roll(px, -1)
    cond = (py > y) != (qy > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = px + (y - py) * (qx - px) / (qy - py)
    return bool(np.sum(cond & (x < xint)) % 2 == 1)


def _analyze_one(
    pts: np.ndarray,
    area: np.ndarray,
    centre: np.ndarray,
    bond_length: float,
    mode: str,
    min_atoms: int,
    smear_factor: float,
    atom_area: float,
    bond_range: tuple[float, float],
) -> tuple[int, tuple[int, ...], int, int]:
    """(reason, counts for RING_SIZES, centre ring size, n_atoms) for one image."""
    empty = (-1,) * len(RING_SIZES)
    n_all = len(pts)
    if n_all < min_atoms:
        return TOO_FEW, empty, -1, n_all
    d_c = np.hypot(pts[:, 0] - centre[0], pts[:, 1] - centre[1])
    keep = d_c < 2.8 * bond_length  # rings touching the centre lie within ~2.6 l
    pts, area, d_c = pts[keep], area[keep], d_c[keep]
    if len(pts) < min_atoms:
        return TOO_FEW, empty, -1, n_all
    if np.any(area[d_c < 1.3 * bond_length] > smear_factor * atom_area):
        return SMEARED, empty, -1, n_all
    diff = pts[:, None, :] - pts[None, :, :]
    dist = np.hypot(diff[..., 0], diff[..., 1])
    iu, ju = np.triu_indices(len(pts), 1)
    dd = dist[iu, ju]
    lo, hi = bond_range[0] * bond_length, bond_range[1] * bond_length
    bonded = (dd > lo) & (dd < hi)
    edges = np.column_stack([iu[bonded], ju[bonded]])
    if np.any(dd <= lo):
        return SMEARED, empty, -1, n_all  # two blobs closer than half a bond
    if mode == "atom":
        c = int(np.argmin(d_c))
        if d_c[c] > 0.4 * bond_length:
            return NO_CENTRE, empty, -1, n_all
        # the central atom's connected component must hold at least min_atoms atoms
        adj = np.zeros((len(pts), len(pts)), bool)
        adj[edges[:, 0], edges[:, 1]] = adj[edges[:, 1], edges[:, 0]] = True
        seen = np.zeros(len(pts), bool)
        seen[c] = True
        frontier = seen.copy()
        while frontier.any():
            frontier = adj[frontier].any(axis=0) & ~seen
            seen |= frontier
        if seen.sum() < min_atoms:
            return FRAGMENTED, empty, -1, n_all
    if _segments_cross(pts, edges):
        return CROSSING, empty, -1, n_all
    faces = planar_faces(pts, edges, max_size=max(RING_SIZES))
    if mode == "atom":
        sizes = [f.size for f in faces if c in f.nodes]
        counts = tuple(int(sum(1 for s in sizes if s == k)) for k in RING_SIZES)
        return OK, counts, -1, n_all
    # ring (hollow-site) mode: the face around the window centre
    for f in faces:
        if _point_in_polygon(centre[0], centre[1], pts[list(f.nodes)]):
            counts = tuple(int(f.size == k) for k in RING_SIZES)
            return OK, counts, f.size, n_all
    return NO_RING, empty, -1, n_all


def analyze_decoded(
    images: np.ndarray,
    bond_length: float,
    threshold: float = 0.5,
    mode: str = "atom",
    min_atoms: int = 4,
    smear_factor: float = 3.0,
    min_area: int = 2,
    bond_range: tuple[float, float] = (0.5, 1.2),
) -> pd.DataFrame:
    """Ring counts of the central atom (or the central ring) in decoded images.

    Parameters
    ----------
    images : (N, h, w) decoded (or real) windows centred on an atom / a ring centre.
    bond_length : bond length ``l`` in pixels (bonds are ``0.5 l < d < 1.2 l``).
    threshold : atom threshold on the per-image normalised intensity (paper: 0.5).
    mode : ``"atom"`` (count rings touching the atom nearest the centre) or ``"ring"``
        (size of the ring containing the centre).
    min_atoms : fewer atoms (in the window, or connected to the central atom) is
        unphysical.
    smear_factor : a blob near the centre larger than this many times the typical atom
        area is a smeared / merged decoding (unphysical).
    min_area : blobs smaller than this (pixels) are ignored.
    bond_range : bonded distances in units of ``l`` (paper: 0.5 to 1.2; Si-C bonds are
        1.77 Å = 1.25 l, so Si-doped sheets need an upper bound of ~1.3).

    Returns
    -------
    One row per image: ``ring5, ring6, ring7, ring8`` (counts; -1 when unphysical),
    ``physical`` (bool), ``reason`` (index into :data:`REASONS`), ``centre_ring``
    (ring mode: size of the central ring, -1 otherwise), ``n_atoms``.
    """
    if mode not in ("atom", "ring"):
        raise ChemSpaceError(f"mode must be 'atom' or 'ring', got {mode!r}")
    if not bond_length or bond_length <= 0:
        raise ChemSpaceError(f"bond_length must be a positive number of pixels, got {bond_length}")
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim != 3:
        raise ChemSpaceError(f"expected (N, h, w) images, got shape {arr.shape}")
    n, h, w = arr.shape
    blobs = find_blobs(arr, threshold, min_area)
    # typical isolated-atom area: median over all blobs (robust to a few merged ones)
    atom_area = float(np.median(blobs["area"])) if len(blobs) else 1.0
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    img = blobs["image"].to_numpy()
    yx = blobs[["y", "x"]].to_numpy()
    area = blobs["area"].to_numpy()
    starts = np.searchsorted(img, np.arange(n + 1))
    counts = np.full((n, len(RING_SIZES)), -1, np.int64)
    reason = np.zeros(n, np.int64)
    centre_ring = np.full(n, -1, np.int64)
    n_atoms = np.diff(starts)
    for i in range(n):
        lo, hi = starts[i], starts[i + 1]
        r, c, cr, _ = _analyze_one(
            yx[lo:hi], area[lo:hi], centre, bond_length, mode, min_atoms, smear_factor,
            atom_area, bond_range,
        )  # fmt: skip
        reason[i], counts[i], centre_ring[i] = r, c, cr
    out = pd.DataFrame(counts, columns=[f"ring{k}" for k in RING_SIZES])
    out["physical"] = reason == OK
    out["reason"] = reason
    out["centre_ring"] = centre_ring
    out["n_atoms"] = n_atoms
    return out


def _latent_axes(z: np.ndarray | None, z_range: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    if z_range is not None:
        (a1, b1), (a2, b2) = z_range
    elif z is not None:
        z = np.asarray(z, dtype=np.float64)
        lo, hi = np.percentile(z, [0.5, 99.5], axis=0)
        pad = 0.1 * (hi - lo + 1e-6)
        (a1, a2), (b1, b2) = lo - pad, hi + pad
    else:
        a1 = a2 = -3.0
        b1 = b2 = 3.0
    return np.linspace(a1, b1, n), np.linspace(a2, b2, n)


@dataclass
class ChemSpaceMap:
    """Ring counts over a grid of the 2-D content-latent plane.

    Attributes
    ----------
    z1, z2 : (G,) grid axes (latent units); map entry [i, j] is at (z1[j], z2[i]).
    counts : (G, G, 4) int ring counts for :data:`RING_SIZES` (-1 unphysical).
    reason : (G, G) int, index into :data:`REASONS`.
    centre_ring : (G, G) int, size of the ring at the centre (ring mode), else -1.
    mode : ``"atom"`` or ``"ring"``.
    bond_length : pixels.
    images : (G, G, h, w) decoded images when kept (``keep_images``), else ``None``.
    """

    z1: np.ndarray
    z2: np.ndarray
    counts: np.ndarray
    reason: np.ndarray
    centre_ring: np.ndarray
    mode: str
    bond_length: float
    images: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def ring_map(self, size: int) -> np.ndarray:
        """(G, G) count of ``size``-membered rings (-1 unphysical)."""
        return self.counts[..., RING_SIZES.index(size)]

    @property
    def physical(self) -> np.ndarray:
        return self.reason == OK

    def labels(self, sizes: tuple[int, ...] = (5, 6, 7)) -> tuple[np.ndarray, list[tuple]]:
        """Categorical overlay: (G, G) codes into a list of ring-count tuples for ``sizes``
        (code -1 = unphysical); in ring mode the tuples are ``(centre ring size,)``."""
        if self.mode == "ring":
            keys = self.centre_ring[..., None]
        else:
            keys = np.stack([self.ring_map(s) for s in sizes], axis=-1)
        flat = keys.reshape(-1, keys.shape[-1])
        ok = self.physical.ravel()
        uniq, inv = np.unique(flat[ok], axis=0, return_inverse=True)
        codes = np.full(len(flat), -1, np.int64)
        codes[ok] = inv.ravel()
        return codes.reshape(self.reason.shape), [tuple(int(v) for v in u) for u in uniq]

    def lookup(self, z: np.ndarray) -> pd.DataFrame:
        """The map's entry nearest to each latent ``z`` (N, 2) (clipped to the grid).

        Returns ``ring5..ring8``, ``physical``, ``centre_ring``, and ``inside`` (whether
        the latent lies within the mapped range).
        """
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != 2:
            raise ChemSpaceError(f"z must be (N, 2) content latents, got shape {z.shape}")
        j = np.clip(
            np.rint((z[:, 0] - self.z1[0]) / (self.z1[1] - self.z1[0])), 0, len(self.z1) - 1
        )
        i = np.clip(
            np.rint((z[:, 1] - self.z2[0]) / (self.z2[1] - self.z2[0])), 0, len(self.z2) - 1
        )
        i, j = i.astype(int), j.astype(int)
        out = pd.DataFrame(self.counts[i, j], columns=[f"ring{k}" for k in RING_SIZES])
        out["physical"] = self.physical[i, j]
        out["centre_ring"] = self.centre_ring[i, j]
        out["inside"] = (
            (z[:, 0] >= self.z1[0]) & (z[:, 0] <= self.z1[-1])
            & (z[:, 1] >= self.z2[0]) & (z[:, 1] <= self.z2[-1])
        )  # fmt: skip
        return out

    def save(self, path: str | Path) -> Path:
        """Write the arrays to an ``.npz``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path, z1=self.z1, z2=self.z2, counts=self.counts, reason=self.reason,
            centre_ring=self.centre_ring, mode=np.array(self.mode),
            bond_length=np.array(self.bond_length), ring_sizes=np.array(RING_SIZES),
        )  # fmt: skip
        return path


def decode_grid(
    model: Any,
    z1: np.ndarray,
    z2: np.ndarray,
    batch_size: int = 2048,
    channel: int | None = None,
    pose: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """Decode every (z1[j], z2[i]) pair with ``model.decode`` (angle 0 and no shift, or
    ``pose = (angle, dx, dy)``: radians, pixels; see :func:`typical_pose`).

    Returns (G2, G1, h, w) float32; multi-channel decoders are summed over channels
    (all atom classes) unless ``channel`` picks one.
    """
    zz1, zz2 = np.meshgrid(np.asarray(z1, float), np.asarray(z2, float))
    grid = np.column_stack([zz1.ravel(), zz2.ravel()]).astype(np.float32)
    at = (
        {}
        if pose is None
        else {"angle": float(pose[0]), "shift_px": (float(pose[1]), float(pose[2]))}
    )
    parts = []
    for k in range(0, len(grid), batch_size):
        out = np.asarray(model.decode(grid[k : k + batch_size], **at), dtype=np.float32)
        if out.ndim == 4:
            out = out.sum(axis=1) if channel is None else out[:, channel]
        parts.append(out)
    imgs = np.concatenate(parts)
    return imgs.reshape(len(z2), len(z1), *imgs.shape[1:])


def chemical_space_map(
    model: Any,
    bond_length: float,
    grid: int = 100,
    z: np.ndarray | None = None,
    z_range: Any = None,
    mode: str = "atom",
    threshold: float = 0.5,
    batch_size: int = 2048,
    keep_images: bool = False,
    pose: tuple[float, float, float] | None = None,
    **kwargs: Any,
) -> ChemSpaceMap:
    """Decode a ``grid x grid`` latent grid and count rings in every decoded image.

    Parameters
    ----------
    model : a fitted model with ``decode(z (n, 2)) -> (n, h, w)`` (e.g. ``SkipRVAE``).
    bond_length : ``l`` in pixels.
    grid : points per axis (paper: 12 for the manifold, 200 for the maps).
    z : encoded latents (N, 2) to size the grid (0.5-99.5 percentiles + 10 %), or
    z_range : explicit ``((z1_min, z1_max), (z2_min, z2_max))``; default ±3.
    pose : decode at ``(angle, dx, dy)`` instead of angle 0 and no shift: the encoded
        windows' :func:`typical_pose`, so that the decodings are centred on an atom the way
        the windows were (an rVAE's content at zero shift can sit off-centre).
    mode, threshold, kwargs : see :func:`analyze_decoded`.
    """
    if grid < 2:
        raise ChemSpaceError(f"grid must be at least 2 points per axis, got {grid}")
    z1, z2 = _latent_axes(z, z_range, grid)
    counts = np.empty((grid, grid, len(RING_SIZES)), np.int64)
    reason = np.empty((grid, grid), np.int64)
    centre_ring = np.empty((grid, grid), np.int64)
    kept = []
    rows_per_chunk = max(1, batch_size // grid)
    for r0 in range(0, grid, rows_per_chunk):
        r1 = min(grid, r0 + rows_per_chunk)
        imgs = decode_grid(model, z1, z2[r0:r1], batch_size, pose=pose)
        res = analyze_decoded(imgs.reshape(-1, *imgs.shape[2:]), bond_length, threshold, mode,
                              **kwargs)  # fmt: skip
        cols = [f"ring{k}" for k in RING_SIZES]
        counts[r0:r1] = res[cols].to_numpy().reshape(r1 - r0, grid, -1)
        reason[r0:r1] = res["reason"].to_numpy().reshape(r1 - r0, grid)
        centre_ring[r0:r1] = res["centre_ring"].to_numpy().reshape(r1 - r0, grid)
        if keep_images:
            kept.append(imgs)
    images = np.concatenate(kept) if keep_images else None
    meta = {} if pose is None else {"pose": [float(v) for v in pose]}
    return ChemSpaceMap(z1, z2, counts, reason, centre_ring, mode, float(bond_length), images, meta)


def typical_pose(latents: pd.DataFrame) -> tuple[float, float, float]:
    """Median ``(angle, dx, dy)`` of an rVAE's encoded windows (``model.transform``),
    the pose to decode a chemical-space map at (``chemical_space_map(..., pose=)``)."""
    missing = {"angle", "dx", "dy"} - set(latents.columns)
    if missing:
        raise ChemSpaceError(f"latents lack {sorted(missing)}; pass an rVAE's transform() table")
    return tuple(float(np.median(latents[c])) for c in ("angle", "dx", "dy"))  # type: ignore[return-value]


def agreement(
    cmap: ChemSpaceMap, z: np.ndarray, truth: pd.DataFrame, sizes: tuple[int, ...] = (5, 6, 7)
) -> dict:
    """How often the map's label at each encoded latent equals the true ring counts.

    ``truth`` has ``ring5..`` columns (atom mode) or ``size`` (ring mode), one row per
    latent. Returns ``{"agreement", "n", "unphysical", "outside"}``; unphysical lookups
    count as disagreements.
    """
    look = cmap.lookup(z)
    if cmap.mode == "ring":
        ok = look["centre_ring"].to_numpy() == truth["size"].to_numpy()
    else:
        ok = np.ones(len(look), bool)
        for s in sizes:
            ok &= look[f"ring{s}"].to_numpy() == truth[f"ring{s}"].to_numpy()
    return {
        "agreement": float(ok.mean()) if len(ok) else float("nan"),
        "n": int(len(ok)),
        "unphysical": float((~look["physical"]).mean()) if len(ok) else float("nan"),
        "outside": float((~look["inside"]).mean()) if len(ok) else float("nan"),
    }


def plot_chemspace(
    cmap: ChemSpaceMap,
    path: str | Path | None = None,
    z: np.ndarray | None = None,
    sizes: tuple[int, ...] = (5, 6, 7),
) -> Any:
    """Figure: one map per ring size (atom mode) and the categorical overlay; in ring
    mode the map of central-ring sizes. Encoded latents ``z`` are drawn on the overlay.
    Returns the matplotlib figure (saved to ``path`` when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    ext = (cmap.z1[0], cmap.z1[-1], cmap.z2[0], cmap.z2[-1])
    panels = [] if cmap.mode == "ring" else list(sizes)
    fig, axes = plt.subplots(
        1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 4), squeeze=False
    )
    axes = axes[0]
    for ax, s in zip(axes, panels):
        m = cmap.ring_map(s)
        vmax = max(3, int(m.max()))
        colours = ["#202020"] + [plt.cm.viridis(k / vmax) for k in range(vmax + 1)]
        im = ax.imshow(m, origin="lower", extent=ext, aspect="auto",
                       cmap=ListedColormap(colours), vmin=-1.5, vmax=vmax + 0.5)  # fmt: skip
        cb = fig.colorbar(im, ax=ax, ticks=range(-1, vmax + 1), shrink=0.8)
        cb.set_label(f"{s}-membered rings (-1 unphysical)")
        ax.set(title=f"{s}-rings at the central atom", xlabel="z1", ylabel="z2")
    codes, keys = cmap.labels(sizes)
    ax = axes[-1]
    cols = ["#202020"] + [plt.cm.tab20(k % 20) for k in range(len(keys))]
    ax.imshow(codes, origin="lower", extent=ext, aspect="auto", cmap=ListedColormap(cols),
              vmin=-1.5, vmax=len(keys) - 0.5, interpolation="nearest")  # fmt: skip
    frac = np.bincount(codes.ravel() + 1, minlength=len(keys) + 1) / codes.size
    order = np.argsort(frac[1:])[::-1][:10]
    names = "ring" if cmap.mode == "ring" else "/".join(str(s) for s in sizes)
    handles = [plt.Rectangle((0, 0), 1, 1, color=cols[k + 1]) for k in order]
    labels = [f"{keys[k]} ({100 * frac[k + 1]:.0f}%)" for k in order]
    handles.append(plt.Rectangle((0, 0), 1, 1, color=cols[0]))
    labels.append(f"unphysical ({100 * frac[0]:.0f}%)")
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0),
              title=f"rings {names}", title_fontsize=7)  # fmt: skip
    if z is not None and len(z):
        ax.scatter(z[:, 0], z[:, 1], s=1, c="white", alpha=0.3)
    ax.set(title="chemical-space map", xlabel="z1", ylabel="z2")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def cluster_latents(z: np.ndarray, k: int, method: str = "gmm", seed: int = 0) -> np.ndarray:
    """Cluster latents ``z`` (N, d) into ``k`` groups (``"gmm"``: Gaussian mixture, full
    covariances, 3 restarts; ``"kmeans"``). Returns (N,) int cluster ids."""
    z = np.asarray(z, dtype=np.float64)
    if k < 1 or k > len(z):
        raise ChemSpaceError(f"need 1 <= k <= {len(z)} clusters, got {k}")
    if method == "gmm":
        from sklearn.mixture import GaussianMixture

        return GaussianMixture(n_components=k, random_state=seed, n_init=3).fit_predict(z)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=k, random_state=seed, n_init=10).fit_predict(z)
    raise ChemSpaceError(f"method must be 'gmm' or 'kmeans', got {method!r}")


def cluster_purity(clusters: np.ndarray, truth: np.ndarray) -> dict:
    """How well clusters recover a true labelling (e.g. ring sizes).

    ``purity``: sum over clusters of their largest true class, / N. ``balanced_recall``:
    mean over true classes of the share of their members in clusters whose majority is
    that class (a class no cluster is named after scores 0), which purity hides when one
    class (hexagons) dominates. ``majority_share``: purity of a single cluster.
    """
    tab = pd.crosstab(np.asarray(clusters), np.asarray(truth))
    n = tab.to_numpy().sum()
    majority = tab.idxmax(axis=1)
    recall = [
        float(tab.loc[majority[majority == c].index, c].sum() / tab[c].sum()) for c in tab.columns
    ]
    return {
        "purity": float(tab.max(axis=1).sum() / n),
        "balanced_recall": float(np.mean(recall)),
        "majority_share": float(tab.sum(axis=0).max() / n),
    }
