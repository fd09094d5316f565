"""A learned verifier of candidate spots: sparse heavy atoms on a textured support.

The source of the ``pt_single_atoms`` data (HPAI-BSC/AtomDetection_ACSTEM, JACS 2022)
finds single atoms as *candidate spots scored by a classifier trained on the labels*.
This module is that second stage, learned from a user's corrected frames:

1. candidates: local maxima of the frame, background-subtracted (a running median over
   ``background_A``) and smoothed (Gaussian ``smooth_A``), at least ``min_distance_A``
   apart (on ``pt_single_atoms`` ~1,900 per 512² frame; 97.7 % of the 481 labels have
   one within 6 px);
2. per candidate, features that do not depend on the frame's intensity scale: the
   smoothed contrast over the local texture's standard deviation in three windows,
   whether it is the brightest spot within two radii, the frame's normalised background
   level under it (vacuum vs support), three spot responses (Laplacian of Gaussian at two
   widths, disk minus ring) in robust units of this frame's candidates, and optionally
   the detector network's atom probability at the spot;
3. a logistic regression (scikit-learn, standardised features) trained on the labelled
   frames (positives: the candidates matched one-to-one to a label within ``match_A``;
   candidates near a label but not matched are left out; negatives: the rest); the
   decision threshold is chosen by leave-one-frame-out on those frames (two halves of
   the frame when only one is labelled), never on the images it is later used on;
4. detection keeps the candidates above the threshold, the most probable first, none
   within ``nms_A`` of a kept one.

Every length is in Å (converted with the frame's pixel size), so a classifier trained at
one sampling applies at another. It is stored as plain numbers in a model card
(``"spot_classifier"``, :meth:`SpotClassifier.to_card`).

Measured on ``pt_single_atoms`` (``bench/finetune_pt.py``: fine-tuned on 3 images,
scored on the other 8 within 6 px, 3 splits): the fine-tuned network alone F1 0.621 /
0.588 / 0.643, with this classifier 0.624 / 0.624 / 0.654 (see that script's docstring
for the second rotation and the variants tried). The labels, not the method, cap these
figures near 0.65 (that docstring).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

#: Feature names, in the order of the classifier's coefficients (``net`` optional).
FEATURES = (
    "con_s",
    "con_m",
    "con_l",
    "ismax_s",
    "ismax_l",
    "bg",
    "log_s_fr",
    "log_l_fr",
    "ring_fr",
    "con_m_fr",
)


@dataclass(frozen=True)
class SpotScales:
    """The lengths of candidate finding and features, Å (chosen as pixel counts on the
    0.293 Å/px ``pt_single_atoms`` frames before any scoring, converted to Å)."""

    background_A: float = 12.0  # running-median window edge (41 px)
    smooth_A: float = 0.439  # Gaussian sigma of the candidate map (1.5 px)
    min_distance_A: float = 0.88  # least candidate spacing (3 px)
    edge_A: float = 1.76  # candidates this close to the frame edge are not kept (6 px)
    log_A: tuple[float, float] = (0.439, 0.586)  # LoG sigmas (1.5, 2 px)
    window_A: tuple[float, float, float] = (4.4, 9.1, 17.9)  # local texture windows
    ismax_A: tuple[float, float] = (1.46, 2.64)  # "brightest within" radii (5, 9 px)
    ring_A: tuple[float, float] = (1.17, 2.051)  # ring radii of disk-minus-ring (4-7 px)
    disk_A: float = 0.586  # disk radius (2 px)
    net_A: float = 0.88  # network probability: max within this radius (3 px)
    nms_A: float = 1.172  # no two kept spots closer (4 px)
    match_A: float = 1.76  # label matching radius for training (6 px)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> SpotScales:
        names = {f for f in cls.__dataclass_fields__}
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
        )


def _px(length_A: float, pixel_size: float, least: int = 1) -> int:
    return max(least, int(round(length_A / pixel_size)))


def _odd(n: int) -> int:
    return n if n % 2 else n + 1


def _check_frame(frame: np.ndarray, pixel_size: float) -> np.ndarray:
    img = np.asarray(frame, np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected one (Y, X) frame, got shape {img.shape}")
    if not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel size must be a positive number of Å, got {pixel_size!r}")
    if not np.isfinite(img).all():
        img = np.where(np.isfinite(img), img, np.nanmedian(img))
    return img


def running_median(img: np.ndarray, size_px: int) -> np.ndarray:
    """(Y, X) running median of ``img`` over ``size_px``-pixel squares, the slowly varying
    background: taken on ``b`` x ``b`` block means (``b = size_px // 20``), then
    interpolated back to the frame's grid (a 41-px window on a 512² frame: ~0.5 s
    instead of ~5 s for the exact filter; on simulated Pt frames the classifier's held-out
    F1 is the same, 0.522 over 6 train/test pairs, and with ``b = size_px // 10`` 0.504)."""
    b = max(1, int(size_px) // 20)
    if b == 1:
        return ndi.median_filter(img, _odd(int(size_px)), mode="reflect")
    ny, nx = -(-img.shape[0] // b), -(-img.shape[1] // b)
    pad = np.pad(img, ((0, ny * b - img.shape[0]), (0, nx * b - img.shape[1])), mode="reflect")
    small = pad.reshape(ny, b, nx, b).mean((1, 3))
    med = ndi.median_filter(small, _odd(max(3, round(size_px / b))), mode="reflect")
    # block centres sit at b * i + (b - 1) / 2 on the frame's grid
    yy = (np.arange(img.shape[0]) - (b - 1) / 2) / b
    xx = (np.arange(img.shape[1]) - (b - 1) / 2) / b
    gy, gx = np.meshgrid(yy, xx, indexing="ij")
    return ndi.map_coordinates(med, [gy, gx], order=1, mode="nearest")


def candidates(
    frame: np.ndarray,
    pixel_size: float,
    scales: SpotScales = SpotScales(),
    net_prob: np.ndarray | None = None,
) -> pd.DataFrame:
    """Candidate spots of a (Y, X) ``frame`` (``pixel_size`` Å/px) with their features:
    columns ``y, x`` (integer pixels of the frame) and :data:`FEATURES` (plus ``net``, the
    largest of ``net_prob``, a (Y, X) atom probability on the frame's grid, within
    ``net_A``, when given)."""
    img = _check_frame(frame, pixel_size)
    s = scales
    bg = running_median(img, _px(s.background_A, pixel_size, 3))
    hp = img - bg
    sm = ndi.gaussian_filter(hp, s.smooth_A / pixel_size)
    from skimage.feature import peak_local_max

    edge = _px(s.edge_A, pixel_size)
    if min(img.shape) <= 2 * edge + 2:
        raise ValueError(
            f"frame {img.shape} is too small for spot candidates at {pixel_size} Å/px "
            f"(need more than {2 * edge + 2} px per side)"
        )
    pk = peak_local_max(
        sm, min_distance=_px(s.min_distance_A, pixel_size), exclude_border=edge, threshold_abs=0.0
    )
    iy, ix = pk[:, 0], pk[:, 1]
    f: dict[str, np.ndarray] = {"y": iy.astype(float), "x": ix.astype(float)}
    for name, w_A in zip(("con_s", "con_m", "con_l"), s.window_A):
        w = _odd(_px(w_A, pixel_size, 3))
        m = ndi.uniform_filter(sm, w)
        sd = np.sqrt(np.maximum(ndi.uniform_filter(sm * sm, w) - m * m, 1e-12))
        f[name] = ((sm - m) / sd)[iy, ix]
    for name, r_A in zip(("ismax_s", "ismax_l"), s.ismax_A):
        mx = ndi.maximum_filter(sm, size=2 * _px(r_A, pixel_size) + 1)
        f[name] = (sm[iy, ix] >= mx[iy, ix] - 1e-12).astype(float)
    lo, hi = np.percentile(bg, [5, 95])
    f["bg"] = ((bg - lo) / max(hi - lo, 1e-12))[iy, ix]
    for name, sig_A in zip(("log_s", "log_l"), s.log_A):
        sig = sig_A / pixel_size
        f[name] = (-ndi.gaussian_laplace(hp, sig) * sig * sig)[iy, ix]
    r_out = s.ring_A[1] / pixel_size
    n = int(np.ceil(r_out))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    rr = np.hypot(yy, xx)
    ring = ((rr >= s.ring_A[0] / pixel_size) & (rr <= r_out)).astype(float)
    disk = (rr <= s.disk_A / pixel_size).astype(float)
    f["ring"] = (ndi.correlate(hp, disk / disk.sum()) - ndi.correlate(hp, ring / ring.sum()))[
        iy, ix
    ]
    f["con_m_raw"] = f["con_m"]
    for name in ("log_s", "log_l", "ring", "con_m_raw"):  # robust units of this frame's
        v = f.pop(name)  # candidates (the support's texture, as atoms are a few %)
        med = float(np.median(v)) if len(v) else 0.0
        mad = 1.4826 * float(np.median(np.abs(v - med))) if len(v) else 1.0
        key = "con_m_fr" if name == "con_m_raw" else f"{name}_fr"
        f[key] = (v - med) / (mad + 1e-12)
    if net_prob is not None:
        p = np.asarray(net_prob, float)
        if p.shape != img.shape:
            raise ValueError(f"net_prob shape {p.shape} differs from the frame's {img.shape}")
        f["net"] = ndi.maximum_filter(p, size=2 * _px(s.net_A, pixel_size) + 1)[iy, ix]
    return pd.DataFrame(f)


def suppress(yx: np.ndarray, prob: np.ndarray, threshold: float, radius_px: float) -> np.ndarray:
    """Indices of the rows of ``yx`` (N, 2) with ``prob >= threshold`` kept greedily, most
    probable first, none within ``radius_px`` of an already kept one."""
    from scipy.spatial import cKDTree

    idx = np.flatnonzero(np.asarray(prob) >= threshold)
    idx = idx[np.argsort(-np.asarray(prob)[idx], kind="stable")]
    if len(idx) == 0:
        return idx
    tree = cKDTree(np.asarray(yx, float)[idx])
    alive = np.ones(len(idx), bool)
    for a in range(len(idx)):
        if alive[a]:
            for b in tree.query_ball_point(yx[idx[a]], radius_px):
                if b > a:
                    alive[b] = False
    return idx[alive]


@dataclass
class SpotClassifier:
    """A trained verifier: standardisation (``mean``, ``scale``), logistic coefficients
    (``coef``, ``intercept``) over ``features``, the decision ``threshold`` and the
    ``scales``; ``report`` holds the training record (counts, leave-one-frame-out F1)."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float
    scales: SpotScales = field(default_factory=SpotScales)
    report: dict = field(default_factory=dict)

    @property
    def uses_net(self) -> bool:
        return "net" in self.features

    def probability(self, table: pd.DataFrame) -> np.ndarray:
        """(N,) probability that each candidate row (:func:`candidates`) is an atom."""
        x = (table[list(self.features)].to_numpy(float) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(x @ self.coef + self.intercept)))

    def detect(
        self, frame: np.ndarray, pixel_size: float, net_prob: np.ndarray | None = None
    ) -> pd.DataFrame:
        """Atoms of a (Y, X) frame: ``y, x`` (pixels) and ``prob``, most probable first."""
        if self.uses_net and net_prob is None:
            raise ValueError("this spot classifier needs the network's atom probability map")
        cand = candidates(frame, pixel_size, self.scales, net_prob if self.uses_net else None)
        p = self.probability(cand) if len(cand) else np.zeros(0)
        yx = cand[["y", "x"]].to_numpy(float)
        keep = suppress(yx, p, self.threshold, self.scales.nms_A / pixel_size)
        return pd.DataFrame({"y": yx[keep, 0], "x": yx[keep, 1], "prob": p[keep]})

    def to_card(self) -> dict:
        return {
            "features": list(self.features),
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "coef": [float(v) for v in self.coef],
            "intercept": float(self.intercept),
            "threshold": float(self.threshold),
            "scales": self.scales.to_dict(),
            "report": self.report,
        }

    @classmethod
    def from_card(cls, card: dict | None) -> SpotClassifier | None:
        """The classifier of a model card (its ``spot_classifier`` dict), or None."""
        d = (card or {}).get("spot_classifier")
        if not isinstance(d, dict):
            return None
        try:
            feats = tuple(str(f) for f in d["features"])
            arrs = [np.asarray(d[k], float) for k in ("mean", "scale", "coef")]
            out = cls(
                feats,
                *arrs,
                float(d["intercept"]),
                float(d["threshold"]),
                SpotScales.from_dict(d.get("scales", {})),
                dict(d.get("report", {})),
            )
        except (KeyError, TypeError, ValueError):
            return None
        ok = all(len(a) == len(feats) for a in arrs) and bool(np.all(out.scale > 0))
        return out if ok else None


def atom_table(
    clf: SpotClassifier,
    raw: np.ndarray,
    net_prob: np.ndarray | None,
    pixel_size: float,
    frame: int,
    cls: str,
    border_A: float = 1.0,
) -> pd.DataFrame:
    """The atoms ``clf`` accepts on a (Y, X) frame as a detection table (``frame, y, x,
    cls, prob, border, sigma_px, sigma_A``; positions in pixels, no position error;
    ``border``: :func:`atomlens.atoms.detect.border_flags` of these positions, which
    detection computes again after refining them)."""
    from atomlens.atoms.detect import border_flags

    found = clf.detect(raw, pixel_size, net_prob)
    yx = found[["y", "x"]].to_numpy(float)
    border = border_flags(yx, np.shape(raw), pixel_size, border_A)
    return pd.DataFrame(
        {
            "frame": np.full(len(yx), frame, np.int64),
            "y": yx[:, 0],
            "x": yx[:, 1],
            "cls": pd.Categorical([cls] * len(yx), categories=[cls]),
            "prob": found["prob"].to_numpy(float),
            "border": border,
            "sigma_px": np.full(len(yx), np.nan),
            "sigma_A": np.full(len(yx), np.nan),
        }
    )


def _labelled(cand: pd.DataFrame, truth_yx: np.ndarray, radius_px: float) -> np.ndarray:
    """(N,) 1 for candidates matched one-to-one to a label, -1 for others within the
    radius of a label (ambiguous: left out of training), 0 for the rest."""
    from scipy.spatial import cKDTree

    from atomlens.atoms.match import match_atoms

    yx = cand[["y", "x"]].to_numpy(float)
    lab = np.zeros(len(yx), int)
    if len(truth_yx) == 0 or len(yx) == 0:
        return lab
    ip, _ = match_atoms(yx, truth_yx, radius_px)
    lab[ip] = 1
    d, _ = cKDTree(truth_yx).query(yx)
    lab[(d <= radius_px) & (lab == 0)] = -1
    return lab


#: Decision thresholds tried (leave-one-frame-out F1).
THRESHOLDS = tuple(float(t) for t in np.linspace(0.05, 0.9, 35))


def _fit_lr(
    x: np.ndarray, y: np.ndarray, c: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(0)
    scale = x.std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    lr = LogisticRegression(C=c, max_iter=2000)
    lr.fit((x - mean) / scale, y)
    return mean, scale, lr.coef_[0].copy(), float(lr.intercept_[0])


def train_spot_classifier(
    frames: Sequence[np.ndarray] | np.ndarray,
    labels: Sequence[np.ndarray],
    pixel_size: float,
    *,
    net_probs: Sequence[np.ndarray] | None = None,
    scales: SpotScales = SpotScales(),
    c: float = 0.3,
    thresholds: Sequence[float] = THRESHOLDS,
) -> SpotClassifier:
    """Train a :class:`SpotClassifier` on labelled (Y, X) ``frames`` (``pixel_size`` Å/px;
    ``labels[k]``: (N_k, 2) ``y, x`` pixels of every atom of frame k) and choose its
    threshold by leave-one-frame-out F1 (left and right halves of the frame when only one
    is given). ``net_probs``: per frame the network's (Y, X) atom probability (adds the
    ``net`` feature). ``c``: inverse L2 strength of the logistic regression.

    Raises ValueError when the frames hold fewer than 10 matched atoms in all."""
    frames = [np.asarray(f) for f in frames]
    if len(frames) != len(labels) or (net_probs is not None and len(net_probs) != len(frames)):
        raise ValueError(
            f"need one label array (and net map) per frame: {len(frames)} frames, "
            f"{len(labels)} label arrays"
        )
    r = scales.match_A / pixel_size
    tabs, groups = [], []
    for k, fr in enumerate(frames):
        cand = candidates(fr, pixel_size, scales, None if net_probs is None else net_probs[k])
        t = np.asarray(labels[k], float).reshape(-1, 2)
        cand["label"] = _labelled(cand, t, r)
        cand["frame"] = k
        tabs.append(cand)
        groups.append(k)
    table = pd.concat(tabs, ignore_index=True)
    feats = FEATURES + (("net",) if net_probs is not None else ())
    n_pos = int((table["label"] == 1).sum())
    if n_pos < 10:
        raise ValueError(
            f"only {n_pos} labelled atoms match a candidate spot: label at least 10 atoms "
            "to train a spot classifier"
        )
    if len(frames) == 1:  # two groups: left and right halves of the one frame
        half = frames[0].shape[1] / 2.0
        table["group"] = (table["x"].to_numpy() >= half).astype(int)
    else:
        table["group"] = table["frame"]
    n_groups = int(table["group"].nunique())
    # leave-one-group-out probabilities -> threshold with the best pooled F1
    held = np.full(len(table), np.nan)
    for g in range(n_groups):
        tr = (table["group"] != g) & (table["label"] >= 0)
        te = (table["group"] == g).to_numpy()
        y = table.loc[tr, "label"].to_numpy()
        if y.min() == y.max():
            continue
        m, s, w, b = _fit_lr(table.loc[tr, list(feats)].to_numpy(float), y, c)
        x = (table.loc[te, list(feats)].to_numpy(float) - m) / s
        held[te] = 1.0 / (1.0 + np.exp(-(x @ w + b)))
    f1_by = {}
    from atomlens.atoms.match import match_atoms

    for thr in thresholds:
        tp = n_f = n_t = 0
        for g in range(n_groups):
            sel = (table["group"] == g).to_numpy() & np.isfinite(held)
            if not sel.any():
                continue
            sub = table[sel]
            k = int(sub["frame"].iloc[0])
            t = np.asarray(labels[k], float).reshape(-1, 2)
            if len(frames) == 1:
                t = t[(t[:, 1] >= half) == bool(g)]
            yx = sub[["y", "x"]].to_numpy(float)
            keep = suppress(yx, held[sel], thr, scales.nms_A / pixel_size)
            tp += len(match_atoms(yx[keep], t, r)[0])
            n_f, n_t = n_f + len(keep), n_t + len(t)
        f1_by[round(float(thr), 3)] = round(2 * tp / max(n_f + n_t, 1), 4)
    best = max(f1_by, key=lambda t: (f1_by[t], -abs(t - 0.5))) if f1_by else 0.5
    ok = table["label"] >= 0
    m, s, w, b = _fit_lr(
        table.loc[ok, list(feats)].to_numpy(float), table.loc[ok, "label"].to_numpy(), c
    )
    report = {
        "n_frames": len(frames),
        "n_candidates": int(len(table)),
        "n_positive": n_pos,
        "candidate_recall": round(
            n_pos / max(sum(len(np.reshape(t, (-1, 2))) for t in labels), 1), 4
        ),
        "threshold_by": "leave-one-frame-out" if len(frames) > 1 else "left/right halves",
        "held_out_f1": f1_by.get(best),
        "f1_by_threshold": {f"{t:.3f}": v for t, v in f1_by.items()},
        "c": c,
    }
    return SpotClassifier(tuple(feats), m, s, w, b, float(best), scales, report)


__all__ = [
    "FEATURES",
    "THRESHOLDS",
    "SpotClassifier",
    "atom_table",
    "SpotScales",
    "candidates",
    "suppress",
    "train_spot_classifier",
]
