"""Per-chunk work of the pipeline as plain module-level functions (picklable for Dask).

Each task opens the stack itself (lazily) so that only file paths and small tables travel
between processes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd


@lru_cache(maxsize=4)
def _open_stack(path: str, pixel_size: float | None) -> Any:
    from atomlens.io import read_stack

    return read_stack(path, pixel_size=pixel_size, lazy=True)


def detect_chunk(
    frames: list[int],
    *,
    stack_path: str,
    pixel_size: float,
    detect: dict,
    with_maps: bool,
) -> tuple[pd.DataFrame, np.ndarray | None, list[str]]:
    """Detect atoms on ``frames`` of the stack at ``stack_path`` with the detect workflow
    (``detect`` is a :class:`~atomlens.workflows.detect.DetectRecipe` as a dict).

    Returns the atom table (``frame`` holding the stack's frame numbers), the maps of
    those frames as ``(len(frames), C, Y, X)`` float16 (or ``None``) and the class names.
    """
    from atomlens.workflows.detect import DetectRecipe, detect_frames

    stack = _open_stack(stack_path, pixel_size)
    res = detect_frames(
        stack, DetectRecipe.from_dict(detect), list(frames), pixel_size=pixel_size, maps=with_maps
    )
    maps = None if res.maps is None else np.asarray(res.maps, dtype=np.float16)
    return res.atoms.drop(columns="atom_id"), maps, list(res.classes)


def chem_chunk(
    atoms: pd.DataFrame,
    *,
    pixel_size: float,
    chem: dict | None = None,
) -> dict[str, pd.DataFrame]:
    """Per-frame chemistry (bonds, rings, defects) of the frames in ``atoms``; no tracking
    (``chem`` is a :class:`~atomlens.workflows.chemistry.ChemRecipe` as a dict)."""
    from atomlens.workflows.chemistry import ChemRecipe, per_frame

    return per_frame(atoms, pixel_size, ChemRecipe.from_dict(chem or {}))
