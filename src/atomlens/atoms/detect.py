"""The headless atom finder: a stack in, the atom table (and optionally maps) out.

``detect`` runs the whole chain; ``iter_detect`` is the same as a generator yielding one
:class:`FrameResult` per frame, for progress bars and GUI workers (the napari widget
wraps it on a worker thread and can stop between frames).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from atomlens.atoms.find import find_atoms
from atomlens.atoms.halo import add_si_neighbours, wants_neighbours
from atomlens.atoms.refine import refine_com, refine_gaussian, refine_window
from atomlens.atoms.uncertainty import sigma_from_cov
from atomlens.io.stack import stack_frames
from atomlens.segment.model_file import Detector, load_detector
from atomlens.segment.predict import (
    iter_model_maps,
    resolve_pixel_size,
    to_input_coords,
    upsample_maps,
)

COLUMNS = ["frame", "y", "x", "cls", "prob", "border"]


@dataclass
class FrameResult:
    """One frame's detections: ``atoms`` (table rows of this frame), ``maps`` (C, Y, X) or None."""

    frame: int
    index: int  # position in the requested frame list
    n_frames: int
    atoms: pd.DataFrame
    maps: np.ndarray | None = None


@dataclass
class DetectionResult:
    """The atom table for all requested frames (+ maps ``(T, C, Y, X)`` when asked)."""

    atoms: pd.DataFrame
    maps: np.ndarray | None
    classes: tuple[str, ...]
    pixel_size: float
    model_card: dict = field(default_factory=dict)
    spot_scale: dict = field(default_factory=dict)  # spot-width resampling record


def empty_table(classes: Sequence[str] = ("C", "Si")) -> pd.DataFrame:
    """An atom table with no rows and the standard columns and dtypes."""
    return pd.DataFrame(
        {
            "frame": pd.Series([], dtype=np.int64),
            "y": pd.Series([], dtype=float),
            "x": pd.Series([], dtype=float),
            "cls": pd.Categorical([], categories=list(classes)),
            "prob": pd.Series([], dtype=float),
            "border": pd.Series([], dtype=bool),
        }
    )


def refine_positions(
    raw: np.ndarray, yx: np.ndarray, refine: str, pixel_size: float, spot_factor: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel positions ``(N, 2)`` px of the atoms at ``yx`` on the raw (Y, X) frame
    (``refine``: ``"gaussian"`` fit, ``"com"`` centroid or ``"none"``; the window grows
    with ``spot_factor``, see :func:`atomlens.atoms.refine.refine_window`) and their
    per-axis standard error ``(N,)`` px (Gaussian fit only, else NaN)."""
    yx = np.asarray(yx, float).reshape(-1, 2)
    sigma_px = np.full(len(yx), np.nan)
    if refine not in ("gaussian", "com", "none"):
        raise ValueError(f"refine must be 'gaussian', 'com' or 'none', got {refine!r}")
    if len(yx) and refine != "none":
        radius, max_shift = refine_window(pixel_size, spot_factor)
        if refine == "gaussian":
            yx, _, _, cov = refine_gaussian(
                raw, yx, radius, max_shift_px=max_shift, return_cov=True
            )
            sigma_px = sigma_from_cov(cov)
        else:
            new = refine_com(raw, yx, radius)
            far = np.hypot(*(new - yx).T) > max_shift
            yx = np.where(far[:, None], yx, new)
    return yx, sigma_px


def atoms_in_frame(
    raw: np.ndarray,
    maps_model: np.ndarray,
    det: Detector,
    pixel_size: float,
    frame: int,
    *,
    threshold: float = 0.5,
    refine: str = "gaussian",
    method: str = "components",
    border_A: float = 1.0,
    si_neighbours: str | bool = "auto",
    spot_factor: float = 1.0,
    bad: np.ndarray | None = None,
    verify: tuple[Any, float] | None = None,
) -> pd.DataFrame:
    """Atoms of one frame from its model-grid maps, refined on the raw (Y, X) frame.

    ``si_neighbours``: ``"auto"`` (on for a model with C and Si classes), ``"on"`` or
    ``"off"``: re-find each Si's neighbours on test-time-augmented maps
    (:mod:`atomlens.atoms.site_tta`; ``"auto"``: frames with at most
    ``MAX_AUTO_SITES`` Si) and add the dim C beside each Si that the maps miss on the
    Si's probe halo (:mod:`atomlens.atoms.halo`). ``spot_factor``: the spots are this
    many times wider than the model's (spot-width resampling): the refinement window
    grows with them. ``bad``: (Y, X) bool, the frame's NaN/inf pixels (filled in ``raw``);
    no atom is kept within a pixel of them (the maps are masked there already; the
    neighbour passes run the network again on ``raw``). ``verify``: ``(VerifyRule, spot
    FWHM in pixels)``: keep only the atoms whose contrast above the local support stands
    out of the pixel noise and of this frame's support (:mod:`atomlens.atoms.spot_verify`;
    used on spot-resampled frames of sparse atoms)."""
    found = find_atoms(maps_model, det.classes, threshold, method=method)
    yx = to_input_coords(np.column_stack([found["y"], found["x"]]), raw.shape, maps_model.shape)
    yx, sigma_px = refine_positions(raw, yx, refine, pixel_size, spot_factor)
    border = border_flags(yx, raw.shape, pixel_size, border_A)
    table = pd.DataFrame(
        {
            "frame": np.full(len(yx), frame, np.int64),
            "y": yx[:, 0] if len(yx) else np.zeros(0),
            "x": yx[:, 1] if len(yx) else np.zeros(0),
            "cls": pd.Categorical(found["cls"], categories=list(det.classes[1:])),
            "prob": found["prob"].astype(float),
            "border": border,
            "sigma_px": sigma_px,
            "sigma_A": sigma_px * pixel_size,
        }
    )
    if verify is not None and len(table):
        from atomlens.atoms.spot_verify import verify_spots

        _, keep = verify_spots(raw, table, verify[1], verify[0])
        if keep.sum() < verify[0].min_kept:  # nothing stands out of the support: the
            # test cannot judge this frame; the network's atoms at the unverified threshold
            return atoms_in_frame(
                raw,
                maps_model,
                det,
                pixel_size,
                frame,
                threshold=threshold / verify[0].candidate_factor,
                refine=refine,
                method=method,
                border_A=border_A,
                si_neighbours=si_neighbours,
                spot_factor=spot_factor,
                bad=bad,
            )
        table = table[keep].reset_index(drop=True)
    if wants_neighbours(si_neighbours, det.classes):
        from atomlens.atoms.site_tta import local_pass

        # the Si's neighbours re-found on test-time-augmented maps, then the ring search
        table = local_pass(table, raw, det, pixel_size, si_neighbours, spot_factor)
        table = add_si_neighbours(table, raw, pixel_size, fg=1.0 - maps_model[0])
        table = _off_masked(table, bad)
    return table


def border_flags(
    yx: np.ndarray, shape: Sequence[int], pixel_size: float, border_A: float = 1.0
) -> np.ndarray:
    """(N,) bool: which atoms at ``yx`` ((N, 2) pixels, the refined positions) lie closer
    than ``border_A`` Å to the edge of a frame of ``shape`` ``(Y, X)`` pixels (pixel
    centres 0..Y-1, 0..X-1; ``pixel_size`` Å/px). Both detection branches (the network's
    atoms and a spot classifier's) flag their atoms with it after refinement."""
    yx = np.asarray(yx, dtype=float).reshape(-1, 2)
    margin = border_A / pixel_size
    h, w = shape[-2:]
    return (
        (yx[:, 0] < margin)
        | (yx[:, 1] < margin)
        | (yx[:, 0] > h - 1 - margin)
        | (yx[:, 1] > w - 1 - margin)
    )


def _off_masked(table: pd.DataFrame, bad: np.ndarray | None) -> pd.DataFrame:
    """``table`` without atoms within one pixel of a ``bad`` (Y, X) pixel."""
    if bad is None or not len(table) or not bad.any():
        return table
    from scipy import ndimage as ndi

    grown = ndi.binary_dilation(bad, iterations=1)
    iy = np.clip(np.round(table["y"].to_numpy()).astype(int), 0, bad.shape[0] - 1)
    ix = np.clip(np.round(table["x"].to_numpy()).astype(int), 0, bad.shape[1] - 1)
    return table[~grown[iy, ix]].reset_index(drop=True)


def iter_detect(
    stack: Any,
    model: Detector | str | None = None,
    frames: Sequence[int] | slice | None = None,
    threshold: float = 0.5,
    refine: str = "gaussian",
    return_maps: bool = False,
    *,
    pixel_size: float | None = None,
    method: str = "components",
    border_A: float = 1.0,
    batch_size: int = 4,
    device: str = "auto",
    invert: bool = False,
    si_neighbours: str | bool = "auto",
    spot_scale: str | float = "auto",
    scale_record: dict | None = None,
    spot_choice: tuple[float, dict] | None = None,
    tta: int = 1,
) -> Iterator[FrameResult]:
    """Yield a :class:`FrameResult` per frame (see :func:`detect` for the arguments).

    ``invert``: negate every frame before the network and the refinement (dark atoms,
    ABF/BF contrast, for a model trained on bright atoms; see
    :func:`atomlens.atoms.suitability.detection_setup`). ``scale_record``: a dict that
    receives the spot-width resampling record
    (:func:`atomlens.atoms.spot_scale.network_pixel_size`); ``spot_choice``: that
    function's ``(pixel size, record)`` already made for these frames (e.g. by
    :func:`atomlens.atoms.suitability.detection_setup`), used instead of measuring again.
    ``tta``: see :func:`detect`.
    """
    from atomlens.atoms.spot_scale import detection_threshold, network_pixel_size

    det = model if isinstance(model, Detector) else load_detector(model)
    ps = resolve_pixel_size(stack, pixel_size)
    if invert:
        stack = Negated(stack, ps)
    n_total = _n_frames(stack)
    idx = _frame_list(frames, n_total)
    if spot_choice is not None:
        ps_net, rec = spot_choice[0], dict(spot_choice[1])
    else:
        ps_net, rec = network_pixel_size(stack, ps, det.card, spot_scale, idx)
    verify = spot_clf = None
    if ps_net != ps:  # resampled: the probability scale of broad faint spots (model card)
        threshold = detection_threshold(threshold, ps, (ps_net, rec))
        verify = _verify_rule(det, rec, ps)
        if verify is not None:  # liberal candidates, then contrast verification
            threshold *= verify[0].candidate_factor
            rec["verify"] = verify[0].to_dict()
            spot_clf = _spot_classifier(det)
            if spot_clf is not None:  # learned from corrected frames: it decides
                rec["spot_classifier"] = {"threshold": spot_clf.threshold}
        rec["threshold"] = threshold
    if scale_record is not None:
        scale_record.update(rec)
    for i, (t, raw, m, bad) in enumerate(
        iter_model_maps(
            stack,
            det,
            pixel_size=ps_net,
            frames=idx,
            batch_size=batch_size,
            device=device,
            tta=tta,
        )
    ):
        if spot_clf is not None:  # the fine-tuned model's own spot classifier decides
            from atomlens.atoms.spot_classifier import atom_table

            full = upsample_maps(m, raw.shape)
            up = full[1:]
            atoms = atom_table(spot_clf, raw, up.max(0), ps, t, str(det.classes[1]), border_A)
            atoms = _classifier_atoms(atoms, raw, up, det, refine, ps, ps / ps_net, border_A)
            atoms = _off_masked(atoms, bad)
            yield FrameResult(t, i, len(idx), atoms, full if return_maps else None)
            continue
        atoms = atoms_in_frame(
            raw,
            m,
            det,
            ps,
            t,
            threshold=threshold,
            refine=refine,
            method=method,
            border_A=border_A,
            si_neighbours=si_neighbours,
            spot_factor=ps / ps_net,
            bad=bad,
            verify=verify,
        )
        yield FrameResult(
            t, i, len(idx), atoms, upsample_maps(m, raw.shape) if return_maps else None
        )


def _verify_rule(det: Detector, rec: dict, pixel_size: float) -> tuple[Any, float] | None:
    """``(VerifyRule, spot FWHM in pixels)`` when the model card has a ``spot_verify``
    rule (contrast verification) and the spots' width is known, else None."""
    from atomlens.atoms.spot_verify import VerifyRule

    rule = VerifyRule.from_card(det.card)
    fwhm = rec.get("fwhm_A")
    if rule is None or fwhm is None or not float(fwhm) > 0:
        return None
    return rule, float(fwhm) / pixel_size


def _classifier_atoms(
    atoms: pd.DataFrame,
    raw: np.ndarray,
    class_maps: np.ndarray,
    det: Detector,
    refine: str,
    pixel_size: float,
    spot_factor: float,
    border_A: float = 1.0,
) -> pd.DataFrame:
    """The spot classifier's atoms (integer pixels) refined like the network's
    (:func:`refine_positions`, with ``sigma_px``/``sigma_A``; ``border`` from the refined
    position, :func:`border_flags`) and named by the network's most probable atom class
    at each spot (``class_maps``: (C-1, Y, X) on the frame's grid)."""
    iy = atoms["y"].to_numpy(int)
    ix = atoms["x"].to_numpy(int)
    names = np.asarray(det.classes[1:], dtype=object)
    cls = names[class_maps[:, iy, ix].argmax(0)] if len(atoms) else names[:0]
    yx, sigma_px = refine_positions(
        raw, atoms[["y", "x"]].to_numpy(float), refine, pixel_size, spot_factor
    )
    out = atoms.copy()
    out["y"], out["x"] = yx[:, 0], yx[:, 1]
    out["cls"] = pd.Categorical(cls, categories=list(det.classes[1:]))
    out["sigma_px"], out["sigma_A"] = sigma_px, sigma_px * pixel_size
    out["border"] = border_flags(yx, raw.shape, pixel_size, border_A)
    return out


def _spot_classifier(det: Detector) -> Any:
    """The :class:`atomlens.atoms.spot_classifier.SpotClassifier` of a fine-tuned
    model's card (sparse spots on a support), or None."""
    if not det.card.get("spot_classifier"):
        return None
    from atomlens.atoms.spot_classifier import SpotClassifier

    return SpotClassifier.from_card(det.card)


class Negated:
    """A stack whose frames are read negated, lazily (``data[t]`` -> ``-frame``): dark
    atoms become bright without copying the movie. ``data`` is always (T, Y, X)."""

    def __init__(self, stack: Any, pixel_size: float) -> None:
        self._data = stack_frames(stack)
        self.pixel_size = pixel_size
        self.data = self

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    @property
    def ndim(self) -> int:
        return 3

    def __len__(self) -> int:
        return int(self._data.shape[0])

    def __getitem__(self, t: Any) -> np.ndarray:
        return -np.asarray(self._data[t], dtype=np.float32)


def detect(
    stack: Any,
    model: Detector | str | None = None,
    frames: Sequence[int] | slice | None = None,
    threshold: float = 0.5,
    refine: str = "gaussian",
    return_maps: bool = False,
    progress: Callable[[int, int], Any] | None = None,
    *,
    pixel_size: float | None = None,
    method: str = "components",
    border_A: float = 1.0,
    batch_size: int = 4,
    device: str = "auto",
    si_neighbours: str | bool = "auto",
    spot_scale: str | float = "auto",
    tta: int = 1,
) -> DetectionResult:
    """Find atoms in a stack with the shipped (or a given) model.

    Parameters
    ----------
    stack : :class:`atomlens.io.Stack` or a (T, Y, X) / (Y, X) array (then ``pixel_size``).
    model : :class:`Detector`, a model file path, or ``None`` for the shipped model.
    frames : frame indices or a slice (default: all).
    threshold : foreground probability for an atom pixel (0..1).
    refine : ``"gaussian"`` (2-D Gaussian fit), ``"com"`` or ``"none"``.
    return_maps : also return maps ``(T, C, Y, X)`` float32 on the input grid (memory!).
    progress : called as ``progress(done, total)`` after each frame.
    pixel_size : Å/px override of the stack's pixel size.
    border_A : atoms closer than this to the frame edge (Å) get ``border=True``.
    si_neighbours : ``"auto"`` (on for models with C and Si classes), ``"on"``, ``"off"``:
        re-find each Si's neighbours on test-time-augmented maps
        (:mod:`atomlens.atoms.site_tta`; ``"auto"``: frames with at most 16 Si) and add
        the dim C beside each Si missed on its probe halo (:mod:`atomlens.atoms.halo`).
    spot_scale : ``"auto"`` (models whose card asks for it, e.g. ``general``: spots much
        broader than trained are measured and the image shown to the network at a smaller
        stated pixel size, :mod:`atomlens.atoms.spot_scale`), ``"off"``, or the spot FWHM
        in Å; the choice is in ``DetectionResult.spot_scale``.
    tta : test-time augmentation of the whole frame's maps: the mean over 1 (off), 2, 4
        or 8 symmetries of the square (:mod:`atomlens.segment.tta`; ``tta`` x the network
        time). The general model's card (``"tta"``) gives the cross-validated setting
        to use it with (tta 8, refine none, threshold 0.4).

    Returns
    -------
    :class:`DetectionResult` with the atom table (frame, y, x [pixels], cls, prob, border).
    """
    det = model if isinstance(model, Detector) else load_detector(model)
    tables, maps = [], []
    rec: dict = {}
    for fr in iter_detect(
        stack,
        det,
        frames,
        threshold,
        refine,
        return_maps,
        pixel_size=pixel_size,
        method=method,
        border_A=border_A,
        batch_size=batch_size,
        device=device,
        si_neighbours=si_neighbours,
        spot_scale=spot_scale,
        scale_record=rec,
        tta=tta,
    ):
        tables.append(fr.atoms)
        if return_maps:
            maps.append(fr.maps)
        if progress is not None:
            progress(fr.index + 1, fr.n_frames)
    atoms = pd.concat(tables, ignore_index=True) if tables else empty_table(det.classes[1:])
    atoms["cls"] = pd.Categorical(atoms["cls"].astype(str), categories=list(det.classes[1:]))
    return DetectionResult(
        atoms,
        np.stack(maps) if return_maps and maps else None,
        det.classes,
        resolve_pixel_size(stack, pixel_size),
        det.card,
        rec,
    )


def _n_frames(stack: Any) -> int:
    data = stack.data if hasattr(stack, "pixel_size") and hasattr(stack, "data") else stack
    shape = np.shape(data) if not hasattr(data, "shape") else data.shape
    return 1 if len(shape) == 2 else int(shape[0])


def _frame_list(frames: Sequence[int] | slice | None, n: int) -> list[int]:
    if frames is None:
        return list(range(n))
    if isinstance(frames, slice):
        return list(range(n))[frames]
    out = [int(t) + (n if int(t) < 0 else 0) for t in frames]
    bad = [t for t in out if not 0 <= t < n]
    if bad:
        raise IndexError(f"frames {bad} out of range for a stack of {n} frames")
    return out
