"""The shared training loop: events, split, subset, stop flag, checkpoints, seeds."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from atomlens.models import RVAE, ModelError, load_model, make_model
from atomlens.train import (
    CheckpointSaved,
    EpochEnd,
    Finished,
    Started,
    StepEnd,
    fit_events,
    pick_device,
    select_subset,
)


def _x(n=60, size=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, size, size)).astype(np.float32)


def _model(**kw):
    return RVAE(window=10, hidden=(16, 16), lr=1e-3, **kw)


def test_events_split_and_history():
    m = _model()
    events = list(fit_events(m, _x(), epochs=3, batch_size=16, step_interval_s=0.0, device="cpu"))
    assert isinstance(events[0], Started) and isinstance(events[-1], Finished)
    start = events[0]
    assert (start.n_train, start.n_test, start.steps_per_epoch) == (45, 15, 3)
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == [0, 1, 2]
    assert all(e.test_loss is not None and np.isfinite(e.train_loss) for e in epochs)
    assert epochs[-1].step == 9 and epochs[-1].eta_s == 0
    assert len([e for e in events if isinstance(e, StepEnd)]) == 9  # unthrottled
    fin = events[-1]
    assert fin.reason == "done" and fin.epochs_done == 3 and fin.model is m
    assert m.card["history"]["train_loss"] == [e.train_loss for e in epochs]
    assert m.card["device"] == "cpu" and m.card["n_train"] == 45


def test_training_lowers_the_loss():
    x = _x(n=80)
    m = _model()
    m.fit(x, epochs=8, batch_size=16, train_fraction=1.0, threads=1)
    hist = m.card["history"]["train_loss"]
    assert hist[-1] < 0.8 * hist[0]


def test_stop_flag_is_honoured_within_one_step():
    stop = threading.Event()
    m = _model()
    steps = 0
    for ev in fit_events(m, _x(), epochs=50, batch_size=8, stop=stop, step_interval_s=0.0):
        if isinstance(ev, StepEnd):
            steps += 1
            if steps == 4:
                stop.set()
                before = {k: v.clone() for k, v in m.module.state_dict().items()}
        if isinstance(ev, Finished):
            fin = ev
    assert fin.reason == "stopped" and steps == 4 and fin.epochs_done == 0
    # no step ran after the flag: the weights are those of the last completed step
    for k, v in m.module.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert m.fitted and m.card["finished"] == "stopped"


def test_checkpoints_written_and_loadable(tmp_path):
    m = _model()
    events = list(fit_events(m, _x(), epochs=2, batch_size=20, checkpoint_dir=tmp_path))
    saved = [e for e in events if isinstance(e, CheckpointSaved)]
    assert {e.kind for e in saved} == {"last", "best"}
    assert (tmp_path / "rvae-last.pt").exists() and (tmp_path / "rvae-best.pt").exists()
    back = load_model(tmp_path / "rvae-last.pt")
    np.testing.assert_allclose(
        back.transform(_x()).to_numpy(), m.transform(_x()).to_numpy(), atol=1e-6
    )


def test_subset_and_seeds_reproducible():
    x = _x(n=100)
    rows = select_subset(100, 0.25, seed=0)
    assert len(rows) == 25 and len(set(rows)) == 25
    assert list(select_subset(10, np.arange(10) % 2 == 0, 0)) == [0, 2, 4, 6, 8]
    a = _model(seed=1)
    ev = list(fit_events(a, x, epochs=1, batch_size=10, subset=0.25, seed=5))
    assert ev[0].n_train + ev[0].n_test == 25
    assert len(a.transform(x)) == 100  # trained on a subset, encodes everything
    b = _model(seed=1)
    list(fit_events(b, x, epochs=1, batch_size=10, subset=0.25, seed=5))
    np.testing.assert_array_equal(a.transform(x).to_numpy(), b.transform(x).to_numpy())


def test_bad_arguments_and_sklearn_models_use_the_same_loop():
    with pytest.raises(ModelError, match="train_fraction"):
        list(fit_events(_model(), _x(), epochs=1, train_fraction=0.0))
    with pytest.raises(ModelError, match="subset"):
        select_subset(10, [11], 0)
    assert pick_device("cpu").type == "cpu" and pick_device("auto").type in ("cpu", "cuda", "mps")
    pca = make_model("pca")
    events = list(fit_events(pca, _x(), epochs=5))
    assert isinstance(events[-1], Finished) and pca.fitted
    assert list(pca.transform(_x()).columns) == ["pc1", "pc2"]
