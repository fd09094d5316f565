"""Every parameter of the STEM movie simulator, with documented defaults and checks."""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from atomlens.errors import SettingsError


class SimConfigError(SettingsError):
    """A simulator parameter is unknown or has an invalid value (the message names it)."""


@dataclass(frozen=True)
class SimConfig:
    """Parameters of :func:`atomlens.simulate.simulate_movie`.

    Lengths end in ``_A`` (Å) or ``_px`` (pixels); intensities are in units of the
    noise-free peak of one carbon atom (C = 1, Si = (14/6)**1.7 ≈ 4.2).
    """

    # --- field of view and sample
    pixel_size: float = 0.1
    """Å per pixel."""
    size: int = 256
    """Frame edge in pixels (frames are ``size x size``)."""
    lattice_angle_deg: float | None = None
    """In-plane orientation of the graphene lattice; ``None`` = random."""
    n_si3: int = 2
    """Substitutional 3-fold Si dopants."""
    n_si4: int = 1
    """4-fold Si dopants (Si at the centre of a divacancy, 4 C neighbours)."""
    n_vacancies: int = 1
    """Single vacancies at the start."""
    n_stone_wales: int = 1
    """Stone-Wales (5-7-7-5) bond rotations at the start."""
    grain_boundary: bool = False
    """Build a bicrystal: a second, rotated grain joined along a straight line."""
    grain_misorientation_deg: float = 13.0
    """Rotation of the second grain relative to the first."""
    n_holes: int = 1
    """Holes (no atoms; 2-fold edge atoms) at the start."""
    hole_radius_A: float = 3.0
    """Radius of each initial hole."""
    hole_min_area_A2: float = 30.0
    """A non-ring face (more than 8 members) larger than this is a hole, a smaller one a
    vacancy (cluster). One hexagon is 5.24 Å², a single vacancy 15.7 Å²."""
    contamination_fraction: float = 0.05
    """Fraction of the field of view under amorphous contamination (0 = none)."""
    contamination_level: float = 1.2
    """Mean contamination intensity (C-peak units)."""
    min_defect_separation_A: float = 4.0
    """Minimum distance between initial defects (and from holes, contamination edges)."""
    relax: bool = True
    """Relax positions around defects with bond and angle springs."""

    # --- evolution between frames (the electron beam)
    hole_growth_rate: float = 1.5
    """Expected atoms removed from each hole's edge per frame."""
    vacancy_rate: float = 0.2
    """Expected new vacancies per frame per 1000 Å² of field of view."""
    vacancy_cluster_prob: float = 0.7
    """Chance that a new vacancy forms next to an existing one (clustering)."""
    reconstruct_prob: float = 0.05
    """Chance per vacancy (cluster) per frame that a nearby bond rotates (a 5-7 pair)."""
    si_hop_prob: float = 0.15
    """Chance per 3-fold Si per frame of exchanging with a neighbouring C."""
    si_edge_bias_A: float = 4.0
    """Length scale of the pull of Si toward hole edges (0 = unbiased random walk)."""

    # --- imaging
    probe_fwhm_A: float = 1.0
    """FWHM of the Gaussian probe (each atom is imaged as this Gaussian)."""
    z_exponent: float = 1.7
    """Peak intensity is proportional to Z**z_exponent."""
    dose: float | None = 1.0e5
    """Electron dose per frame in e-/Å²; ``None`` = no shot noise."""
    detector_efficiency: float = 0.05
    """Detected counts per incident electron at a carbon peak (ADF collection)."""
    read_noise: float = 0.03
    """Gaussian read noise, standard deviation in C-peak units."""
    drift_px_per_frame: float = 0.3
    """Mean sample drift per frame (random direction), pixels."""
    drift_noise_px: float = 0.05
    """Random-walk part of the drift per frame, pixels."""
    thermal_jitter_A: float = 0.03
    """Per-frame random displacement of each atom (standard deviation per axis)."""
    scan_jitter_px: float = 0.3
    """Per-row horizontal scan shift (standard deviation), pixels."""

    def __post_init__(self) -> None:
        _validate(self)

    def replace(self, **overrides: Any) -> SimConfig:
        """A copy with some fields changed; unknown names raise :class:`SimConfigError`."""
        check_names(overrides)
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimConfig:
        """Build from a dict (e.g. a saved movie's ``config``), ignoring non-field keys
        that the simulator itself adds (``n_frames``, ``seed``, ``version``)."""
        known = {f.name for f in fields(cls)}
        extra = {"n_frames", "seed", "version", "shape", "lattice_angle_deg_used"}
        check_names({k: v for k, v in data.items() if k not in extra})
        return cls(**{k: v for k, v in data.items() if k in known})


def check_names(overrides: dict[str, Any]) -> None:
    """Raise :class:`SimConfigError` for a name that is not a :class:`SimConfig` field."""
    known = [f.name for f in fields(SimConfig)]
    for name in overrides:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SimConfigError(
                f"unknown simulator parameter {name!r}{hint}; valid names: {', '.join(known)}"
            )


_COUNTS = ("n_si3", "n_si4", "n_vacancies", "n_stone_wales", "n_holes")
_PROBS = ("vacancy_cluster_prob", "reconstruct_prob", "si_hop_prob", "contamination_fraction")
_NONNEG = (
    "hole_growth_rate",
    "vacancy_rate",
    "si_edge_bias_A",
    "read_noise",
    "drift_px_per_frame",
    "drift_noise_px",
    "thermal_jitter_A",
    "scan_jitter_px",
    "hole_radius_A",
    "hole_min_area_A2",
    "min_defect_separation_A",
    "grain_misorientation_deg",
    "contamination_level",
)
_POSITIVE = ("pixel_size", "probe_fwhm_A", "z_exponent", "detector_efficiency")


def _bad(name: str, value: Any, need: str) -> SimConfigError:
    return SimConfigError(f"simulator parameter {name}={value!r} is invalid: {need}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _validate(cfg: SimConfig) -> None:
    if not (isinstance(cfg.size, int) and not isinstance(cfg.size, bool)) or not (
        32 <= cfg.size <= 8192
    ):
        raise _bad("size", cfg.size, "need an integer number of pixels between 32 and 8192")
    for name in _COUNTS:
        v = getattr(cfg, name)
        if not (isinstance(v, int) and not isinstance(v, bool)) or v < 0:
            raise _bad(name, v, "need a whole number >= 0")
    for name in _POSITIVE:
        v = getattr(cfg, name)
        if not _is_number(v) or v <= 0:
            raise _bad(name, v, "need a positive number")
    for name in _NONNEG:
        v = getattr(cfg, name)
        if not _is_number(v) or v < 0:
            raise _bad(name, v, "need a number >= 0")
    for name in _PROBS:
        v = getattr(cfg, name)
        if not _is_number(v) or not 0 <= v <= 1:
            raise _bad(name, v, "need a probability between 0 and 1")
    if cfg.contamination_fraction > 0.5:
        raise _bad("contamination_fraction", cfg.contamination_fraction, "need at most 0.5")
    if cfg.dose is not None and (not _is_number(cfg.dose) or cfg.dose <= 0):
        raise _bad("dose", cfg.dose, "need a positive dose in e-/Å² or None for no shot noise")
    if cfg.lattice_angle_deg is not None and not _is_number(cfg.lattice_angle_deg):
        raise _bad("lattice_angle_deg", cfg.lattice_angle_deg, "need degrees or None (random)")
    for name in ("grain_boundary", "relax"):
        if not isinstance(getattr(cfg, name), bool):
            raise _bad(name, getattr(cfg, name), "need True or False")
    if not 0.01 <= cfg.pixel_size <= 2.0:
        raise _bad("pixel_size", cfg.pixel_size, "need 0.01 to 2 Å per pixel")
    if cfg.probe_fwhm_A < 2 * cfg.pixel_size:
        raise _bad(
            "probe_fwhm_A",
            cfg.probe_fwhm_A,
            f"the probe must span at least 2 pixels ({2 * cfg.pixel_size:.3g} Å)",
        )
    if cfg.size * cfg.pixel_size < 10.0:
        raise _bad(
            "size", cfg.size, f"the field of view {cfg.size} px x {cfg.pixel_size} Å is under 10 Å"
        )
