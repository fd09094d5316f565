"""Defects as connected subgraphs of the bond graph, and dopant bond geometry.

A defect is a connected set of *defect atoms*: dopants (species other than the host)
with the atoms bonded to them, and members of non-hexagonal faces (5-, 7-, 8-rings,
vacancy faces of 9..14 members). Its type follows from its dopants, their
coordination and the multiset of its non-hexagonal faces (Stone-Wales = 5-7-7-5,
dislocation core = 5-7, reconstructed vacancy = 5-9, divacancy = 5-8-5, ...); holes
(large faces) are separate defects of type ``hole``.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

DEFECT_COLUMNS = [
    "frame", "defect_id", "type", "y", "x", "atoms", "n_atoms", "n_dopant",
    "dopant_coordination", "rings", "at_edge",
]  # fmt: skip

#: Non-hexagonal face signatures -> defect type (the simulator's vocabulary: SW is
#: the Stone-Wales 5-7-7-5; a reconstructed single vacancy is 5-9, an unreconstructed
#: one a 12-member face; a divacancy is 5-8-5, 5-5-5-7-7-7 or a 14-member face).
_TOPOLOGY = {
    (5, 5, 7, 7): "SW",
    (5, 7): "5-7",
    (5, 9): "vacancy",
    (9,): "vacancy",
    (12,): "vacancy",
    (5, 5, 8): "divacancy",
    (5, 5, 5, 7, 7, 7): "divacancy",
    (14,): "divacancy",
    (5, 13): "divacancy",
}


#: Patterns peeled off a larger signature, in this order.
_PEEL = ((5, 5, 7, 7), (5, 5, 8), (5, 9), (5, 7))


def topology_type(sizes: list[int] | tuple[int, ...], max_ring: int = 8) -> str:
    """Name of a purely topological defect from its non-hexagonal face sizes.

    Known signatures map to one name (:data:`_TOPOLOGY`); a chain of at least four
    5-rings and four 7-rings (nothing else) is a ``grain_boundary``; otherwise known patterns (SW, divacancy,
    vacancy, 5-7) are peeled off and the names joined with ``+`` (e.g. a Stone-Wales
    next to a vacancy: ``SW+vacancy``); leftovers are ``vacancy``/``multivacancy``
    (faces above ``max_ring``) or ``other``.
    """
    sig = tuple(sorted(int(s) for s in sizes))
    if sig in _TOPOLOGY:
        return _TOPOLOGY[sig]
    if not sig:
        return "none"
    n5, n7 = sig.count(5), sig.count(7)
    if n5 + n7 == len(sig) and n5 >= 4 and n7 >= 4:
        if abs(n5 - n7) <= max(1, len(sig) // 4):
            return "grain_boundary"
    rest = list(sig)
    names: list[str] = []
    for pattern in _PEEL:
        while all(rest.count(v) >= pattern.count(v) for v in set(pattern)):
            for v in pattern:
                rest.remove(v)
            names.append(_TOPOLOGY[pattern])
    big = [v for v in rest if v > max_ring]
    if big:
        names.append(_TOPOLOGY.get((big[0],), "multivacancy") if len(big) == 1 else "multivacancy")
    if len(big) < len(rest):
        names.append("other")
    return "+".join(dict.fromkeys(names))


def find_defects(
    atoms: pd.DataFrame,
    bonds: pd.DataFrame,
    faces: pd.DataFrame,
    coordination: np.ndarray,
    edge: np.ndarray,
    host: str = "C",
    max_ring: int = 8,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Defects of all frames.

    Parameters
    ----------
    atoms : the atom table (positional rows are node ids).
    bonds : from :func:`atomlens.chem.bonds.find_bonds`.
    faces : rings and vacancy faces (not holes), from :func:`atomlens.chem.rings.find_faces`.
    coordination, edge : (N,) per-atom bond count and edge flag.
    host : the lattice species; any other species is a dopant.

    Returns
    -------
    (defects, defect_id): a DataFrame with :data:`DEFECT_COLUMNS` (``y, x`` the mean
    member position in pixels; ``atoms`` a tuple of rows) and an (N,) int array of
    defect ids per atom (-1 outside any defect).
    """
    n = len(atoms)
    cls = atoms["cls"].astype(str).to_numpy()
    frame = atoms["frame"].to_numpy()
    yx = atoms[["y", "x"]].to_numpy(dtype=float)
    a = bonds["a"].to_numpy(dtype=int)
    b = bonds["b"].to_numpy(dtype=int)
    dopant = cls != host

    in_defect = dopant.copy()
    in_defect[a[dopant[b]]] = True
    in_defect[b[dopant[a]]] = True
    odd = faces[faces["size"] != 6]
    odd_members = [np.asarray(m, dtype=int) for m in odd["atoms"]]
    for m in odd_members:
        in_defect[m] = True
    defect_id = np.full(n, -1, dtype=int)
    if not in_defect.any():
        return pd.DataFrame({c: [] for c in DEFECT_COLUMNS}), defect_id

    # components: bonds among defect atoms, plus face-membership links
    keep = in_defect[a] & in_defect[b]
    ea, eb = [a[keep]], [b[keep]]
    for m in odd_members:
        ea.append(np.full(len(m), m[0]))
        eb.append(m)
    ea, eb = np.concatenate(ea), np.concatenate(eb)
    graph = coo_matrix((np.ones(len(ea)), (ea, eb)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    comp_labels = labels[in_defect]
    uniq, inverse = np.unique(comp_labels, return_inverse=True)
    rows_of = np.flatnonzero(in_defect)
    # order defects by (frame, min row) for stable ids
    first_row = np.full(len(uniq), n, dtype=int)
    np.minimum.at(first_row, inverse, rows_of)
    order = np.argsort(first_row)
    new_id = np.empty(len(uniq), dtype=int)
    new_id[order] = np.arange(len(uniq))
    defect_id[rows_of] = new_id[inverse]

    face_comp = np.array([defect_id[m[0]] for m in odd_members], dtype=int)
    # Stone-Wales cores (the rotated bond: both ends in two 7-rings and one 5-ring),
    # so that an SW inside a larger composite is still named
    n5 = np.zeros(n, int)
    n7 = np.zeros(n, int)
    for size, m in zip(odd["size"], odd_members):
        if size == 5:
            n5[np.unique(m)] += 1
        elif size == 7:
            n7[np.unique(m)] += 1
    core = (n5 == 1) & (n7 == 2)
    sw_comp = set(defect_id[a[core[a] & core[b]]].tolist())
    odd_sizes = odd["size"].to_numpy(dtype=int)
    bonded = set(zip(a.tolist(), b.tolist()))

    records = []
    sorted_rows = rows_of[np.argsort(defect_id[rows_of], kind="stable")]
    sorted_ids = defect_id[sorted_rows]
    bounds = np.searchsorted(sorted_ids, np.arange(len(uniq) + 1))
    for did in range(len(uniq)):
        members = np.sort(sorted_rows[bounds[did] : bounds[did + 1]])
        dops = members[dopant[members]]
        fmask = face_comp == did
        sizes = odd_sizes[fmask]
        has_vac = bool((sizes > max_ring).any())
        if len(dops) == 0:
            kind = topology_type(sizes, max_ring)
            if did in sw_comp and "SW" not in kind:
                kind += "+SW"
        else:
            dop_set = set(dops.tolist())
            extra = [
                s
                for s, m in zip(sizes, [odd_members[i] for i in np.flatnonzero(fmask)])
                if s <= max_ring and not dop_set.intersection(m.tolist())
            ]
            species = str(cls[dops[0]])
            if len(dops) == 1:
                kind = f"{species}{int(coordination[dops[0]])}"
            else:
                sub = nx.Graph()
                sub.add_nodes_from(dops.tolist())
                sub.add_edges_from((u, v) for u in dops for v in dops if u < v and (u, v) in bonded)
                linked = nx.is_connected(sub)
                name = {2: "dimer", 3: "trimer"}.get(len(dops), "cluster")
                kind = f"{species}_{name}" if linked else f"{species}_group"
            if has_vac:
                kind += "+vacancy"
            if extra:
                kind += "+" + topology_type(extra, max_ring)
            if did in sw_comp and "SW" not in kind:
                kind += "+SW"
            if edge[dops].any():
                kind += "_edge"
        records.append(
            {
                "frame": int(frame[members[0]]),
                "defect_id": did,
                "type": kind,
                "y": float(yx[members, 0].mean()),
                "x": float(yx[members, 1].mean()),
                "atoms": tuple(int(i) for i in members),
                "n_atoms": int(len(members)),
                "n_dopant": int(len(dops)),
                "dopant_coordination": ",".join(str(int(coordination[d])) for d in dops),
                "rings": ",".join(str(int(s)) for s in sorted(sizes)),
                "at_edge": bool(edge[members].any()),
            }
        )
    return pd.DataFrame.from_records(records, columns=DEFECT_COLUMNS), defect_id


def fold_class(coordination: int) -> str:
    """``"3-fold"``, ``"4-fold"`` or ``"other"``."""
    return {3: "3-fold", 4: "4-fold"}.get(int(coordination), "other")


def dopant_geometry(
    atoms: pd.DataFrame, bonds: pd.DataFrame, pixel_size: float, host: str = "C"
) -> pd.DataFrame:
    """Bond lengths (pm) and angles (degrees) around every dopant atom.

    Returns a DataFrame ``frame, atom, cls, coordination, fold, neighbours,
    bond_lengths_pm, mean_bond_pm, angles_deg`` where ``angles_deg`` are the angles
    between angularly consecutive bonds (they sum to 360° for two or more bonds).
    """
    cls = atoms["cls"].astype(str).to_numpy()
    yx = atoms[["y", "x"]].to_numpy(dtype=float)
    frame = atoms["frame"].to_numpy()
    a = bonds["a"].to_numpy(dtype=int)
    b = bonds["b"].to_numpy(dtype=int)
    src = np.concatenate([a, b])
    dst = np.concatenate([b, a])
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    records = []
    for i in np.flatnonzero(cls != host):
        lo, hi = np.searchsorted(src, [i, i + 1])
        nb = dst[lo:hi]
        vec = yx[nb] - yx[i]
        ang = np.degrees(np.arctan2(vec[:, 0], vec[:, 1]))
        srt = np.argsort(ang)
        nb, vec, ang = nb[srt], vec[srt], ang[srt]
        lengths = np.hypot(vec[:, 0], vec[:, 1]) * pixel_size * 100.0
        gaps = np.diff(np.concatenate([ang, ang[:1] + 360.0])) if len(nb) >= 2 else np.zeros(0)
        records.append(
            {
                "frame": int(frame[i]),
                "atom": int(i),
                "cls": cls[i],
                "coordination": int(len(nb)),
                "fold": fold_class(len(nb)),
                "neighbours": tuple(int(j) for j in nb),
                "bond_lengths_pm": tuple(float(v) for v in lengths),
                "mean_bond_pm": float(lengths.mean()) if len(nb) else float("nan"),
                "angles_deg": tuple(float(v) for v in gaps),
            }
        )
    cols = ["frame", "atom", "cls", "coordination", "fold", "neighbours", "bond_lengths_pm",
            "mean_bond_pm", "angles_deg"]  # fmt: skip
    return pd.DataFrame.from_records(records, columns=cols)


def dopant_environment(
    graph: nx.Graph, center: int, radius_A: float, pixel_size: float
) -> nx.Graph:
    """Subgraph of the atoms within ``radius_A`` (Å) of atom ``center`` (a node of a
    one-frame graph from :func:`atomlens.chem.bonds.bond_graph`); the paper uses
    3-4 lattice constants (~7-10 Å)."""
    cy, cx = graph.nodes[center]["y"], graph.nodes[center]["x"]
    r_px = radius_A / pixel_size
    keep = [
        n for n, d in graph.nodes(data=True) if (d["y"] - cy) ** 2 + (d["x"] - cx) ** 2 <= r_px**2
    ]
    return graph.subgraph(keep).copy()


def add_holes(
    defects: pd.DataFrame,
    defect_id: np.ndarray,
    holes: pd.DataFrame,
    atoms: pd.DataFrame,
    coordination: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Append one ``hole`` defect per hole face (``atoms`` = its boundary atoms); the
    per-atom ``defect_id`` of boundary atoms already in another defect is kept."""
    if len(holes) == 0:
        return defects, defect_id
    defect_id = defect_id.copy()
    yx = atoms[["y", "x"]].to_numpy(dtype=float)
    start = int(defects["defect_id"].max()) + 1 if len(defects) else 0
    records = []
    for k, row in enumerate(holes.itertuples(index=False)):
        members = np.unique(np.asarray(row.atoms, dtype=int))
        did = start + k
        free = members[defect_id[members] < 0]
        defect_id[free] = did
        records.append(
            {
                "frame": int(row.frame),
                "defect_id": did,
                "type": "hole",
                "y": float(yx[members, 0].mean()),
                "x": float(yx[members, 1].mean()),
                "atoms": tuple(int(i) for i in members),
                "n_atoms": int(len(members)),
                "n_dopant": 0,
                "dopant_coordination": "",
                "rings": str(int(row.size)),
                "at_edge": True,
            }
        )
    new = pd.DataFrame.from_records(records, columns=DEFECT_COLUMNS)
    out = pd.concat([defects, new], ignore_index=True) if len(defects) else new
    return out, defect_id
