"""One progress-event vocabulary for every workflow and every training loop.

Workflow generators yield :class:`Progress` (a stage of a task advanced), :class:`Log`
(a line for the user) and, while a model trains, the training events of
:mod:`atomlens.train` (``Started, StepEnd, EpochEnd, CheckpointSaved, Finished``).
:func:`training_progress` turns ANY training event -- latent models
(:mod:`atomlens.train`), detector fine-tuning (:mod:`atomlens.atoms.finetune`) or
detector training (``dict`` steps of :func:`atomlens.segment.train.iter_train`) -- into
one :class:`TrainingProgress`, told apart by type (no ``hasattr`` dispatch), so a dock
or the CLI shows every loop the same way.

A workflow's return value (``StopIteration.value``; napari workers hand it to
``returned``) is its result object; :func:`drain` runs a workflow to the end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from atomlens.train import CheckpointSaved, EpochEnd, Finished, Started, StepEnd

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """``task`` (e.g. ``"detect"``) advanced in ``stage``: ``done`` of ``total`` units
    (frames, chunks, windows; ``total`` None when unknown)."""

    task: str
    stage: str
    done: int
    total: int | None = None
    message: str = ""

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(1.0, self.done / self.total)


@dataclass(frozen=True)
class Log:
    """A line for the user (the CLI prints it to stderr, a dock shows it in its status)."""

    task: str
    message: str


@dataclass(frozen=True)
class TrainingProgress:
    """Any training loop's state in one shape.

    kind : ``"started"``, ``"step"``, ``"epoch"``, ``"checkpoint"`` or ``"finished"``.
    done, total : epochs (latent models) or steps (detector training / fine-tuning) done
        and planned. loss, test_loss : the latest losses (None when not known).
    reason : for ``"finished"``: ``"done"``, ``"stopped"`` or ``"diverged"``.
    """

    kind: str
    done: int
    total: int | None
    loss: float | None = None
    test_loss: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    reason: str = ""
    unit: str = "epoch"

    def text(self) -> str:
        """One status line, e.g. ``epoch 3/20 loss 0.012 test 0.013, 12 s, ~40 s left``."""
        if self.kind == "finished":
            return f"training ended: {self.reason} after {self.done} {self.unit}(s)"
        s = f"{self.unit} {self.done}/{self.total if self.total is not None else '?'}"
        if self.loss is not None:
            s += f" loss {self.loss:.4g}"
        if self.test_loss is not None:
            s += f" test {self.test_loss:.4g}"
        if self.elapsed_s is not None:
            s += f", {self.elapsed_s:.0f} s"
        if self.eta_s is not None:
            s += f", ~{self.eta_s:.0f} s left"
        return s


def training_progress(event: Any) -> TrainingProgress | None:
    """The :class:`TrainingProgress` of any training event (None for non-training events)."""
    if isinstance(event, TrainingProgress):
        return event
    if isinstance(event, Started):
        return TrainingProgress("started", 0, event.n_epochs)
    if isinstance(event, StepEnd):
        return TrainingProgress(
            "step", event.epoch, None, loss=event.loss, elapsed_s=event.elapsed_s
        )
    if isinstance(event, EpochEnd):
        return TrainingProgress(
            "epoch",
            event.epoch + 1,
            event.n_epochs,
            event.train_loss,
            event.test_loss,
            event.elapsed_s,
            event.eta_s,
        )
    if isinstance(event, CheckpointSaved):
        return TrainingProgress("checkpoint", event.epoch + 1, None)
    if isinstance(event, Finished):
        return TrainingProgress(
            "finished", event.epochs_done, None, elapsed_s=event.elapsed_s, reason=event.reason
        )
    return _detector_progress(event)


def _detector_progress(event: Any) -> TrainingProgress | None:
    """Fine-tuning events and detector-training step dicts (imported lazily: detection
    lives beside the workflows, not below the training loop). A fine-tuning event exists
    only once its module is imported, so it is looked up in ``sys.modules``: importing it
    here for every other event cost a GUI 0.3-0.6 s on its main thread."""
    import sys

    finetune = sys.modules.get("atomlens.atoms.finetune")
    if finetune is not None:
        found = _finetune_progress(event, finetune)
        if found is not None:
            return found
    return _step_dict_progress(event)


def _finetune_progress(event: Any, finetune: Any) -> TrainingProgress | None:
    FinetuneFinished, FinetuneStarted, FinetuneStep = (  # noqa: N806 - classes
        finetune.FinetuneFinished,
        finetune.FinetuneStarted,
        finetune.FinetuneStep,
    )
    if isinstance(event, FinetuneStarted):
        return TrainingProgress("started", 0, event.steps, unit="step")
    if isinstance(event, FinetuneStep):
        return TrainingProgress(
            "step", event.step, event.steps, event.loss, None, event.elapsed_s, unit="step"
        )
    if isinstance(event, FinetuneFinished):
        return TrainingProgress(
            "finished", 0, None, elapsed_s=event.elapsed_s, reason=event.reason, unit="step"
        )
    return None


def _step_dict_progress(event: Any) -> TrainingProgress | None:
    if isinstance(event, dict) and "step" in event:  # atomlens.segment.train step dicts
        step, steps, el = int(event["step"]), event.get("steps"), event.get("elapsed_s")
        if "end" in event or event.get("done"):
            return TrainingProgress(
                "finished",
                step,
                steps,
                elapsed_s=el,
                reason=str(event.get("end", "done")),
                unit="step",
            )
        if event.get("resumed"):
            return TrainingProgress("started", step, steps, elapsed_s=el, unit="step")
        if "loss" in event:
            return TrainingProgress(
                "step", step, steps, float(event["loss"]), None, el, unit="step"
            )
    return None


class Cancelled(Exception):  # noqa: N818 - a signal, not an error of the user
    """Raised inside a workflow when its ``stop`` event is set; :func:`drain` and the
    workflows turn it into a result with ``stopped=True`` where a partial result exists."""


def check_stop(stop: threading.Event | None) -> None:
    """Raise :class:`Cancelled` when ``stop`` is set (call between units of work)."""
    if stop is not None and stop.is_set():
        raise Cancelled()


def frames_of(movie: Any) -> Any:
    """The pixel array of a movie: a Stack's ``data``, or the array itself (numpy arrays
    have a ``.data`` memoryview too, so this is not ``getattr(movie, "data", movie)``)."""
    if movie is None or isinstance(movie, np.ndarray):
        return movie
    if hasattr(movie, "pixel_size") and hasattr(movie, "data"):
        return movie.data
    return movie


def drain(gen: Generator[Any, None, T], on_event: Callable[[Any], None] | None = None) -> T:
    """Run a workflow generator to its end; call ``on_event`` on each event; return the
    workflow's result."""
    while True:
        try:
            event = next(gen)
        except StopIteration as done:
            return done.value
        if on_event is not None:
            on_event(event)


__all__ = [
    "Cancelled",
    "CheckpointSaved",
    "EpochEnd",
    "Finished",
    "Started",
    "StepEnd",
    "Log",
    "Progress",
    "TrainingProgress",
    "check_stop",
    "drain",
    "frames_of",
    "training_progress",
]
