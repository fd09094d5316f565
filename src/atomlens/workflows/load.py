"""Open a movie with its pixel size, calibrated from its own lattice when asked.

:func:`atomlens.io.read_stack` reads files and their metadata; a pixel size measured
from the lattice is chemistry (:func:`atomlens.chem.calibrate.calibrate_lattice`: atoms
detected under trial pixel sizes fix the FFT spot order), a layer above ``io``. This
module joins the two, so ``read_stack(path, calibrate="graphene")`` works for a bare
``.npy`` or a stripped TIFF while ``io`` never imports ``chem``.
"""

from __future__ import annotations

from pathlib import Path

from atomlens.chem.calibrate import calibrate_lattice
from atomlens.io.readers import read_stack as _read_file
from atomlens.io.stack import Stack


def read_stack(
    path: str | Path,
    pixel_size: float | None = None,
    lazy: bool = False,
    nonfinite: str = "mask",
    calibrate: str | float | None = None,
) -> Stack:
    """Read an image or movie (:func:`atomlens.io.read_stack`, same ``path``,
    ``pixel_size`` in Å/px, ``lazy`` and ``nonfinite``) and, when ``calibrate`` names a
    lattice, set its pixel size from the lattice (:func:`calibrate_stack`).

    calibrate : ``"graphene"``, ``"mos2"``, ``"srtio3"``, ``"square:<Å>"`` or the lattice
        constant in Å of a hexagonal lattice; None keeps the file's (or the given) pixel
        size.
    """
    stack = _read_file(path, pixel_size=pixel_size, lazy=lazy, nonfinite=nonfinite)
    return stack if calibrate is None else calibrate_stack(stack, calibrate)


def calibrate_stack(stack: Stack, lattice: str | float = "graphene") -> Stack:
    """A copy of ``stack`` (sharing its data) whose pixel size (Å/px) is measured from
    ``lattice``, ignoring the metadata value: source ``"calibration"``, and the
    calibration (method, spot order, evidence, discrepancy with the metadata value in
    %) in ``metadata["calibration"]``.

    Raises :class:`atomlens.chem.calibrate.CalibrationError` when the lattice is not found.
    """
    cal = calibrate_lattice(stack, lattice)
    out = stack.with_pixel_size(cal.pixel_size, "calibration")
    out.metadata["calibration"] = cal.to_dict()
    return out


__all__ = ["calibrate_stack", "read_stack"]
