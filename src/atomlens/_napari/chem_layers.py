"""napari layer-data tuples from chemistry results (no science here, no Qt needed).

Every tuple follows :mod:`atomlens.viz.layers`: data in pixels with a leading frame
coordinate ``t``, ``scale = (1, px, px)`` in Å, axes ``('t', 'y', 'x')``, so bonds,
rings and tracks line up with the image and the atoms and show only on their frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from atomlens.viz.keys import categorical_key
from atomlens.viz.layers import AXIS_LABELS, META_KEY, LayerTuple

if TYPE_CHECKING:
    import napari

    from atomlens.chem import ChemResult

#: RGBA per ring size (5 red, 6 grey, 7 blue, 8 green; others orange).
RING_COLOURS: dict[int, tuple[float, float, float, float]] = {
    4: (0.6, 0.2, 0.8, 1.0),
    5: (0.9, 0.2, 0.2, 1.0),
    6: (0.6, 0.6, 0.6, 0.6),
    7: (0.2, 0.4, 0.95, 1.0),
    8: (0.2, 0.75, 0.3, 1.0),
}
OTHER_RING_COLOUR = (1.0, 0.6, 0.1, 1.0)
_DEFECT_PALETTE = np.array(
    [
        (0.89, 0.10, 0.11, 1.0), (0.22, 0.49, 0.72, 1.0), (0.30, 0.69, 0.29, 1.0),
        (0.60, 0.31, 0.64, 1.0), (1.00, 0.50, 0.00, 1.0), (0.65, 0.34, 0.16, 1.0),
        (0.97, 0.51, 0.75, 1.0), (0.60, 0.60, 0.60, 1.0),
    ]
)  # fmt: skip


def _common(name: str, pixel_size: float | None, kind: str) -> dict[str, Any]:
    px = float(pixel_size) if pixel_size else None
    return {
        "name": name,
        "scale": (1.0, px or 1.0, px or 1.0),
        "units": ("dimensionless", "angstrom", "angstrom")
        if px
        else ("dimensionless", "pixel", "pixel"),
        "axis_labels": AXIS_LABELS,
        "metadata": {META_KEY: {"kind": kind, "pixel_size": px}},
    }


def bonds_layer_tuple(
    atoms: pd.DataFrame,
    bonds: pd.DataFrame,
    pixel_size: float | None,
    name: str = "bonds",
    width_px: float = 2.0,
) -> LayerTuple:
    """A Vectors layer, one line per bond: data ``(E, 2, 3)`` = ``[[t, y, x], [0, dy, dx]]``
    in pixels; features ``frame, a, b, length_A, pair``."""
    a = bonds["a"].to_numpy(dtype=int)
    b = bonds["b"].to_numpy(dtype=int)
    yx = atoms[["y", "x"]].to_numpy(dtype=float)
    t = atoms["frame"].to_numpy(dtype=float)
    data = np.zeros((len(a), 2, 3))
    data[:, 0, 0] = t[a]
    data[:, 0, 1:] = yx[a]
    data[:, 1, 1:] = yx[b] - yx[a]
    feats = bonds[[c for c in ("frame", "a", "b", "length_A", "pair") if c in bonds]]
    kw = _common(name, pixel_size, "bonds")
    kw.update(
        {
            "features": feats.reset_index(drop=True),
            "edge_width": float(width_px),
            "edge_color": "#f2d24b",
            "vector_style": "line",
            "out_of_slice_display": False,
        }
    )
    return (data, kw, "vectors")


def _colours_or_none(colours: np.ndarray) -> np.ndarray | str:
    """Per-point colours ``(N, 4)``, or one colour when there are no points: napari
    cannot build a layer from a ``(0, 4)`` colour array (no rings: atoms farther apart
    than a bond; no defects: a clean frame)."""
    return colours if len(colours) else "transparent"


def rings_layer_tuple(
    rings: pd.DataFrame, pixel_size: float | None, name: str = "ring centres", size_px: float = 6.0
) -> LayerTuple:
    """A Points layer of ring centres ``(t, y, x)`` pixels coloured by ring size
    (:data:`RING_COLOURS`); features ``frame, ring_id, size``."""
    data = rings[["frame", "y", "x"]].to_numpy(dtype=float).reshape(-1, 3)
    sizes = rings["size"].to_numpy(dtype=int)
    colours = np.array([RING_COLOURS.get(int(s), OTHER_RING_COLOUR) for s in sizes]).reshape(-1, 4)
    kw = _common(name, pixel_size, "rings")
    present = sorted({int(v) for v in sizes})
    kw["metadata"][META_KEY]["colour_key"] = categorical_key(
        "ring size", {s: RING_COLOURS.get(s, OTHER_RING_COLOUR) for s in present}, "atoms per ring"
    ).to_dict()
    kw.update(
        {
            "features": rings[["frame", "ring_id", "size"]].reset_index(drop=True),
            "face_color": _colours_or_none(colours),
            "size": float(size_px),
            "symbol": "disc",
            "border_width": 0.0,
            "out_of_slice_display": False,
        }
    )
    return (data, kw, "points")


def defects_layer_tuple(
    defects: pd.DataFrame, pixel_size: float | None, name: str = "defects", size_px: float = 30.0
) -> LayerTuple:
    """A Points layer of defect centres ``(t, y, x)`` pixels, one colour per type
    (transparent face, coloured ring); features = the defect table without atom lists."""
    data = defects[["frame", "y", "x"]].to_numpy(dtype=float).reshape(-1, 3)
    kinds = defects["type"].astype(str).to_numpy()
    names = sorted(set(kinds.tolist()))
    colours = _DEFECT_PALETTE[[names.index(k) % len(_DEFECT_PALETTE) for k in kinds]].reshape(-1, 4)
    kw = _common(name, pixel_size, "defects")
    kw["metadata"][META_KEY]["colour_key"] = categorical_key(
        "defect type", {k: _DEFECT_PALETTE[i % len(_DEFECT_PALETTE)] for i, k in enumerate(names)}
    ).to_dict()
    kw.update(
        {
            "features": defects.drop(columns=["atoms"], errors="ignore").reset_index(drop=True),
            "face_color": "transparent",
            "border_color": _colours_or_none(colours),
            "border_width": 0.1,
            "size": float(size_px),
            "out_of_slice_display": False,
        }
    )
    return (data, kw, "points")


def tracks_layer_tuple(
    atoms: pd.DataFrame, pixel_size: float | None, name: str = "tracks", species: str | None = None
) -> LayerTuple:
    """A Tracks layer: data ``(N, 4)`` = ``track_id, t, y, x`` (pixels), sorted by track
    then frame; ``species`` keeps only atoms of that ``cls`` (e.g. ``"Si"``)."""
    sub = atoms if species is None else atoms[atoms["cls"].astype(str) == species]
    sub = sub[sub["track_id"] >= 0].sort_values(["track_id", "frame"])
    data = sub[["track_id", "frame", "y", "x"]].to_numpy(dtype=float).reshape(-1, 4)
    kw = _common(name, pixel_size, "tracks")
    feats = [c for c in ("cls", "coordination", "defect_id") if c in sub]
    kw.update({"features": sub[feats].reset_index(drop=True), "tail_length": 10})
    return (data, kw, "tracks")


def chem_layer_tuples(result: ChemResult, tracks_species: str | None = "Si") -> list[LayerTuple]:
    """Bonds, ring centres, defects and (when tracked) tracks of a :class:`ChemResult`."""
    px = result.pixel_size
    out = [
        bonds_layer_tuple(result.atoms, result.bonds, px),
        rings_layer_tuple(result.rings, px),
        defects_layer_tuple(result.defects, px),
    ]
    if (result.atoms["track_id"] >= 0).any():
        out.append(tracks_layer_tuple(result.atoms, px, species=tracks_species))
    return out


def add_chem_layers(viewer: napari.Viewer, result: ChemResult) -> list:
    """Add (or replace, by name) the chemistry layers in a viewer; returns the layers."""
    from napari.layers import Layer

    layers = []
    for data, kw, kind in chem_layer_tuples(result):
        if kind == "tracks" and len(data) == 0:
            continue
        if kw["name"] in viewer.layers:
            viewer.layers.remove(kw["name"])
        layers.append(viewer.add_layer(Layer.create(data, dict(kw), kind)))
    return layers
