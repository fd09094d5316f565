"""The "Train latent model" dock: rVAE and friends on a subimages layer.

Thin shell over the latent workflow (:func:`atomlens.workflows.latent.train` with a
:class:`~atomlens.workflows.latent.LatentRecipe` filled in from the dock; the windows
come from the Subimages dock through the viewer's session): training runs on a napari
worker thread; every epoch event goes into the viewer's
:class:`~atomlens._napari.state.TrainingState`, which drives the progress bar, the
elapsed/remaining label and the (throttled) loss plot. Stop sets the stop event; the
training loop ends after the current batch and the model keeps its last good weights.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FloatSpinBox,
    ProgressBar,
    PushButton,
    SpinBox,
)

from atomlens._napari._base import ViewerWidget, status_label
from atomlens._napari._workers import notify_error, start_generator
from atomlens._napari.plots import LossPlot
from atomlens._napari.state import SessionModel, session_for

#: (label, registry name) of the models offered.
MODEL_CHOICES = [
    ("rVAE", "rvae"),
    ("skip-rVAE", "skip-rvae"),
    ("VAE", "vae"),
    ("conv AE", "conv-ae"),
    ("PCA", "pca"),
    ("NMF", "nmf"),
    ("GMM", "gmm"),
]


def training_events(windows: Any, recipe: Any, stop: threading.Event) -> Generator:
    """The headless latent training (:func:`atomlens.workflows.latent.train`, no
    encoding), yielding its events; returns the trained model (its card records both
    recipes, so the Latent dock encodes with the same windows)."""
    from atomlens.workflows import latent

    result = yield from latent.train(windows, recipe, stop=stop, encode=False)
    return result.model


def subimages_of(subs: Any) -> np.ndarray:
    """The ``(N, h, w)`` (or ``(N, C, h, w)``) windows of a set from the Subimages dock."""
    return np.asarray(subs.images, np.float32)


class TrainWidget(ViewerWidget):
    """Choose a model and its training settings; Train / Stop; Save / Load."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.session = session_for(viewer)
        self.state = self.session.training
        self.subimages = ComboBox(label="subimages", choices=self._subimage_choices, nullable=False)
        self.session.subimages_changed.connect(self._on_subimages)
        from atomlens.workflows.latent import LatentRecipe

        d = LatentRecipe()  # the defaults of ``atomlens run`` / ``atomlens rvae``
        self.model_name = ComboBox(label="model", choices=MODEL_CHOICES, value=d.model)
        self.latent = SpinBox(label="latent size", min=1, max=64, value=d.latent_dim)
        self.epochs = SpinBox(label="epochs", min=1, max=10000, value=d.epochs)
        self.batch = SpinBox(label="batch", min=1, max=65536, value=d.batch_size)
        self.lr = FloatSpinBox(label="learning rate", min=1e-6, max=1.0, step=1e-4, value=d.lr)
        self.lr.native.setDecimals(6)
        self.prior = FloatSpinBox(
            label="rotation prior", min=0.01, max=10.0, step=0.05, value=d.rot_prior
        )
        self.prior.tooltip = "SD of the rotation-angle prior in radians (rVAE, skip-rVAE)"
        self.train_fraction = FloatSpinBox(
            label="train fraction", min=0.1, max=1.0, step=0.05, value=d.train_fraction
        )
        self.device = ComboBox(label="device", choices=["auto", "cuda", "cpu"], value=d.device)
        self.max_windows = SpinBox(
            label="train on at most", min=10, max=10_000_000, step=500, value=d.max_train_windows
        )
        self.max_windows.tooltip = "windows drawn at random for training (all are encoded)"
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.save_button = PushButton(text="Save model...")
        self.load_button = PushButton(text="Load model...")
        buttons = Container(
            widgets=[self.train_button, self.stop_button], layout="horizontal", labels=False
        )
        files = Container(
            widgets=[self.save_button, self.load_button], layout="horizontal", labels=False
        )
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.time_label = status_label()
        self.extend(
            [
                self.subimages,
                self.model_name,
                self.latent,
                self.epochs,
                self.batch,
                self.lr,
                self.prior,
                self.train_fraction,
                self.device,
                self.max_windows,
                buttons,
                self.progress,
                self.time_label,
                files,
            ]
        )
        self.loss_plot = LossPlot(self.state)
        self.loss_plot.set_epoch_range(self.epochs.value)
        self.epochs.changed.connect(self.loss_plot.set_epoch_range)
        self.native.layout().addWidget(self.loss_plot)
        self._gmm = False  # the latent field holds GMM clusters (else latents/components)
        self.model_name.changed.connect(self._on_model_name)
        self._on_model_name(self.model_name.value)
        self.train_button.changed.connect(self.train)
        self.stop_button.changed.connect(self.stop)
        self.save_button.changed.connect(self._save_dialog)
        self.load_button.changed.connect(self._load_dialog)
        self.state.events.epoch.connect(self._on_epoch)
        self.state.events.status.connect(self._on_status)
        self.worker: Any = None
        self._stop = threading.Event()

    def _subimage_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(name, subs) for name, subs in reversed(self.session.subimages.items())]

    def _on_subimages(self, subs: Any) -> None:
        try:
            self.subimages.reset_choices()
            self.subimages.value = subs
        except RuntimeError:  # closed dock
            pass

    # -- parameters -> headless calls ------------------------------------------------
    def model_kwargs(self, window: tuple[int, int]) -> dict[str, Any]:
        """Keyword arguments for :func:`atomlens.models.make_model`: the window, the latent
        size (``latent_dim``, or ``n_components`` for PCA/NMF/GMM) and, where the model has
        one, the rotation prior."""
        from atomlens.models import model_parameters

        params = model_parameters(self.model_name.value)
        kw: dict[str, Any] = {"window": tuple(int(v) for v in window)}
        size_key = "latent_dim" if "latent_dim" in params else "n_components"
        if size_key in params:
            kw[size_key] = int(self.latent.value)
        if "rot_prior" in params:
            kw["rot_prior"] = float(self.prior.value)
        return kw

    def _on_model_name(self, name: str) -> None:
        """Enable the fields the chosen model uses (the learning rate stays the recipe's, as
        in ``atomlens run``: every model trains with :class:`LatentRecipe` ``lr``)."""
        from atomlens.models import model_parameters

        params = model_parameters(name)
        if name == "skip-rvae":
            params = {**model_parameters("rvae"), **params}
        self.prior.enabled = "rot_prior" in params
        gmm = name == "gmm"
        self.latent.label = (
            "clusters" if gmm else ("latent size" if "latent_dim" in params else "components")
        )
        if gmm != self._gmm:  # GMM counts clusters: the recipe's default n_clusters
            from atomlens.workflows.latent import LatentRecipe

            d = LatentRecipe()
            self._gmm = gmm
            self.latent.value = d.n_clusters if gmm else d.latent_dim
        torch_model = "latent_dim" in params
        for w in (self.epochs, self.batch, self.lr, self.train_fraction, self.device):
            w.enabled = torch_model

    def fit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`atomlens.train.fit_events` (one CPU core is left to
        the viewer so it stays responsive)."""
        return {
            "epochs": int(self.epochs.value),
            "batch_size": int(self.batch.value),
            "lr": float(self.lr.value),
            "train_fraction": float(self.train_fraction.value),
            "device": self.device.value,
            "seed": 0,
            "threads": max(1, (os.cpu_count() or 2) - 1),
        }

    def recipe(self) -> Any:
        """The :class:`~atomlens.workflows.latent.LatentRecipe` this dock's fields say."""
        from atomlens.workflows.latent import LatentRecipe

        fit = self.fit_kwargs()
        d, size, gmm = LatentRecipe(), int(self.latent.value), self.model_name.value == "gmm"
        return LatentRecipe(
            model=self.model_name.value, latent_dim=d.latent_dim if gmm else size,
            n_clusters=size if gmm else d.n_clusters, epochs=fit["epochs"],
            batch_size=fit["batch_size"],
            lr=fit["lr"], rot_prior=float(self.prior.value), train_fraction=fit["train_fraction"],
            device=fit["device"], seed=0, threads=fit["threads"],
            max_train_windows=int(self.max_windows.value),
        ).validate()  # fmt: skip

    def train(self) -> Any:
        """Start training on a worker thread (the model is built there); returns the worker."""
        subs = self.subimages.value
        if subs is None:
            notify_error(
                ValueError("no subimages: cut subimages first (Subimages dock, 'Cut subimages')"),
                "Train",
            )
            return None
        if self.worker is not None and self.state.status in ("running", "stopping"):
            notify_error(ValueError("a training is already running: stop it first"), "Train")
            return None
        try:
            recipe = self.recipe()
        except ValueError as exc:
            notify_error(exc, "Train")
            return None
        self._stop = threading.Event()
        self.state.reset(recipe.epochs)
        self.progress.max, self.progress.value = recipe.epochs, 0
        self.train_button.enabled, self.stop_button.enabled = False, True
        window = subs.window
        self.worker = start_generator(
            training_events,
            subs.windows,
            recipe,
            self._stop,
            on_yield=self.state.apply,
            on_return=lambda m: self._finished(m, window),
            on_error=lambda exc: setattr(self.state, "status", "failed"),
            on_finish=self._after,
            what="Train",
        )
        return self.worker

    def stop(self) -> None:
        """Ask the training loop to stop after the current batch (keeps the last weights)."""
        if self.state.status == "running":
            self._stop.set()
            self.state.status = "stopping"

    def _finished(self, model: Any, window: tuple[int, ...]) -> None:
        stopped = self._stop.is_set()
        self.session.model = SessionModel(model, self.model_name.value, window=window[-1])
        self.state.status = "stopped" if stopped else "finished"

    def _after(self) -> None:
        self.train_button.enabled, self.stop_button.enabled = True, False
        self.loss_plot.redraw.flush()

    def _on_epoch(self, epoch: int) -> None:
        self.progress.max = max(1, self.state.n_epochs)
        self.progress.value = min(epoch, self.progress.max)
        self.time_label.value = self.state.progress_text()

    def _on_status(self, status: str) -> None:
        self.time_label.value = self.state.progress_text()

    # -- files -----------------------------------------------------------------------
    def save_model(self, path: str | Path) -> Path | None:
        """Save the current model (``.pt``); notifications on error."""
        current = self.session.model
        if current is None:
            notify_error(ValueError("no model to save: train or load one first"), "Save model")
            return None
        try:
            return current.model.save(path)
        except (OSError, ValueError) as exc:
            notify_error(exc, "Save model")
            return None

    def load_model(self, path: str | Path) -> Any:
        """Load a model file and make it the session's model; returns it (None on error)."""
        from atomlens.models import load_model

        try:
            model = load_model(path)
        except (OSError, ValueError) as exc:
            notify_error(exc, "Load model")
            return None
        window = model.window[-1] if getattr(model, "window", None) else None
        self.session.model = SessionModel(
            model, getattr(model, "kind", ""), window=window, path=str(path)
        )
        self.time_label.value = f"loaded {Path(path).name}"
        return model

    def _save_dialog(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self.native, "Save model", "model.pt", "Model (*.pt)")
        if path:
            self.save_model(path)

    def _load_dialog(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.native, "Load model", "", "Model (*.pt)")
        if path:
            self.load_model(path)
