"""One headless workflow per task: the only thing the napari docks, the CLI and
``atomlens run`` call, so the same recipe gives the same answer everywhere.

API summary
-----------
Every workflow has a typed, validated recipe (a :class:`Recipe` dataclass; a wrong
type or range raises :class:`atomlens.errors.SettingsError` naming the field) that is
recorded in its outputs (model card, ``run.json``, project), and a ``run(...)``
generator that yields progress events and RETURNS a result object (napari:
``create_worker(run, ...)`` and connect ``returned``; plain Python: :func:`drain`).
Pass ``stop=threading.Event()`` to cancel between units of work.

=========================  ==============================  ==============================
task                       recipe                          run / result
=========================  ==============================  ==============================
detect atoms               ``detect.DetectRecipe``         ``detect.run(stack, recipe,
                                                           frames)`` -> ``DetectResult``
correct atoms              ``correct.CorrectRecipe``       ``correct.CorrectionSession``
                                                           (add/delete/move/set_species/
                                                           mark_frames/undo/redo/retrain/
                                                           redetect/save/load, events);
                                                           ``correct.replay(project)``
chemistry (+ tracking)     ``chemistry.ChemRecipe``        ``chemistry.run(atoms, px,
                                                           recipe, movie=)`` -> ``ChemOutput``
descriptors + latent model ``latent.DescriptorRecipe``,    ``latent.run(movie, centres,
                           ``latent.LatentRecipe``         desc, recipe)`` -> ``LatentResult``
encode atoms               (the model card's recipe)       ``encode.run(model, movie, atoms)``
                                                           -> ``EncodeResult``
PFM domain walls           ``pfm.PFMRecipe``               ``pfm.run(phase, recipe)``
=========================  ==============================  ==============================

Long steps also come in pieces, each a generator with progress and ``stop=`` that keeps
what is done: ``chemistry.analyze_events(atoms, px, chunk_frames=4)`` (frames; the same
numbers as one ``analyze`` call), ``latent.cut_windows_events(prepared, centres, recipe,
chunk=2000)`` (centres); ``pfm.run`` yields a ``Progress`` per training epoch and a Stop
while training keeps the epochs done.

Events (:mod:`atomlens.workflows.events`): ``Progress(task, stage, done, total)``,
``Log(task, message)`` and the training events of :mod:`atomlens.train`;
``training_progress(event)`` maps any training loop's event to one ``TrainingProgress``.
Frames: :func:`atomlens.io.frames.parse_frames`; pixel size:
:func:`atomlens.io.pixel_size.resolve_pixel_size` (from the lattice:
``load.read_stack(path, calibrate="graphene")``); the image-picker rule:
:func:`atomlens.workflows.layers.pick_movie_layer`.

Submodules are imported on first use (``from atomlens.workflows import latent``), so
importing this package is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from atomlens.workflows.events import Log, Progress, TrainingProgress, drain, training_progress
from atomlens.workflows.recipe import Recipe, setting

_SUBMODULES = ("chemistry", "correct", "detect", "encode", "latent", "layers", "load", "pfm")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"atomlens.workflows.{name}")
    raise AttributeError(f"module 'atomlens.workflows' has no attribute {name!r}")


__all__ = [
    "Log",
    "Progress",
    "Recipe",
    "TrainingProgress",
    "drain",
    "setting",
    "training_progress",
    *_SUBMODULES,
]
