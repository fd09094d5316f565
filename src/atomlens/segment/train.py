"""Training the atom-finding network on simulated graphene (CPU friendly).

Every sample is drawn fresh: a random structure (:func:`atomlens.simulate.patches.
graphene_patch`: Si motifs Si1C3/Si1C4/Si2Cn/Si3Cn, defects, holes), rendered by the
project's one renderer (:func:`atomlens.simulate.training.render_sample`: a real
aberration-corrected probe, Z-contrast, dose, scan distortion, detector effects) at a
native pixel size drawn from ``native_pixel_range`` (Å/px), resampled to the model
sampling exactly as prediction does (:func:`atomlens.segment.predict.resample`), an
extra photometric augmentation, then normalised as at prediction.
Loss: cross-entropy + soft Dice. Seeded: the same seed and steps give the same model
(on the same torch build and thread count). A run checkpoints (weights, optimiser,
schedule, random state) and resumes from the checkpoint with the same result.
Weight averaging (``average_from`` > 0, stochastic weight averaging as
:mod:`torch.optim.swa_utils` does it): the written weights are the mean of the weights
after every step from ``average_from`` to the last, with the BatchNorm statistics then
recomputed on ``average_bn_batches`` fresh training batches; the running average is part
of the checkpoint.

:func:`iter_train` yields progress events (dicts) so a GUI worker can drive it;
:func:`train_detector` runs it to the end and writes a model file with its card.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from atomlens.errors import SettingsError
from atomlens.segment.augment import AugmentConfig, photometric
from atomlens.segment.model_file import Detector, load_detector, save_detector
from atomlens.segment.nets import NetConfig, build_net, n_params
from atomlens.segment.predict import normalise, resample
from atomlens.simulate.patches import graphene_patch
from atomlens.simulate.training import label_mask, render_sample


class TrainConfigError(SettingsError):
    """Bad training configuration (unknown preset or field)."""


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in the model card)."""

    classes: tuple[str, ...] = ("background", "C", "Si")
    pixel_size: float = 0.2  # model sampling, Å/px
    radius_A: float = 0.35  # label disk radius, Å
    crop: int = 128  # training crop edge, model pixels
    batch: int = 10
    steps: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-5
    dice_weight: float = 0.5
    class_weights: tuple[float, ...] = (1.0, 1.0, 2.0)
    zoom_range: tuple[float, float] = (0.86, 1.16)  # true/nominal pixel size (calibration error)
    native_pixel_range: tuple[float, float] = (0.05, 0.22)  # Å/px of the rendered frames
    init: str | None = None  # start from this model file's weights (same network) if set
    p_extra_aug: float = 0.15  # chance of a further array-level photometric augmentation
    # weight averaging: mean of the weights after steps average_from..steps (0: off, the
    # last weights), BatchNorm statistics recomputed on average_bn_batches training batches
    average_from: int = 0
    average_bn_batches: int = 32
    seed: int = 0
    threads: int = 2
    tile: int = 512
    net: NetConfig = field(default_factory=NetConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["net"] = self.net.to_dict()
        return d


def preset(name: str, **overrides) -> TrainConfig:
    """Named training presets (``graphene``: background/C/Si at 0.2 Å/px)."""
    if name != "graphene":
        raise TrainConfigError(f"unknown preset {name!r}; available: ['graphene']")
    cfg = TrainConfig()
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TrainConfigError(f"unknown training option {k!r}")
        setattr(cfg, k, v)
    return cfg


def make_sample(cfg: TrainConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (image (crop, crop) float32 normalised, mask (crop, crop) uint8) at the model
    sampling: rendered at a native pixel size (log-uniform in ``native_pixel_range``),
    then resampled to ``cfg.pixel_size`` like a real frame at prediction."""
    lo, hi = cfg.native_pixel_range
    native = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    n = max(8, int(round(cfg.crop * cfg.pixel_size / native)))
    span = n * native * max(cfg.zoom_range) + 8
    patch = graphene_patch(span, rng)
    img, _, yx, sp = render_sample(
        patch,
        (n, n),
        native,
        classes=cfg.classes,
        radius_A=cfg.radius_A,
        rng=rng,
        zoom_range=cfg.zoom_range,
    )
    if rng.random() < cfg.p_extra_aug:
        img = photometric(img, rng, AugmentConfig())
    if n != cfg.crop:
        img = resample(torch.from_numpy(np.ascontiguousarray(img))[None], (cfg.crop, cfg.crop))[
            0
        ].numpy()
    yx_model = (yx + 0.5) * (cfg.crop / n) - 0.5
    cls_index = np.array([cfg.classes.index(c) if c in cfg.classes else 1 for c in sp], np.int64)
    mask = label_mask(yx_model, cls_index, (cfg.crop, cfg.crop), cfg.radius_A / cfg.pixel_size)
    return normalise(img), mask


def make_batch(cfg: TrainConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch: images (B, 1, crop, crop) float32, labels (B, crop, crop) int64."""
    pairs = [make_sample(cfg, rng) for _ in range(cfg.batch)]
    x = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None]
    y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
    return x, y


def loss_fn(logits: torch.Tensor, target: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Weighted cross-entropy + ``dice_weight`` x soft Dice (mean over classes)."""
    w = torch.tensor(cfg.class_weights[: logits.shape[1]], dtype=logits.dtype)
    ce = F.cross_entropy(logits, target, weight=w if len(w) == logits.shape[1] else None)
    if cfg.dice_weight <= 0:
        return ce
    p = logits.softmax(1)
    oh = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    inter = (p * oh).sum((0, 2, 3))
    denom = p.sum((0, 2, 3)) + oh.sum((0, 2, 3))
    dice = 1 - (2 * inter + 1) / (denom + 1)
    return ce + cfg.dice_weight * dice.mean()


def iter_steps(
    net: torch.nn.Module,
    next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    opt: Any,
    sched: Any,
    cfg: TrainConfig,
    *,
    ema_decay: float = 0.95,
    ignore_index: int | None = None,
    stop: Callable[[], bool] | None = None,
    start: int = 0,
) -> Iterator[dict]:
    """The optimisation loop shared by :func:`iter_train` and fine-tuning
    (:func:`atomlens.atoms.finetune.iter_finetune`).

    Each step draws ``next_batch()``, computes :func:`loss_fn` (pixels labelled
    ``ignore_index`` take the network's own prediction as target), steps ``opt`` and
    ``sched``, and yields ``{"step", "steps", "loss", "loss_ema", "lr", "elapsed_s"}``;
    steps are numbered from ``start + 1`` to ``steps`` (``start`` > 0 when resuming).
    The loop ends early, yielding ``{"end": reason, "step": last completed step}``, when
    ``stop()`` is true before a step (``"stopped"``) or a loss is not finite
    (``"diverged"``; that step's update is not applied). It leaves ``net`` in train mode.
    """
    t0 = time.perf_counter()
    ema = None
    net.train()
    for step in range(start + 1, steps + 1):
        if stop is not None and stop():
            yield {"end": "stopped", "step": step - 1}
            return
        x, y = next_batch()
        logits = net(x)
        if ignore_index is not None and (y == ignore_index).any():
            y = torch.where(y == ignore_index, logits.detach().argmax(1), y)
        loss = loss_fn(logits, y, cfg)
        if not torch.isfinite(loss):
            yield {"end": "diverged", "step": step - 1}
            return
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        lv = float(loss.detach())
        ema = lv if ema is None else ema_decay * ema + (1 - ema_decay) * lv
        yield {
            "step": step,
            "steps": steps,
            "loss": lv,
            "loss_ema": ema,
            "lr": sched.get_last_lr()[0],
            "elapsed_s": time.perf_counter() - t0,
        }


def checkpoint_path(out: str | Path) -> Path:
    """Where a run writing ``out`` keeps its resumable checkpoint (``<out>.ckpt.pt``)."""
    return Path(out).with_suffix(".ckpt.pt")


def _save_checkpoint(
    path: Path,
    cfg: TrainConfig,
    step: int,
    net: torch.nn.Module,
    opt: Any,
    sched: Any,
    rng: np.random.Generator,
    elapsed_s: float,
    average: torch.nn.Module | None = None,
) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "kind": "atomlens-train-checkpoint",
            "config": cfg.to_dict(),
            "step": step,
            "net": net.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "elapsed_s": elapsed_s,
            "average": None if average is None else average.state_dict(),
        },
        tmp,
    )
    tmp.replace(path)


#: Draws one training batch: ``batches(cfg, rng) -> (images (B, 1, crop, crop) float32,
#: labels (B, crop, crop) int64)``; a preset's data (default :func:`make_batch`, graphene).
BatchMaker = Callable[[TrainConfig, np.random.Generator], tuple[torch.Tensor, torch.Tensor]]


def check_average(cfg: TrainConfig) -> None:
    """Raise :class:`TrainConfigError` when the averaging settings cannot run."""
    if cfg.average_from < 0 or cfg.average_from > cfg.steps:
        raise TrainConfigError(
            f"--average-from {cfg.average_from}: must be 0 (off) or a step in 1..{cfg.steps} "
            "(--steps); e.g. half the steps"
        )
    if cfg.average_from and cfg.average_bn_batches < 1:
        raise TrainConfigError(
            f"average_bn_batches must be >= 1 with weight averaging, got {cfg.average_bn_batches}"
        )


@torch.no_grad()
def recompute_batchnorm(
    net: torch.nn.Module, next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]], n: int
) -> None:
    """Replace ``net``'s BatchNorm running statistics by their mean over ``n`` batches
    from ``next_batch()`` (as :func:`torch.optim.swa_utils.update_bn`); no-op without BN."""
    from torch.optim.swa_utils import update_bn

    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        return
    update_bn((next_batch()[0] for _ in range(n)), net)


def iter_train(
    cfg: TrainConfig,
    *,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    batches: BatchMaker | None = None,
) -> Iterator[dict]:
    """Train; yield ``{"step", "loss", "lr", "elapsed_s"}`` events, the last with ``"net"``.

    ``checkpoint`` (a path) with ``checkpoint_every`` > 0 saves the full training state
    every that many steps; ``resume`` continues from that file when it exists (its
    configuration must match ``cfg``; the run then gives the same model as an
    uninterrupted one). ``batches``: the preset's data (default :func:`make_batch`).
    ``cfg.average_from`` > 0: the final ``"net"`` holds the averaged weights (module
    docstring) and the final event says ``"averaged"``: how many steps' weights.
    """
    from torch.optim.swa_utils import AveragedModel

    check_average(cfg)
    batches = batches or make_batch
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    net = build_net(cfg.net)
    if cfg.init:
        src = load_detector(cfg.init)
        if src.net_config.to_dict() != cfg.net.to_dict():
            raise TrainConfigError(
                f"--init {cfg.init} has another network "
                f"({src.net_config.to_dict()}); use a model of this preset"
            )
        net.load_state_dict(src.net.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max(cfg.steps, 1), pct_start=0.1
    )
    average = AveragedModel(net) if cfg.average_from else None
    start, prior_s = 0, 0.0
    ckpt = Path(checkpoint) if checkpoint else None
    if resume and ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state.get("config") != cfg.to_dict():
            raise TrainConfigError(
                f"checkpoint {ckpt} was written with other settings; "
                "use the same options as that run or delete the checkpoint"
            )
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        if average is not None and state.get("average") is not None:
            average.load_state_dict(state["average"])
        start, prior_s = int(state["step"]), float(state.get("elapsed_s", 0.0))
        yield {"step": start, "steps": cfg.steps, "resumed": True, "elapsed_s": prior_s}
    t0 = time.perf_counter()
    ema, last = None, max(cfg.steps, start)
    for ev in iter_steps(net, lambda: batches(cfg, rng), cfg.steps, opt, sched, cfg, start=start):
        if "end" in ev:  # non-finite loss: stop with the last finite update
            last = ev["step"]
            break
        ema = ev["loss_ema"]
        ev = {**ev, "elapsed_s": prior_s + ev["elapsed_s"]}
        if average is not None and ev["step"] >= cfg.average_from:
            average.update_parameters(net)
        if (
            ckpt is not None
            and checkpoint_every
            and ev["step"] % checkpoint_every == 0
            and ev["step"] < cfg.steps
        ):
            _save_checkpoint(ckpt, cfg, ev["step"], net, opt, sched, rng, ev["elapsed_s"], average)
        yield {**ev, "net_ref": net}
    extra: dict = {}
    if average is not None and int(average.n_averaged) > 0:
        # the averaged weights, BatchNorm statistics from fresh training batches
        net.load_state_dict({**net.state_dict(), **dict(average.module.named_parameters())})
        recompute_batchnorm(net, lambda: batches(cfg, rng), cfg.average_bn_batches)
        extra["averaged"] = int(average.n_averaged)
    net.eval()
    yield {
        "step": last,
        "steps": cfg.steps,
        "done": True,
        **extra,
        "net": net,
        "elapsed_s": prior_s + time.perf_counter() - t0,
        "loss_ema": ema,
    }


#: Scores a trained detector for its model card: ``validate(det) -> dict`` (JSON-able).
#: The training loop knows only this protocol; the atom-level scoring that fills it
#: (:mod:`atomlens.atoms.evaluate`) lives a layer up and is passed in by the caller.
Validator = Callable[[Detector], dict]


def train_detector(
    cfg: TrainConfig,
    out: str | Path,
    *,
    command: str | None = None,
    validate: Validator | None = None,
    log: Callable[[str], None] = print,
    checkpoint_every: int = 0,
    resume: bool = False,
    notes: dict | None = None,
    batches: BatchMaker | None = None,
    card_fields: dict | None = None,
) -> Detector:
    """Train to the end, score the model with ``validate``, write ``out`` (+ card JSON).

    ``validate``: a :data:`Validator` (e.g. :func:`atomlens.atoms.evaluate.validation_metrics`
    with its log bound, as ``atomlens train-detector`` passes); its dict goes into the
    card as ``"validation"``; None skips validation. A failing validator is logged and
    recorded as ``{"error": ...}``, the weights are written anyway.
    ``checkpoint_every`` > 0 keeps a resumable state in :func:`checkpoint_path` every that
    many steps (removed when the model is written); ``resume`` continues from it.
    ``notes`` are added to the card (e.g. the machine it was trained on).
    ``batches`` and ``card_fields``: a preset's data (:data:`BatchMaker`) and card fields that
    replace the graphene ones (name, task, training data...; e.g.
    :func:`atomlens.segment.general.make_batch` and ``card_fields``).
    """
    last: dict = {}
    ckpt = checkpoint_path(out)
    for ev in iter_train(
        cfg, checkpoint=ckpt, checkpoint_every=checkpoint_every, resume=resume, batches=batches
    ):
        last = ev
        if ev.get("resumed"):
            log(f"resumed from {ckpt} at step {ev['step']}/{ev['steps']}")
        elif ev["step"] % 25 == 0 or ev.get("done"):
            log(
                f"step {ev['step']}/{ev['steps']} loss {ev.get('loss_ema') or 0:.4f} "
                f"{ev['elapsed_s']:.0f}s"
            )
    net = last["net"]
    card = {
        "name": Path(out).stem,
        "task": "atom finding: per-pixel softmax over " + ", ".join(cfg.classes),
        "classes": list(cfg.classes),
        "architecture": cfg.net.arch,
        "parameters": n_params(net),
        "model_pixel_size_A": cfg.pixel_size,
        "expected_pixel_size_A": [0.05, 0.4],
        "pixel_size_error_tolerance": list(cfg.zoom_range),
        "training_data": (
            "simulated graphene patches (atomlens.simulate.patches): random orientation, "
            "strain, Si motifs Si1C3 / Si1C4 (divacancy) / Si2C4-6 / Si3C5-6 with relaxed "
            "Si-C bonds, isolated and edge Si, vacancies, Stone-Wales, holes, grain boundaries; "
            "rendered by atomlens.simulate.render_image: 60 kV corrected probe from aperture "
            "(25-35 mrad) and aberrations (defocus, C3, C5, astigmatism) with source size, "
            "Z-contrast Si/C 2.5-7, film background, offset, gradients, contamination blobs, "
            "amorphous cover, Poisson dose (C-peak SNR 0.9-30 at 0.2 Å/px), read noise, scan "
            "jitter/drift/fly-back, detector afterglow, line gain and drop-outs, gamma, 8-bit "
            "export; native pixel sizes "
            f"{cfg.native_pixel_range[0]}-{cfg.native_pixel_range[1]} Å/px resampled to the "
            "model grid; flips, shear, pixel-size error "
            f"{cfg.zoom_range[0]}-{cfg.zoom_range[1]}; labels: {cfg.radius_A} Å disks; fresh "
            "samples every step"
        ),
        **(card_fields or {}),
        "training": cfg.to_dict(),
        "steps_done": int(last["step"]),
        **(
            {
                "weight_average": (
                    f"mean of the weights after steps {cfg.average_from}-{int(last['step'])} "
                    f"({last['averaged']} steps), BatchNorm statistics recomputed on "
                    f"{cfg.average_bn_batches} x {cfg.batch} fresh training samples"
                )
            }
            if last.get("averaged")
            else {}
        ),
        "training_time_s": round(last["elapsed_s"], 1),
        "final_loss_ema": last.get("loss_ema"),
        "command": command
        or "atomlens train-detector --preset graphene --out model.pt "
        f"--steps {cfg.steps} --seed {cfg.seed}"
        + (f" --average-from {cfg.average_from}" if cfg.average_from else ""),
        "seed": cfg.seed,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": {
            "torch": str(torch.__version__),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        **(notes or {}),
    }
    det = Detector(net, cfg.net, cfg.pixel_size, cfg.radius_A, cfg.tile, card)
    if validate is not None:
        try:
            card["validation"] = validate(det)
        except Exception as exc:  # noqa: BLE001 - keep the weights even if validation fails
            log(f"validation failed: {exc!r}")
            card["validation"] = {"error": repr(exc)}
    save_detector(det, out)
    ckpt.unlink(missing_ok=True)
    Path(out).with_name(Path(out).stem + "_card.json").write_text(
        json.dumps(load_detector(out).card, indent=2)
    )
    log(f"wrote {out}")
    return det
