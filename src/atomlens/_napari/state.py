"""GUI state kept apart from widgets: training progress and the per-viewer session.

:class:`TrainingState` is a psygnal evented dataclass: the training widget writes worker
events into it; plots and labels listen to its fields. :class:`Session` holds what the
docks of one viewer share (the current model and the subimage window it was trained on).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from psygnal import Signal, evented


@evented
@dataclass
class TrainingState:
    """Progress of one training run (every field emits ``events.<field>`` when set).

    ``epoch`` counts the epochs done (1 after the first); losses hold one value per epoch.
    """

    status: str = "idle"  # idle, running, stopping, finished, stopped, failed
    epoch: int = 0
    n_epochs: int = 0
    train_loss: tuple[float, ...] = ()
    test_loss: tuple[float, ...] = ()
    elapsed_s: float = 0.0
    eta_s: float | None = None
    message: str = ""

    def reset(self, n_epochs: int) -> None:
        """Start a new run of ``n_epochs``."""
        self.n_epochs = int(n_epochs)
        self.train_loss, self.test_loss = (), ()
        self.elapsed_s, self.eta_s, self.message = 0.0, None, ""
        self.epoch = 0
        self.status = "running"

    def apply(self, event: Any) -> None:
        """Take one workflow event: training events of any loop go through
        :func:`atomlens.workflows.events.training_progress` (one vocabulary, told apart by
        type); other events (:class:`~atomlens.workflows.events.Log`, ``Progress``) may
        carry a ``message`` for the status line."""
        from atomlens.workflows.events import training_progress

        tp = training_progress(event)
        if tp is not None and tp.kind == "epoch":
            # the epoch is set last: listeners of ``events.epoch`` see a complete state
            if tp.total is not None:
                self.n_epochs = int(tp.total)
            loss = float("nan") if tp.loss is None else float(tp.loss)
            test = float("nan") if tp.test_loss is None else float(tp.test_loss)
            self.train_loss = (*self.train_loss, loss)
            self.test_loss = (*self.test_loss, test)
            if tp.elapsed_s is not None:
                self.elapsed_s = float(tp.elapsed_s)
            self.eta_s = None if tp.eta_s is None else float(tp.eta_s)
            self.epoch = int(tp.done)  # epochs done (1 after the first)
        elif tp is not None and tp.kind == "finished":
            if tp.elapsed_s is not None:
                self.elapsed_s = float(tp.elapsed_s)
            self.message = f"ended: {tp.reason}"
            if tp.reason == "diverged":
                self.message += " (weights of the last finished epoch restored)"
        elif tp is None and getattr(event, "message", None):
            self.message = str(event.message)

    def progress_text(self) -> str:
        """``epoch 3/20, 12 s elapsed, ~40 s left``."""
        text = f"epoch {self.epoch}/{self.n_epochs}, {self.elapsed_s:.0f} s elapsed"
        if self.eta_s is not None and self.status == "running":
            text += f", ~{self.eta_s:.0f} s left"
        if self.status not in ("running", "idle"):
            text += f" ({self.status})"
        return text


@dataclass
class SessionModel:
    """A trained (or loaded) model and what it needs to encode new windows."""

    model: Any
    name: str = ""
    window: int | None = None
    path: str | None = None
    extra: dict = field(default_factory=dict)


class Session:
    """What the AtomLens docks of one viewer share."""

    model_changed = Signal(object)
    subimages_changed = Signal(object)  # the SubimageSet added

    def __init__(self) -> None:
        self.subimages: dict[str, Any] = {}  # name -> SubimageSet (Subimages dock)
        self.gallery: Any = None  # the subimage gallery dock, once docked
        self.training = TrainingState()
        self._model: SessionModel | None = None
        self.key_dock: Any = None  # the Colour key dock, once docked
        self.scale_bar_shown = False  # napari's scale bar shown once (_base.show_scale_bar)

    def add_subimages(self, subs: Any) -> None:
        """Keep a set of windows (replacing one of the same name) and announce it."""
        self.subimages[subs.name] = subs
        self.subimages_changed.emit(subs)

    @property
    def model(self) -> SessionModel | None:
        return self._model

    @model.setter
    def model(self, value: SessionModel | None) -> None:
        self._model = value
        self.model_changed.emit(value)


class _KeyBus:
    """Announces that a layer's colour key changed (the Colour key dock listens)."""

    changed = Signal(object)  # the layer


#: One bus for every viewer: a layer whose colouring changed is emitted here.
COLOUR_KEYS = _KeyBus()

_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def session_for(viewer: Any) -> Session:
    """The one :class:`Session` of ``viewer`` (made on first use)."""
    if viewer not in _SESSIONS:
        _SESSIONS[viewer] = Session()
    return _SESSIONS[viewer]
