"""Pixel-size calibration from the crystal lattice.

Two independent estimates of the true pixel size (Å per pixel):

- :func:`calibrate_fft`: the six first-order spots of a hexagonal lattice (graphene,
  MoS2, or any lattice constant ``a`` in Å) sit at ``|g| = 1 / (a·√3/2)`` Å⁻¹ in the
  power spectrum; their measured radius in cycles per pixel gives Å per pixel.
- :func:`calibrate_nn`: the mode of nearest-neighbour distances between detected atoms
  (pixels) against a known bond length (graphene C-C 1.42 Å).

Without a nominal value the FFT alone cannot tell which spot order it sees (graphene's
first order at 2.13 Å or its √3 order at 1.23 Å: a √3 error). :func:`calibrate_lattice`
needs no nominal value: atoms detected in real space under trial pixel sizes settle the
order (:mod:`atomlens.chem.lattice_scale`), then the FFT spots near that value give the
precise figure; the result says how sure it is.

Square lattices (``"srtio3"``, a = 3.905 Å, or ``"square:<Å>"``) take another path
(:func:`_calibrate_square`, :mod:`atomlens.chem.fft_cell`): their real-space readings
(A columns; A + BO; all columns) are all square, so atoms cannot settle the order; the
smallest cell that indexes every significant FFT spot does ((100) at 1/a, though the
(110) spots are usually brighter), and SrTiO3 seen along [110] (a rectangle a/√2 x a)
is recognised too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from atomlens.errors import AtomLensError

#: Hexagonal lattice constants (Å) known by name.
LATTICES: dict[str, float] = {"graphene": 2.46, "mos2": 3.16}
#: Square lattice constants (Å) known by name: cubic perovskites seen along [001] (A
#: columns at the corners, BO columns at the centres); these also match the [110]
#: projection (a rectangle a/√2 x a). ``"square:<Å>"`` names any square lattice.
SQUARE_LATTICES: dict[str, float] = {"srtio3": 3.905}
#: Nearest-neighbour (bond) lengths (Å) known by name (SrTiO3: the projected Sr-TiO
#: column distance a/√2, the nearest columns in HAADF [001]).
BOND_LENGTHS: dict[str, float] = {
    "graphene": 1.42,
    "mos2": 3.16 / np.sqrt(3),
    "srtio3": 3.905 / np.sqrt(2),
}


class CalibrationError(AtomLensError):
    """Raised when no lattice signal can be found; the message names the fix."""


@dataclass
class Calibration:
    """One pixel-size estimate.

    Attributes
    ----------
    pixel_size : estimated Å per pixel.
    method : ``"fft"`` or ``"nn"``.
    metadata_pixel_size : the nominal Å per pixel it is compared with (or ``None``).
    discrepancy_pct : ``100 · (metadata - estimate) / estimate`` (``None`` without
        metadata); positive means the metadata overstates the pixel size.
    confidence : method-specific strength: for ``fft`` the median ratio of the six
        spot powers to the annulus median power; for ``nn`` the fraction of
        distances to the 3 nearest neighbours within ±10 % of the mode.
        For ``lattice`` (:func:`calibrate_lattice`): the fraction of detected atoms in
        the lattice's geometry at the chosen scale (0-1).
    lattice_A : the lattice constant (fft, lattice) or bond length (nn) used, Å.
    details : extras (per-spot estimates in Å/px, spread %, lattice angle in degrees;
        for ``lattice`` also the real-space trials, both estimates and their agreement).
    evidence_ratio : (``lattice`` only) lattice fraction of the chosen scale over the
        best one of scales that differ by > 20 % (the other spot orders); ≥ 3 is clear.
    warnings : reasons to doubt the estimate, one sentence each (empty when sure).
    """

    pixel_size: float
    method: str
    metadata_pixel_size: float | None
    discrepancy_pct: float | None
    confidence: float
    lattice_A: float
    details: dict = field(default_factory=dict)
    evidence_ratio: float | None = None
    warnings: list = field(default_factory=list)

    @property
    def sure(self) -> bool:
        """No warnings: the spot order is settled and the estimates agree."""
        return not self.warnings

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One human-readable line."""
        meta = (
            f"metadata {self.metadata_pixel_size:.5f} Å/px, discrepancy {self.discrepancy_pct:+.1f} %"
            if self.metadata_pixel_size
            else "no metadata pixel size"
        )
        line = (
            f"{self.method}: {self.pixel_size:.5f} Å/px ({meta}; "
            f"confidence {self.confidence:.3g}, lattice {self.lattice_A:.3f} Å)"
        )
        if self.evidence_ratio is not None:
            line += f"; spot order evidence {self.evidence_ratio:.1f}:1"
        if self.warnings:
            line += "; UNSURE: " + " ".join(self.warnings)
        return line


def lattice_kind(lattice: str | float) -> str:
    """``"square"`` for a square lattice (``srtio3``, ``"square:<Å>"``), else
    ``"hexagonal"`` (graphene, mos2, a number of Å, ``"hexagonal:<Å>"``)."""
    if isinstance(lattice, str):
        key = lattice.strip().lower()
        if key in SQUARE_LATTICES or key.startswith("square:"):
            return "square"
    return "hexagonal"


def lattice_constant(lattice: str | float) -> float:
    """Lattice constant in Å from a name (``graphene``, ``mos2``, ``srtio3``), a number
    of Å (hexagonal) or ``"square:<Å>"`` / ``"hexagonal:<Å>"``."""
    if isinstance(lattice, str):
        key = lattice.strip().lower()
        if key in LATTICES:
            return LATTICES[key]
        if key in SQUARE_LATTICES:
            return SQUARE_LATTICES[key]
        for prefix in ("square:", "hexagonal:", "hex:"):
            if key.startswith(prefix):
                key = key[len(prefix) :].strip()
                break
        try:
            value = float(key)
        except ValueError:
            raise CalibrationError(
                f"unknown lattice {lattice!r}: use one of {sorted(LATTICES)} (hexagonal), "
                f"{sorted(SQUARE_LATTICES)} (square), a hexagonal lattice constant in Å "
                "(e.g. 2.46) or 'square:<Å>' (e.g. square:3.905)"
            ) from None
    else:
        value = float(lattice)
    if not (np.isfinite(value) and value > 0):
        raise CalibrationError(f"lattice constant must be a positive number of Å, got {lattice!r}")
    return value


def _discrepancy(estimate: float, metadata: float | None) -> float | None:
    if not metadata:
        return None
    return float(100.0 * (metadata - estimate) / estimate)


def power_spectrum(frames: np.ndarray, pad: int = 2048, max_frames: int = 16) -> np.ndarray:
    """Centred power spectrum (pad, pad) averaged over up to ``max_frames`` frames of a
    (Y, X) or (T, Y, X) stack, Hann-windowed and zero-padded to ``pad`` pixels."""
    arr = np.asarray(frames, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise CalibrationError(f"expected a (Y, X) image or (T, Y, X) stack, got {arr.shape}")
    step = max(1, arr.shape[0] // max_frames)
    arr = arr[::step][:max_frames]
    h, w = arr.shape[1:]
    pad = max(pad, h, w)
    win = np.outer(np.hanning(h), np.hanning(w))
    total = np.zeros((pad, pad))
    for frame in arr:
        f = (frame - frame.mean()) * win
        total += np.abs(np.fft.fft2(f, s=(pad, pad))) ** 2
    return np.fft.fftshift(total / len(arr))


def calibrate_fft(
    image: np.ndarray,
    lattice: str | float = "graphene",
    metadata_pixel_size: float | None = None,
    search: float = 0.35,
    pad: int = 2048,
) -> Calibration:
    """Pixel size (Å/px) from the six first-order spots of a hexagonal lattice.

    Parameters
    ----------
    image : (Y, X) image or (T, Y, X) stack (frames are averaged in power).
    lattice : ``"graphene"`` (2.46 Å), ``"mos2"`` (3.16 Å) or a lattice constant in Å;
        a square lattice (``"srtio3"``, ``"square:<Å>"``) goes to
        :func:`_calibrate_square` (the nominal value then picks the spot order).
    metadata_pixel_size : nominal Å/px; the spots are searched within ±``search``
        (relative) of where it puts them. Without it, spots are searched for any
        spacing between 3 and 40 pixels per lattice period, and the innermost of the
        orders 1, √3, 2 that shows spots is taken as the first order.
    pad : FFT size (pixels) for sub-bin peak positions.
    """
    if lattice_kind(lattice) == "square":
        return _calibrate_square(
            image, lattice, metadata_pixel_size, metadata_pixel_size, search, pad
        )
    from atomlens.atoms.lattice_reference import whiten_radial  # lazy: atoms imports torch

    a = lattice_constant(lattice)
    spec = power_spectrum(image, pad=pad)
    # whiten by the radial mean so the low-frequency background does not win
    white, r, _, _ = whiten_radial(spec)
    n = spec.shape[0]
    c = n // 2
    d_spacing = a * np.sqrt(3) / 2  # Å, first-order plane spacing
    if metadata_pixel_size:
        k0 = metadata_pixel_size / d_spacing * n
        lo, hi = k0 * (1 - search), k0 * (1 + search)
    else:
        lo, hi = n / 40.0, n / 3.0
    ann = (r >= lo) & (r <= hi)
    if not ann.any():
        raise CalibrationError("the spot search annulus is empty: check the image size")
    cand = np.where(ann, white, 0.0)
    iy, ix = np.unravel_index(int(np.argmax(cand)), cand.shape)
    if not metadata_pixel_size:
        # the strongest spot may be a higher order (a/2 spacing is often brighter): take
        # the innermost of r, r/√3, r/2 that shows six spots 60° apart above the speckle
        smooth = ndi.gaussian_filter(white, max(1.0, 0.02 * float(r[iy, ix])))
        base = float(np.median(smooth[ann]))
        for div in (2.0, np.sqrt(3.0)):
            rr = float(r[iy, ix]) / div
            inner = (r >= 0.95 * rr) & (r <= 1.05 * rr)
            if not inner.any():
                continue
            sub = np.where(inner, smooth, 0.0)
            jy, jx = np.unravel_index(int(np.argmax(sub)), sub.shape)
            th = np.arctan2(jy - c, jx - c) + np.radians([60.0, 120.0])
            others = [
                float(
                    sub[
                        int(round(c + r[jy, jx] * np.sin(t))), int(round(c + r[jy, jx] * np.cos(t)))
                    ]
                )
                for t in th
            ]
            if sub[jy, jx] > 3 * base and min(others) > 0.3 * sub[jy, jx]:
                iy, ix = jy, jx
                break
    r0 = float(r[iy, ix])
    th0 = float(np.arctan2(iy - c, ix - c))
    hw = int(max(3, round(0.12 * r0)))
    gy, gx = np.mgrid[-hw : hw + 1, -hw : hw + 1]
    ann_median = float(np.median(spec[ann]))
    spots = []
    for j in range(6):
        th = th0 + j * np.pi / 3
        y0, x0 = int(round(c + r0 * np.sin(th))), int(round(c + r0 * np.cos(th)))
        for _ in range(2):  # re-centre on the local maximum
            sub = spec[y0 - hw : y0 + hw + 1, x0 - hw : x0 + hw + 1]
            if sub.shape != gy.shape:
                break
            my, mx = np.unravel_index(int(np.argmax(sub)), sub.shape)
            y0, x0 = y0 + my - hw, x0 + mx - hw
        sub = spec[y0 - hw : y0 + hw + 1, x0 - hw : x0 + hw + 1]
        if sub.shape != gy.shape:
            continue
        s = sub - np.median(sub)
        s = np.where(s > 0.5 * s.max(), s, 0.0)
        if s.sum() <= 0:
            continue
        cy = float((s * gy).sum() / s.sum() + y0 - c)
        cx = float((s * gx).sum() / s.sum() + x0 - c)
        spots.append((np.hypot(cy, cx), np.degrees(np.arctan2(cy, cx)), sub.max() / ann_median))
    if len(spots) < 3:
        raise CalibrationError(
            "could not find the hexagonal lattice spots in the FFT: check the lattice "
            "(--lattice) and the nominal pixel size, or use the nearest-neighbour method"
        )
    radii = np.array([s[0] for s in spots])
    per_spot = radii / n * d_spacing
    estimate = float(per_spot.mean())
    strength = float(np.median([s[2] for s in spots]))
    return Calibration(
        pixel_size=estimate,
        method="fft",
        metadata_pixel_size=float(metadata_pixel_size) if metadata_pixel_size else None,
        discrepancy_pct=_discrepancy(estimate, metadata_pixel_size),
        confidence=strength,
        lattice_A=a,
        details={
            "per_spot_pixel_size": [float(v) for v in per_spot],
            "spread_pct": float(100 * per_spot.std() / estimate),
            "lattice_angle_deg": float(spots[0][1] % 60.0),
            "n_spots": len(spots),
        },
    )


def calibrate_nn(
    yx: np.ndarray,
    bond_A: str | float = "graphene",
    metadata_pixel_size: float | None = None,
    frames: np.ndarray | None = None,
    n_neighbours: int = 3,
) -> Calibration:
    """Pixel size (Å/px) from the mode of nearest-neighbour distances of atoms.

    Parameters
    ----------
    yx : (N, 2) atom positions in pixels.
    bond_A : ``"graphene"`` (C-C 1.42 Å), ``"mos2"`` (Mo-S projected 1.82 Å) or Å.
    frames : optional (N,) frame index so that atoms of different frames are not paired.
    n_neighbours : neighbours per atom whose distances vote (3 in graphene).
    """
    if isinstance(bond_A, str) and bond_A.strip().lower() in BOND_LENGTHS:
        bond = float(BOND_LENGTHS[bond_A.strip().lower()])
    else:
        bond = lattice_constant(bond_A)
    yx = np.asarray(yx, dtype=float).reshape(-1, 2)
    if len(yx) < 4:
        raise CalibrationError(
            f"need at least 4 atoms for a nearest-neighbour calibration, got {len(yx)}"
        )
    pts = yx if frames is None else np.column_stack([yx, np.asarray(frames, float) * 1e6])
    k = min(n_neighbours, len(yx) - 1)
    dist, _ = cKDTree(pts).query(pts, k=k + 1)
    # all k neighbour distances, not only the nearest: the minimum of k noisy distances
    # is biased short
    nn = dist[:, 1:].ravel()
    nn = nn[np.isfinite(nn) & (nn > 0) & (nn < 1e5)]
    # mode via a histogram of log-distances, then the median within ±10 % of it
    hist, edges = np.histogram(np.log(nn), bins=120)
    i = int(np.argmax(hist))
    mode = float(np.exp(0.5 * (edges[i] + edges[i + 1])))
    near = nn[np.abs(nn / mode - 1) < 0.10]
    mode = float(np.median(near))
    near = nn[np.abs(nn / mode - 1) < 0.10]
    d_px = float(np.median(near))
    estimate = bond / d_px
    return Calibration(
        pixel_size=estimate,
        method="nn",
        metadata_pixel_size=float(metadata_pixel_size) if metadata_pixel_size else None,
        discrepancy_pct=_discrepancy(estimate, metadata_pixel_size),
        confidence=float(len(near) / len(nn)),
        lattice_A=bond,
        details={"nn_px": d_px, "n_atoms": int(len(nn))},
    )


def calibrate_pixel_size(
    stack: Any,
    lattice: str | float = "graphene",
    metadata_pixel_size: float | None = None,
    max_frames: int = 16,
    resolve_order: bool = True,
) -> Calibration:
    """Calibration of an :class:`atomlens.io.Stack` (or a (T, Y, X) / (Y, X) array): up
    to ``max_frames`` frames spread over the movie; the stack's own pixel size is the
    metadata value unless ``metadata_pixel_size`` is given.

    ``resolve_order=True`` (default): :func:`calibrate_lattice`, which uses no nominal
    value (the metadata is only compared with) and settles the FFT spot order from
    atoms in real space. ``False``: :func:`calibrate_fft` searching the spots around the
    nominal value (wrong by √3 when the nominal is > ~30 % off or absent)."""
    data = stack.data if hasattr(stack, "data") else stack
    nominal = (
        metadata_pixel_size
        if metadata_pixel_size is not None
        else getattr(stack, "pixel_size", None)
    )
    n = int(data.shape[0]) if getattr(data, "ndim", 2) == 3 else 1
    if n == 1:
        frames = np.asarray(data, dtype=np.float32).reshape(data.shape[-2:])[None]
    else:
        idx = np.unique(np.linspace(0, n - 1, min(n, max_frames)).astype(int))
        frames = np.stack([np.asarray(data[int(t)], dtype=np.float32) for t in idx])
    if resolve_order:
        return calibrate_lattice(frames, lattice, nominal, max_frames=max_frames)
    return calibrate_fft(frames, lattice, nominal)


#: Atom geometries a lattice may show in real space (MoS2's S2 sublattice can be too
#: faint to detect, leaving the triangular Mo lattice).
GEOMETRIES: dict[str, tuple[str, ...]] = {
    "graphene": ("honeycomb",),
    "mos2": ("honeycomb", "triangular"),
}


def calibrate_lattice(
    image: Any,
    lattice: str | float = "graphene",
    metadata_pixel_size: float | None = None,
    *,
    detector: str | Any = "auto",
    max_frames: int = 16,
    real_space_frames: int = 2,
    crop_px: int | None = None,
    pad: int = 2048,
) -> Calibration:
    """Pixel size (Å/px) from the lattice alone: no nominal value is used or needed.

    1. Real space (:func:`atomlens.chem.lattice_scale.scale_trials`): atoms are detected
       under trial pixel sizes 0.04-0.42 Å/px; the self-consistent trial whose atoms
       best show the lattice geometry (honeycomb: three neighbours at the bond length)
       gives ``nn`` = bond / NN distance. This fixes the FFT spot order.
    2. FFT (:func:`calibrate_fft`): the first-order spots searched within ±12 % of
       ``nn`` give the precise value; if they are not clear (fewer than 4 spots, spot
       spread > 8 %, or > 8 % from ``nn``), the real-space value is returned instead
       (method ``"nn"``) with a warning.

    Parameters
    ----------
    image : :class:`atomlens.io.Stack`, (Y, X) image or (T, Y, X) stack.
    lattice : ``"graphene"``, ``"mos2"`` or a lattice constant in Å (then both the
        honeycomb and the triangular reading are tried, bond = a/√3). A square lattice
        (``"srtio3"``, ``"square:<Å>"``) is calibrated from the FFT alone
        (:func:`_calibrate_square`; ``detector``, ``real_space_frames`` and ``crop_px``
        are not used): ``confidence`` is then the share of the significant spots'
        strength the lattice indexes, ``evidence_ratio`` the strength of the spots that
        fix the cell (for [001] the (100)) over that where a larger cell would add spots,
        and ``details`` holds ``zone`` ([001] or [110]), ``order_family``, the indexed
        spots and their per-spot pixel sizes.
    metadata_pixel_size : nominal Å/px, only compared with (``discrepancy_pct``);
        default: the Stack's own pixel size.
    detector : ``"auto"`` (graphene: the shipped U-Net; otherwise ``"peaks"``),
        ``"unet"``, ``"peaks"`` or a callable ``f(image, pixel_size_A) -> (N, 2)`` px.
    max_frames : frames averaged in the power spectrum; ``real_space_frames`` of them
        (spread over the movie) are searched for atoms, centre-cropped to ``crop_px``
        (default 256 for the U-Net, 512 for the cheaper peak finder).

    Returns
    -------
    :class:`Calibration` with ``method`` ``"lattice"`` (FFT refined) or ``"nn"``,
    ``confidence`` = lattice fraction of the chosen scale, ``evidence_ratio`` and
    ``warnings``; ``details`` holds ``nn_pixel_size``, ``fft_pixel_size``,
    ``fft_nn_agreement_pct``, ``nn_spread_pct``, ``geometry`` and every trial.

    Raises
    ------
    CalibrationError : no trial pixel size shows atoms in the lattice geometry.
    """
    from atomlens.chem import lattice_scale as ls

    data = image.data if hasattr(image, "pixel_size") and hasattr(image, "data") else image
    if metadata_pixel_size is None:
        metadata_pixel_size = getattr(image, "pixel_size", None)
    arr = np.asarray(data) if not hasattr(data, "ndim") else data
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise CalibrationError(
            f"expected a (Y, X) image or (T, Y, X) stack, got shape {tuple(arr.shape)}"
        )
    n = int(arr.shape[0])
    idx = np.unique(np.linspace(0, n - 1, min(n, max_frames)).astype(int))
    frames = np.stack([np.asarray(arr[int(t)], dtype=np.float32) for t in idx])
    if lattice_kind(lattice) == "square":
        return _calibrate_square(frames, lattice, metadata_pixel_size, None, 0.35, pad)
    a = lattice_constant(lattice)
    key = lattice.strip().lower() if isinstance(lattice, str) else ""
    bond = float(BOND_LENGTHS.get(key, a / np.sqrt(3)))
    geometries = GEOMETRIES.get(key, ("honeycomb", "triangular"))
    det = _scale_detector(detector, key)

    if crop_px is None:
        crop_px = (
            256 if detector in ("auto", "unet") and key == "graphene" or detector == "unet" else 512
        )
    rs = frames[
        np.unique(np.linspace(0, len(frames) - 1, min(len(frames), real_space_frames)).astype(int))
    ]
    h, w = rs.shape[1:]
    y0, x0 = max(0, (h - crop_px) // 2), max(0, (w - crop_px) // 2)
    rs = rs[:, y0 : y0 + crop_px, x0 : x0 + crop_px]
    trials = ls.scale_trials(rs, det, bond, a, geometries)
    best, ratio = ls.choose_scale(trials)
    if best is None:
        raise CalibrationError(
            f"no {f'{key} atoms' if key in LATTICES else f'atoms of a hexagonal lattice with a = {a:g} Å'} "
            "found at any pixel size from 0.04 to 0.42 Å/px: check the lattice (--lattice; "
            "a number of Å names hexagonal lattices only, srtio3 or square:<Å> a square "
            "one) or give the pixel size (--pixel-size)"
        )
    nn_estimate = best.implied_A_per_px
    warnings: list[str] = []
    if ratio < 3:
        warnings.append(f"another spot order is nearly as likely (evidence {ratio:.1f}:1).")
    if best.lattice_fraction < 0.3:
        warnings.append(
            f"only {100 * best.lattice_fraction:.0f} % of the atoms show the lattice geometry."
        )
    fft = None
    try:
        fft = calibrate_fft(frames, a, nn_estimate, search=0.12, pad=pad)
    except CalibrationError:
        pass
    fft_ok = (
        fft is not None
        and fft.details["n_spots"] >= 4
        and fft.details["spread_pct"] <= 8.0
        and abs(fft.pixel_size / nn_estimate - 1) <= 0.08
    )
    if fft_ok and fft.details["spread_pct"] > 3.0:
        warnings.append(
            f"the lattice is distorted (FFT spots spread {fft.details['spread_pct']:.1f} %): "
            "the value is their mean."
        )
    agreement = 100 * (fft.pixel_size / nn_estimate - 1) if fft is not None else None
    if fft_ok:
        estimate, method = fft.pixel_size, "lattice"
    else:
        estimate, method = nn_estimate, "nn"
        warnings.append(
            "the FFT shows no clear first-order spots near the real-space value; "
            "the real-space value is used (a few % less precise)."
        )
    details = {
        "nn_pixel_size": nn_estimate,
        "fft_pixel_size": fft.pixel_size if fft is not None else None,
        "fft_nn_agreement_pct": agreement,
        "nn_spread_pct": best.nn_spread_pct,
        "geometry": best.geometry,
        "n_atoms": best.n_atoms,
        "trials": [t.to_dict() for t in trials],
    }
    if fft is not None:
        details.update(
            {k: fft.details[k] for k in ("spread_pct", "n_spots", "per_spot_pixel_size")}
        )
        details["fft_spot_strength"] = fft.confidence
    return Calibration(
        pixel_size=float(estimate),
        method=method,
        metadata_pixel_size=float(metadata_pixel_size) if metadata_pixel_size else None,
        discrepancy_pct=_discrepancy(estimate, metadata_pixel_size),
        confidence=float(best.lattice_fraction),
        lattice_A=a,
        details=details,
        evidence_ratio=float(ratio),
        warnings=warnings,
    )


def _scale_detector(detector: str | Any, lattice_key: str) -> Any:
    """The atom finder for :func:`calibrate_lattice` (see its ``detector``)."""
    from atomlens.chem import lattice_scale as ls

    if callable(detector):
        return detector
    if detector == "auto":
        detector = "unet" if lattice_key == "graphene" else "peaks"
    if detector == "unet":
        return ls.unet_detector()
    if detector == "peaks":
        bond_A = BOND_LENGTHS.get(lattice_key, 1.42)
        return lambda image, pixel_size: ls.peak_atoms(image, bond_A / pixel_size)
    raise CalibrationError(
        f"unknown detector {detector!r}: use 'auto', 'unet', 'peaks' or a callable"
    )


def _miller(zone: str, h: int, k: int) -> str:
    """The spot family of index (h, k) in the reduced basis of ``zone``, e.g. ``(110)``:
    [001]: b1, b2 along a*, b*; [110]: b1 along c* (001), b2 along (1-10)."""
    hkl = (h, k, 0) if zone == "[001]" else (k, -k, h)
    fam = sorted((abs(int(v)) for v in hkl), reverse=True)
    return "(" + "".join(str(v) for v in fam) + ")"


def _calibrate_square(
    image: Any,
    lattice: str | float,
    metadata_pixel_size: float | None,
    nominal: float | None,
    search: float,
    pad: int,
) -> Calibration:
    """Pixel size (Å/px) of a square lattice (``srtio3``, ``"square:<Å>"``) from the
    reciprocal lattice its FFT spots generate (:mod:`atomlens.chem.fft_cell`).

    The significant spots of the power spectrum (``image``: (Y, X) or (T, Y, X)) are
    indexed by the smallest cell that indexes them all; its reduced basis must match the
    square cell ([001]: two equal perpendicular vectors, 1/a) or, for a named cubic
    perovskite, the [110] cell (1/a by √2/a). The pixel size is the square root of the
    fitted cell area (all indexed spots, least squares) over the crystal's. Without
    ``nominal`` (method ``"lattice"``) the spot order is the generated lattice's, with
    ``evidence_ratio`` = strength of the weakest spots that make the cell that fine
    (for [001] the (100) family) over the strongest strength at the positions a √2 or
    2x larger cell would add. With ``nominal`` (method ``"fft"``) the order (x1, √2, 2 or
    their inverses) nearest the nominal value is taken, within ±``search``.

    What no image can tell: when the A and BO columns look alike there are no (100)
    spots, the image's true period is a/√2 and the estimate √2 too large. In HAADF
    that shows as (100)-read spots stronger than the (110) (a warning); an ABF image
    whose Sr and TiO columns look alike but whose O columns show has the HAADF pattern
    at a/√2 and passes unflagged.
    """
    from atomlens.chem import fft_cell as fc

    a = lattice_constant(lattice)
    key = lattice.strip().lower() if isinstance(lattice, str) else ""
    zones = ("[001]", "[110]") if key in SQUARE_LATTICES else ("[001]",)
    name = key if key in SQUARE_LATTICES else f"square lattice with a = {a:g} Å"
    frame_px = int(max(np.shape(image)[-2:]))
    spec = power_spectrum(image, pad=pad)
    n = spec.shape[0]
    lo = max(n / 120.0, 3.0 * n / frame_px)  # periods up to 120 px, at least 3 in the frame
    hi = n / 3.0
    found = fc.spectrum_spots(spec, frame_px, lo, hi)
    vec, strength = found["vec"], found["strength"]
    basis = fc.generated_lattice(vec, strength, min_len=0.5 * lo) if len(vec) >= 2 else None
    if basis is None:
        raise CalibrationError(
            f"no lattice in the FFT ({len(vec)} significant spots): the image shows no "
            f"clear {name}; check the lattice (--lattice) or give the pixel size (--pixel-size)"
        )
    basis = fc.reduce_basis(fc.refine_basis(vec, basis)[0])  # then indexed in this basis
    idx, err = fc.index_spots(vec, basis)
    used = (err < fc.INDEX_TOL) & (np.abs(idx).sum(1) > 0)
    zone, ratio, angle = fc.match_zone(basis, zones)
    if zone is None:
        raise CalibrationError(
            f"the FFT spots form a {ratio:.2f}:1 cell at {angle:.0f}°, not the {name} "
            f"(square{' or its [110] rectangle, √2:1' if len(zones) > 1 else ''}, 90°): "
            "check the lattice (--lattice) or give the pixel size (--pixel-size)"
        )
    cell_A = np.array(fc.ZONES[zone]) / a  # reciprocal basis lengths, cycles/Å
    area_px = abs(float(np.linalg.det(basis))) / n**2  # cycles²/px²
    estimate = float(np.sqrt(area_px / (cell_A[0] * cell_A[1])))
    g_px = np.hypot(vec[used, 0], vec[used, 1]) / n
    g_A = np.hypot(idx[used, 0] * cell_A[0], idx[used, 1] * cell_A[1])
    per_spot = g_px / g_A
    spread = float(100 * per_spot.std() / per_spot.mean())
    h, k = idx[:, 0], idx[:, 1]
    # the spots that make the cell this fine: for each coarser reading (an index-2
    # sublattice of spots), the strongest spot outside it; the weakest of those
    needed = []
    for outside in (h % 2 != 0, k % 2 != 0, (h + k) % 2 != 0):
        sel = np.nonzero(used & outside)[0]
        needed.append(sel[np.argmax(strength[sel])] if len(sel) else -1)
    s_needed = [float(strength[i]) if i >= 0 else 0.0 for i in needed]
    weakest = needed[int(np.argmin(s_needed))]
    s_gen = min(s_needed)
    family = _miller(zone, h[weakest], k[weakest]) if weakest >= 0 else "?"
    smooth, c, hw = found["smooth"], found["c"], found["hw"]
    halves = [basis[0] / 2, basis[1] / 2, (basis[0] + basis[1]) / 2, (basis[0] - basis[1]) / 2]
    s_half = max(fc.strength_at(smooth, c, g, hw) for g in halves)
    evidence = s_gen / max(s_half, 1.0)
    warnings: list[str] = []
    method = "lattice"
    if nominal:
        method = "fft"
        readings = {1.0: "", 1 / np.sqrt(2): "/√2", 0.5: "/2", np.sqrt(2): "x√2", 2.0: "x2"}
        f = min(readings, key=lambda f: abs(np.log(estimate * f / nominal)))
        if abs(np.log(estimate * f / nominal)) > np.log(1 + search):
            raise CalibrationError(
                f"the {name} spots give {estimate:.5f} Å/px (or √2 or 2x that, other spot "
                f"orders), none within ±{100 * search:.0f} % of the nominal {nominal:.5f} "
                "Å/px: check the nominal pixel size or leave it out"
            )
        if f != 1.0:
            estimate *= f
            warnings.append(
                f"the nominal pixel size reads the spots as another order than the lattice "
                f"they generate ({readings[f]}): without it the estimate is "
                f"{estimate / f:.5f} Å/px."
            )
    else:
        if evidence < 3:
            warnings.append(
                f"the {family} spots that fix the cell are only {evidence:.1f}x the strength "
                "where a √2 or 2x larger cell would put spots: the spot order is unsure."
            )
        if s_gen < 3 * fc.MIN_STRENGTH:
            warnings.append(
                f"the {family} spots that fix the cell are faint (strength {s_gen:.0f}, noise "
                "reaches ~15): if they are noise the pixel size is √2 or 2x larger."
            )
        if zone == "[001]":
            s100 = max(
                fc.strength_at(smooth, c, basis[0], hw), fc.strength_at(smooth, c, basis[1], hw)
            )
            s110 = max(
                fc.strength_at(smooth, c, basis[0] + basis[1], hw),
                fc.strength_at(smooth, c, basis[0] - basis[1], hw),
            )
            if s100 >= s110:
                warnings.append(
                    "the spots read as (100) are stronger than the (110): on a perovskite the "
                    "(110) spots (A + BO columns) are usually the brighter, so these may be "
                    "(110) spots of an image whose A and BO columns look alike (the pixel size "
                    "would then be √2 smaller)."
                )
    if spread > 3.0:
        warnings.append(
            f"the lattice is distorted (FFT spots spread {spread:.1f} %): the value is their mean."
        )
    return Calibration(
        pixel_size=float(estimate),
        method=method,
        metadata_pixel_size=float(metadata_pixel_size) if metadata_pixel_size else None,
        discrepancy_pct=_discrepancy(estimate, metadata_pixel_size),
        confidence=float(strength[used].sum() / strength.sum()),
        lattice_A=a,
        details={
            "geometry": "square" if zone == "[001]" else "rectangular",
            "zone": zone,
            "cell_ratio": ratio,
            "cell_angle_deg": angle,
            "basis_pixel_size": [float(np.hypot(*basis[i]) / n / cell_A[i]) for i in (0, 1)],
            "per_spot_pixel_size": [float(v) for v in per_spot],
            "spot_index": [[int(a_), int(b_)] for a_, b_ in idx[used]],
            "spread_pct": spread,
            "n_spots": int(used.sum()),
            "fft_spot_strength": float(np.median(strength[used])),
            "order_family": family,
            "order_spot_strength": s_gen,
            "larger_cell_strength": s_half,
            "lattice_angle_deg": float(np.degrees(np.arctan2(basis[0][0], basis[0][1])) % 90.0),
        },
        evidence_ratio=None if nominal else float(evidence),
        warnings=warnings,
    )
