"""The one pixel-size resolver: a user value beats the file's metadata, which beats a
lattice calibration. Every front end (docks, CLI, ``atomlens run``) asks it, so a value
typed once is used by every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from atomlens.errors import SettingsError

#: Sources in order of precedence.
SOURCES = ("user", "metadata", "calibration")


@dataclass(frozen=True)
class PixelSize:
    """A pixel size ``value`` in Å per pixel and where it came from (``source``:
    ``"user"``, ``"metadata"``, ``"calibration"``, or ``"project"``)."""

    value: float
    source: str

    def __float__(self) -> float:
        return self.value


def _ok(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def resolve_pixel_size(
    stack: Any = None,
    user: float | None = None,
    *,
    metadata: float | None = None,
    calibrated: float | None = None,
    required: bool = True,
) -> PixelSize | None:
    """The pixel size to use, with its source.

    Parameters
    ----------
    stack : an :class:`atomlens.io.Stack` (its ``pixel_size``; a stack whose source is
        ``"user"`` counts as a user value) or None.
    user : a value typed by the user (CLI ``--pixel-size``, the Detect dock, ``[input]
        pixel_size``), Å/px.
    metadata : the file's calibration when no stack is given, Å/px.
    calibrated : a lattice calibration (:func:`atomlens.chem.calibrate_pixel_size`), Å/px.
    required : raise when nothing is known (else return None).

    Raises :class:`SettingsError` for a user value that is not a positive number, or when
    nothing is known and ``required``.
    """
    if user is not None:
        v = _ok(user)
        if v is None:
            raise SettingsError(
                f"pixel size must be a positive number of Å per pixel, got {user!r}"
            )
        return PixelSize(v, "user")
    if stack is not None:
        v = _ok(getattr(stack, "pixel_size", None))
        if v is not None:
            src = getattr(stack, "pixel_size_source", "metadata")
            return PixelSize(v, src if src in ("user", "calibration", "project") else "metadata")
    v = _ok(metadata)
    if v is not None:
        return PixelSize(v, "metadata")
    v = _ok(calibrated)
    if v is not None:
        return PixelSize(v, "calibration")
    if required:
        raise SettingsError(
            "the pixel size is unknown: give it in Å per pixel (CLI --pixel-size, config "
            "[input] pixel_size, or the Detect dock) or calibrate from the lattice "
            "([input] calibrate = 'graphene')"
        )
    return None


__all__ = ["SOURCES", "PixelSize", "resolve_pixel_size"]
