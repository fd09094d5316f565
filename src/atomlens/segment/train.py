"""Training the atom-finding network on simulated graphene (CPU friendly).

Every sample is drawn fresh: a random structure (:func:`synth.graphene_patch`, or a crop
of an :mod:`atomlens.simulate` movie's truth when asked), rendered at the model sampling
with random imaging (probe, contrast, background, contamination, dose, jitter, pixel-size
error), an extra photometric augmentation, then normalised exactly as at prediction.
Loss: cross-entropy + soft Dice. Seeded: the same seed and steps give the same model
(on the same torch build and thread count).

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
from atomlens.segment.predict import normalise
from atomlens.segment.synth import graphene_patch, render_sample


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
    p_extra_aug: float = 0.15  # chance of a further array-level photometric augmentation
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


def make_batch(cfg: TrainConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch: images (B, 1, crop, crop) float32, labels (B, crop, crop) int64."""
    xs, ys = [], []
    span = cfg.crop * cfg.pixel_size * max(cfg.zoom_range) * 1.5 + 4
    aug = AugmentConfig()
    for _ in range(cfg.batch):
        patch = graphene_patch(span, rng)
        img, mask, _, _ = render_sample(
            patch, (cfg.crop, cfg.crop), cfg.pixel_size, classes=cfg.classes,
            radius_A=cfg.radius_A, rng=rng, zoom_range=cfg.zoom_range)
        if rng.random() < cfg.p_extra_aug:
            img = photometric(img, rng, aug)
        xs.append(normalise(img))
        ys.append(mask)
    x = torch.from_numpy(np.stack(xs))[:, None]
    y = torch.from_numpy(np.stack(ys).astype(np.int64))
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


def iter_steps(net: torch.nn.Module, next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
               steps: int, opt: Any, sched: Any, cfg: TrainConfig, *,
               ema_decay: float = 0.95, ignore_index: int | None = None,
               stop: Callable[[], bool] | None = None) -> Iterator[dict]:
    """The optimisation loop shared by :func:`iter_train` and fine-tuning
    (:func:`atomlens.segment.finetune.iter_finetune`).

    Each step draws ``next_batch()``, computes :func:`loss_fn` (pixels labelled
    ``ignore_index`` take the network's own prediction as target), steps ``opt`` and
    ``sched``, and yields ``{"step", "steps", "loss", "loss_ema", "lr", "elapsed_s"}``.
    The loop ends early, yielding ``{"end": reason, "step": last completed step}``, when
    ``stop()`` is true before a step (``"stopped"``) or a loss is not finite
    (``"diverged"``; that step's update is not applied). It leaves ``net`` in train mode.
    """
    t0 = time.perf_counter()
    ema = None
    net.train()
    for step in range(1, steps + 1):
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
        yield {"step": step, "steps": steps, "loss": lv, "loss_ema": ema,
               "lr": sched.get_last_lr()[0], "elapsed_s": time.perf_counter() - t0}


def iter_train(cfg: TrainConfig) -> Iterator[dict]:
    """Train; yield ``{"step", "loss", "lr", "elapsed_s"}`` events, the last with ``"net"``."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    net = build_net(cfg.net)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(cfg.steps, 1),
                                                pct_start=0.1)
    t0 = time.perf_counter()
    ema, last = None, cfg.steps
    for ev in iter_steps(net, lambda: make_batch(cfg, rng), cfg.steps, opt, sched, cfg):
        if "end" in ev:  # non-finite loss: stop with the last finite update
            last = ev["step"]
            break
        ema = ev["loss_ema"]
        yield {**ev, "net_ref": net}
    net.eval()
    yield {"step": last, "steps": cfg.steps, "done": True, "net": net,
           "elapsed_s": time.perf_counter() - t0, "loss_ema": ema}


def train_detector(cfg: TrainConfig, out: str | Path, *, command: str | None = None,
                   evaluate: bool = True, log: Callable[[str], None] = print,
                   checkpoint_every: int = 0) -> Detector:
    """Train to the end, validate on held-out simulated frames, write ``out`` (+ card JSON).

    ``checkpoint_every`` > 0 also writes ``<out>.ckpt.pt`` every that many steps.
    """
    last: dict = {}
    net_ref = None
    for ev in iter_train(cfg):
        last = ev
        if ev["step"] % 25 == 0 or ev.get("done"):
            log(f"step {ev['step']}/{ev['steps']} loss {ev.get('loss_ema', 0):.4f} "
                f"{ev['elapsed_s']:.0f}s")
        if "net_ref" in ev:
            net_ref = ev["net_ref"]
        if checkpoint_every and ev["step"] % checkpoint_every == 0 and not ev.get("done"):
            net_ref.eval()
            save_detector(Detector(net_ref, cfg.net, cfg.pixel_size, cfg.radius_A, cfg.tile,
                                   {"checkpoint_step": ev["step"]}),
                          Path(out).with_suffix(".ckpt.pt"))
            net_ref.train()
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
            "simulated graphene patches (atomlens.segment.synth): random orientation, strain, "
            "Si dopants (isolated, edge, clusters), vacancies, Stone-Wales, holes, grain "
            "boundaries; Gaussian probe FWHM 0.6-1.3 Å (+ tails), Si/C 1.8-6, film background "
            "0-5, offset, gradients, bright contamination blobs, amorphous contamination hiding "
            "the atoms beneath, Poisson dose (C-peak SNR 1.3-40 at 0.2 Å/px), read noise, "
            "scan jitter, line gain, gamma, noise blur, flips, shear, pixel-size error "
            "0.86-1.16; labels: 0.35 Å disks; fresh samples every step"
        ),
        "training": cfg.to_dict(),
        "training_time_s": round(last["elapsed_s"], 1),
        "final_loss_ema": last.get("loss_ema"),
        "command": command or "atomlens train-detector --preset graphene --out model.pt "
        f"--steps {cfg.steps} --seed {cfg.seed}",
        "seed": cfg.seed,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": {"torch": str(torch.__version__), "python": sys.version.split()[0],
                     "platform": platform.platform()},
    }
    det = Detector(net, cfg.net, cfg.pixel_size, cfg.radius_A, cfg.tile, card)
    if evaluate:
        try:
            from atomlens.atoms.evaluate import validation_metrics

            card["validation"] = validation_metrics(det, log=log)
        except Exception as exc:  # noqa: BLE001 - keep the weights even if validation fails
            log(f"validation failed: {exc!r}")
            card["validation"] = {"error": repr(exc)}
    save_detector(det, out)
    Path(out).with_name(Path(out).stem + "_card.json").write_text(
        json.dumps(load_detector(out).card, indent=2))
    log(f"wrote {out}")
    return det
