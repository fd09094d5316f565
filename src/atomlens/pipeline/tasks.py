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


@lru_cache(maxsize=4)
def _load_detector(model_path: str | None) -> Any:
    from atomlens.segment import load_detector

    return load_detector(model_path)


def detect_chunk(
    frames: list[int],
    *,
    stack_path: str,
    pixel_size: float,
    detect: dict,
    with_maps: bool,
) -> tuple[pd.DataFrame, np.ndarray | None, list[str]]:
    """Detect atoms on ``frames`` of the stack at ``stack_path``.

    Returns the atom table (``frame`` holding the stack's frame numbers), the maps of
    those frames as ``(len(frames), C, Y, X)`` float16 (or ``None``) and the class names.
    """
    from atomlens.io import Stack
    from atomlens.segment import detect as run_detect

    stack = _open_stack(stack_path, pixel_size)
    data = np.stack([stack.frame(t) for t in frames])
    model = _load_detector(detect.get("model"))
    result = run_detect(
        Stack(data, pixel_size, "user"),
        model=model,
        threshold=detect["threshold"],
        refine=detect["refine"],
        batch_size=detect["batch_size"],
        device=detect["device"],
        return_maps=with_maps,
    )
    atoms = result.atoms.copy()
    atoms["frame"] = np.asarray(frames)[atoms["frame"].to_numpy(dtype=int)]
    maps = None if result.maps is None else np.asarray(result.maps, dtype=np.float16)
    return atoms, maps, list(model.classes)


def chem_chunk(atoms: pd.DataFrame, *, pixel_size: float) -> dict[str, pd.DataFrame]:
    """Per-frame chemistry (bonds, rings, defects) of the frames in ``atoms``; no tracking."""
    from atomlens.chem import analyze

    res = analyze(atoms, pixel_size, track=False)
    return {"atoms": res.atoms, "bonds": res.bonds, "rings": res.rings, "defects": res.defects}
