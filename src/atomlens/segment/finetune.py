"""Fine-tuning the atom finder on corrected experimental frames (and self-training).

A network trained on simulations works well at the start of a real movie and degrades as
the sample departs from what it saw (holes, contamination, another probe or dose); the
papers' remedy is to retrain it on the first experimental frames. Here the labels come
either from frames the user corrected by hand (:mod:`atomlens.corrections`) or, without
any manual edit, from confident detections of the current model refined by a 2-D
Gaussian fit (``self_train=True``, the skip-rVAE paper's approach).

The training data are built exactly as at prediction time: each frame is resampled to
the model's sampling (Å/px) and normalised the same way (:mod:`.predict`); each label
frame is a disk of the model's label radius per atom with its class index
(:func:`.synth.label_mask`). Samples are random crops of those frames passed through
:func:`.augment.augment_pair` (rotation, flips, zoom, shear, noise, blur, gamma,
gradients, jitter, contamination); the loss is the detector's own
(:func:`.train.loss_fn`: weighted cross-entropy + soft Dice), with AdamW and a cosine
learning-rate decay starting from the base model's weights; the step loop is training's
own (:func:`.train.iter_steps`).

:func:`iter_finetune` yields typed progress events for the GUI worker and honours a stop
flag between steps; :func:`finetune` drains it and returns a :class:`FinetuneResult`
whose model card records provenance (base model, frames, corrections, steps, date).
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
from atomlens.segment.augment import AugmentConfig, augment_pair
from atomlens.segment.model_file import Detector, load_detector, save_detector
from atomlens.segment.predict import (
    model_grid_shape,
    normalise,
    resample,
    resolve_pixel_size,
)
from atomlens.segment.synth import label_mask
from atomlens.segment.train import TrainConfig, iter_steps
from atomlens.train.adam import Adam, CosineLR

#: Mask value of pixels left out of the loss (the model's own prediction is the target).
IGNORE = 255


class FinetuneError(SettingsError):
    """Fine-tuning cannot start (no labels, unknown species, frames out of range...)."""


@dataclass
class FinetuneConfig:
    """How to fine-tune (every field is stored in the new model's card).

    Attributes
    ----------
    steps : optimisation steps (one batch each).
    lr : peak AdamW learning rate (cosine decay to 10 % over ``steps``); smaller than
        training from scratch so the simulated knowledge is kept.
    batch : crops per step.
    crop : crop edge in model pixels (clipped to the frame size on the model grid).
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
    class_map : species renamed before indexing the model's classes (e.g. ``{"Mo": "Si",
        "S": "C"}`` to teach a C/Si model a MoS2 lattice); unknown species raise.
    """

    steps: int = 150
    lr: float = 5e-4
    batch: int = 8
    crop: int = 96
    weight_decay: float = 1e-5
    seed: int = 0
    threads: int | None = 2
    self_train: bool = False
    min_prob: float | None = None
    min_contrast: float = 0.25
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    class_map: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["augment"].items()}
        return d


# --- events ----------------------------------------------------------------------------


@dataclass
class FinetuneStarted:
    """Labels are ready: frames used, atoms labelled, steps, crop edge (model px)."""

    frames: list[int]
    n_labels: int
    n_corrections: int
    steps: int
    crop: int


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


FinetuneEvent = FinetuneStarted | FinetuneStep | FinetuneFinished


@dataclass
class FinetuneResult:
    """A fine-tuned detector, where it was written (or None) and its card."""

    detector: Detector
    path: Path | None
    card: dict
    reason: str = "done"
    labels: pd.DataFrame | None = None


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
    data = _frames_array(stack)
    have = set() if atoms is None or len(atoms) == 0 else set(atoms["frame"].astype(int))
    missing = [f for f in frames if f not in have]
    parts = []
    if atoms is not None and len(atoms):
        parts.append(atoms[atoms["frame"].astype(int).isin(frames)])
    if missing:
        det = base_model if isinstance(base_model, Detector) else load_detector(base_model)
        parts.append(detect(stack, det, frames=missing, threshold=threshold,
                            pixel_size=ps, refine="none").atoms)
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"frame": [], "y": [], "x": [], "cls": [], "prob": []})
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
        yx, ok, sigma = refine_gaussian(frame, yx_all[rows], radius,
                                        max_shift_px=max(1.0, 0.3 / ps))
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
    data = _frames_array(stack)
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
        species = [cmap.get(s, s) for s in rows["cls"].astype(str)] if "cls" in rows else (
            ["C"] * len(rows))
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
            ring = label_mask(ig_model, np.ones(len(ig), np.int64), size,
                              2 * det.radius_A / det.pixel_size)
            masks[k][(ring > 0) & (masks[k] == 0)] = IGNORE
    return images.astype(np.float32), masks


def _frames_array(stack: Any) -> Any:
    data = stack.data if hasattr(stack, "pixel_size") and hasattr(stack, "data") else stack
    if not hasattr(data, "ndim"):
        data = np.asarray(data)
    return data[None] if data.ndim == 2 else data


def _sample_batch(images: np.ndarray, masks: np.ndarray, crop: int, batch: int,
                  rng: np.random.Generator, aug: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops augmented with :func:`augment_pair`, then centre-cropped and
    normalised as at prediction.

    A margin around each crop (when the frame has room) keeps most rotated corners inside
    real data; wherever rotation or zoom still reaches past the crop (the image is
    reflected there) the label is :data:`IGNORE`, never background.
    """
    _, h, w = images.shape
    big = min(int(np.ceil(crop * 1.5)), h, w)
    xs, ys = [], []
    for _ in range(batch):
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
    base_model : :class:`Detector` (not modified: a copy is trained), a model path, or
        None for the shipped model.
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
    if cfg.steps < 0 or cfg.batch < 1 or cfg.crop < 8:
        raise FinetuneError(f"need steps >= 0, batch >= 1 and crop >= 8 (got {cfg.steps}, "
                            f"{cfg.batch}, {cfg.crop})")
    base_path = None if isinstance(base_model, Detector) else base_model
    base = base_model if isinstance(base_model, Detector) else load_detector(base_model)
    ps = resolve_pixel_size(stack, pixel_size)
    data = _frames_array(stack)
    frames = sorted({int(f) for f in frames})
    if not frames:
        raise FinetuneError("no frames to fine-tune on: correct (or select) at least one frame")
    bad = [f for f in frames if not 0 <= f < data.shape[0]]
    if bad:
        raise FinetuneError(f"frames {bad} are out of range (the movie has {data.shape[0]})")
    ignore = None
    if cfg.self_train:
        table = self_training_labels(stack, frames, base, atoms, min_prob=cfg.min_prob,
                                     min_contrast=cfg.min_contrast, pixel_size=ps)
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
    images, masks = label_frames(stack, labels, frames, base, pixel_size=ps,
                                 class_map=cfg.class_map, ignore=ignore)
    mult = base.net_config.multiple
    # leave room for a rotation margin when the frame allows (see _sample_batch)
    room = int(min(images.shape[1], images.shape[2]) / 1.5)
    crop = max(mult, min(cfg.crop, max(room, 32), images.shape[1], images.shape[2]) // mult * mult)
    yield FinetuneStarted(frames, int(len(labels)), n_corr, cfg.steps, crop)

    net = copy.deepcopy(base.net).cpu()
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tcfg = TrainConfig(classes=base.classes, pixel_size=base.pixel_size,
                       radius_A=base.radius_A, net=base.net_config)
    # AtomLens' own AdamW: torch.optim's first use imports dynamo, which stalls the
    # viewer when fine-tuning runs on a napari worker
    opt = Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = CosineLR(opt, cfg.steps, eta_min=cfg.lr * 0.1)
    should_stop = stop.is_set if isinstance(stop, threading.Event) else (stop or (lambda: False))
    t0 = time.perf_counter()
    reason, ema, step = "done", None, 0
    good = copy.deepcopy(net.state_dict())
    try:
        for ev in iter_steps(net, lambda: _sample_batch(images, masks, crop, cfg.batch, rng,
                                                        cfg.augment),
                             cfg.steps, opt, sched, tcfg, ema_decay=0.9, ignore_index=IGNORE,
                             stop=should_stop):
            step = ev["step"]
            if "end" in ev:
                reason = ev["end"]
                if reason == "diverged":  # back to the weights of the last 10-step mark
                    net.load_state_dict(good)
                break
            ema = ev["loss_ema"]
            if step % 10 == 0:
                good = copy.deepcopy(net.state_dict())
            yield FinetuneStep(step, cfg.steps, ev["loss"], ema, ev["lr"], ev["elapsed_s"])
    finally:
        net.eval()
        if cfg.threads:
            torch.set_num_threads(old_threads)
    elapsed = time.perf_counter() - t0
    card = _card(base, base_path, cfg, frames, labels, n_corr, step, reason, ema, elapsed,
                 stack_path or getattr(stack, "path", None), ps, out)
    det = Detector(net, base.net_config, base.pixel_size, base.radius_A, base.tile, card)
    path = save_detector(det, out) if out is not None else None
    yield FinetuneFinished(FinetuneResult(det, path, card, reason, labels), reason, elapsed)


def _card(base: Detector, base_path: Any, cfg: FinetuneConfig, frames: list[int],
          labels: pd.DataFrame, n_corr: int, steps_done: int, reason: str,
          loss_ema: float | None, elapsed: float, stack_path: Any, ps: float,
          out: Any) -> dict:
    """The new model's card: the base card kept under ``base_card``, provenance on top."""
    base_name = str(base_path) if base_path is not None else base.card.get("name", "in-memory")
    if base_path is None and base.card.get("finetune"):
        base_name = base.card.get("name", "in-memory")
    species = labels["cls"].astype(str).value_counts().to_dict() if "cls" in labels else {}
    return {
        "name": Path(out).stem if out is not None else "finetuned",
        "task": base.card.get("task", "atom finding"),
        "classes": list(base.classes),
        "model_pixel_size_A": base.pixel_size,
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
            "steps_requested": int(cfg.steps),
            "finished": reason,
            "final_loss_ema": loss_ema,
            "time_s": round(elapsed, 1),
            "config": cfg.to_dict(),
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
    for ev in iter_finetune(stack, atoms, frames, base_model, out=out, config=config,
                            stop=stop, pixel_size=pixel_size, **overrides):
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
    "FinetuneResult",
    "FinetuneStarted",
    "FinetuneStep",
    "finetune",
    "iter_finetune",
    "label_frames",
    "self_training_labels",
]
