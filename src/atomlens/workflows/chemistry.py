"""Chemistry workflow: atoms in; bonds, rings, defects, dopant geometry and tracks out.

One tracking setting for every path (the Chemistry/Defects docks, ``atomlens chem`` and
``atomlens run``): :class:`ChemRecipe`. With ``register`` (default) and the movie at
hand, drift between frames is measured on the pixels
(:func:`atomlens.chem.registration.estimate_drift`) and tracking links the registered
positions ``y_reg, x_reg``.

One rule for atoms that are not graphene's (:mod:`atomlens.chem.host`): every run here
(:func:`run`, :func:`analyze_events`, the pipeline's :func:`merge_chunks`) decides it
once over the whole table with :func:`~atomlens.chem.host.lattice_note`, keeps only the
hole defects and no dopant geometry, yields the note as a :class:`Log` (``warning: ...``)
and carries it on its result (``note``); the front ends only show it.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from atomlens.workflows.events import Log, Progress, check_stop, frames_of
from atomlens.workflows.recipe import Recipe, setting

#: Frames per chemistry piece (the pipeline's task, the Defects dock's Stop/progress step):
#: bounds memory (probability maps of 4 frames) and balances workers.
CHUNK_FRAMES = 4


@dataclass
class ChemRecipe(Recipe):
    """Bond graph, rings, defects and tracking (``[chem]`` in the pipeline config)."""

    section = "chem"

    enabled: bool = setting(True, doc="run chemistry at all (atomlens run)")
    track: bool = setting(True, doc="link atoms over frames (track_id)")
    max_displacement_A: float | None = setting(
        None, above=0.0, doc="largest step between frames for every species, Å; None = max_disp_A"
    )
    max_disp_A: dict[str, float] = setting(
        default_factory=lambda: {"*": 1.0, "Si": 4.0},
        doc="largest step between frames per species, Å ('*' = the rest): host 1 Å, "
        "Si 4 Å (it hops one or two sites per frame)",
    )
    max_gap: int = setting(3, min=0, doc="frames a track may miss and still continue")
    max_bond_A: dict[str, float] = setting(
        default_factory=dict, doc="maximum bond length per pair, e.g. {'C-Si': 2.1}, Å"
    )
    register: bool = setting(
        True, doc="measure drift on the movie and track registered positions (y_reg, x_reg)"
    )

    def _check(self) -> None:
        from atomlens.errors import SettingsError

        for name in ("max_disp_A", "max_bond_A"):
            for k, v in getattr(self, name).items():
                if not v > 0:
                    raise SettingsError(f"[chem] {name}[{k!r}] = {v!r}: distances must be > 0 Å")

    def params(self, track: bool | None = None) -> Any:
        """The :class:`atomlens.chem.ChemParams` of this recipe."""
        from atomlens.chem import ChemParams

        disp = (
            {"*": float(self.max_displacement_A)}
            if self.max_displacement_A
            else dict(self.max_disp_A)
        )
        return ChemParams(
            max_bond_A=dict(self.max_bond_A),
            track=self.track if track is None else track,
            max_disp_A=disp,
            max_gap=self.max_gap,
        )


@dataclass
class ChemOutput:
    """Atoms (with ``coordination, ring5..ring8, edge, defect_id, defect_type,
    track_id`` and, when registered, ``y_reg, x_reg``), bonds (``a, b`` are rows of
    ``atoms``; ``atom_a, atom_b`` their ``atom_id``), rings, defects, dopants, the drift
    ``(T, 2)`` px or None, the pixel size (Å/px) and the recipe. ``note`` is non-empty
    when the atoms are not graphene's (:func:`atomlens.chem.host.lattice_note`): then
    only hole defects are kept and ``dopants`` is empty."""

    atoms: pd.DataFrame
    bonds: pd.DataFrame
    rings: pd.DataFrame
    defects: pd.DataFrame
    dopants: pd.DataFrame
    pixel_size: float
    recipe: ChemRecipe
    drift: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    note: str = ""

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"bonds": self.bonds, "rings": self.rings, "defects": self.defects}


def host_note(atoms: pd.DataFrame) -> Generator[Log, None, str]:
    """The chemistry's verdict on ``atoms`` (the whole table of a run): the
    :func:`~atomlens.chem.host.lattice_note`, yielded once as a ``warning:`` :class:`Log`
    when the atoms are not graphene's; returns it ('' for graphene)."""
    from atomlens.chem.host import lattice_note

    note = lattice_note(atoms)
    if note:
        yield Log("chem", f"warning: {note}")
    return note


def apply_host_note(tables: Mapping[str, pd.DataFrame], note: str) -> dict[str, pd.DataFrame]:
    """``tables`` as :func:`host_note` decided: unchanged ('' note) or holes only
    (:func:`atomlens.chem.host.holes_only`). A new dict."""
    from atomlens.chem.host import holes_only

    return holes_only(tables) if note else dict(tables)


def registration_available() -> bool:
    """True when :mod:`atomlens.chem.registration` exists in this installation."""
    import importlib.util

    return importlib.util.find_spec("atomlens.chem.registration") is not None


def register_atoms(atoms: pd.DataFrame, frames: Any) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Drift of the movie ``frames`` (T, Y, X) and ``atoms`` with ``y_reg, x_reg``
    (deterministic: measured with one BLAS thread).

    Returns ``(atoms, None)`` unchanged when the registration module is absent.
    """
    if not registration_available() or frames is None:
        return atoms, None
    from threadpoolctl import threadpool_limits

    from atomlens.chem.registration import apply_drift, estimate_drift

    # one BLAS thread: the upsampled-DFT peak is then the same number in every process
    # (a GUI, a Dask worker, OMP_NUM_THREADS=1), so a resumed run equals a fresh one
    if len(atoms):  # frames after the last one with atoms are not needed
        frames = frames[: int(atoms["frame"].max()) + 1]
    with threadpool_limits(limits=1):
        drift = np.asarray(estimate_drift(frames), dtype=float)
    return apply_drift(atoms, drift), drift


def track(atoms: pd.DataFrame, pixel_size: float, recipe: ChemRecipe) -> pd.DataFrame:
    """``track_id`` for every row (uses ``y_reg, x_reg`` when present); a copy."""
    from atomlens.chem import track_atoms

    p = recipe.params()
    return track_atoms(atoms, pixel_size, max_displacement_A=p.max_disp_A, max_gap=p.max_gap)


def per_frame(
    atoms: pd.DataFrame, pixel_size: float, recipe: ChemRecipe
) -> dict[str, pd.DataFrame]:
    """Per-frame chemistry of ``atoms`` (no tracking): what a pipeline chunk computes."""
    from atomlens.chem import analyze

    res = analyze(atoms, pixel_size, recipe.params(track=False))
    return {
        "atoms": res.atoms,
        "bonds": res.bonds,
        "rings": res.rings,
        "defects": res.defects,
        "dopants": res.dopants,
    }


def run(
    atoms: pd.DataFrame,
    pixel_size: float,
    recipe: ChemRecipe | None = None,
    *,
    movie: Any = None,
    stop: threading.Event | None = None,
) -> Generator[Progress | Log, None, ChemOutput]:
    """Chemistry of a whole table, then tracking.

    Parameters
    ----------
    atoms : atom table (``frame``, ``y``, ``x`` px, ``cls``).
    pixel_size : Å per pixel.
    movie : the ``(T, Y, X)`` frames (or a Stack) for drift registration; None = no
        registration.
    stop : checked between steps.
    """
    from atomlens.chem import analyze
    from atomlens.io.atoms_table import validate_atoms, with_atom_ids

    recipe = (recipe or ChemRecipe()).validate()
    table = with_atom_ids(validate_atoms(atoms))
    note = yield from host_note(table)
    drift = None
    if recipe.track and recipe.register and movie is not None:
        if registration_available():
            yield Log("chem", "registering frames (drift from the image)")
            table, drift = register_atoms(table, frames_of(movie))
        else:
            yield Log("chem", "registration module not installed: tracking raw positions")
    check_stop(stop)
    yield Progress("chem", "analyze", 0, 2)
    res = analyze(table, pixel_size, recipe.params(track=False))
    kept = apply_host_note(
        {"atoms": res.atoms, "defects": res.defects, "dopants": res.dopants}, note
    )
    out_atoms, dop = kept["atoms"], kept["dopants"]
    yield Progress("chem", "analyze", 1, 2)
    check_stop(stop)
    if recipe.track:
        out_atoms = track(out_atoms, pixel_size, recipe)
        if len(dop):
            dop = dop.copy()
            dop["track_id"] = out_atoms["track_id"].to_numpy()[dop["atom"].to_numpy(dtype=int)]
    yield Progress("chem", "track", 2, 2)
    return ChemOutput(
        out_atoms,
        with_bond_ids(res.bonds, out_atoms),
        res.rings,
        kept["defects"],
        dop,
        float(pixel_size),
        recipe,
        drift,
        note=note,
    )


@dataclass
class AnalyzeRun:
    """What :func:`analyze_events` returns: the :class:`atomlens.chem.ChemResult` of the
    frames done (``frames``; None when Stop came before the first piece), and whether
    Stop ended it early (``stopped``). Its atoms are the input rows ``rows`` (positions
    in the input table) of those frames, in the input's order. ``note``: why only holes
    were kept (atoms not graphene's; '' for graphene), as :class:`ChemOutput`."""

    result: Any
    frames: list[int]
    stopped: bool = False
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    note: str = ""


def analyze_events(
    atoms: pd.DataFrame,
    pixel_size: float,
    params: Any = None,
    *,
    chunk_frames: int = CHUNK_FRAMES,
    stop: threading.Event | None = None,
) -> Generator[Progress | Log, None, AnalyzeRun]:
    """:func:`atomlens.chem.analyze` in pieces of ``chunk_frames`` frames, yielding
    :class:`Progress` after each piece; tracking (``params.track``) links the frames done
    at the end. With ``stop`` set, the frames analysed so far are kept (``stopped=True``):
    the same per-atom chemistry, bonds, rings and defects as one call on those frames.
    On atoms that are not graphene's, first one ``warning:`` :class:`Log` (decided on the
    whole table), and the result keeps only holes (``note`` says why).

    Parameters
    ----------
    atoms : atom table (``frame``, ``y``, ``x`` px, ``cls``).
    pixel_size : Å per pixel.
    params : :class:`atomlens.chem.ChemParams` (defaults when None).
    chunk_frames : frames per piece (bond graph, rings and defects are per frame, so the
        pieces join exactly; only the ids are renumbered).
    """
    from atomlens.chem import ChemParams, analyze, track_atoms
    from atomlens.chem.analyze import check_atoms

    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
    p = params or ChemParams()
    table = check_atoms(atoms)
    note = yield from host_note(table)
    frames = sorted(int(f) for f in table["frame"].unique())
    pieces = [frames[i : i + chunk_frames] for i in range(0, len(frames), chunk_frames)]
    parts, done, stopped = [], [], False
    for piece in pieces:
        if stop is not None and stop.is_set():
            stopped = True
            break
        rows = np.flatnonzero(table["frame"].isin(piece).to_numpy())
        parts.append((rows, analyze(table.iloc[rows], pixel_size, p, track=False)))
        done.extend(piece)
        yield Progress("chem", "frames", len(done), len(frames), f"frames {piece[0]}-{piece[-1]}")
    merged = merge_results(parts, pixel_size, p)
    if merged is None:
        return AnalyzeRun(None, [], stopped, note=note)
    if note:
        names = ("atoms", "defects", "dopants")
        merged = replace(merged, **apply_host_note({n: getattr(merged, n) for n in names}, note))
    if p.track and len(merged.atoms):
        disp = p.max_disp_A
        tracked = track_atoms(merged.atoms, pixel_size, disp, p.max_gap, p.match_species)
        merged.atoms["track_id"] = tracked["track_id"].to_numpy()
        if len(merged.dopants):
            rows = merged.dopants["atom"].to_numpy(dtype=int)
            merged.dopants["track_id"] = merged.atoms["track_id"].to_numpy()[rows]
    rows = np.sort(np.concatenate([r for r, _ in parts]))
    return AnalyzeRun(merged, done, stopped, rows, note)


#: The tables of a :class:`atomlens.chem.ChemResult`, in its field order.
CHEM_TABLES = ("atoms", "bonds", "rings", "faces", "defects", "dopants")


def merge_tables(parts: list[tuple[np.ndarray, dict[str, pd.DataFrame]]]) -> dict:
    """Join per-piece chemistry tables into one set over the whole atom table.

    ``parts`` are ``(rows, tables)`` pairs: ``rows`` are the piece's positions in the
    whole (checked) atom table, ``tables`` some of :data:`CHEM_TABLES` (the first part's
    names are the ones merged). The merged atoms are the rows of all pieces in that
    table's order; bond ends (``a, b``), ring / face / defect member lists (``atoms``) and
    dopant rows (``atom``, ``neighbours``) point into them; ring and defect ids are shifted
    by the ids of the pieces before. A table empty in every piece stays empty (the first
    piece's, with its columns)."""
    names = [n for n in CHEM_TABLES if n in parts[0][1]]
    out: dict[str, list[pd.DataFrame]] = {n: [] for n in names}
    ring0 = defect0 = 0
    order = np.sort(np.concatenate([np.asarray(r, np.int64) for r, _ in parts]))
    for piece_rows, piece in parts:
        # the piece's local row i is row rows[i] of the merged table (input order)
        rows = np.searchsorted(order, np.asarray(piece_rows, dtype=np.int64))

        def members(col: pd.Series, rows: np.ndarray = rows) -> list[tuple[int, ...]]:
            return [tuple(int(rows[int(i)]) for i in m) for m in col]

        tabs = {n: piece[n].copy() for n in names}
        tabs["atoms"].index = rows
        for name, t in tabs.items():
            if name == "bonds":
                for col in ("a", "b"):
                    if col in t:
                        t[col] = rows[t[col].to_numpy(dtype=np.int64)]
                continue
            if "defect_id" in t:
                t.loc[t["defect_id"] >= 0, "defect_id"] += defect0
            if name in ("atoms",) or not len(t):
                continue
            if name in ("rings", "faces"):
                t["ring_id"] += ring0
            if name == "dopants":
                t["atom"] = rows[t["atom"].to_numpy(dtype=np.int64)]
                t["neighbours"] = members(t["neighbours"])
            elif "atoms" in t:
                t["atoms"] = members(t["atoms"])
        for n in names:
            out[n].append(tabs[n])
        ids = [int(piece[n]["ring_id"].max()) for n in ("rings", "faces") if _has(piece, n)]
        ring0 += max(ids) + 1 if ids else 0
        ids = [
            int(piece[n]["defect_id"].max())
            for n in ("atoms", "defects")
            if _has(piece, n) and "defect_id" in piece[n]
        ]
        defect0 += max(ids) + 1 if ids and max(ids) >= 0 else 0
    tables = {
        n: pd.concat([t for t in ts if len(t)] or ts[:1], ignore_index=n != "atoms")
        for n, ts in out.items()
    }
    tables["atoms"] = tables["atoms"].sort_index().reset_index(drop=True)
    return tables


def _has(tables: dict[str, pd.DataFrame], name: str) -> bool:
    return name in tables and len(tables[name]) > 0


#: The tables a pipeline chunk (:func:`per_frame`) hands on to :func:`merge_chunks`.
CHUNK_TABLES = ("atoms", "bonds", "rings", "defects")


def merge_chunks(
    parts: list[dict[str, pd.DataFrame]],
) -> tuple[dict[str, pd.DataFrame], str]:
    """The pipeline's per-chunk chemistry (:func:`per_frame` of consecutive rows of the
    frame-sorted table, in order) joined into :data:`CHUNK_TABLES` over the whole table
    (:func:`merge_tables`: every index global; a table empty in every chunk is an empty
    DataFrame), with the not-graphene rule decided once on the joined atoms (not per
    chunk): ``(tables, note)``, holes only when ``note`` is non-empty."""
    from atomlens.chem.host import lattice_note

    pieces, row0 = [], 0
    for part in parts:
        n = len(part["atoms"])
        pieces.append((np.arange(row0, row0 + n), {k: part[k] for k in CHUNK_TABLES}))
        row0 += n
    merged = merge_tables(pieces) if pieces else {}
    tables = {k: merged[k] if len(merged.get(k, ())) else pd.DataFrame() for k in CHUNK_TABLES}
    note = lattice_note(tables["atoms"])
    return apply_host_note(tables, note), note


def merge_results(parts: list[tuple[np.ndarray, Any]], pixel_size: float, params: Any) -> Any:
    """Join per-piece :class:`atomlens.chem.ChemResult` s into one over the whole table
    (:func:`merge_tables` on their tables). None when there are no parts."""
    from atomlens.chem import ChemResult

    if not parts:
        return None
    tables = merge_tables(
        [(rows, {n: getattr(res, n) for n in CHEM_TABLES}) for rows, res in parts]
    )
    return ChemResult(*(tables[n] for n in CHEM_TABLES), float(pixel_size), params)


def with_bond_ids(bonds: pd.DataFrame, atoms: pd.DataFrame) -> pd.DataFrame:
    """Bonds with ``atom_a, atom_b`` (stable ``atom_id``) beside the row numbers ``a, b``."""
    if not len(bonds) or "atom_id" not in atoms:
        return bonds
    ids = atoms["atom_id"].to_numpy()
    out = bonds.copy()
    out["atom_a"] = ids[out["a"].to_numpy(dtype=int)]
    out["atom_b"] = ids[out["b"].to_numpy(dtype=int)]
    return out


__all__ = [
    "AnalyzeRun",
    "ChemOutput",
    "ChemRecipe",
    "analyze_events",
    "apply_host_note",
    "host_note",
    "merge_chunks",
    "merge_results",
    "merge_tables",
    "per_frame",
    "register_atoms",
    "run",
    "track",
    "with_bond_ids",
]
