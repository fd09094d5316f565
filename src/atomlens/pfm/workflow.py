"""The PFM domain-wall workflow: Canny walls -> wall-centred (time-delayed) windows ->
skip-rVAE -> switching degree, wall count and curvature per window and on the latent
manifold -> table and figures.

Reading of the paper (see :mod:`atomlens.pfm.switching` for the details): the median
split threshold is the median of the images decoded over the latent manifold; a window's
switching degree is computed on its rVAE reconstruction (all latents: angle, shift and
content) and, for comparison, directly on the raw window (``D_direct``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atomlens.descriptors import extract_windows
from atomlens.pfm.switching import median_threshold, switching_degree, wall_descriptors
from atomlens.pfm.walls import detect_walls, sample_wall_pixels, wall_windows


@dataclass
class PFMConfig:
    """Settings of :func:`run_pfm` (paper values in brackets).

    window : window side, pixels [40]. n_per_frame : wall pixels per frame [80].
    delta : time delay in frames (0 = same-time descriptors). canny_sigma : Canny
    smoothing, pixels. latent_dim : content latents [2]. hidden : rVAE layer widths
    [(256,) * 4]. epochs, batch_size, lr : training [lr 1e-4; a larger one converges
    in fewer epochs on CPU]. activation, rot_prior : rVAE decoder activation and the SD
    of the angle prior (rad; walls come in every orientation, so wider than for atoms). seed : sampling and training seed. manifold_grid : latent
    grid side for the manifold maps [12]. min_wall_length : shortest wall segment,
    pixels. train_subset : train on at most this many windows (all are encoded).
    """

    window: int = 40
    n_per_frame: int = 80
    delta: int = 1
    canny_sigma: float = 2.0
    latent_dim: int = 2
    hidden: tuple[int, ...] = (128, 128)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    activation: str = "tanh"
    rot_prior: float = 1.0
    seed: int = 0
    manifold_grid: int = 12
    min_wall_length: int = 5
    train_subset: int | None = 4000


@dataclass
class PFMResult:
    """Output of :func:`run_pfm`.

    table : one row per window: ``frame, y, x`` (wall pixel at frame t, pixels),
        ``angle`` (rad), ``dx, dy`` (pixels), ``z1..zk``, ``D`` (switching degree of the
        reconstruction), ``D_manifold`` (of the manifold image nearest the window's
        content latent), ``D_direct`` (of the raw window), ``D_raw``/``D_direct_raw``
        (later frame only, no baseline), ``n_walls``, ``curvature`` (1/pixel, of the raw
        window's Canny walls at t) and ``curvature_latent`` (of the reconstruction).
    walls : (T, Y, X) bool Canny walls.
    threshold : median-split threshold from the latent manifold.
    manifold : ``z1``, ``z2`` (G,) grid axes, ``images`` (G, G, C, h, w) decoded,
        ``D``, ``n_walls``, ``curvature`` (G, G) maps (row i = z2[i], column j = z1[j]).
    model : the trained skip-rVAE.
    config : the settings used.
    """

    table: pd.DataFrame
    walls: np.ndarray
    threshold: float
    manifold: dict
    model: object
    config: PFMConfig
    history: list = field(default_factory=list)
    stopped: bool = False  # Stop ended training early: the model of the epochs done
    epochs_done: int = 0


class PFMStopped(Exception):  # noqa: N818 - a signal, not an error of the user
    """Stop came before the skip-rVAE finished a step: there is no result to keep."""


def _degree(images: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(D with the t-channel baseline removed, D of the last channel) for (N, C, h, w)."""
    last = switching_degree(images[:, -1], threshold)
    if images.shape[1] == 1:
        return last, last
    return last - switching_degree(images[:, 0], threshold), last


def _as_nchw(images: np.ndarray) -> np.ndarray:
    return images[:, None] if images.ndim == 3 else images


def run_pfm(
    phase: np.ndarray,
    config: PFMConfig | None = None,
    progress: Callable[[str], None] | None = None,
    *,
    stop: threading.Event | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> PFMResult:
    """Run the whole PFM workflow on a (T, Y, X) phase movie (see module docstring).

    ``on_event`` gets every training event of :func:`atomlens.train.fit_events` (per
    epoch: losses, time left). ``stop`` (a ``threading.Event``): set before training,
    :class:`PFMStopped` is raised; set during training, training ends after the current
    step and the windows are encoded with the model of the epochs done
    (``PFMResult.stopped``)."""
    from atomlens.models import SkipRVAE
    from atomlens.train import Finished, fit_events

    cfg = config or PFMConfig()
    say = progress or (lambda msg: None)
    arr = np.asarray(getattr(phase, "data", phase), dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if cfg.delta > 0 and arr.shape[0] <= cfg.delta:
        raise ValueError(
            f"a time delay of {cfg.delta} frames needs more than {cfg.delta} frames, "
            f"got {arr.shape[0]}; use --delta 0 for single images"
        )
    # scale to [0, 1] over the whole movie (robust percentiles) so the rVAE sees one range
    lo, hi = np.percentile(arr, [1, 99])
    scaled = np.clip((arr - lo) / (hi - lo if hi > lo else 1.0), 0, 1).astype(np.float32)

    say("finding walls (Canny)")
    walls = detect_walls(arr, sigma=cfg.canny_sigma)
    frames = np.arange(arr.shape[0] - cfg.delta)
    centres = sample_wall_pixels(walls, cfg.n_per_frame, cfg.window, cfg.seed, frames=frames)
    if len(centres) == 0:
        raise ValueError(
            "no domain-wall pixels found away from the frame edges; lower --canny-sigma or --window"
        )
    sub = wall_windows(scaled, centres, cfg.window, cfg.delta, both=cfg.delta > 0)
    X = _as_nchw(sub.images)
    table = centres.iloc[sub.index].reset_index(drop=True)
    edge_win = extract_windows(walls.astype(np.float32), table, cfg.window).images > 0.5
    if stop is not None and stop.is_set():
        raise PFMStopped("stopped before training")

    say(f"training skip-rVAE on {len(X)} windows of {cfg.window} px, {X.shape[1]} channel(s)")
    model = SkipRVAE(
        window=cfg.window, latent_dim=cfg.latent_dim, seed=cfg.seed, hidden=cfg.hidden,
        lr=cfg.lr, channels=X.shape[1], activation=cfg.activation, rot_prior=cfg.rot_prior,
    )  # fmt: skip
    subset = None
    if cfg.train_subset is not None and len(X) > cfg.train_subset:
        subset = int(cfg.train_subset)
    finished = None
    for event in fit_events(model, X, epochs=cfg.epochs, batch_size=cfg.batch_size,
                            seed=cfg.seed, subset=subset, device="cpu", stop=stop):  # fmt: skip
        if on_event is not None:
            on_event(event)
        if isinstance(event, Finished):
            finished = event
    stopped = finished is not None and finished.reason == "stopped"
    if stopped and finished.epochs_done == 0:
        raise PFMStopped("stopped before the first epoch ended")
    lat = model.transform(X)
    table = pd.concat([table, lat.reset_index(drop=True)], axis=1)
    zcols = [f"z{i + 1}" for i in range(cfg.latent_dim)]

    say("decoding the latent manifold")
    manifold = latent_manifold(model, lat[zcols].to_numpy(), cfg.manifold_grid)
    images_m = manifold["images"]
    threshold = median_threshold(images_m)
    g = images_m.shape[0]
    flat = images_m.reshape(g * g, *images_m.shape[2:])
    d_m, _ = _degree(flat, threshold)
    nw_m, cu_m = wall_descriptors(flat[:, 0], threshold, min_length=cfg.min_wall_length)
    manifold.update(D=d_m.reshape(g, g), n_walls=nw_m.reshape(g, g), curvature=cu_m.reshape(g, g))

    say("switching degree and curvature per window")
    recon = _as_nchw(
        model.decode(
            lat[zcols].to_numpy(),
            angle=lat["angle"].to_numpy(),
            shift_px=lat[["dx", "dy"]].to_numpy(),
        )
    )
    d_lat, d_lat_raw = _degree(recon, threshold)
    thr_direct = median_threshold(X[:, 0])
    d_dir, d_dir_raw = _degree(X, thr_direct)
    n_walls, curv = wall_descriptors(X[:, 0], thr_direct, edges=edge_win,
                                     min_length=cfg.min_wall_length)  # fmt: skip
    _, curv_lat = wall_descriptors(recon[:, 0], threshold, min_length=cfg.min_wall_length)
    # the paper's Fig. 7b reading: D of the manifold image nearest each window's latent
    z = lat[zcols].to_numpy()
    gi = np.clip(
        np.rint((z[:, 1] - manifold["z2"][0]) / np.ptp(manifold["z2"]) * (g - 1)), 0, g - 1
    )
    gj = np.clip(
        np.rint((z[:, 0] - manifold["z1"][0]) / np.ptp(manifold["z1"]) * (g - 1)), 0, g - 1
    )
    d_man = manifold["D"][gi.astype(int), gj.astype(int)]
    table = table.assign(
        D=d_lat, D_raw=d_lat_raw, D_manifold=d_man, D_direct=d_dir, D_direct_raw=d_dir_raw,
        n_walls=n_walls, curvature=curv, curvature_latent=curv_lat,
    )  # fmt: skip
    epochs_done = finished.epochs_done if finished is not None else cfg.epochs
    return PFMResult(table, walls, threshold, manifold, model, cfg, stopped=stopped,
                     epochs_done=int(epochs_done))  # fmt: skip


def latent_manifold(model: object, z: np.ndarray, n: int = 12, span: float = 2.5) -> dict:
    """Decode an ``n x n`` grid over the content-latent plane (angle 0, no shift).

    The grid spans the encoded latents ``z`` (N, 2): their median ± ``span`` robust SDs
    (1.4826 x MAD), clipped to the data range padded by 10 %.

    Returns ``{"z1": (n,), "z2": (n,), "images": (n, n, C, h, w)}``, row i = z2[i].
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"the latent manifold needs 2 content latents, got shape {z.shape}")
    axes = []
    for k in range(2):
        med = np.median(z[:, k])
        sd = 1.4826 * np.median(np.abs(z[:, k] - med)) or float(np.std(z[:, k])) or 1.0
        pad = 0.1 * (z[:, k].max() - z[:, k].min() + 1e-6)
        a = max(med - span * sd, z[:, k].min() - pad)
        b = min(med + span * sd, z[:, k].max() + pad)
        axes.append(np.linspace(a, b, n))
    zz1, zz2 = np.meshgrid(axes[0], axes[1])
    grid = np.column_stack([zz1.ravel(), zz2.ravel()])
    imgs = _as_nchw(model.decode(grid))  # type: ignore[attr-defined]
    return {"z1": axes[0], "z2": axes[1], "images": imgs.reshape(n, n, *imgs.shape[1:])}


def truth_velocity(movie: object, table: pd.DataFrame, window: int, delta: int = 1) -> pd.DataFrame:
    """The simulator's local wall velocity (pixels / frame) for each window.

    ``v_centre``: at the window's centre pixel; ``v_window``: mean over the true wall
    pixels (at t) inside the window. ``movie`` is a :class:`atomlens.pfm.simulate.PFMMovie`.
    """
    from atomlens.pfm.simulate import wall_velocity

    field_ = movie.field  # type: ignore[attr-defined]
    true_walls = movie.walls  # type: ignore[attr-defined]
    half = window // 2
    v_c = np.full(len(table), np.nan)
    v_w = np.full(len(table), np.nan)
    frames = table["frame"].to_numpy().astype(int)
    ys = np.rint(table["y"].to_numpy()).astype(int)
    xs = np.rint(table["x"].to_numpy()).astype(int)
    for t in np.unique(frames):
        if t + delta >= len(field_):
            continue
        v = wall_velocity(field_, int(t), max(delta, 1))
        rows = np.flatnonzero(frames == t)
        for i in rows:
            y0, x0 = ys[i] - half, xs[i] - half
            v_c[i] = v[ys[i], xs[i]]
            sl = (slice(y0, y0 + window), slice(x0, x0 + window))
            vals = v[sl][true_walls[t][sl] & np.isfinite(v[sl])]
            if len(vals):
                v_w[i] = vals.mean()
    return pd.DataFrame({"v_centre": v_c, "v_window": v_w})


def write_pfm_outputs(result: PFMResult, out_dir: str | Path, phase: np.ndarray | None = None
                      ) -> list[Path]:  # fmt: skip
    """Write ``pfm_windows.csv``, ``pfm_manifold.npz``, ``pfm_config.json`` and figures
    (``pfm_latent.png``, ``pfm_manifold.png`` and, given the movie, ``pfm_walls.png``)."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from atomlens.io import atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    p = out / "pfm_windows.csv"
    atomic.write_csv(p, result.table)
    paths.append(p)
    p = out / "pfm_manifold.npz"
    atomic.write_npz(p, **{k: np.asarray(v) for k, v in result.manifold.items()},
                     threshold=result.threshold)  # fmt: skip
    paths.append(p)
    p = out / "pfm_config.json"
    atomic.write_json(p, {**asdict(result.config), "threshold": result.threshold})
    paths.append(p)

    tab = result.table
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, col, cmap in zip(axes, ("D", "curvature", "n_walls"), ("coolwarm", "PiYG", "viridis")):
        vals = tab[col].to_numpy(dtype=float)
        lim = np.nanpercentile(np.abs(vals), 98) if np.isfinite(vals).any() else 1.0
        kw = {"vmin": -lim, "vmax": lim} if col != "n_walls" else {}
        sc = ax.scatter(tab["z1"], tab["z2"], c=vals, s=4, cmap=cmap, **kw)
        fig.colorbar(sc, ax=ax, shrink=0.8)
        ax.set(xlabel="z1", ylabel="z2", title=f"{col} per window")
    fig.tight_layout()
    p = out / "pfm_latent.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    man = result.manifold
    g = len(man["z1"])
    imgs = man["images"][:, :, -1]  # later channel
    h, w = imgs.shape[-2:]
    mosaic = imgs[::-1].transpose(0, 2, 1, 3).reshape(g * h, g * w)  # z2 upwards
    ext = (man["z1"][0], man["z1"][-1], man["z2"][0], man["z2"][-1])
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.3))
    axes[0].imshow(mosaic, cmap="viridis", extent=ext, aspect="auto")
    axes[0].set(title="decoded manifold (t + delta)", xlabel="z1", ylabel="z2")
    for ax, key, cmap in zip(
        axes[1:], ("D", "n_walls", "curvature"), ("coolwarm", "viridis", "PiYG")
    ):
        im = ax.imshow(man[key], origin="lower", extent=ext, aspect="auto", cmap=cmap)
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set(title=f"{key} on the manifold", xlabel="z1")
    fig.tight_layout()
    p = out / "pfm_manifold.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    if phase is not None:
        arr = np.asarray(phase)
        frames = np.unique(tab["frame"])
        pick = frames[np.linspace(0, len(frames) - 1, min(4, len(frames))).astype(int)]
        fig, axes = plt.subplots(1, len(pick), figsize=(4 * len(pick), 4), squeeze=False)
        for ax, t in zip(axes[0], pick):
            ax.imshow(arr[t], cmap="gray")
            wy, wx = np.nonzero(result.walls[t])
            ax.plot(wx, wy, ",", color="yellow")
            rows = tab[tab["frame"] == t]
            ax.scatter(
                rows["x"], rows["y"], c=rows["D"], cmap="coolwarm", s=12, vmin=-0.3, vmax=0.3
            )
            ax.set(title=f"frame {t}: walls and D", xticks=[], yticks=[])
        fig.tight_layout()
        p = out / "pfm_walls.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(p)
    return paths
