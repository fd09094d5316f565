"""Projected atom-column structures of common materials, for the general atom finder.

Every builder returns a :class:`Columns`: one row per (column, species) with its
position in Å (top view, the beam along the zone axis), atomic number and the number of
atoms of that species in the column (a thickness). A mixed column (Ti-O along
perovskite [001]) is two rows at the same position; :func:`column_amplitudes` sums them
for a Z-contrast exponent, and :func:`visible` says which columns a detector should
report (those at least a fraction as bright as the brightest column: O is invisible in
HAADF next to Sr but shows in ABF, where the exponent is low).

Structures (lattice constants in Å from the literature, rounded):

* :func:`tmd_2h`: MX2 transition-metal dichalcogenides (MoS2, WS2, MoSe2, WSe2), 2H
  monolayer along c: M at the hexagonal lattice points, the X2 column at (1/3, 2/3);
* :func:`perovskite`: ABO3 cubic perovskites (SrTiO3, BaTiO3, LaMnO3, PbTiO3...) along
  [001] (A; B-O; O on a square lattice of a/2) and [110] (A-O; B; O);
* :func:`fcc`: fcc metals (Au, Pt, Pd, Ag, Cu, Ni, Al) along [001], [110], [111];
* :func:`honeycomb_2d`: graphene and hBN monolayers;
* :func:`single_atoms`: sparse heavy atoms (and small clusters) on an amorphous carbon
  support, the support's atoms given as unlabelled background.

:func:`random_structure` draws one of them with a random orientation, strain, vacancies,
crystal edges and support, as a training sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Z = {
    "B": 5,
    "C": 6,
    "N": 7,
    "O": 8,
    "S": 16,
    "Ti": 22,
    "Mn": 25,
    "Fe": 26,
    "Ni": 28,
    "Cu": 29,
    "Se": 34,
    "Sr": 38,
    "Mo": 42,
    "Pd": 46,
    "Ag": 47,
    "Ba": 56,
    "La": 57,
    "W": 74,
    "Ir": 77,
    "Pt": 78,
    "Au": 79,
    "Pb": 82,
    "Al": 13,
}

TMDS = {
    "MoS2": ("Mo", "S", 3.16),
    "WS2": ("W", "S", 3.15),
    "MoSe2": ("Mo", "Se", 3.29),
    "WSe2": ("W", "Se", 3.28),
}
PEROVSKITES = {
    "SrTiO3": ("Sr", "Ti", 3.905),
    "BaTiO3": ("Ba", "Ti", 4.00),
    "LaMnO3": ("La", "Mn", 3.95),
    "PbTiO3": ("Pb", "Ti", 3.90),
    "LaFeO3": ("La", "Fe", 3.93),
}
FCC = {"Au": 4.08, "Pt": 3.92, "Pd": 3.89, "Ag": 4.09, "Cu": 3.61, "Ni": 3.52, "Al": 4.05}
HEAVY = ("Pt", "Au", "Ir", "W", "Pd", "Mo")


@dataclass
class Columns:
    """Projected columns of a structure.

    yx_A : (N, 2) positions (Å) of each (column, species) row.
    z : (N,) atomic numbers.
    count : (N,) atoms of that species in the column (thickness).
    column : (N,) column index; rows with the same index sit at the same position.
    support : (N,) True for atoms of an amorphous support (never labelled).
    min_spacing_A : the closest distance between two columns of the ideal structure.
    name : what it is (e.g. ``"SrTiO3 [001]"``).
    """

    yx_A: np.ndarray
    z: np.ndarray
    count: np.ndarray
    column: np.ndarray
    support: np.ndarray
    min_spacing_A: float
    name: str

    def __len__(self) -> int:
        return len(self.z)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _tile(
    cell: np.ndarray,
    sites: list[tuple[float, float, list[tuple[str, float]]]],
    size_A: float,
    angle: float,
    strain: np.ndarray,
    offset: np.ndarray,
    min_spacing_A: float,
    name: str,
) -> Columns:
    """Tile a 2-D cell (rows a1, a2 in (x, y) Å) with fractional ``sites`` (u, v,
    [(species, count), ...]) over a ``size_A`` square, rotated by ``angle`` (rad)."""
    c, s = np.cos(angle), np.sin(angle)
    m = np.array([[c, -s], [s, c]]) @ strain
    reach = size_A * 0.75 + 2 * np.linalg.norm(cell, axis=1).max()
    n = int(np.ceil(reach / min(np.linalg.norm(cell, axis=1)))) + 1
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    lat = i.reshape(-1, 1) * cell[0] + j.reshape(-1, 1) * cell[1]
    yx, zz, cnt, col = [], [], [], []
    k = 0
    for u, v, species in sites:
        p = (lat + u * cell[0] + v * cell[1]) @ m.T + offset
        p = p[:, ::-1] + size_A / 2  # (x, y) -> (y, x), centred in the square
        keep = np.all((p > -3) & (p < size_A + 3), axis=1)
        p = p[keep]
        ids = np.arange(k, k + len(p))
        k += len(p)
        for sp, count in species:
            yx.append(p)
            zz.append(np.full(len(p), Z[sp]))
            cnt.append(np.full(len(p), float(count)))
            col.append(ids)
    yx_a = np.concatenate(yx)
    return Columns(
        yx_a,
        np.concatenate(zz),
        np.concatenate(cnt),
        np.concatenate(col),
        np.zeros(len(yx_a), bool),
        float(min_spacing_A * np.linalg.det(strain) ** 0.5),
        name,
    )


def _orientation(rng: np.random.Generator) -> tuple[float, np.ndarray, np.ndarray]:
    angle = rng.uniform(0, 2 * np.pi)
    strain = np.eye(2) + rng.normal(0, 0.01, (2, 2))
    return angle, strain, rng.uniform(-3, 3, 2)


def tmd_2h(size_A: float, rng: np.random.Generator, name: str | None = None) -> Columns:
    """A 2H MX2 monolayer (top view): M at (0, 0), X2 at (1/3, 2/3) of the hexagonal cell."""
    name = name or str(rng.choice(list(TMDS)))
    m, x, a = TMDS[name]
    cell = np.array([[a, 0.0], [a / 2, a * np.sqrt(3) / 2]])
    sites = [(0.0, 0.0, [(m, 1)]), (1 / 3, 1 / 3, [(x, 2)])]  # (1/3,1/3) in this basis
    return _tile(cell, sites, size_A, *_orientation(rng), a / np.sqrt(3), f"{name} 2H")


def perovskite(
    size_A: float,
    rng: np.random.Generator,
    zone: str | None = None,
    name: str | None = None,
    thickness: float | None = None,
) -> Columns:
    """A cubic ABO3 perovskite along [001] or [110] (``thickness`` unit cells)."""
    name = name or str(rng.choice(list(PEROVSKITES)))
    zone = zone or str(rng.choice(["001", "001", "110"]))
    a_sp, b_sp, a = PEROVSKITES[name]
    t = float(thickness if thickness is not None else rng.uniform(5, 40))
    if zone == "001":
        cell = np.array([[a, 0.0], [0.0, a]])
        sites = [
            (0.0, 0.0, [(a_sp, t)]),
            (0.5, 0.5, [(b_sp, t), ("O", t)]),
            (0.5, 0.0, [("O", t)]),
            (0.0, 0.5, [("O", t)]),
        ]
        dmin = a / 2
    elif zone == "110":
        cell = np.array([[a / np.sqrt(2), 0.0], [0.0, a]])  # t per a*sqrt(2) repeat
        sites = [
            (0.0, 0.0, [(a_sp, t), ("O", t)]),
            (0.0, 0.5, [(b_sp, t)]),
            (0.5, 0.5, [("O", 2 * t)]),
        ]
        dmin = a / (2 * np.sqrt(2))  # B to its O neighbours along [1-10]
    else:
        raise ValueError(f"perovskite zone must be '001' or '110', got {zone!r}")
    return _tile(cell, sites, size_A, *_orientation(rng), dmin, f"{name} [{zone}]")


def fcc(
    size_A: float,
    rng: np.random.Generator,
    zone: str | None = None,
    element: str | None = None,
    thickness: float | None = None,
) -> Columns:
    """An fcc metal along [001] (square, a/2), [110] (centred a/√2 x a) or [111]
    (triangular, a/√6)."""
    element = element or str(rng.choice(list(FCC)))
    zone = zone or str(rng.choice(["001", "110", "111"]))
    a = FCC[element]
    t = float(thickness if thickness is not None else rng.uniform(3, 30))
    if zone == "001":
        cell = np.array([[a / 2, 0.0], [0.0, a / 2]])
        sites = [(0.0, 0.0, [(element, t)])]
        dmin = a / 2
    elif zone == "110":
        cell = np.array([[a / np.sqrt(2), 0.0], [0.0, a]])
        sites = [(0.0, 0.0, [(element, t)]), (0.5, 0.5, [(element, t)])]
        dmin = min(a / np.sqrt(2), np.hypot(a / (2 * np.sqrt(2)), a / 2))
    elif zone == "111":
        # the stacking positions A, B, C together fill a triangular lattice of a/√6
        d = a / np.sqrt(6)
        cell = np.array([[d, 0.0], [d / 2, d * np.sqrt(3) / 2]])
        sites = [(0.0, 0.0, [(element, t)])]
        dmin = d
    else:
        raise ValueError(f"fcc zone must be '001', '110' or '111', got {zone!r}")
    return _tile(cell, sites, size_A, *_orientation(rng), dmin, f"{element} [{zone}]")


def honeycomb_2d(size_A: float, rng: np.random.Generator, name: str | None = None) -> Columns:
    """A graphene (C, C) or hBN (B, N) monolayer, 1.42-1.45 Å bonds."""
    name = name or str(rng.choice(["graphene", "hBN"]))
    a, s1, s2 = (2.46, "C", "C") if name == "graphene" else (2.50, "B", "N")
    cell = np.array([[a, 0.0], [a / 2, a * np.sqrt(3) / 2]])
    sites = [(0.0, 0.0, [(s1, 1)]), (1 / 3, 1 / 3, [(s2, 1)])]
    return _tile(cell, sites, size_A, *_orientation(rng), a / np.sqrt(3), name)


def amorphous_support(
    size_A: float,
    rng: np.random.Generator,
    density: float | None = None,
    points_per_A2: float = 150.0,
    texture: float | None = None,
) -> Columns:
    """Random carbon (``density`` C atoms/Å², default 0.2-3 ≈ 1-15 layers), unlabelled.

    A thick film is drawn as at most ``points_per_A2`` random points per Å², each
    standing for ``density / points`` atoms, thinned by a smooth thickness field
    (variations on a 3-15 Å scale, relative amplitude ``texture``: default log-uniform
    2-50 % of the film, in 80 % of draws) so it shows the blotchy texture of real
    supports. A thick film with a weak texture is what a catalyst support looks like:
    on ``pt_single_atoms`` the 1-10 Å texture is ~6 % of the film level (0.25 x a Pt
    atom's peak on a film 4.4 x that peak); a strong texture on a thick film buries
    single atoms in blobs brighter than they are.
    """
    rho = float(density if density is not None else np.exp(rng.uniform(np.log(0.2), np.log(3.0))))
    pts = min(rho, points_per_A2)
    n = rng.poisson(pts * (size_A + 6) ** 2)
    yx = rng.uniform(-3, size_A + 3, (n, 2))
    count = np.full(n, rho / pts)
    tex = float(texture) if texture is not None else _log_uniform(rng, 0.02, 0.5)
    if n and (texture is not None or rng.random() < 0.8):
        g = max(8, int((size_A + 6) / 1.0))
        from scipy import ndimage as ndi

        f = ndi.gaussian_filter(rng.normal(size=(g, g)), rng.uniform(3, 15) * g / (size_A + 6))
        f /= f.std() + 1e-12
        idx = np.clip(((yx + 3) / (size_A + 6) * g).astype(int), 0, g - 1)
        count = count * np.clip(1 + tex * f[idx[:, 0], idx[:, 1]], 0.05, None)
    return Columns(
        yx,
        np.full(n, Z["C"]),
        count,
        np.arange(n),
        np.ones(n, bool),
        1.0,
        f"amorphous C {rho:.2f}/Å²",
    )


def single_atoms(
    size_A: float,
    rng: np.random.Generator,
    element: str | None = None,
    density: float | None = None,
    *,
    support_ratio: float | None = None,
    lumps: float | None = None,
) -> Columns:
    """Sparse heavy atoms (``density`` per Å², default 0.002-0.03; at least 2 Å apart,
    a third in pairs or small clusters) on an amorphous carbon support whose mean level
    is 0.05-6 x a heavy atom's peak (thin film to thick catalyst support; or
    ``support_ratio``) and whose lumps are 0.03-1 x that peak (at most 50 % of the film;
    or ``lumps``); a support edge (vacuum beyond) in 40 % of draws. Giving
    ``support_ratio`` / ``lumps`` leaves every other draw unchanged."""
    element = element or str(rng.choice(HEAVY))
    rho = float(
        density if density is not None else np.exp(rng.uniform(np.log(0.002), np.log(0.03)))
    )
    n = rng.poisson(rho * size_A**2)
    pts: list[np.ndarray] = []
    while len(pts) < n:
        p = rng.uniform(0, size_A, 2)
        if rng.random() < 0.3 and pts:  # a neighbour of an existing atom: pairs, clusters
            p = pts[rng.integers(len(pts))] + rng.normal(0, 1, 2) / 1.0
            p = pts[-1] + (p - pts[-1]) / max(np.linalg.norm(p - pts[-1]), 1e-6) * rng.uniform(
                2.2, 3.2
            )
        if all(np.linalg.norm(p - q) > 2.0 for q in pts):
            pts.append(p)
        elif rng.random() < 0.05:
            break
    yx = np.array(pts).reshape(-1, 2)
    # support level relative to one heavy atom's peak (HAADF, n = 1.7, ~2 Å² probe area):
    # from a thin film (0.05) to the thick supports of catalysts (6: the atom ~15 % above it)
    ratio = float(np.exp(rng.uniform(np.log(0.05), np.log(6.0))))
    ratio = float(support_ratio) if support_ratio is not None else ratio
    # the film's lumps relative to one atom's peak (pt_single_atoms: ~0.25): lumps as bright
    # as the atoms (a thick film with a strong texture) would make broad atoms ambiguous
    drawn = _log_uniform(rng, 0.03, 1.0)
    lumps = float(lumps) if lumps is not None else drawn
    support = amorphous_support(
        size_A,
        rng,
        density=ratio * (Z[element] / 6.0) ** 1.7 / 2.0,
        texture=min(0.5, lumps / ratio),
    )
    if rng.random() < 0.4:  # the support ends (vacuum beyond a wavy edge); atoms sit on it
        theta = rng.uniform(0, 2 * np.pi)
        nrm = np.array([np.cos(theta), np.sin(theta)])
        c0 = rng.uniform(-0.35, 0.35) * size_A
        k, ph = rng.uniform(0.05, 0.3), rng.uniform(0, 6)

        def inside(p: np.ndarray) -> np.ndarray:
            t = (p - size_A / 2) @ np.array([-nrm[1], nrm[0]])
            return (p - size_A / 2) @ nrm < c0 + 2.0 * np.sin(k * t + ph)

        on = inside(support.yx_A)
        support = Columns(
            support.yx_A[on],
            support.z[on],
            support.count[on],
            np.arange(int(on.sum())),
            support.support[on],
            1.0,
            support.name,
        )
        yx = yx[inside(yx)] if len(yx) else yx
    # atoms at other heights in a thick support are out of focus: weaker peaks
    weight = rng.choice([1.0, 1.0, 1.0, 2.0], len(yx)) * rng.uniform(0.35, 1.0, len(yx))
    heavy = Columns(
        yx,
        np.full(len(yx), Z[element]),
        weight,
        np.arange(len(yx)),
        np.zeros(len(yx), bool),
        2.0,
        f"{element} single atoms",
    )
    return merge(heavy, support)


def merge(a: Columns, b: Columns) -> Columns:
    """Both structures in one (column indices of ``b`` shifted past ``a``'s)."""
    off = int(a.column.max()) + 1 if len(a) else 0
    return Columns(
        np.concatenate([a.yx_A, b.yx_A]),
        np.concatenate([a.z, b.z]),
        np.concatenate([a.count, b.count]),
        np.concatenate([a.column, b.column + off]),
        np.concatenate([a.support, b.support]),
        min(a.min_spacing_A, b.min_spacing_A)
        if len(b) and not b.support.all()
        else a.min_spacing_A,
        a.name,
    )


def column_amplitudes(cols: Columns, z_exponent: float) -> np.ndarray:
    """Noise-free peak of each row's species ``count * (Z/6)^n`` (C = 1), (N,)."""
    return cols.count * (cols.z / 6.0) ** z_exponent


def visible(cols: Columns, z_exponent: float, frac: float = 0.1) -> np.ndarray:
    """(N,) bool per row: its column (all rows summed) is a non-support column at least
    ``frac`` as bright as the brightest non-support column."""
    amp = column_amplitudes(cols, z_exponent)
    if not len(cols):
        return np.zeros(0, bool)
    tot = np.bincount(cols.column, amp, minlength=int(cols.column.max()) + 1)
    crystal = ~cols.support
    if not crystal.any():
        return np.zeros(len(cols), bool)
    ref = tot[cols.column[crystal]].max()
    return crystal & (tot[cols.column] >= frac * ref)


def _defects(cols: Columns, rng: np.random.Generator, size_A: float) -> Columns:
    """Vacancies (whole columns), a crystal edge or hole (vacuum or support beyond), and
    thermal jitter of each column."""
    n_col = int(cols.column.max()) + 1
    keep_col = rng.random(n_col) > rng.uniform(0, 0.04)
    centres = np.zeros((n_col, 2))
    centres[cols.column] = cols.yx_A
    r = rng.random()
    if r < 0.25:  # a straight-ish edge: the crystal ends
        theta = rng.uniform(0, 2 * np.pi)
        nrm = np.array([np.cos(theta), np.sin(theta)])
        c0 = rng.uniform(-0.3, 0.3) * size_A
        keep_col &= (centres - size_A / 2) @ nrm < c0 + rng.normal(0, 1.0, n_col) * 0.3
    elif r < 0.4:  # a hole
        c = rng.uniform(0, size_A, 2)
        keep_col &= np.hypot(*(centres - c).T) > rng.uniform(3, max(3.0, size_A / 3))
    elif r < 0.5:  # a nanoparticle: a disc of crystal
        c = rng.uniform(0.3, 0.7, 2) * size_A
        keep_col &= np.hypot(*(centres - c).T) < rng.uniform(5, max(5.0, size_A / 2))
    shift = rng.normal(0, rng.uniform(0, 0.06), (n_col, 2))
    k = keep_col[cols.column]
    return Columns(
        cols.yx_A[k] + shift[cols.column[k]],
        cols.z[k],
        cols.count[k],
        cols.column[k],
        cols.support[k],
        cols.min_spacing_A,
        cols.name,
    )


def random_structure(size_A: float, rng: np.random.Generator) -> Columns:
    """A random training structure in a ``size_A`` square (see the module docstring)."""
    r = rng.random()
    if r < 0.45:
        return single_atoms(size_A, rng)
    if r < 0.58:
        cols = tmd_2h(size_A, rng)
    elif r < 0.73:
        cols = perovskite(size_A, rng)
    elif r < 0.9:
        cols = fcc(size_A, rng)
    else:
        cols = honeycomb_2d(size_A, rng)
    return with_defects_and_support(cols, rng, size_A)


def with_defects_and_support(cols: Columns, rng: np.random.Generator, size_A: float) -> Columns:
    """A crystal ``cols`` in a ``size_A`` (Å) square as :func:`random_structure` dresses
    it: vacancies, edges, holes and jitter, then on (or under) an amorphous support 40 %
    of the time."""
    cols = _defects(cols, rng, size_A)
    if rng.random() < 0.4:  # on (or under) an amorphous support
        cols = merge(cols, amorphous_support(size_A, rng, density=rng.uniform(0.1, 1.5)))
    return cols


__all__ = [
    "Columns",
    "FCC",
    "PEROVSKITES",
    "TMDS",
    "Z",
    "amorphous_support",
    "column_amplitudes",
    "fcc",
    "honeycomb_2d",
    "merge",
    "perovskite",
    "random_structure",
    "single_atoms",
    "tmd_2h",
    "visible",
    "with_defects_and_support",
]
