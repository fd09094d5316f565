"""npe2 writer contribution: save an atoms Points layer as a CSV atom table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from atomlens.io.atoms_table import write_atoms_csv as write_table
from atomlens.viz.layers import points_to_atoms


def write_atoms_csv(path: str, data: Any, attributes: dict) -> list[str]:
    """Write a Points layer as an AtomLens CSV atom table: ``frame, y, x`` in pixels (from
    the layer's data, so edited points are saved where they now are), then every feature
    column (see :func:`atomlens.io.atoms_table.write_atoms_csv`)."""
    table = points_to_atoms(data, attributes.get("features"))
    out = Path(path)
    if out.suffix.lower() != ".csv":
        out = out.with_suffix(".csv")
    return [str(write_table(out, table))]
