"""Validation of a detector on held-out simulated frames (the numbers in the model card).

Two independent sources: the training renderer's structures with a held-out seed range
(``synth``) and, when available, the project simulator :mod:`atomlens.simulate`
(``simulate``: a different structure builder and renderer than training used).
Atoms within ``border_A`` of the frame edge are left out of the scores on both sides.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from atomlens.atoms.detect import detect
from atomlens.atoms.match import detection_scores
from atomlens.segment.model_file import Detector

HELD_OUT_SEED = 10_000  # training uses seeds < 10_000 (one generator per run seed)


def _interior(yx: np.ndarray, shape: tuple[int, int], margin: float) -> np.ndarray:
    return (
        (yx[:, 0] >= margin)
        & (yx[:, 1] >= margin)
        & (yx[:, 0] <= shape[0] - 1 - margin)
        & (yx[:, 1] <= shape[1] - 1 - margin)
    )


def score_frames(
    pred: pd.DataFrame,
    truth: pd.DataFrame,
    shape: tuple[int, int],
    pixel_size: float,
    match_A: float = 0.5,
    border_A: float = 1.0,
) -> dict[str, float]:
    """Pooled scores over frames: F1/precision/recall within ``match_A``, RMSE in Å, Si P/R."""
    tot = {
        "n_pred": 0,
        "n_true": 0,
        "n_matched": 0,
        "sse": 0.0,
        "Si_tp_p": 0,
        "Si_np": 0,
        "Si_tp_r": 0,
        "Si_nt": 0,
    }
    margin = border_A / pixel_size
    for t in sorted(set(truth["frame"]) | set(pred["frame"])):
        p = pred[pred["frame"] == t]
        g = truth[truth["frame"] == t]
        pyx = p[["y", "x"]].to_numpy(float)
        gyx = g[["y", "x"]].to_numpy(float)
        # score interior truth; drop detections that match only border truth / lie outside
        pin = _interior(pyx, shape, margin) if len(pyx) else np.zeros(0, bool)
        gin = _interior(gyx, shape, margin) if len(gyx) else np.zeros(0, bool)
        s = detection_scores(
            pyx[pin],
            gyx[gin],
            match_A / pixel_size,
            p["cls"].astype(str).to_numpy()[pin],
            g["cls"].astype(str).to_numpy()[gin],
        )
        tot["n_pred"] += s["n_pred"]
        tot["n_true"] += s["n_true"]
        tot["n_matched"] += s["n_matched"]
        if s["n_matched"]:
            tot["sse"] += s["rmse"] ** 2 * s["n_matched"]
        tot["Si_np"] += s["Si_n_pred"]
        tot["Si_nt"] += s["Si_n_true"]
        if s["Si_n_pred"]:
            tot["Si_tp_p"] += s["Si_precision"] * s["Si_n_pred"]
        if s["Si_n_true"]:
            tot["Si_tp_r"] += s["Si_recall"] * s["Si_n_true"]
    m = tot["n_matched"]
    return {
        "n_true": int(tot["n_true"]),
        "n_pred": int(tot["n_pred"]),
        "precision": m / max(tot["n_pred"], 1),
        "recall": m / max(tot["n_true"], 1),
        "f1": 2 * m / max(tot["n_pred"] + tot["n_true"], 1),
        "rmse_A": float(np.sqrt(tot["sse"] / max(m, 1))) * pixel_size,
        "Si_true": int(tot["Si_nt"]),
        "Si_pred": int(tot["Si_np"]),
        "Si_precision": tot["Si_tp_p"] / max(tot["Si_np"], 1),
        "Si_recall": tot["Si_tp_r"] / max(tot["Si_nt"], 1),
    }


def synth_validation_set(
    n_frames: int = 4,
    size: int = 256,
    pixel_size: float = 0.1,
    seed: int = HELD_OUT_SEED,
    snr: float = 8.0,
    probe_fwhm_A: float = 0.9,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Held-out frames from the training renderer at a realistic dose.

    ``snr``: C peak over noise on the film at 0.2 Å/px. Returns frames (T, Y, X) float32
    and the truth table (frame, y, x, cls) in pixels.
    """
    from atomlens.simulate.patches import graphene_patch
    from atomlens.simulate.training import Imaging, render_sample

    rng = np.random.default_rng(seed)
    frames, rows = [], []
    for t in range(n_frames):
        patch = graphene_patch(size * pixel_size * 1.5 + 4, rng)
        im = Imaging(probe_fwhm_A=probe_fwhm_A, si_ratio=4.2, film_bg=1.0, offset=0.2, snr=snr)
        img, _, yx, sp = render_sample(
            patch,
            (size, size),
            pixel_size,
            classes=("background", "C", "Si"),
            radius_A=0.35,
            rng=rng,
            imaging=im,
        )
        frames.append(img)
        rows.append(pd.DataFrame({"frame": t, "y": yx[:, 0], "x": yx[:, 1], "cls": sp}))
    return np.stack(frames), pd.concat(rows, ignore_index=True)


def simulator_validation_set(
    n_frames: int = 4,
    size: int = 256,
    pixel_size: float = 0.1,
    seed: int = HELD_OUT_SEED,
    **overrides,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Held-out frames from :func:`atomlens.simulate.simulate_movie` at its default
    (realistic) dose: the first frame of ``n_frames`` movies with seeds ``seed + i``, so
    every frame has its own structure, orientation, holes and contamination."""
    from atomlens.simulate import simulate_movie

    frames, rows = [], []
    for i in range(n_frames):
        mov = simulate_movie(1, size, pixel_size, seed + i, **overrides)
        frames.append(np.asarray(mov.frames[0], np.float32))
        a = mov.atoms
        a = a[a["frame"] == 0][["y", "x", "cls"]].assign(frame=i)
        rows.append(a[["frame", "y", "x", "cls"]])
    return np.stack(frames), pd.concat(rows, ignore_index=True)


def validation_metrics(
    det: Detector, log: Callable[[str], None] = print, n_frames: int = 4
) -> dict:
    """Scores of ``det`` on held-out simulated frames (see the module docstring)."""
    out: dict = {"match_A": 0.5, "border_A": 1.0, "pixel_size_A": 0.1, "frame_size": 256}
    frames, truth = synth_validation_set(n_frames)
    res = detect(frames, det, pixel_size=0.1)
    out["synth"] = {
        "frames": n_frames,
        "snr": 8.0,
        "probe_fwhm_A": 0.9,
        **score_frames(res.atoms, truth, frames.shape[1:], 0.1),
    }
    log(f"synth validation: {out['synth']}")
    try:
        frames, truth = simulator_validation_set(n_frames)
    except ImportError as exc:
        log(f"atomlens.simulate not available ({exc}); simulator validation skipped")
    else:
        res = detect(frames, det, pixel_size=0.1)
        out["simulate"] = {
            "frames": n_frames,
            "dose_e_per_A2": "SimConfig default (1e5)",
            **score_frames(res.atoms, truth, frames.shape[1:], 0.1),
        }
        log(f"simulator validation: {out['simulate']}")
    return out


def validate_general(det: Detector, samples: list | None = None, match_A: float = 0.6) -> dict:
    """Precision / recall / F1 of a ``general``-preset detector on held-out simulations.

    ``samples``: ``[(image on the model grid (Y, X), true positions (N, 2) in model
    pixels, imaging info), ...]`` from :func:`atomlens.segment.general.validation_set`
    (default: its 24 samples from a seed training never uses). A detection is right
    within ``match_A`` Å; atoms within 1 Å of the border are ignored. Returns
    ``{"all" | family: {"precision", "recall", "f1", "n_true", "n_pred"}}`` (families: the
    structure's first word, ``"single atoms"``, ``"ABF-like"`` for Z exponent < 1.2).
    """
    import torch

    from atomlens.atoms.find import find_atoms
    from atomlens.atoms.match import match_atoms
    from atomlens.segment.general import validation_set
    from atomlens.segment.predict import predict_model_grid

    samples = samples if samples is not None else validation_set()
    tot: dict[str, list[int]] = {}
    with torch.inference_mode():
        for x, yx, info in samples:
            maps = predict_model_grid(det, torch.from_numpy(x)[None])[0].numpy()
            f = find_atoms(maps, det.classes, 0.5)
            pred = np.column_stack([f["y"], f["x"]])
            inner = _inside_margin(1.0 / det.pixel_size, x.shape[0])
            pi, ti = match_atoms(pred, yx, match_A / det.pixel_size)
            # matches counted on each side's own border rule, so precision <= 1:
            # matched detections inside / detections inside, matched truths inside /
            # truths inside
            tp_pred = int(np.sum(inner(pred[pi]))) if len(pi) else 0
            tp_true = int(np.sum(inner(yx[ti]))) if len(ti) else 0
            fam = (
                info["structure"].split()[0]
                if "single" not in info["structure"]
                else "single atoms"
            )
            fam = "ABF-like" if info["z_exponent"] < 1.2 else fam
            for key in ("all", fam):
                t = tot.setdefault(key, [0, 0, 0, 0])
                t[0] += tp_pred
                t[1] += tp_true
                t[2] += int(inner(pred).sum())
                t[3] += int(inner(yx).sum())
    out = {}
    for key, (tp_pred, tp_true, npred, ntrue) in tot.items():
        p = tp_pred / npred if npred else float(ntrue == 0)
        r = tp_true / ntrue if ntrue else float(npred == 0)
        out[key] = {
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
            "n_true": ntrue,
            "n_pred": npred,
        }
    return out


def _inside_margin(margin: float, size: int) -> Callable[[np.ndarray], np.ndarray]:
    """A test for (N, 2) positions lying more than ``margin`` px inside a ``size``² frame."""

    def inner(p: np.ndarray) -> np.ndarray:
        if not len(p):
            return np.zeros(0, bool)
        return np.all((p > margin) & (p < size - 1 - margin), axis=1)

    return inner
