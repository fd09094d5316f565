"""The ``general`` preset: an atom-column finder for any material, trained on the simulator.

Each training sample is a random structure from :mod:`atomlens.simulate.materials`
(sparse heavy atoms on amorphous carbon, 2H TMDs, perovskites along [001]/[110], fcc
metals along [001]/[110]/[111], graphene/hBN) rendered by the project's one renderer
(:func:`atomlens.simulate.image.render_image`: a real probe, scan distortion) at a
nominal pixel size drawn from 0.05-0.5 Å/px (true sampling 0.7-1.4 x nominal: a wrong
calibration), with shot and read noise, background, afterglow; then resampled to the
model's 0.2 Å/px and normalised exactly as at prediction. Contrast: the Z exponent is
1.3-2.0 (HAADF) or 0.4-1.0 (an inverted ABF/BF image: light columns such as O show);
dark-atom images are inverted before the network at prediction
(:func:`atomlens.atoms.detect.iter_detect`), so the network always sees bright atoms.
Labels: one class ``atom``, a 0.4 Å disk on every column at least 10 % as bright as the
brightest (:func:`atomlens.simulate.materials.visible`); support atoms are background.

``atomlens train-detector --preset general --out general.pt`` rebuilds the shipped model.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from atomlens.segment.model_file import Detector, load_detector, save_detector
from atomlens.segment.nets import NetConfig, build_net, n_params
from atomlens.segment.predict import normalise, resample
from atomlens.segment.train import TrainConfig, TrainConfigError, Validator, iter_steps
from atomlens.simulate.image import render_image
from atomlens.simulate.materials import Columns, random_structure, visible
from atomlens.simulate.probe import Probe
from atomlens.simulate.scan import ScanDistortion
from atomlens.simulate.training import label_mask

CLASSES = ("background", "atom")
PIXEL_RANGE_A = (0.05, 0.5)
CONTRAST = ("HAADF", "ABF")


def general_config(**overrides) -> TrainConfig:
    """The ``general`` training preset (a :class:`TrainConfig`); ``overrides`` set fields."""
    cfg = TrainConfig(
        classes=CLASSES,
        pixel_size=0.2,
        radius_A=0.4,
        crop=128,
        batch=8,
        steps=1200,
        lr=3e-3,
        weight_decay=1e-5,
        dice_weight=0.5,
        class_weights=(1.0, 1.0),
        zoom_range=(0.7, 1.4),
        p_extra_aug=0.0,
        seed=0,
        threads=2,
        tile=512,
        net=NetConfig(
            arch="dilated_unet", classes=CLASSES, base_filters=8, levels=3, dilations=(1, 2, 3, 4)
        ),
    )
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TrainConfigError(f"unknown training option {k!r}")
        setattr(cfg, k, v)
    return cfg


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def render_general(
    cfg: TrainConfig,
    rng: np.random.Generator,
    cols: Columns | None = None,
    *,
    pixel_size_A: float | None = None,
    z_exponent: float | None = None,
    snr: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """One sample on the model grid: (image (crop, crop) float32 normalised, mask
    (crop, crop) uint8, atom positions (N, 2) model pixels, imaging dict).

    ``pixel_size_A`` (nominal, Å/px), ``z_exponent`` and ``snr`` (brightest column peak
    over its shot noise, per 0.1 Å pixel) are drawn when None; ``cols`` (positions in Å
    over the field) is drawn by :func:`random_structure` when None.
    """
    crop = cfg.crop
    p_nom = pixel_size_A or _log_uniform(rng, *PIXEL_RANGE_A)
    true = p_nom * rng.uniform(*cfg.zoom_range)
    n = max(16, int(round(crop * cfg.pixel_size / p_nom)))
    size_A = n * true
    if cols is None:
        cols = random_structure(size_A, rng)
        if not cols.support.all() and len(cols):
            # image the structure so that its columns are resolved, as a user would
            limit = cols.min_spacing_A / 3.0 / rng.uniform(0.8, 1.25)
            if true > limit:
                scale = limit / true
                p_nom, true = p_nom * scale, true * scale
                n = max(16, int(round(crop * cfg.pixel_size / p_nom)))
                # keep the field: the structure was built for size_A; crop a part of it
    dmin = cols.min_spacing_A if (len(cols) and not cols.support.all()) else 2.5
    if "single atoms" in cols.name:  # isolated atoms: also defocused / low-magnification spots
        fwhm = rng.uniform(0.7, 2.4)
    else:
        fwhm = min(rng.uniform(0.6, 1.8), 0.85 * dmin)
    if rng.random() < 0.3:
        probe = Probe.random(rng)
    else:
        probe = Probe.with_fwhm(
            fwhm,
            voltage_kV=float(rng.choice([60.0, 80.0, 200.0, 300.0])),
            alpha_mrad=float(rng.uniform(20, 35)),
        )
    nexp = (
        z_exponent
        if z_exponent is not None
        else (rng.uniform(1.3, 2.0) if rng.random() < 0.7 else rng.uniform(0.4, 1.0))
    )
    scan = ScanDistortion.random(rng, true) if rng.random() < 0.5 else None
    img, app = render_image(
        cols.yx_A, cols.z, (n, n), true, probe, rng, z_exponent=nexp, weights=cols.count, scan=scan
    )
    amp = cols.count * (cols.z / 6.0) ** nexp
    vis = visible(cols, nexp)
    peak = float(amp[vis].max()) if vis.any() else float(max(img.max(), 1e-3))
    # background: detector offset, slow gradients, diffuse film, contamination blobs
    bg = rng.uniform(0, 0.3) * peak
    if rng.random() < 0.4:
        yy, xx = np.mgrid[:n, :n] / n
        bg = bg + peak * rng.uniform(0, 0.3) * np.abs(rng.normal() * yy + rng.normal() * xx)
    if rng.random() < 0.2:
        from scipy import ndimage as ndi

        f = ndi.gaussian_filter(rng.normal(size=(n, n)), rng.uniform(3, 10) / true)
        f /= f.std() + 1e-12
        bg = bg + peak * rng.uniform(0.2, 1.0) * np.clip(f - 0.8, 0, None)
    clean = np.clip(img + bg, 0, None)
    s = (snr if snr is not None else _log_uniform(rng, 1.0, 30.0)) * (p_nom / 0.1)
    k = s**2 / max(peak, 1e-6)  # counts per unit intensity: the peak has SNR s
    noisy = rng.poisson(clean * k) / k
    if rng.random() < 0.2:
        from scipy.signal import lfilter

        a = float(np.exp(-1.0 / rng.uniform(0.3, 1.5)))
        noisy = lfilter([1 - a], [1, -a], noisy, axis=1)
    if rng.random() < 0.3:
        noisy = noisy + rng.normal(0, rng.uniform(0, 0.1) * peak, noisy.shape)
    if rng.random() < 0.15:
        noisy = noisy * (1 + rng.normal(0, rng.uniform(0, 0.05), (n, 1)))
    x = resample(torch.from_numpy(noisy.astype(np.float32))[None], (crop, crop))[0].numpy()
    x = normalise(x)
    # labels on the model grid, one per visible column
    yx = app[vis]
    col = cols.column[vis]
    _, first = np.unique(col, return_index=True)
    yx = (yx[first] + 0.5) * (crop / n) - 0.5
    inside = np.all((yx > -0.5) & (yx < crop - 0.5), axis=1)
    yx = yx[inside]
    mask = label_mask(yx, np.ones(len(yx), np.int64), (crop, crop), cfg.radius_A / cfg.pixel_size)
    info = {
        "structure": cols.name,
        "pixel_size_A": p_nom,
        "true_pixel_size_A": true,
        "z_exponent": nexp,
        "snr": s,
        "probe_fwhm_A": fwhm,
    }
    return x.astype(np.float32), mask, yx, info


def make_batch(cfg: TrainConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch: images (B, 1, crop, crop) float32, labels (B, crop, crop) int64."""
    xs, ys = [], []
    for _ in range(cfg.batch):
        x, m, _, _ = render_general(cfg, rng)
        if rng.random() < 0.5:  # flips (the renderer's scan is not symmetric)
            x, m = x[:, ::-1], m[:, ::-1]
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(m))
    return (
        torch.from_numpy(np.stack(xs))[:, None],
        torch.from_numpy(np.stack(ys).astype(np.int64)),
    )


class _Batches(torch.utils.data.IterableDataset):
    """Endless :func:`make_batch` batches from one seeded generator (rendered in a
    worker process, so rendering overlaps the network's step)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        torch.set_num_threads(1)
        rng = np.random.default_rng(self.cfg.seed)
        while True:
            yield make_batch(self.cfg, rng)


def iter_train(cfg: TrainConfig, init: Detector | None = None, workers: int = 1) -> Iterator[dict]:
    """Train; yield step events (:func:`atomlens.segment.train.iter_steps`), the last
    ``{"done": True, "net": net}``. ``init``: continue from these weights; ``workers``:
    rendering processes (0 = render in this process)."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    loader = iter(
        torch.utils.data.DataLoader(
            _Batches(cfg),
            batch_size=None,
            num_workers=workers,
            prefetch_factor=2 if workers else None,
        )
    )
    net = build_net(cfg.net)
    if init is not None:
        net.load_state_dict(init.net.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max(cfg.steps, 1), pct_start=0.1
    )
    t0 = time.perf_counter()
    last, ema = cfg.steps, None
    for ev in iter_steps(net, lambda: next(loader), cfg.steps, opt, sched, cfg):
        if "end" in ev:
            last = ev["step"]
            break
        ema = ev["loss_ema"]
        yield {**ev, "net_ref": net}
    net.eval()
    yield {
        "step": last,
        "steps": cfg.steps,
        "done": True,
        "net": net,
        "elapsed_s": time.perf_counter() - t0,
        "loss_ema": ema,
    }


def validation_set(
    n: int = 24, seed: int = 12345, cfg: TrainConfig | None = None
) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """``n`` held-out samples (image on the model grid, true positions (N, 2) model px,
    imaging info) from a seed the training never uses."""
    cfg = cfg or general_config()
    big = general_config(crop=256)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x, _, yx, info = render_general(big, rng)
        out.append((x, yx, info))
    return out


def train_general(
    cfg: TrainConfig,
    out: str | Path,
    *,
    command: str | None = None,
    validate: Validator | None = None,
    log: Callable[[str], None] = print,
    checkpoint_every: int = 50,
    init: Detector | None = None,
    notes: dict | None = None,
) -> Detector:
    """Train the general model, write ``out`` and ``<stem>_card.json``; a checkpoint
    ``<out>.ckpt.pt`` every ``checkpoint_every`` steps. ``validate``: scores the trained
    detector for its card (``card["validation"]``), e.g.
    :func:`atomlens.atoms.evaluate.validate_general` (None: no validation)."""
    out = Path(out)
    last: dict = {}
    for ev in iter_train(cfg, init):
        last = ev
        if ev["step"] % 25 == 0 or ev.get("done"):
            log(
                f"step {ev['step']}/{ev['steps']} loss {ev.get('loss_ema') or 0:.4f} "
                f"{ev['elapsed_s']:.0f}s"
            )
        if checkpoint_every and not ev.get("done") and ev["step"] % checkpoint_every == 0:
            net = ev["net_ref"]
            net.eval()
            save_detector(
                Detector(
                    net,
                    cfg.net,
                    cfg.pixel_size,
                    cfg.radius_A,
                    cfg.tile,
                    _card(cfg, net, ev, command, out),
                ),
                out.with_suffix(".ckpt.pt"),
            )
            net.train()
    net = last["net"]
    det = Detector(
        net,
        cfg.net,
        cfg.pixel_size,
        cfg.radius_A,
        cfg.tile,
        {**_card(cfg, net, last, command, out), **(notes or {})},
    )
    if validate is not None:
        det.card["validation"] = validate(det)
        log(f"validation: {json.dumps(det.card['validation'])}")
    save_detector(det, out)
    out.with_name(out.stem + "_card.json").write_text(json.dumps(load_detector(out).card, indent=2))
    log(f"wrote {out}")
    return det


def _card(cfg: TrainConfig, net: torch.nn.Module, ev: dict, command: str | None, out: Path) -> dict:
    return {
        "name": "general",
        "task": "atom finding: per-pixel softmax over background, atom (any material)",
        "classes": list(cfg.classes),
        "contrast": list(CONTRAST),
        "architecture": cfg.net.arch,
        "parameters": n_params(net),
        "model_pixel_size_A": cfg.pixel_size,
        "expected_pixel_size_A": list(PIXEL_RANGE_A),
        "pixel_size_error_tolerance": list(cfg.zoom_range),
        "training_data": (
            "simulated (atomlens.simulate.materials + simulate.image.render_image, real probe "
            "60-300 kV, FWHM 0.6-1.8 Å, 0.7-2.4 Å for isolated atoms): heavy single atoms and "
            "clusters (Pt, Au, Ir, W, Pd, Mo; out-of-focus weaker) on amorphous carbon 0.05-6 x their peak (blotchy thick "
            "films), with vacuum edges; 2H MoS2/WS2/MoSe2/WSe2; "
            "SrTiO3/BaTiO3/LaMnO3/PbTiO3/LaFeO3 [001] and [110]; Au/Pt/Pd/Ag/Cu/Ni/Al [001], "
            "[110], [111]; graphene, hBN; vacancies, edges, holes, nanoparticles, supports; "
            "nominal 0.05-0.5 Å/px (true 0.7-1.4 x), Z exponent 1.3-2.0 (HAADF) or 0.4-1.0 "
            "(inverted ABF/BF), SNR 1-30 per 0.1 Å pixel, scan distortion, afterglow, read "
            "noise, gradients, contamination; labels: 0.4 Å disks on columns >= 10 % of the "
            "brightest; fresh samples every step"
        ),
        "inversion": "dark-atom (ABF/BF) images are inverted before the network",
        "training": cfg.to_dict(),
        "steps_done": int(ev.get("step", 0)),
        "training_time_s": round(float(ev.get("elapsed_s", 0.0)), 1),
        "final_loss_ema": ev.get("loss_ema"),
        "budget": "CPU only: 2 cores shared with up to 6 other jobs, no GPU",
        "command": command
        or f"atomlens train-detector --preset general --out {out.name} "
        f"--steps {cfg.steps} --seed {cfg.seed}",
        "seed": cfg.seed,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": {
            "torch": str(torch.__version__),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
    }


def run_cli(args, validate: Validator | None = None) -> int:
    """``atomlens train-detector --preset general`` (arguments of that subcommand);
    ``validate`` scores the trained model for its card (see :func:`train_general`)."""
    import shlex

    over = {"seed": args.seed, "threads": args.threads}
    if args.steps is not None:
        if args.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {args.steps}")
        over["steps"] = args.steps
    cfg = general_config(**over)
    cmd = (
        f"atomlens train-detector --preset general --out {shlex.quote(str(args.out))} "
        f"--steps {cfg.steps} --seed {cfg.seed} --threads {cfg.threads}"
    )
    every = int(getattr(args, "checkpoint_every", 50) or 0)
    init, notes = None, {}
    ckpt = Path(args.out).with_suffix(".ckpt.pt")
    if getattr(args, "resume", False) and ckpt.exists():
        init = load_detector(ckpt)
        done = int(init.card.get("steps_done", 0))
        cfg.steps = max(1, cfg.steps - done)
        notes["resumed"] = (
            f"warm start from a checkpoint after {done} steps "
            f"({init.card.get('date')}), then {cfg.steps} steps on a fresh "
            "one-cycle schedule"
        )
        print(f"resuming from {ckpt}: {notes['resumed']}", flush=True)
    if getattr(args, "trained_on", None):
        notes["trained_on"] = args.trained_on
    train_general(
        cfg,
        args.out,
        command=cmd,
        validate=validate,
        log=lambda s: print(s, flush=True),
        checkpoint_every=every,
        init=init,
        notes=notes,
    )
    return 0


__all__ = [
    "CLASSES",
    "general_config",
    "iter_train",
    "make_batch",
    "render_general",
    "train_general",
    "validation_set",
]
