"""Encode workflow: a trained latent model puts its latents back on atoms (or any
centres), preparing the windows exactly as the model was trained.

The model card's ``preprocessing`` (a :class:`~atomlens.workflows.latent.DescriptorRecipe`
written at training) decides binning, scaling and window size, so a model trained by
``atomlens rvae``/``atomlens run`` and loaded in the Latent dock sees the same windows.
Models from before recipes were recorded are encoded with the default recipe at the
model's window size.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from atomlens.workflows.events import Progress, check_stop
from atomlens.workflows.latent import DescriptorRecipe, cut_windows, latents_on_atoms, prepare_movie


@dataclass
class EncodeResult:
    """``atoms`` with the model's latent columns (NaN where no window fits), the names
    of those columns, and the descriptor recipe used."""

    atoms: pd.DataFrame
    columns: list[str]
    preprocessing: DescriptorRecipe


def preprocessing_of(model: Any) -> DescriptorRecipe:
    """The :class:`DescriptorRecipe` a model was trained with (its card), else the
    default at the model's window size."""
    card = getattr(model, "card", {}) or {}
    pre = card.get("preprocessing")
    if isinstance(pre, dict):
        return DescriptorRecipe.from_dict(pre)
    window = getattr(model, "window", None)
    win = int(window[-1]) if window else DescriptorRecipe().window
    return DescriptorRecipe(window=win)


def run(
    model: Any,
    movie: Any,
    atoms: pd.DataFrame,
    *,
    preprocessing: DescriptorRecipe | None = None,
    stop: threading.Event | None = None,
) -> Generator[Progress, None, EncodeResult]:
    """Encode the window around every atom of ``atoms`` (``frame, y, x`` px of
    ``movie``, a (T, Y, X) array or Stack); returns an :class:`EncodeResult`."""
    model.check_fitted()
    pre = (preprocessing or preprocessing_of(model)).validate()
    yield Progress("encode", "windows", 0, 2, "cutting windows")
    windows = cut_windows(prepare_movie(movie, pre), atoms)
    check_stop(stop)
    yield Progress("encode", "encode", 1, 2, f"encoding {len(windows)} windows")
    lat = (
        model.transform(windows.images).reset_index(drop=True)
        if len(windows)
        else pd.DataFrame(columns=model.latent_names())
    )
    out = latents_on_atoms(atoms, lat, windows)
    yield Progress("encode", "encode", 2, 2)
    return EncodeResult(out, list(lat.columns), pre)


def encode_atoms(model: Any, movie: Any, atoms: pd.DataFrame) -> pd.DataFrame:
    """:func:`run` to the end: ``atoms`` with latent columns."""
    from atomlens.workflows.events import drain

    return drain(run(model, movie, atoms)).atoms


__all__ = ["EncodeResult", "encode_atoms", "preprocessing_of", "run"]
