"""PFM workflow: domain walls -> wall-centred (time-delayed) windows -> skip-rVAE ->
switching degree, wall count and curvature (science in :mod:`atomlens.pfm.workflow`).

The PFM dock and ``atomlens pfm`` fill in a :class:`PFMRecipe` and call :func:`run`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from atomlens.workflows.events import Cancelled, Log, Progress, frames_of
from atomlens.workflows.recipe import Recipe, setting


@dataclass
class PFMRecipe(Recipe):
    """Settings of the PFM workflow (paper values in :class:`atomlens.pfm.workflow.PFMConfig`)."""

    section = "pfm"

    window: int = setting(40, min=4, max=512, doc="window side, pixels")
    n_per_frame: int = setting(80, min=1, doc="wall pixels sampled per frame")
    delta: int = setting(1, min=0, doc="time delay in frames; 0 = same-time windows")
    canny_sigma: float = setting(2.0, above=0.0, doc="Canny smoothing, pixels")
    latent_dim: int = setting(2, min=1, max=16, doc="content latents")
    hidden: tuple[int, ...] = setting((128, 128), doc="skip-rVAE layer widths")
    epochs: int = setting(30, min=1, doc="training epochs")
    batch_size: int = setting(32, min=1, doc="windows per step")
    lr: float = setting(1e-3, above=0.0, max=1.0, doc="learning rate")
    rot_prior: float = setting(1.0, above=0.0, doc="SD of the angle prior, radians")
    seed: int = setting(0, min=0, doc="sampling and training seed")
    manifold_grid: int = setting(12, min=2, max=64, doc="latent manifold grid side")
    min_wall_length: int = setting(5, min=1, doc="shortest wall segment, pixels")
    train_subset: int | None = setting(4000, min=1, doc="train on at most this many windows")

    def config(self) -> Any:
        """The :class:`atomlens.pfm.workflow.PFMConfig` of this recipe."""
        from atomlens.pfm.workflow import PFMConfig

        return PFMConfig(**self.to_dict())


def run(
    phase: Any,
    recipe: PFMRecipe | None = None,
    *,
    stop: threading.Event | None = None,
) -> Generator[Log | Progress, None, Any]:
    """Run the PFM workflow on a (T, Y, X) phase movie, yielding :class:`Log` lines per
    stage and a :class:`Progress` per training epoch (``done``/``total`` epochs, the
    loss and time left in its message); returns
    :class:`atomlens.pfm.workflow.PFMResult` (with ``recipe``).

    ``stop``: set before training, :class:`~atomlens.workflows.events.Cancelled` is
    raised (nothing to keep); set while the skip-rVAE trains, training ends after the
    current step and the result is made with the epochs done (``result.stopped``)."""
    from atomlens.pfm.workflow import PFMStopped, run_pfm
    from atomlens.train import EpochEnd

    recipe = (recipe or PFMRecipe()).validate()
    arr = np.asarray(frames_of(phase), dtype=np.float32)
    events: queue.Queue = queue.Queue()
    box: dict[str, Any] = {}

    def on_event(ev: Any) -> None:
        if isinstance(ev, EpochEnd):
            events.put(
                Progress(
                    "pfm",
                    "train",
                    int(ev.epoch),
                    int(ev.n_epochs),
                    f"epoch {ev.epoch}/{ev.n_epochs}: loss {ev.train_loss:.4g}, "
                    f"~{ev.eta_s:.0f} s left",
                )
            )

    def work() -> None:
        try:
            box["result"] = run_pfm(
                arr, recipe.config(), progress=events.put, stop=stop, on_event=on_event
            )
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc
        finally:
            events.put(None)

    thread = threading.Thread(target=work, name="atomlens-pfm", daemon=True)
    thread.start()
    while True:
        msg = events.get()
        if msg is None:
            break
        yield msg if isinstance(msg, Progress) else Log("pfm", str(msg))
    thread.join()
    if isinstance(box.get("error"), PFMStopped):
        raise Cancelled()
    if "error" in box:
        raise box["error"]
    result = box["result"]
    result.recipe = recipe
    return result


__all__ = ["PFMRecipe", "run"]
