"""What the Detect atoms dock tells the user after a run, as plain text (no Qt): which
model ran and why, whether the image was inverted (dark atoms), and the species found
from contrast with how to name them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

#: ``cls`` of atoms whose contrast class the user has not named (``class0``, ``class1``...).
UNNAMED_PREFIX = "class"


def model_note(result: Any) -> str:
    """``'model general (auto: <why>)'``: the detector that ran and the reason the recipe
    recorded (the 'auto' choice, dark atoms inverted), from
    :class:`~atomlens.workflows.detect.DetectResult`'s ``model_name`` and ``model_reason``."""
    name = str(getattr(result, "model_name", "") or "")
    if not name:
        return ""
    why = str(getattr(result, "model_reason", "") or "")
    return f"model {name}" + (f": {why}" if why else "")


def pixel_note(pixel_size: float | None, source: str) -> str:
    """The pixel size detection used and where it came from (``source``: ``user`` =
    typed, ``metadata`` = the file's stated value, which is often a few % off: the
    dock's 'Calibrate pixel size' checks it against the lattice, 5 % on the MoS2 dm3)."""
    if not pixel_size:
        return ""
    text = f"pixel size {pixel_size:.4g} Å/px"
    if source == "user":
        return f"{text} (typed)"
    if source == "metadata":
        return f"{text} (the file's; 'Calibrate pixel size' checks it against the lattice)"
    return f"{text} ({source})"


def calibration_note(cal: Any, lattice: str) -> str:
    """What 'Calibrate pixel size' found (:class:`atomlens.chem.calibrate.Calibration`):
    the estimate, the file's value and their discrepancy, and whether the dock took it
    (only when sure)."""
    text = f"calibrated from the {lattice} lattice: {cal.pixel_size:.4g} Å/px"
    if cal.metadata_pixel_size:
        text += f" (the file says {cal.metadata_pixel_size:.4g}, {cal.discrepancy_pct:+.1f} %)"
    if cal.sure:
        return text + "; set in the pixel size field: the next Detect uses it"
    return text + "; UNSURE, pixel size not changed: " + " ".join(cal.warnings)


def class_counts(atoms: pd.DataFrame) -> list[tuple[str, int, float]]:
    """``(name, atoms, median integrated intensity)`` per contrast class, dimmest first
    (``contrast_class`` 0, 1, ...); empty when the table has no contrast classes."""
    if "contrast_class" not in atoms or "cls" not in atoms or not len(atoms):
        return []
    out = []
    cc = atoms["contrast_class"].to_numpy(int)
    names = atoms["cls"].astype(str).to_numpy()
    inten = atoms["intensity"].to_numpy(float) if "intensity" in atoms else np.full(len(cc), np.nan)
    for k in sorted(int(c) for c in np.unique(cc) if c >= 0):
        rows = cc == k
        out.append((str(names[rows][0]), int(rows.sum()), float(np.nanmedian(inten[rows]))))
    return out


def contrast_note(
    atoms: pd.DataFrame, species_model: dict | None = None, inverted: bool = False
) -> str:
    """The species found from contrast: how many classes (and how the number was chosen),
    atoms per class, each class's intensity relative to the dimmest, and, while a class
    is still ``class<k>``, how to name them. ``inverted``: the atoms were dark (ABF/BF)
    and their intensities measured on the negated image, so "dimmest" means the faintest
    dips (the lightest columns), as in HAADF; the note says so. Empty when the atoms were
    not classified by contrast."""
    rows = class_counts(atoms)
    if not rows:
        return ""
    model = species_model or {}
    crit = str(model.get("criterion") or "")
    how = f" (number chosen by {crit.upper()})" if crit in ("icl", "bic") else ""
    dim = rows[0][2]
    parts = []
    for i, (name, n, inten) in enumerate(rows):
        rel = f", x{inten / dim:.2g}" if i and dim > 0 and np.isfinite(inten) else ""
        parts.append(f"{name} {n}{rel}")
    text = f"contrast: {len(rows)} class(es){how}, dimmest first: " + "; ".join(parts)
    if inverted:
        text += (
            " (dark atoms, measured on the inverted image: the faintest dips, i.e. the "
            "lightest columns, count as dimmest)"
        )
    if any(name.startswith(UNNAMED_PREFIX) for name, _, _ in rows):
        text += (
            f". Name them: type {len(rows)} name(s), dimmest first, in 'class names' "
            "(e.g. S2,Mo for a TMD) and press 'Name classes'"
        )
    return text


__all__ = ["calibration_note", "class_counts", "contrast_note", "model_note", "pixel_note"]
