"""Retraining says what it does while the spot classifier learns (1-3 s after the last
training step): a ``FinetuneNote`` from fine-tuning, passed on as a ``Log`` line on the
channel the correction workflow and the Correct dock read, between the last step and the
end, only when a classifier is learned."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.atoms.finetune import FinetuneFinished, FinetuneNote, FinetuneStep, iter_finetune
from atomlens.workflows.correct import CorrectionSession, CorrectRecipe
from atomlens.workflows.events import Log
from tests.test_spot_classifier import PX, _labels, _pt_on_carbon

MESSAGE = "learning the spot classifier on 2 corrected frame(s) ..."


@pytest.fixture(scope="module")
def pt_frames():
    frames, truths = zip(*(_pt_on_carbon(s, crop=192) for s in (4, 6)))
    return np.stack(frames).astype(np.float32), _labels(truths)


def test_session_retrain_emits_a_status_line_while_the_classifier_learns(pt_frames):
    from atomlens.segment.registry import load_model

    if "spot_verify" not in load_model("general").card:
        pytest.skip("the general model's card has no spot_verify rule")
    movie, labels = pt_frames
    session = CorrectionSession(
        atoms=labels,
        stack=movie,
        pixel_size=PX,
        model="general",
        recipe=CorrectRecipe(steps=2, threads=1),
        corrected={0, 1},
    )
    events = []
    job = session.retrain()
    while True:
        try:
            events.append(next(job))
        except StopIteration as end:
            result = end.value
            break
    if "spot_classifier" not in result.card:
        pytest.skip("these frames were not spot-resampled (no spot classifier learned)")
    logs = [i for i, e in enumerate(events) if isinstance(e, Log) and e.message == MESSAGE]
    last_step = max(i for i, e in enumerate(events) if isinstance(e, FinetuneStep))
    done = next(i for i, e in enumerate(events) if isinstance(e, FinetuneFinished))
    assert len(logs) == 1 and last_step < logs[0] < done
    assert result.card["finetune"]["spot_classifier"]["n_frames"] == 2


def test_no_status_line_without_a_classifier(pt_frames):
    movie, labels = pt_frames
    events = list(
        iter_finetune(
            movie,
            labels,
            [0, 1],
            "general",
            pixel_size=PX,
            steps=2,
            threads=1,
            val_fraction=0,
            spot_classifier=False,
        )
    )
    assert "spot_classifier" not in events[-1].result.card
    assert not any(isinstance(e, (FinetuneNote, Log)) for e in events)
