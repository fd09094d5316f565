"""Length units found in microscopy metadata, converted to Å."""

from __future__ import annotations

_TO_ANGSTROM = {
    "a": 1.0,
    "å": 1.0,
    "angstrom": 1.0,
    "angstroms": 1.0,
    "ang": 1.0,
    "\u212b": 1.0,
    "nm": 10.0,
    "n_m": 10.0,
    "nanometer": 10.0,
    "nanometers": 10.0,
    "nanometre": 10.0,
    "pm": 0.01,
    "picometer": 0.01,
    "um": 1e4,
    "µm": 1e4,
    "\u03bcm": 1e4,
    "micron": 1e4,
    "microns": 1e4,
    "micrometer": 1e4,
    "mm": 1e7,
    "cm": 1e8,
    "m": 1e10,
}


def to_angstrom(value: float, unit: str | None) -> float | None:
    """``value`` expressed in ``unit`` as Å, or ``None`` if the unit is not a length."""
    if unit is None:
        return None
    key = str(unit).strip().lower().replace("\\u00b5", "µ")
    factor = _TO_ANGSTROM.get(key)
    if factor is None:
        return None
    return float(value) * factor
