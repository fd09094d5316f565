"""Shared rules the front ends call: the pixel-size resolver, the image-picker rule, the
training-event vocabulary."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from atomlens.errors import SettingsError
from atomlens.io import Stack
from atomlens.io.pixel_size import resolve_pixel_size
from atomlens.workflows.events import TrainingProgress, training_progress
from atomlens.workflows.layers import pick_movie_layer


def test_pixel_size_user_beats_metadata_beats_calibration() -> None:
    stack = Stack(np.zeros((1, 32, 32), np.float32), 0.08, "metadata")
    ps = resolve_pixel_size(stack, 0.1, calibrated=0.09)
    assert (ps.value, ps.source) == (0.1, "user")
    ps = resolve_pixel_size(stack, None, calibrated=0.09)
    assert (ps.value, ps.source) == (0.08, "metadata")
    bare = Stack(np.zeros((1, 32, 32), np.float32), None, "unknown")
    ps = resolve_pixel_size(bare, None, calibrated=0.09)
    assert (ps.value, ps.source) == (0.09, "calibration")
    assert resolve_pixel_size(bare, required=False) is None
    with pytest.raises(SettingsError, match="pixel size is unknown"):
        resolve_pixel_size(bare)
    with pytest.raises(SettingsError, match="positive number"):
        resolve_pixel_size(stack, -1.0)


class Image(SimpleNamespace):
    """Stands in for napari.layers.Image (the rule looks at the type name only)."""


class Points(SimpleNamespace):
    pass


def test_picker_prefers_the_movie_over_probability_maps() -> None:
    movie = Image(name="movie", metadata={"atomlens": {"kind": "stack"}})
    maps = [
        Image(name=f"P({c}) movie", metadata={"atomlens": {"kind": "probability", "class": c}})
        for c in "CS"
    ]
    atoms = Points(name="atoms", metadata={})
    # after detection the maps sit on top of the movie: the movie is still picked
    assert pick_movie_layer([movie, *maps, atoms]) is movie
    plain = Image(name="other", metadata={})
    assert pick_movie_layer([movie, plain, *maps]) is plain  # topmost raw image
    with pytest.raises(SettingsError, match=r"only derived images.*P\(C\) movie.*open the movie"):
        pick_movie_layer([*maps, atoms])
    with pytest.raises(SettingsError, match="no image layer"):
        pick_movie_layer([atoms])
    assert pick_movie_layer([atoms], required=False) is None


def test_every_training_loop_speaks_one_vocabulary() -> None:
    from atomlens.atoms.finetune import FinetuneStep
    from atomlens.train import EpochEnd, Finished

    ep = training_progress(EpochEnd(2, 10, 30, 0.5, 0.6, 12.0, 48.0, 100.0))
    assert ep == TrainingProgress("epoch", 3, 10, 0.5, 0.6, 12.0, 48.0)
    assert "epoch 3/10" in ep.text()
    st = training_progress(FinetuneStep(5, 150, 0.3, 0.31, 1e-4, 2.0))
    assert (st.kind, st.done, st.total, st.unit) == ("step", 5, 150, "step")
    fin = training_progress(Finished(None, "stopped", 4, 9.0))
    assert fin.kind == "finished" and "stopped" in fin.text()
    assert training_progress("not an event") is None
    # detector training (atomlens.segment.train) yields dicts
    d = training_progress(
        {"step": 7, "steps": 100, "loss": 0.2, "loss_ema": 0.21, "lr": 1e-3, "elapsed_s": 3.0}
    )
    assert (d.kind, d.done, d.total, d.loss) == ("step", 7, 100, 0.2)
    assert training_progress({"end": "stopped", "step": 6}).reason == "stopped"
    assert training_progress({"step": 100, "steps": 100, "done": True}).kind == "finished"
