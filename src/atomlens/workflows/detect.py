"""Detect workflow: a movie in, the atom table (and optionally probability maps) out.

The Detect dock, ``atomlens detect`` and the detect stage of ``atomlens run`` all call
:func:`run` (or :func:`detect_frames` for a chunk of frames) with a :class:`DetectRecipe`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from atomlens.workflows.events import Cancelled, Progress, check_stop
from atomlens.workflows.recipe import Recipe, setting


@dataclass
class DetectRecipe(Recipe):
    """Settings of U-Net atom finding (``[detect]`` in the pipeline config)."""

    section = "detect"

    model: str | None = setting(
        None,
        doc="detector: a shipped name (graphene, general), 'auto' "
        "(chosen from the image), or a .pt file; None = graphene (in atomlens run: a "
        "project's fine-tuned detector, else auto, as atomlens detect and the Detect dock)",
    )
    contrast: str = setting(
        "auto",
        choices=("auto", "bright", "dark"),
        doc="atoms bright (HAADF) or dark (ABF/BF); auto: from the image",
    )
    threshold: float = setting(0.5, min=0.0, max=1.0, doc="foreground probability of atom pixels")
    refine: str = setting(
        "gaussian", choices=("gaussian", "com", "none"), doc="sub-pixel refinement on the raw image"
    )
    batch_size: int = setting(4, min=1, doc="frames per network batch")
    device: str = setting("auto", doc="auto (CUDA if present), cpu or cuda")
    save_maps: bool = setting(True, doc="keep the class probability maps (T, C, Y, X)")
    species: str = setting(
        "model",
        choices=("model", "contrast"),
        doc="species from the model's classes, or from each atom's "
        "integrated intensity clustered into classes (any material)",
    )
    contrast_classes: str | int = setting(
        "auto",
        doc="number of contrast classes, or auto (one per class_names name, else chosen by "
        "ICL); species='contrast' only",
    )
    class_names: str = setting(
        "",
        doc="names of the contrast classes, dimmest first, e.g. S2,Mo (empty: class0, class1, ...)",
    )
    si_neighbours: str = setting(
        "auto",
        choices=("auto", "on", "off"),
        doc="re-find each Si's neighbours on test-time-augmented maps (auto: frames with "
        "at most 16 Si) and add the dim C beside each Si missed on its probe halo (ring "
        "search at bond distance on the halo-free image); auto: on for models with C and "
        "Si classes",
    )
    spot_scale: str = setting(
        "auto",
        doc="spot-width resampling before the network: auto (models that ask for it, "
        "e.g. general: spots broader than trained are measured and shrunk), off, or "
        "the spots' FWHM in Å",
    )
    tta: int = setting(
        1,
        choices=(1, 2, 4, 8),
        doc="test-time augmentation: the mean probability map over this many symmetries "
        "of the square (1 = off; 8 x the network time); the general model's card gives "
        "the cross-validated setting (tta 8, refine none, threshold 0.4)",
    )


@dataclass
class DetectResult:
    """Atoms of the requested frames (``frame, y, x`` px, ``cls``, ``prob``, ``border``,
    ``atom_id``), maps ``(T, C, Y, X)`` float32 or None, the class names (background
    first), the pixel size (Å/px) used, and the recipe. ``model_name``: the detector that
    ran (the shipped model 'auto' chose, a shipped name or a ``.pt`` path);
    ``model_reason``: why (``"auto: <why>"``, ``"as asked"``; dark atoms inverted)."""

    atoms: pd.DataFrame
    maps: np.ndarray | None
    classes: list[str]
    pixel_size: float
    frames: list[int]
    recipe: DetectRecipe
    model_card: dict = field(default_factory=dict)
    stopped: bool = False
    model_name: str = ""  # the detector that ran, e.g. "general"
    model_reason: str = ""  # why, e.g. "auto: atoms look dark (ABF/BF contrast)"
    warnings: list[str] = field(default_factory=list)  # the model may not fit the image
    species_model: dict = field(default_factory=dict)  # contrast classes (species='contrast')
    spot_scale: dict = field(default_factory=dict)  # spot-width resampling: measured, applied
    inverted: bool = False  # dark atoms: frames (and contrast intensities) negated

    @property
    def model_choice(self) -> str:
        """Which model and why in one line, e.g. ``"general (auto: ...)"`` ('' if unknown)."""
        if not self.model_name:
            return ""
        return f"{self.model_name} ({self.model_reason})" if self.model_reason else self.model_name


_DETECTORS: dict[str | None, Any] = {}
_LOCK = threading.Lock()


def load_recipe_detector(recipe: DetectRecipe) -> Any:
    """The recipe's detector, loaded once per process (chunks and frames share it)."""
    return _load(recipe.model)


def _load(model: str | None) -> Any:
    from atomlens.segment.registry import load_model  # shipped names or .pt paths

    with _LOCK:
        if model not in _DETECTORS:
            _DETECTORS.clear()  # one model at a time in memory
            _DETECTORS[model] = load_model(model)
        return _DETECTORS[model]


def run(
    stack: Any,
    recipe: DetectRecipe | None = None,
    frames: str | list[int] | None = None,
    *,
    pixel_size: float | None = None,
    stop: threading.Event | None = None,
    maps: bool | None = None,
    on_maps: Callable[[int, np.ndarray], None] | None = None,
    check_fit: bool = True,
) -> Generator[Progress, None, DetectResult]:
    """Detect atoms frame by frame, yielding :class:`Progress` after each frame.

    Parameters
    ----------
    stack : :class:`atomlens.io.Stack` (or a ``(T, Y, X)`` array with ``pixel_size``).
    recipe : :class:`DetectRecipe` (defaults when None).
    frames : any frame selection of :func:`atomlens.io.frames.parse_frames`.
    pixel_size : Å/px; None = the stack's (see :func:`atomlens.io.pixel_size.resolve_pixel_size`).
    stop : when set, detection ends after the current frame (``stopped=True``, the
        frames done so far are returned).
    maps : keep maps (default ``recipe.save_maps``); memory: T x C x Y x X float32.
    on_maps : instead of keeping them, hand each frame's maps ``(C, Y, X)`` to
        ``on_maps(position_in_frame_list, maps)`` (stream them to disk; bounded memory).
    check_fit : measure on the first frame whether the model fits the image
        (``DetectResult.warnings``, :func:`atomlens.atoms.suitability.model_fit_warnings`).

    Returns (as the generator's value) a :class:`DetectResult`.
    """
    from atomlens.atoms.detect import empty_table, iter_detect
    from atomlens.atoms.spot_scale import parse_spot_scale
    from atomlens.atoms.suitability import detection_setup
    from atomlens.io.atoms_table import with_atom_ids
    from atomlens.io.frames import parse_frames

    recipe = (recipe or DetectRecipe()).validate()
    parse_spot_scale(recipe.spot_scale)  # a bad setting fails before any frame is read
    if recipe.species == "contrast":  # a bad class count or names fail now, not after detecting
        from atomlens.atoms.contrast import check_classes_setting

        check_classes_setting(recipe.contrast_classes, recipe.class_names)
    n_total = int(getattr(stack, "n_frames", None) or np.shape(getattr(stack, "data", stack))[0])
    idx = parse_frames(frames, n_total)
    ps = _pixel_size(stack, pixel_size)
    # the model ('auto': chosen from the first frame), dark-atom inversion, fit warnings
    setup = detection_setup(
        stack,
        recipe.model,
        idx,
        ps,
        threshold=recipe.threshold,
        contrast=recipe.contrast,
        warn=check_fit,
        load=_load,
        spot_scale=recipe.spot_scale,
    )
    det = setup.detector
    keep_maps = recipe.save_maps if maps is None else bool(maps)
    want_maps = keep_maps or on_maps is not None
    tables, map_list, stopped = [], [], False
    scale_rec: dict = {}
    gen = iter_detect(
        stack,
        det,
        idx,
        recipe.threshold,
        recipe.refine,
        want_maps,
        pixel_size=ps,
        batch_size=recipe.batch_size,
        device=recipe.device,
        invert=setup.invert,
        si_neighbours=recipe.si_neighbours,
        spot_scale=recipe.spot_scale,
        scale_record=scale_rec,
        spot_choice=setup.spot,
        tta=recipe.tta,
    )
    try:
        for fr in gen:
            tables.append(fr.atoms)
            if on_maps is not None:
                on_maps(fr.index, fr.maps)
            elif keep_maps:
                map_list.append(fr.maps)
            yield Progress(
                "detect",
                "frames",
                fr.index + 1,
                fr.n_frames,
                f"frame {fr.frame}: {len(fr.atoms)} atoms",
            )
            check_stop(stop)
    except Cancelled:
        stopped = True
    finally:
        gen.close()
    classes = list(det.classes)
    atoms = pd.concat(tables, ignore_index=True) if tables else empty_table(classes[1:])
    atoms["cls"] = pd.Categorical(atoms["cls"].astype(str), categories=classes[1:])
    species_model: dict = {}
    if recipe.species == "contrast" and len(atoms):
        from atomlens.atoms.contrast import species_from_stack

        atoms, cmodel = species_from_stack(
            stack,
            atoms,
            k=classes_for(recipe.contrast_classes, recipe.class_names),
            names=recipe.class_names or None,
            invert=bool(setup.invert),
        )
        species_model = cmodel.summary()
    return DetectResult(
        atoms=with_atom_ids(atoms),
        maps=np.stack(map_list) if map_list else None,
        classes=classes,
        pixel_size=ps,
        frames=idx[: len(tables)],
        recipe=recipe,
        model_card=dict(getattr(det, "card", {}) or {}),
        stopped=stopped,
        model_name=str(setup.name),
        model_reason=str(setup.reason),
        warnings=list(setup.warnings) + _masked(stack, idx[: len(tables)]),
        species_model=species_model,
        spot_scale=scale_rec,
        inverted=bool(setup.invert),
    )


def _masked(stack: Any, frames: list[int]) -> list[str]:
    """The NaN/inf-pixels-masked line for the warnings, when there were any."""
    from atomlens.io.stack import nonfinite_note

    note = nonfinite_note(stack, frames)
    return [note] if note else []


def detect_frames(
    stack: Any,
    recipe: DetectRecipe,
    frames: list[int],
    *,
    pixel_size: float | None = None,
    maps: bool | None = None,
) -> DetectResult:
    """:func:`run` to the end (no events): what a pipeline chunk calls."""
    from atomlens.workflows.events import drain

    return drain(run(stack, recipe, frames, pixel_size=pixel_size, maps=maps, check_fit=False))


def classes_for(classes: str | int, names: str) -> str | int:
    """The number of contrast classes to ask for: ``classes``, except that 'auto' with
    names given is one class per name (the user has said how many species there are;
    ICL could find another number and the names would not fit, failing after every
    frame was detected: 3 names on the SrTiO3 ABF movie, where ICL finds 2)."""
    listed = [n for n in (part.strip() for part in str(names).split(",")) if n]
    if str(classes).strip().lower() == "auto" and listed:
        return len(listed)
    return classes


def _pixel_size(stack: Any, pixel_size: float | None) -> float:
    from atomlens.io.pixel_size import resolve_pixel_size

    return resolve_pixel_size(stack, user=pixel_size).value


__all__ = ["DetectRecipe", "DetectResult", "detect_frames", "load_recipe_detector", "run"]
