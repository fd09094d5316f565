"""Fine-tuning the atom finder on corrected experimental frames (and self-training).

A network trained on simulations works well at the start of a real movie and degrades as
the sample departs from what it saw (holes, contamination, another probe or dose); the
papers' remedy is to retrain it on the first experimental frames. Here the labels come
either from frames the user corrected by hand (:mod:`atomlens.corrections`) or, without
any manual edit, from confident detections of the current model refined by a 2-D
Gaussian fit (``self_train=True``, the skip-rVAE paper's approach).

What to train is chosen from the labels themselves (:func:`plan_finetune`): the
species (a new material's names re-size the network's head: a model that knew C/Si
learns Pt or Mo/S2 under their own names), the model grid (the atoms' measured width
sets the sampling so they look to the network as its training atoms did), the crop
edge (several neighbour distances), the share of crops centred on an atom and the class
weights (from the fraction of atom pixels: sparse single atoms would otherwise teach
"background everywhere"), the learning rate and the step budget. A strip of every
labelled frame (``val_fraction``) is held back: the model is scored there before
training and every few steps, the best weights are kept, and training stops when the
score has not improved for ``patience`` evaluations.

The training data are built exactly as at prediction time: each frame is resampled to
the model's sampling (Å/px) and normalised the same way (:mod:`atomlens.segment.predict`); each label
frame is a disk of the model's label radius per atom with its class index
(:func:`atomlens.simulate.training.label_mask`). Samples are random crops of those frames passed through
:func:`atomlens.segment.augment.augment_pair` (rotation, flips, zoom, shear, noise, blur, gamma,
gradients, jitter, contamination); the loss is the detector's own
(:func:`atomlens.segment.train.loss_fn`: weighted cross-entropy + soft Dice), with AdamW and a cosine
learning-rate decay starting from the base model's weights; the step loop is training's
own (:func:`atomlens.segment.train.iter_steps`).

:func:`iter_finetune` yields typed progress events for the GUI worker (and a
:class:`FinetuneNote` line before work that takes seconds without a step, such as
learning the spot classifier) and honours a stop flag between steps;
:func:`finetune` drains it and returns a :class:`FinetuneResult` whose model card
records provenance (base model, frames, corrections, steps, date).
"""

from __future__ import annotations

import copy
import datetime as _dt
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from atomlens.errors import SettingsError
from atomlens.io.stack import stack_frames
from atomlens.segment.augment import AugmentConfig, augment_pair
from atomlens.segment.model_file import Detector, save_detector
from atomlens.segment.predict import (
    model_grid_shape,
    normalise,
    resample,
    resolve_pixel_size,
)
from atomlens.segment.train import TrainConfig, iter_steps
from atomlens.simulate.training import label_mask
from atomlens.train.adam import Adam, CosineLR

#: Mask value of pixels left out of the loss (the model's own prediction is the target).
IGNORE = 255


class FinetuneError(SettingsError):
    """Fine-tuning cannot start (no labels, unknown species, frames out of range...)."""


@dataclass
class FinetuneConfig:
    """How to fine-tune (every field is stored in the new model's card). ``None`` means
    "chosen from the data" (see :func:`plan_finetune`, which records each choice).

    Attributes
    ----------
    steps : most optimisation steps (one batch each); None: 150, or 300 when the model
        must learn new classes or a new sampling. Early stopping may end sooner.
    lr : peak AdamW learning rate (cosine decay to 10 % over ``steps``); None: 5e-4,
        or 1e-3 for new classes / a new sampling / a base model that scores < 0.5.
    batch : crops per step.
    crop : crop edge in model pixels; None: 96, up to 128 for sparse atoms (six
        neighbour distances); clipped to the frame.
    weight_decay : AdamW weight decay.
    seed : seeds the crops, augmentation and torch.
    threads : torch CPU threads while training (restored afterwards).
    self_train : labels from the current model's confident, Gaussian-refined detections
        instead of the given atoms' frames as they are.
    min_prob : self-training labels detections with ``prob`` >= this (None: the least
        confident 30 % of each frame are not labels; see :func:`self_training_labels`).
    min_contrast : self-training drops atoms fainter than this fraction of the frame's
        median atom contrast (see :func:`self_training_labels`).
    augment : augmentation ranges (:class:`AugmentConfig`).
    class_map : species renamed before training (e.g. ``{"S": "S2"}``).
    classes : species the new model predicts (background added first); None: the base
        model's when they cover the labels, else the labels' own species (the head is
        re-sized: new rows start from the base model's mean atom class).
    val_fraction : share of every labelled frame's width held back for validation and
        early stopping (0: none; skipped when the strip would hold < 8 atoms).
    patience : evaluations without a better validation F1 before stopping.
    eval_every : steps between evaluations (None: ~12 evaluations over ``steps``, at
        least every 10 steps).
    rescale : let the measured atom width choose the model grid (Å/px).
    refine_labels : move each label to its atom's fitted centre (Gaussian, within half
        the atom's width) before training: hand clicks are ~1-2 px off.
    centre_fraction : share of crops centred on a labelled atom (None: from the atom
        density, up to 0.5 when a random crop holds few atoms).
    calibrate_threshold : after training, find the detection threshold with the best
        F1 on the held-back strips and fold it into the head's bias, so the usual 0.5
        detects that (see :func:`calibrate_threshold`). Off by default: on the Pt
        benchmark (12-27 atoms per strip) it changed held-out F1 by -0.02..+0.002.
    verify_spots : keep the base card's contrast verification of sparse heavy atoms
        (``spot_verify``, :mod:`atomlens.atoms.spot_verify`) in the new card, so
        detection with the new model checks its candidates' contrast as the base did
        (only where its spot-width rule resamples). Pt, 3 images -> the other 8
        (``bench/finetune_pt.py``, 3 splits): F1 0.619 / 0.533 / 0.618 without,
        0.632 / 0.557 / 0.636 with it (the rule's settings were chosen on simulations).
    spot_classifier : where the new card keeps that contrast verification (sparse spots
        on a support), also learn a spot classifier from the labelled frames
        (:mod:`atomlens.atoms.spot_classifier`: candidate spots of the raw frames scored
        by a logistic regression on texture-relative contrast features and the new
        network's probability, threshold by leave-one-frame-out); detection with the new
        model then keeps the candidates it accepts (refined like the network's atoms,
        named by the network's most probable class there). Only where the frames were
        spot-resampled (sparse broad spots), not with ``self_train``. Pt, 3 images -> the
        other 8 (``bench/finetune_pt.py``, 3 splits, same fine-tuned networks): F1 0.621 /
        0.588 / 0.643 without, 0.624 / 0.624 / 0.654 with it (mean 0.617 -> 0.634).
    """

    steps: int | None = None
    lr: float | None = None
    batch: int = 8
    crop: int | None = None
    weight_decay: float = 1e-5
    seed: int = 0
    threads: int | None = 2
    self_train: bool = False
    min_prob: float | None = None
    min_contrast: float = 0.25
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    class_map: dict[str, str] = field(default_factory=dict)
    classes: tuple[str, ...] | None = None
    val_fraction: float = 0.25
    patience: int = 4
    eval_every: int | None = None
    rescale: bool = True
    refine_labels: bool = True
    centre_fraction: float | None = None
    calibrate_threshold: bool = False
    verify_spots: bool = True
    spot_classifier: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["augment"].items()}
        d["classes"] = list(self.classes) if self.classes is not None else None
        return d


# --- events ----------------------------------------------------------------------------


@dataclass
class FinetuneStarted:
    """Labels are ready: frames used, atoms labelled, steps, crop edge (model px), the
    data-driven choices (:class:`FinetunePlan` as a dict) and the base model's score on
    the held-back strips (None without validation)."""

    frames: list[int]
    n_labels: int
    n_corrections: int
    steps: int
    crop: int
    plan: dict = field(default_factory=dict)
    before: dict | None = None


@dataclass
class FinetuneValidation:
    """The model scored on the held-back strips after ``step`` steps (``scores``: f1,
    precision, recall, species_accuracy, ...); ``best`` is the best F1 so far."""

    step: int
    scores: dict
    best: float


@dataclass
class FinetuneStep:
    """One optimisation step done."""

    step: int
    steps: int
    loss: float
    loss_ema: float
    lr: float
    elapsed_s: float


@dataclass
class FinetuneFinished:
    """Fine-tuning ended; ``reason`` is ``"done"``, ``"stopped"`` (stop flag set: weights
    after the last completed step) or ``"diverged"`` (non-finite loss: the weights of
    the last finite step). ``result`` holds the new model."""

    result: FinetuneResult
    reason: str
    elapsed_s: float


@dataclass
class FinetuneNote:
    """A line for the user before work that takes seconds without a training step
    (the correction workflow passes it on as a :class:`atomlens.workflows.events.Log`)."""

    message: str


FinetuneEvent = (
    FinetuneStarted | FinetuneStep | FinetuneValidation | FinetuneFinished | FinetuneNote
)


@dataclass
class FinetuneResult:
    """A fine-tuned detector, where it was written (or None) and its card.

    ``scores``: ``{"before": ..., "after": ..., "history": [...]}`` on the held-back
    validation strips (empty without validation); ``after`` is the kept (best) model's.
    """

    detector: Detector
    path: Path | None
    card: dict
    reason: str = "done"
    labels: pd.DataFrame | None = None
    scores: dict = field(default_factory=dict)


# --- labels ------------------------------------------------------------------------------


def self_training_labels(
    stack: Any,
    frames: Iterable[int],
    base_model: Detector | str | Path | None = None,
    atoms: pd.DataFrame | None = None,
    *,
    min_prob: float | None = None,
    min_contrast: float = 0.25,
    pixel_size: float | None = None,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """Labels without manual edits: confident detections refined by a 2-D Gaussian fit.

    Every detection of the chosen frames comes back; the column ``label`` says whether it
    is a training label (True) or too uncertain to be one (False). Fine-tuning paints
    the uncertain ones as *ignore* regions (the loss there follows the model's own
    prediction), so they are taught neither as atoms nor as background.

    Parameters
    ----------
    stack : :class:`atomlens.io.Stack` or ``(T, Y, X)`` array (then ``pixel_size``).
    frames : frames to label (the papers use the first ~5 of a movie).
    base_model : detector used when ``atoms`` lacks a frame (None = shipped model).
    atoms : existing detections (``frame, y, x, cls, prob``); frames missing from it are
        detected with ``base_model``.
    min_prob : label detections whose ``prob`` is at least this; None (default) = the
        frame's 30th percentile of ``prob`` capped at 0.9 (the least confident 30 % are
        left out whatever the model's calibration).
    min_contrast : keep atoms whose peak contrast (smoothed intensity at the refined
        position minus the 10th percentile of its window) is at least this fraction of
        the frame's median atom contrast: drops "atoms" on noise, in holes or vacuum.

    Returns
    -------
    The atom table with positions refined on the raw frame (pixels) and ``label``; a
    detection whose Gaussian fit fails (moves more than 0.3 Å, negative amplitude) is
    never a label.
    """
    from atomlens.atoms import detect, refine_gaussian

    frames = sorted({int(f) for f in frames})
    ps = resolve_pixel_size(stack, pixel_size)
    data = stack_frames(stack)
    have = set() if atoms is None or len(atoms) == 0 else set(atoms["frame"].astype(int))
    missing = [f for f in frames if f not in have]
    parts = []
    if atoms is not None and len(atoms):
        parts.append(atoms[atoms["frame"].astype(int).isin(frames)])
    if missing:
        from atomlens.segment.registry import load_model

        det = base_model if isinstance(base_model, Detector) else load_model(base_model)
        parts.append(
            detect(
                stack, det, frames=missing, threshold=threshold, pixel_size=ps, refine="none"
            ).atoms
        )
    table = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({"frame": [], "y": [], "x": [], "cls": [], "prob": []})
    )
    if "prob" not in table:
        table["prob"] = 1.0
    table = table.reset_index(drop=True)
    keep = np.zeros(len(table), bool)
    prob = table["prob"].to_numpy(float)
    yx_all = table[["y", "x"]].to_numpy(float).copy()
    radius = max(2.0, 0.65 / ps)
    for f in frames:
        rows = np.flatnonzero(table["frame"].astype(int).to_numpy() == f)
        if not len(rows):
            continue
        frame = np.asarray(data[f], np.float32)
        yx, ok, sigma = refine_gaussian(
            frame, yx_all[rows], radius, max_shift_px=max(1.0, 0.3 / ps)
        )
        yx_all[rows] = yx
        contrast = _peak_contrast(frame, yx, radius, sigma)
        ref = np.median(contrast[ok]) if ok.any() else 0.0
        pmin = min(0.9, float(np.percentile(prob[rows], 30))) if min_prob is None else min_prob
        keep[rows] = ok & (contrast >= min_contrast * ref) & (prob[rows] >= pmin)
    out = table.assign(y=yx_all[:, 0], x=yx_all[:, 1], label=keep)
    out["cls"] = out["cls"].astype(str)
    return out


def _peak_contrast(frame: np.ndarray, yx: np.ndarray, radius: float, sigma: float) -> np.ndarray:
    """(N,) smoothed peak height above the local background (10th percentile of a
    ``2 * radius`` window) at positions ``yx`` (pixels)."""
    from scipy import ndimage as ndi

    if len(yx) == 0:
        return np.zeros(0)
    smooth = ndi.gaussian_filter(frame.astype(np.float64), max(0.5, 0.5 * sigma))
    h, w = frame.shape
    iy = np.clip(np.rint(yx[:, 0]).astype(int), 0, h - 1)
    ix = np.clip(np.rint(yx[:, 1]).astype(int), 0, w - 1)
    r = int(np.ceil(2 * radius))
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    py = np.clip(iy[:, None] + oy.ravel()[None], 0, h - 1)
    px = np.clip(ix[:, None] + ox.ravel()[None], 0, w - 1)
    background = np.percentile(smooth[py, px], 10, axis=1)
    return smooth[iy, ix] - background


def label_frames(
    stack: Any,
    atoms: pd.DataFrame,
    frames: Iterable[int],
    det: Detector,
    *,
    pixel_size: float | None = None,
    class_map: dict[str, str] | None = None,
    ignore: pd.DataFrame | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Training pairs on the model grid from labelled frames.

    Returns ``images`` ``(F, y, x)`` float32 (resampled to the model's Å/px, *not yet*
    normalised: augmentation comes first) and ``masks`` ``(F, y, x)`` uint8 (a disk of
    ``det.radius_A`` per atom, value = index of its species in ``det.classes``; a disk
    of twice that radius = :data:`IGNORE` around each row of ``ignore``, under the
    labels). Raises :class:`FinetuneError` for a species the model does not predict.
    """
    ps = resolve_pixel_size(stack, pixel_size)
    data = stack_frames(stack)
    frames = sorted({int(f) for f in frames})
    size = model_grid_shape(data.shape, ps, det.pixel_size)
    raw = np.stack([np.asarray(data[f], np.float32) for f in frames])
    images = resample(torch.from_numpy(raw), size).numpy()
    scale = np.array([size[0] / data.shape[-2], size[1] / data.shape[-1]])
    cmap = dict(class_map or {})
    classes = list(det.classes)
    masks = np.zeros((len(frames), *size), np.uint8)
    for k, f in enumerate(frames):
        rows = atoms[atoms["frame"].astype(int) == f]
        species = (
            [cmap.get(s, s) for s in rows["cls"].astype(str)]
            if "cls" in rows
            else (["C"] * len(rows))
        )
        unknown = sorted(set(species) - set(classes[1:]))
        if unknown:
            raise FinetuneError(
                f"frame {f} has species {unknown} that the model does not predict "
                f"(classes {classes[1:]}); relabel them or map them with class_map, e.g. "
                f"{{'{unknown[0]}': '{classes[1]}'}}"
            )
        yx = rows[["y", "x"]].to_numpy(float)
        yx_model = (yx + 0.5) * scale[None] - 0.5  # inverse of predict.to_input_coords
        idx = np.array([classes.index(s) for s in species], np.int64)
        masks[k] = label_mask(yx_model, idx, size, det.radius_A / det.pixel_size)
        if ignore is not None and len(ignore):
            ig = ignore[ignore["frame"].astype(int) == f][["y", "x"]].to_numpy(float)
            ig_model = (ig + 0.5) * scale[None] - 0.5
            ring = label_mask(
                ig_model, np.ones(len(ig), np.int64), size, 2 * det.radius_A / det.pixel_size
            )
            masks[k][(ring > 0) & (masks[k] == 0)] = IGNORE
    return images.astype(np.float32), masks


def _sample_batch(
    images: np.ndarray,
    masks: np.ndarray,
    crop: int,
    batch: int,
    rng: np.random.Generator,
    aug: AugmentConfig,
    *,
    centres: np.ndarray | None = None,
    p_centre: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops augmented with :func:`augment_pair`, then centre-cropped and
    normalised as at prediction.

    ``centres`` ``(N, 3)`` (frame, y, x on the model grid) and ``p_centre``: that share
    of the crops is placed so that a randomly chosen labelled atom lies in it (anywhere
    in its middle half), so sparse atoms are seen often enough.

    A margin around each crop (when the frame has room) keeps most rotated corners inside
    real data; wherever rotation or zoom still reaches past the crop (the image is
    reflected there) the label is :data:`IGNORE`, never background.
    """
    _, h, w = images.shape
    big = min(int(np.ceil(crop * 1.5)), h, w)
    xs, ys = [], []
    for _ in range(batch):
        if centres is not None and len(centres) and rng.random() < p_centre:
            f, cy, cx = centres[int(rng.integers(len(centres)))]
            k = int(f)
            cy += rng.uniform(-crop / 4, crop / 4)
            cx += rng.uniform(-crop / 4, crop / 4)
            y0 = int(np.clip(round(cy - big / 2), 0, h - big))
            x0 = int(np.clip(round(cx - big / 2), 0, w - big))
        else:
            k = int(rng.integers(len(images)))
            y0 = int(rng.integers(0, h - big + 1))
            x0 = int(rng.integers(0, w - big + 1))
        # shift labels by one so the augmenter's constant fill (0) marks outside pixels
        shifted = masks[k, y0 : y0 + big, x0 : x0 + big].astype(np.int16) + 1
        img, msk = augment_pair(images[k, y0 : y0 + big, x0 : x0 + big], shifted, rng, aug)
        o = (big - crop) // 2
        m = msk[o : o + crop, o : o + crop].astype(np.int64)
        xs.append(normalise(img[o : o + crop, o : o + crop]))
        ys.append(np.where(m == 0, IGNORE, m - 1))
    x = torch.from_numpy(np.stack(xs).astype(np.float32))[:, None]
    y = torch.from_numpy(np.stack(ys).astype(np.int64))
    return x, y


# --- choices from the data ------------------------------------------------------------

#: Typical atom FWHM (Å) the base model saw in training when its card does not say
#: (the graphene model: probe FWHM 0.6-1.3 Å on light atoms).
DEFAULT_ATOM_FWHM_A = 0.95


@dataclass
class FinetunePlan:
    """What :func:`plan_finetune` chose from the labels, and why (``notes``).

    Lengths in Å unless named ``_px`` (model pixels); ``val_cut`` is the fraction of each
    frame's width (from the left) used for training (1.0 = no validation strip).
    """

    classes: tuple[str, ...]
    new_classes: list[str]
    model_pixel_size: float
    radius_A: float
    atom_fwhm_A: float | None
    neighbour_A: float | None
    crop: int
    steps: int
    lr: float
    centre_fraction: float
    class_weights: tuple[float, ...]
    eval_every: int
    val_cut: float
    n_val_atoms: int
    score_radius_A: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["class_weights"] = [round(float(v), 3) for v in self.class_weights]
        return d


def _species(labels: pd.DataFrame, class_map: dict[str, str]) -> list[str]:
    if "cls" not in labels:
        return ["C"]
    names = [class_map.get(c, c) for c in labels["cls"].astype(str)]
    return list(dict.fromkeys(names))  # first-seen order


def _nn_distance_px(labels: pd.DataFrame) -> float | None:
    """Median nearest-neighbour distance of the labels (input pixels), per frame pooled."""
    from scipy.spatial import cKDTree

    d = []
    for _, g in labels.groupby(labels["frame"].astype(int)):
        yx = g[["y", "x"]].to_numpy(float)
        if len(yx) >= 2:
            d.append(cKDTree(yx).query(yx, k=2)[0][:, 1])
    return float(np.median(np.concatenate(d))) if d else None


def measure_atom_fwhm(
    data: Any, labels: pd.DataFrame, pixel_size: float, neighbour_px: float | None
) -> tuple[float | None, pd.DataFrame]:
    """The atoms' FWHM in Å (a Gaussian fitted at up to 200 labels per frame) and the
    labels moved to the fitted centres where the fit succeeds (within half a FWHM).

    The fit window is half the neighbour distance, at most 1.75 Å (2-12 px). Returns (None, labels)
    when no fit succeeds (e.g. atoms too dense or too faint).
    """
    from atomlens.atoms import refine_gaussian

    # the atom's own profile: half the neighbour distance, at most 1.75 Å (a wider window
    # fits the support's lumps too: on Pt/C it gave 2.8-3.4 Å instead of ~1.9 Å)
    win = float(np.clip(min(0.5 * (neighbour_px or 8.0), 1.75 / pixel_size), 2.0, 12.0))
    sigmas, out = [], labels.copy()
    for f, g in labels.groupby(labels["frame"].astype(int)):
        frame = np.asarray(data[int(f)], np.float64)
        yx0 = g[["y", "x"]].to_numpy(float)
        sub = yx0[np.linspace(0, len(yx0) - 1, min(len(yx0), 200)).astype(int)]
        _, ok, sig = refine_gaussian(frame, sub, win, max_shift_px=win / 2)
        if ok.sum() >= 3 and sig > 0:
            sigmas.append(sig)
            yx, ok_all, _ = refine_gaussian(
                frame, yx0, win, sigma_px=sig, max_shift_px=min(win / 2, 1.18 * sig)
            )
            moved = np.where(ok_all[:, None], yx, yx0)
            out.loc[g.index, "y"] = moved[:, 0]
            out.loc[g.index, "x"] = moved[:, 1]
    if not sigmas:
        return None, labels
    return float(2.355 * np.median(sigmas) * pixel_size), out


def plan_finetune(
    labels: pd.DataFrame,
    frame_shape: tuple[int, int],
    base: Detector,
    cfg: FinetuneConfig,
    pixel_size: float,
    atom_fwhm_A: float | None,
    before_f1: float | None = None,
    stack_pixel_size: float | None = None,
) -> FinetunePlan:
    """Choose classes, sampling, crop, steps, learning rate, crop centring and class
    weights from the labels (positions in input pixels of ``frame_shape`` frames at
    ``pixel_size`` Å/px) and the base model; every choice is explained in ``notes``.

    ``stack_pixel_size``: the microscope's Å/px when ``pixel_size`` is the smaller one
    stated to the network for broad spots (spot-width resampling); the validation match
    radius is capped at 1.5 Å of the *sample* (None: ``pixel_size`` is the sample's)."""
    notes: list[str] = []
    species = _species(labels, cfg.class_map)
    base_sp = list(base.classes[1:])
    if cfg.classes is not None:
        classes = ("background", *[c for c in cfg.classes if c != "background"])
        missing = sorted(set(species) - set(classes))
        if missing:
            raise FinetuneError(
                f"the labels hold species {missing} that are not in classes="
                f"{list(classes[1:])}; add them or rename them with class_map"
            )
    elif set(species) <= set(base_sp):
        classes = tuple(base.classes)
    else:
        classes = ("background", *species)
        notes.append(
            f"new classes {[c for c in species if c not in base_sp]}: the head is "
            f"re-sized to {list(classes[1:])} (base: {base_sp})"
        )
    new_classes = [c for c in classes[1:] if c not in base_sp]
    nn_px = _nn_distance_px(labels)
    nn_A = nn_px * pixel_size if nn_px else None
    # sampling: atoms should look as wide (in model pixels) as the base model's did
    model_px, radius_A = base.pixel_size, base.radius_A
    ref_fwhm = float(base.card.get("atom_fwhm_A", DEFAULT_ATOM_FWHM_A))
    if cfg.rescale and atom_fwhm_A is not None:
        ratio = atom_fwhm_A / ref_fwhm
        if not 0.7 <= ratio <= 1.4:
            factor = float(np.clip(ratio, 0.5, 2.5))
            model_px = round(base.pixel_size * factor, 4)
            radius_A = base.radius_A * factor
            notes.append(
                f"atoms measure {atom_fwhm_A:.2f} Å FWHM ({ratio:.2f}x the base "
                f"model's {ref_fwhm:.2f} Å): model grid {model_px} Å/px (was "
                f"{base.pixel_size}), label radius {radius_A:.2f} Å"
            )
    new_grid = model_px != base.pixel_size
    # crop: several neighbour distances of context, on the model grid
    nn_model = nn_A / model_px if nn_A else None
    if cfg.crop is not None:
        crop = int(cfg.crop)
    else:
        crop = int(np.clip(6 * nn_model, 96, 128)) if nn_model else 96
    scale = pixel_size / model_px
    h_m, w_m = frame_shape[0] * scale, frame_shape[1] * scale
    # validation strip: the right val_fraction of every labelled frame
    val_cut, n_val = 1.0, 0
    if cfg.val_fraction > 0:
        cut = 1.0 - float(cfg.val_fraction)
        n_val = int((labels["x"].to_numpy(float) >= cut * frame_shape[1]).sum())
        if n_val >= 8 and cut * w_m >= 64 and (1 - cut) * w_m >= 32:
            val_cut = cut
        else:
            notes.append(
                f"no validation strip: {n_val} atoms / {(1 - cut) * w_m:.0f} model "
                "px in it (need >= 8 atoms, >= 32 px, and >= 64 px left to train)"
            )
            n_val = 0
    # crop centring and class weights from the atom density
    n_frames = max(1, labels["frame"].nunique())
    area_m = h_m * w_m * val_cut * n_frames
    crop = int(min(crop, h_m, w_m * val_cut))  # what fits in the training part
    per_crop = len(labels) * val_cut * crop**2 / max(area_m, 1.0)
    if cfg.centre_fraction is not None:
        p_centre = float(cfg.centre_fraction)
    else:
        p_centre = float(np.clip(1.0 - per_crop / 4.0, 0.0, 0.5))
    disk = np.pi * (radius_A / model_px) ** 2
    f_uniform = per_crop * disk / crop**2
    f_centred = (1.0 + per_crop) * disk / crop**2
    f_atoms = min(0.5, p_centre * f_centred + (1 - p_centre) * f_uniform)
    # the soft Dice term already balances the classes; the cross-entropy weight only
    # keeps very sparse atom pixels from drowning, and stays <= 2 because a weight w moves
    # the 0.5 detection threshold to a probability of 1 / (1 + w) (false positives)
    w_atom = float(np.clip(np.sqrt((1 - f_atoms) / max(f_atoms, 1e-6)) / 8.0, 1.0, 2.0))
    weights = [1.0] + [w_atom] * (len(classes) - 1)
    if "Si" in classes and not new_classes:  # keep the base recipe's extra weight on Si
        weights[classes.index("Si")] *= 2.0
    notes.append(
        f"{per_crop:.1f} atoms per {crop}-px crop ({100 * f_uniform:.2f} % atom "
        f"pixels): {100 * p_centre:.0f} % of crops centred on an atom, atom class "
        f"weight {w_atom:.1f}"
    )
    hard = bool(new_classes) or new_grid or (before_f1 is not None and before_f1 < 0.5)
    steps = int(cfg.steps) if cfg.steps is not None else (300 if hard else 150)
    lr = float(cfg.lr) if cfg.lr is not None else (1e-3 if hard else 5e-4)
    if cfg.steps is None or cfg.lr is None:
        notes.append(
            f"{steps} steps at lr {lr:g}: "
            + (
                "new classes, a new grid or a poor base score"
                if hard
                else "the base model already fits these atoms"
            )
        )
    eval_every = int(cfg.eval_every) if cfg.eval_every else max(10, steps // 12)
    # validation match radius (Å at ``pixel_size``): 0.4 neighbour distances, at most
    # 1.5 Å of the sample (a resampled stack states a smaller pixel: the cap shrinks with it)
    cap_A = 1.5 * pixel_size / (stack_pixel_size or pixel_size)
    score_A = float(min(0.4 * nn_A, cap_A)) if nn_A else 0.5
    return FinetunePlan(
        classes=tuple(classes),
        new_classes=new_classes,
        model_pixel_size=float(model_px),
        radius_A=float(radius_A),
        atom_fwhm_A=atom_fwhm_A,
        neighbour_A=nn_A,
        crop=crop,
        steps=steps,
        lr=lr,
        centre_fraction=p_centre,
        class_weights=tuple(weights),
        eval_every=eval_every,
        val_cut=val_cut,
        n_val_atoms=n_val,
        score_radius_A=score_A,
        notes=notes,
    )


def resize_head(
    base: Detector,
    classes: tuple[str, ...],
    pixel_size: float | None = None,
    radius_A: float | None = None,
) -> Detector:
    """A copy of ``base`` predicting ``classes`` (index 0 background), on ``pixel_size``
    Å/px with labels of ``radius_A``: rows of the 1x1 head for classes the base knows are
    copied; a new class starts from the mean of the base's atom rows (an "any atom"
    detector), so training begins from what the base model finds."""
    from atomlens.segment.nets import NetConfig

    net = copy.deepcopy(base.net).cpu()
    if tuple(classes) != tuple(base.classes):
        old = net.head
        head = torch.nn.Conv2d(old.in_channels, len(classes), 1)
        with torch.no_grad():
            atom_w = old.weight[1:].mean(0)
            atom_b = old.bias[1:].mean(0)
            for i, c in enumerate(classes):
                if c in base.classes:
                    j = base.classes.index(c)
                    head.weight[i] = old.weight[j]
                    head.bias[i] = old.bias[j]
                else:
                    head.weight[i] = atom_w
                    head.bias[i] = atom_b
        net.head = head
    cfg = NetConfig.from_dict({**base.net_config.to_dict(), "classes": list(classes)})
    net.config = cfg
    return Detector(
        net,
        cfg,
        float(pixel_size or base.pixel_size),
        float(radius_A or base.radius_A),
        base.tile,
        dict(base.card),
    )


def _strip_detections(
    det: Detector, strips: np.ndarray, pixel_size: float, thresholds: Iterable[float]
) -> dict[float, pd.DataFrame]:
    """Detections (no refinement) on the strips at each threshold; the network runs once."""
    from atomlens.atoms.detect import atoms_in_frame
    from atomlens.segment.predict import iter_model_maps

    thresholds = [float(t) for t in thresholds]
    out: dict[float, list] = {t: [] for t in thresholds}
    for k, raw, m, _ in iter_model_maps(strips, det, pixel_size=pixel_size):
        for t in thresholds:
            out[t].append(atoms_in_frame(raw, m, det, pixel_size, k, threshold=t, refine="none"))
    return {t: pd.concat(v, ignore_index=True) for t, v in out.items()}


def _score_found(
    found: pd.DataFrame,
    truth: pd.DataFrame,
    n_frames: int,
    pixel_size: float,
    radius_A: float,
    x_start: float,
    x_score: float,
) -> dict:
    from atomlens.atoms.match import match_atoms

    tp = n_found = n_true = right = 0
    r = radius_A / pixel_size
    for k in range(n_frames):
        t = truth[truth["frame"].astype(int) == k]
        a = found[found["frame"].astype(int) == k]
        ty = t[["y", "x"]].to_numpy(float)
        fy = a[["y", "x"]].to_numpy(float) + [0.0, x_start]
        tk, fk = ty[:, 1] >= x_score, fy[:, 1] >= x_score
        tc = t["cls"].astype(str).to_numpy()[tk]
        fc = a["cls"].astype(str).to_numpy()[fk]
        ip, it = match_atoms(fy[fk], ty[tk], r)
        tp, n_found, n_true = tp + len(ip), n_found + int(fk.sum()), n_true + int(tk.sum())
        right += int((fc[ip] == tc[it]).sum())
    return {
        "f1": round(2 * tp / max(n_found + n_true, 1), 4),
        "precision": round(tp / max(n_found, 1), 4),
        "recall": round(tp / max(n_true, 1), 4),
        "species_accuracy": round(right / max(tp, 1), 4),
        "n_true": int(n_true),
        "n_found": int(n_found),
        "n_matched": int(tp),
    }


def validation_scores(
    det: Detector,
    strips: np.ndarray,
    truth: pd.DataFrame,
    pixel_size: float,
    radius_A: float,
    x_start: float,
    x_score: float,
    threshold: float = 0.5,
) -> dict:
    """Score ``det`` on held-back strips.

    ``strips`` ``(F, Y, w)``: columns ``x_start ..`` of the labelled frames (strip ``k``
    = ``truth`` frame ``k``); detections and ``truth`` atoms at frame x >= ``x_score``
    are matched one-to-one within ``radius_A`` (the columns between ``x_start`` and
    ``x_score`` only give the network context). ``species_accuracy``: the share of
    matched atoms whose class name is right.
    """
    found = _strip_detections(det, strips, pixel_size, [threshold])[float(threshold)]
    return _score_found(found, truth, strips.shape[0], pixel_size, radius_A, x_start, x_score)


#: Thresholds tried by :func:`calibrate_threshold`.
THRESHOLDS = tuple(round(float(t), 2) for t in np.arange(0.2, 0.91, 0.05))


def calibrate_threshold(
    det: Detector,
    strips: np.ndarray,
    truth: pd.DataFrame,
    pixel_size: float,
    radius_A: float,
    x_start: float,
    x_score: float,
    thresholds: Iterable[float] = THRESHOLDS,
) -> dict:
    """Find the foreground threshold with the best held-back F1 and fold it into the
    network, so that the usual 0.5 then detects exactly what that threshold did.

    Adding ``b = log((1 - t) / t)`` to the bias of every atom class of the 1x1 head
    multiplies the atom/background odds of every pixel by ``e^b``: ``1 - p(background)
    > 0.5`` afterwards where it was ``> t`` before. ``det`` is modified in place.
    Returns ``{"threshold", "scores" (at that threshold), "at_0.5" (before), "f1_by_threshold"}``;
    ties go to the threshold closest to 0.5 (no change when 0.5 is among the best).
    """
    found = _strip_detections(det, strips, pixel_size, thresholds)
    scores = {
        t: _score_found(f, truth, strips.shape[0], pixel_size, radius_A, x_start, x_score)
        for t, f in found.items()
    }
    best = max(scores, key=lambda t: (scores[t]["f1"], -abs(t - 0.5)))
    at_half = scores.get(0.5) or validation_scores(
        det, strips, truth, pixel_size, radius_A, x_start, x_score
    )
    if at_half["f1"] >= scores[best]["f1"]:
        best = 0.5
    else:
        with torch.no_grad():
            det.net.head.bias[1:] += float(np.log((1 - best) / best))
    return {
        "threshold": float(best),
        "scores": scores.get(best, at_half),
        "at_0.5": at_half,
        "f1_by_threshold": {f"{t:.2f}": s["f1"] for t, s in scores.items()},
    }


# --- fine-tuning ------------------------------------------------------------------------


def iter_finetune(
    stack: Any,
    atoms: pd.DataFrame | None,
    frames: Iterable[int],
    base_model: Detector | str | Path | None = None,
    *,
    out: str | Path | None = None,
    config: FinetuneConfig | None = None,
    stop: threading.Event | Callable[[], bool] | None = None,
    pixel_size: float | None = None,
    stack_path: str | None = None,
    **overrides: Any,
) -> Iterator[FinetuneEvent]:
    """Fine-tune ``base_model`` on ``frames``; yield progress events, the last one
    :class:`FinetuneFinished` with the result.

    Parameters
    ----------
    stack : :class:`atomlens.io.Stack` or ``(T, Y, X)`` array (then ``pixel_size``, Å).
    atoms : the corrected atom table (``frame, y, x, cls``; ``edited`` counted for the
        card); with ``self_train`` it may be None or hold raw detections.
    frames : the labelled frames (all atoms of a frame are taken as the full truth).
    base_model : :class:`Detector` (not modified: a copy is trained), a shipped model name
        (``"graphene"``, ``"general"``), a model path, or None for the shipped graphene model.
    out : write the new model here (``.pt``); None keeps it in memory only.
    config : a :class:`FinetuneConfig`; ``overrides`` set its fields (``steps=...``,
        ``seed=...``); unknown names raise :class:`FinetuneError`.
    stop : a ``threading.Event`` or a callable; when set/true, training ends before the
        next step (``reason="stopped"``).
    stack_path : recorded in the card (defaults to the Stack's ``path``).
    """
    cfg = copy.deepcopy(config) if config is not None else FinetuneConfig()
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise FinetuneError(
                f"unknown fine-tuning option {k!r}; valid: {', '.join(cfg.to_dict())}"
            )
        setattr(cfg, k, v)
    if (
        (cfg.steps is not None and cfg.steps < 0)
        or cfg.batch < 1
        or (cfg.crop is not None and cfg.crop < 8)
    ):
        raise FinetuneError(
            f"need steps >= 0, batch >= 1 and crop >= 8 (got {cfg.steps}, {cfg.batch}, {cfg.crop})"
        )
    if not 0 <= cfg.val_fraction < 0.9:
        raise FinetuneError(f"val_fraction must be in [0, 0.9), got {cfg.val_fraction}")
    base_path = None if isinstance(base_model, Detector) else base_model
    from atomlens.segment.registry import load_model  # names ('general') and paths

    base = base_model if isinstance(base_model, Detector) else load_model(base_model)
    ps = resolve_pixel_size(stack, pixel_size)
    data = stack_frames(stack)
    frames = sorted({int(f) for f in frames})
    if not frames:
        raise FinetuneError("no frames to fine-tune on: correct (or select) at least one frame")
    bad = [f for f in frames if not 0 <= f < data.shape[0]]
    if bad:
        raise FinetuneError(f"frames {bad} are out of range (the movie has {data.shape[0]})")
    ignore = None
    if cfg.self_train:
        table = self_training_labels(
            stack,
            frames,
            base,
            atoms,
            min_prob=cfg.min_prob,
            min_contrast=cfg.min_contrast,
            pixel_size=ps,
        )
        labels = table[table["label"]].reset_index(drop=True)
        ignore = table[~table["label"]]
    else:
        if atoms is None:
            raise FinetuneError("no atom table given: pass the corrected atoms or use self_train")
        labels = atoms[atoms["frame"].astype(int).isin(frames)].reset_index(drop=True)
    if len(labels) == 0:
        raise FinetuneError(
            f"no labelled atoms on frames {frames}: correct those frames first (or lower "
            "min_prob for self-training)"
        )
    n_corr = int(labels["edited"].astype(bool).sum()) if "edited" in labels else 0
    if "cls" not in labels:
        labels = labels.assign(cls=base.classes[1])
    # training names (class_map applied); the card keeps the user's names
    mapped = labels.assign(cls=[cfg.class_map.get(c, c) for c in labels["cls"].astype(str)])
    # renumber the labelled frames 0..F-1 (the order of ``frames``)
    raw = np.stack([np.asarray(data[f], np.float32) for f in frames])
    local = mapped.assign(
        frame=mapped["frame"].astype(int).map({f: k for k, f in enumerate(frames)})
    )
    ign_local = (
        None
        if ignore is None or not len(ignore)
        else ignore.assign(
            frame=ignore["frame"].astype(int).map({f: k for k, f in enumerate(frames)})
        )
    )
    # a base that resamples broad spots at detection (its card's spot_scale rule) is
    # fine-tuned on the frames as it will see them: the stated pixel size it will use
    ps_stack = ps
    ps, spot_rec = _spot_scale(raw, ps, base, cfg)
    clicked = local  # the labels as given (the spot classifier's training targets)
    fwhm, refined = measure_atom_fwhm(raw, local, ps, _nn_distance_px(local))
    if cfg.refine_labels:
        local = refined
    plan = plan_finetune(local, raw.shape[1:], base, cfg, ps, fwhm, stack_pixel_size=ps_stack)
    det0 = resize_head(base, plan.classes, plan.model_pixel_size, plan.radius_A)
    # validation strips: the right (1 - val_cut) of each frame, with context to the left
    w = raw.shape[-1]
    x_score = plan.val_cut * w if plan.val_cut < 1 else float(w)
    context = int(np.ceil(16 * plan.model_pixel_size / ps))
    x_start = max(0, int(x_score) - context)
    strips = raw[..., x_start:] if plan.val_cut < 1 else None
    score = (
        (lambda d: validation_scores(d, strips, local, ps, plan.score_radius_A, x_start, x_score))
        if strips is not None
        else None
    )
    before = None
    if score is not None:
        before = score(base)
        plan = plan_finetune(
            local, raw.shape[1:], base, cfg, ps, fwhm, before["f1"], stack_pixel_size=ps_stack
        )
    # training part: frames cut at the validation strip (labels whose disk reaches in)
    cut = int(np.floor(x_score)) if strips is not None else w
    r_in = plan.radius_A / ps
    train_labels = local[local["x"].to_numpy(float) < cut + r_in]
    images, masks = label_frames(
        raw[..., :cut], train_labels, range(len(frames)), det0, pixel_size=ps, ignore=ign_local
    )
    scale = np.array([images.shape[1] / raw.shape[1], images.shape[2] / cut])
    yx_m = (train_labels[["y", "x"]].to_numpy(float) + 0.5) * scale[None] - 0.5
    centres = np.column_stack([train_labels["frame"].to_numpy(float), yx_m])
    mult = det0.net_config.multiple
    room = int(min(images.shape[1], images.shape[2]) / 1.5)
    crop = max(mult, min(plan.crop, max(room, 32), images.shape[1], images.shape[2]) // mult * mult)
    plan.crop = crop
    yield FinetuneStarted(
        frames, int(len(labels)), n_corr, plan.steps, crop, plan.to_dict(), before
    )

    net = det0.net
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tcfg = TrainConfig(
        classes=plan.classes,
        pixel_size=plan.model_pixel_size,
        radius_A=plan.radius_A,
        net=det0.net_config,
        class_weights=plan.class_weights,
    )
    # AtomLens' own AdamW: torch.optim's first use imports dynamo, which stalls the
    # viewer when fine-tuning runs on a napari worker
    opt = Adam(net.parameters(), lr=plan.lr, weight_decay=cfg.weight_decay)
    sched = CosineLR(opt, plan.steps, eta_min=plan.lr * 0.1)
    should_stop = stop.is_set if isinstance(stop, threading.Event) else (stop or (lambda: False))
    t0 = time.perf_counter()
    reason, ema, step = "done", None, 0
    good = copy.deepcopy(net.state_dict())
    history: list[dict] = []
    best_f1, best_state, best_step, since = -1.0, None, 0, 0
    if before is not None and not plan.new_classes and plan.model_pixel_size == base.pixel_size:
        best_f1, best_state = before["f1"], copy.deepcopy(net.state_dict())
    try:
        for ev in iter_steps(
            net,
            lambda: _sample_batch(
                images,
                masks,
                crop,
                cfg.batch,
                rng,
                cfg.augment,
                centres=centres,
                p_centre=plan.centre_fraction,
            ),
            plan.steps,
            opt,
            sched,
            tcfg,
            ema_decay=0.9,
            ignore_index=IGNORE,
            stop=should_stop,
        ):
            step = ev["step"]
            if "end" in ev:
                reason = ev["end"]
                if reason == "diverged":  # back to the weights of the last 10-step mark
                    net.load_state_dict(good)
                break
            ema = ev["loss_ema"]
            if step % 10 == 0:
                good = copy.deepcopy(net.state_dict())
            yield FinetuneStep(step, plan.steps, ev["loss"], ema, ev["lr"], ev["elapsed_s"])
            if score is not None and (step % plan.eval_every == 0 or step == plan.steps):
                net.eval()
                sc = score(det0)
                net.train()
                history.append({"step": step, **sc})
                if sc["f1"] > best_f1:
                    best_f1, best_state, best_step, since = (
                        sc["f1"],
                        copy.deepcopy(net.state_dict()),
                        step,
                        0,
                    )
                else:
                    since += 1
                yield FinetuneValidation(step, sc, best_f1)
                if since >= cfg.patience:
                    break
    finally:
        net.eval()
        if cfg.threads:
            torch.set_num_threads(old_threads)
    if best_state is not None:  # the best validated weights (early stopping)
        net.load_state_dict(best_state)
    calibration = None
    if score is not None and cfg.calibrate_threshold and best_step > 0:
        calibration = calibrate_threshold(
            det0, strips, local, ps, plan.score_radius_A, x_start, x_score
        )
    elapsed = time.perf_counter() - t0
    scores: dict = {}
    if before is not None:
        after = next((h for h in history if h["step"] == best_step), None)
        if after is None:  # the base weights were kept (nothing scored better)
            after = {"step": 0, **before}
        if calibration is not None and calibration["threshold"] != 0.5:
            after = {"step": best_step, **calibration["scores"]}
        scores = {
            "before": before,
            "after": after,
            "history": history,
            "threshold_calibration": calibration,
            "kept_step": int(best_step),
            "radius_A": plan.score_radius_A,
            "strip": f"x >= {x_score:.0f} px of each labelled frame",
        }
    card = _card(
        base,
        base_path,
        cfg,
        frames,
        labels,
        n_corr,
        step,
        reason,
        ema,
        elapsed,
        stack_path or getattr(stack, "path", None),
        ps_stack,
        out,
        plan,
        scores,
    )
    if spot_rec:  # detection resamples this model's input as the fine-tuning did (its
        # threshold is its own: the base's threshold factor is not carried over)
        # and every image is shown at the scale of its training frames (held-out Pt, 3
        # splits, estimator of commit cb86318: F1 0.586 / 0.422 / 0.624 vs 0.588 / 0.366
        # / 0.597 with each image measured on its own)
        rule = {k: v for k, v in base.card["spot_scale"].items() if k != "threshold_factor"}
        if spot_rec.get("fwhm_A") is not None:
            rule["fixed_fwhm_A"] = spot_rec["fwhm_A"]
        card["spot_scale"] = rule
        card["finetune"]["spot_scale"] = spot_rec
        if cfg.verify_spots and base.card.get("spot_verify"):
            card["spot_verify"] = dict(base.card["spot_verify"])
    det = Detector(net, det0.net_config, plan.model_pixel_size, plan.radius_A, base.tile, card)
    resampled = float(spot_rec.get("factor", 1.0)) > 1.0 if spot_rec else False
    if cfg.spot_classifier and card.get("spot_verify") and resampled and not cfg.self_train:
        # 1-3 s without a training step: say what is happening (the dock's status line,
        # the CLI's stderr)
        n = len(raw)
        yield FinetuneNote(f"learning the spot classifier on {n} corrected frame(s) ...")
        card["finetune"]["spot_classifier"] = _train_spot_classifier(
            det, raw, clicked, ps_stack, ps, card
        )
    path = save_detector(det, out) if out is not None else None
    yield FinetuneFinished(FinetuneResult(det, path, card, reason, labels, scores), reason, elapsed)


def _train_spot_classifier(
    det: Detector, raw: np.ndarray, labels: pd.DataFrame, ps: float, ps_net: float, card: dict
) -> dict:
    """Learn :mod:`atomlens.atoms.spot_classifier` on the labelled ``raw`` frames
    ``(F, Y, X)`` (``labels``: ``frame`` 0..F-1, ``y, x`` pixels; ``ps`` Å/px) with the
    new network's atom probability (shown the frames at the stated ``ps_net``) as a
    feature; stores it in ``card["spot_classifier"]`` and returns its training record
    (or ``{"skipped": reason}``)."""
    from atomlens.atoms.spot_classifier import train_spot_classifier
    from atomlens.segment.predict import iter_model_maps, upsample_maps

    probs = [
        upsample_maps(m, r.shape)[1:].max(0)
        for _, r, m, _ in iter_model_maps(raw, det, pixel_size=ps_net)
    ]
    yx = [
        labels.loc[labels["frame"].astype(int) == k, ["y", "x"]].to_numpy(float)
        for k in range(raw.shape[0])
    ]
    try:
        clf = train_spot_classifier(list(raw), yx, ps, net_probs=probs)
    except ValueError as e:
        return {"skipped": str(e)}
    card["spot_classifier"] = clf.to_card()
    return {"threshold": clf.threshold, **clf.report}


def _spot_scale(
    raw: np.ndarray, ps: float, base: Detector, cfg: FinetuneConfig
) -> tuple[float, dict]:
    """(stated pixel size Å, record) of :func:`atomlens.atoms.spot_scale.network_pixel_size`
    on the labelled frames when the base's card has a spot_scale rule (else ``(ps, {})``)."""
    from atomlens.atoms.spot_scale import card_rule, network_pixel_size

    if not cfg.rescale or card_rule(base.card) is None:
        return ps, {}
    return network_pixel_size(raw, ps, base.card, "auto")


def _card(
    base: Detector,
    base_path: Any,
    cfg: FinetuneConfig,
    frames: list[int],
    labels: pd.DataFrame,
    n_corr: int,
    steps_done: int,
    reason: str,
    loss_ema: float | None,
    elapsed: float,
    stack_path: Any,
    ps: float,
    out: Any,
    plan: FinetunePlan | None = None,
    scores: dict | None = None,
) -> dict:
    """The new model's card: the base card kept under ``base_card``, provenance on top."""
    base_name = str(base_path) if base_path is not None else base.card.get("name", "in-memory")
    if base_path is None and base.card.get("finetune"):
        base_name = base.card.get("name", "in-memory")
    species = labels["cls"].astype(str).value_counts().to_dict() if "cls" in labels else {}
    return {
        "name": Path(out).stem if out is not None else "finetuned",
        "task": base.card.get("task", "atom finding"),
        "classes": list(plan.classes if plan else base.classes),
        "model_pixel_size_A": plan.model_pixel_size if plan else base.pixel_size,
        **({"atom_fwhm_A": round(plan.atom_fwhm_A, 3)} if plan and plan.atom_fwhm_A else {}),
        "finetune": {
            "base_model": base_name,
            "base_model_name": base.card.get("name"),
            "mode": "self-training" if cfg.self_train else "corrected frames",
            "stack": str(stack_path) if stack_path else None,
            "stack_pixel_size_A": ps,
            "frames": frames,
            "n_labelled_atoms": int(len(labels)),
            "labels_per_species": {str(k): int(v) for k, v in species.items()},
            "n_corrections": n_corr,
            "steps": int(steps_done),
            "steps_requested": int(plan.steps if plan else (cfg.steps or 0)),
            "finished": reason,
            "final_loss_ema": loss_ema,
            "time_s": round(elapsed, 1),
            "config": cfg.to_dict(),
            "plan": plan.to_dict() if plan else None,
            "validation": {k: v for k, v in (scores or {}).items() if k != "history"},
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "torch": str(torch.__version__),
        },
        "base_card": base.card,
    }


def finetune(
    stack: Any,
    atoms: pd.DataFrame | None,
    frames: Iterable[int],
    base_model: Detector | str | Path | None = None,
    *,
    out: str | Path | None = None,
    steps: int | None = None,
    seed: int | None = None,
    progress: Callable[[FinetuneEvent], Any] | None = None,
    stop: threading.Event | Callable[[], bool] | None = None,
    config: FinetuneConfig | None = None,
    pixel_size: float | None = None,
    **overrides: Any,
) -> FinetuneResult:
    """Fine-tune and return the new model (see :func:`iter_finetune` for the arguments);
    ``progress`` is called with every event."""
    if steps is not None:
        overrides["steps"] = steps
    if seed is not None:
        overrides["seed"] = seed
    result = None
    for ev in iter_finetune(
        stack,
        atoms,
        frames,
        base_model,
        out=out,
        config=config,
        stop=stop,
        pixel_size=pixel_size,
        **overrides,
    ):
        if progress is not None:
            progress(ev)
        if isinstance(ev, FinetuneFinished):
            result = ev.result
    assert result is not None
    return result


__all__ = [
    "FinetuneConfig",
    "FinetuneError",
    "FinetuneEvent",
    "FinetuneFinished",
    "FinetuneNote",
    "FinetuneResult",
    "FinetuneStarted",
    "FinetuneStep",
    "FinetunePlan",
    "FinetuneValidation",
    "calibrate_threshold",
    "finetune",
    "measure_atom_fwhm",
    "plan_finetune",
    "resize_head",
    "validation_scores",
    "iter_finetune",
    "label_frames",
    "self_training_labels",
]
