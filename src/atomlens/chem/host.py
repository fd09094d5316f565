"""Is an atom table graphene's? The chemistry (:func:`atomlens.chem.analyze`) reads a
lattice of one host species (graphene's C) in which every other species is a dopant;
on another material (MoS2's Mo and S2, SrTiO3's columns, the general model's 'atom')
its rings and holes are geometry only and its dopant defect types do not describe it.

Headless (no Qt). The chemistry workflow (:mod:`atomlens.workflows.chemistry`) is the
one place that applies it: its runs decide with :func:`lattice_note`, keep only holes
(:func:`holes_only`) and hand the note on, which ``atomlens chem``, ``atomlens run`` and
the napari Defects dock only show.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def species_of(atoms: pd.DataFrame) -> list[str]:
    """The sorted species names in ``atoms['cls']`` (empty without a ``cls`` column)."""
    return sorted({str(c) for c in atoms["cls"].astype(str)}) if "cls" in atoms else []


def lattice_note(atoms: pd.DataFrame, host: str = "C") -> str:
    """Empty when ``atoms`` include the chemistry's lattice species ``host`` (graphene's
    C) or carry no species; else one warning naming the species found: the chemistry is
    graphene's, so only holes are kept and bonds/rings are geometry only (neighbours up
    to :data:`atomlens.chem.bonds.DEFAULT_OTHER_BOND_A` Å)."""
    from atomlens.chem.bonds import DEFAULT_OTHER_BOND_A as other_bond

    species = species_of(atoms)
    if not species or host in species:
        return ""
    return (
        f"No {host} atoms (species: {', '.join(species[:6])}): this chemistry reads "
        f"graphene, a {host} lattice with Si dopants, where every other atom is a dopant. "
        "Its dopant defect types (e.g. 'Mo0_edge') would not describe this material, so "
        "only holes are listed; bonds and rings are geometry only (neighbours up to "
        f"{other_bond:g} Å)."
    )


def keep_holes(atoms: pd.DataFrame, defects: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Only the ``hole`` defects (a large empty face: geometry) of a defect table, and
    the atom table with the atoms of every dropped defect set to ``defect_id`` -1 and
    ``defect_type`` 'none' (as atoms in no defect), except the members of a kept hole
    (its ``atoms``: rows of ``atoms``), which then carry that hole's id and type (on a
    table without C, one dropped cluster holds every atom, the hole's rim included).
    Returns copies ``(atoms, defects)``."""
    has = len(defects) and "type" in defects
    keep = defects["type"].astype(str) == "hole" if has else np.zeros(len(defects), bool)
    kept = defects[keep]
    atoms = atoms.copy()
    if "defect_id" in atoms:
        kept_ids = set(kept["defect_id"].astype(int)) if has else set()
        ids = atoms["defect_id"].to_numpy(dtype=np.int64, copy=True)
        ids[(ids >= 0) & ~np.isin(ids, list(kept_ids))] = -1
        if "atoms" in kept:
            for hole_id, members in zip(kept["defect_id"].astype(int), kept["atoms"]):
                rows = np.asarray(list(members), dtype=np.int64)
                rows = rows[ids[rows] < 0]  # in no kept defect: the hole's rim
                ids[rows] = hole_id
        changed = ids != atoms["defect_id"].to_numpy()
        atoms["defect_id"] = ids
        if "defect_type" in atoms:
            col = atoms.columns.get_loc("defect_type")
            atoms.iloc[np.flatnonzero(changed & (ids < 0)), col] = "none"
            atoms.iloc[np.flatnonzero(changed & (ids >= 0)), col] = "hole"
    return atoms, kept.reset_index(drop=True)


def holes_only(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Chemistry ``tables`` (``atoms``, ``defects`` and optionally ``dopants``, e.g. the
    fields of a :class:`atomlens.chem.ChemResult`) with only the ``hole`` defects
    (:func:`keep_holes`) and no dopant geometry, for atoms the graphene chemistry does not
    describe (:func:`lattice_note`). A new dict; the other tables are passed on as they are."""
    out = dict(tables)
    out["atoms"], out["defects"] = keep_holes(tables["atoms"], tables["defects"])
    if "dopants" in out:
        out["dopants"] = out["dopants"].iloc[:0]
    return out
