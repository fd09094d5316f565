"""The headless workflows: recipes, detect -> chemistry -> latent -> encode on a small
simulated movie (checked against the simulator's truth), and the correction session."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from atomlens.errors import SettingsError
from atomlens.io import Stack
from atomlens.simulate import simulate_movie
from atomlens.workflows import chemistry, correct, detect, drain, encode, latent
from atomlens.workflows.events import Progress, training_progress


@pytest.fixture(scope="module")
def movie():
    return simulate_movie(n_frames=3, size=160, pixel_size=0.1, seed=5, n_holes=0)


@pytest.fixture(scope="module")
def detected(movie):
    stack = Stack(movie.frames, 0.1, "user")
    events: list = []
    res = drain(detect.run(stack, detect.DetectRecipe(save_maps=False), "0:3"), events.append)
    return stack, res, events


def test_recipes_validate_and_name_the_field() -> None:
    with pytest.raises(SettingsError, match=r"\[latent\] epochs"):
        latent.LatentRecipe(epochs=0)
    with pytest.raises(SettingsError, match=r"\[latent\] model must be one of"):
        latent.LatentRecipe(model="pcaa")
    with pytest.raises(SettingsError, match=r"\[detect\] threshold must be a number"):
        detect.DetectRecipe(threshold="high")
    with pytest.raises(SettingsError, match=r"\[detect\] threshold"):
        detect.DetectRecipe(threshold=1.5)
    with pytest.raises(SettingsError, match=r"\[chem\] max_gap"):
        chemistry.ChemRecipe(max_gap=-1)
    with pytest.raises(SettingsError, match="unknown setting"):
        latent.LatentRecipe.from_dict({"epoch": 3})
    r = latent.LatentRecipe(hidden=[64, 64], lr=1)
    assert r.hidden == (64, 64) and isinstance(r.lr, float)
    assert latent.LatentRecipe.from_dict(r.to_dict()) == r


def test_detect_workflow_finds_the_simulated_atoms(movie, detected) -> None:
    from atomlens.atoms.match import table_scores

    stack, res, events = detected
    assert res.frames == [0, 1, 2] and res.pixel_size == 0.1
    assert [e.done for e in events if isinstance(e, Progress)] == [1, 2, 3]
    assert res.atoms["atom_id"].is_unique
    f1 = table_scores(res.atoms, movie.atoms, 0.1)["f1"]
    assert f1 > 0.9


def test_detect_workflow_stops_between_frames(detected) -> None:
    stack = detected[0]
    stop = threading.Event()
    gen = detect.run(stack, detect.DetectRecipe(save_maps=False), None, stop=stop)
    next(gen)
    stop.set()
    res = drain(gen)
    assert res.stopped and res.frames == [0]


def test_chemistry_workflow_bonds_by_atom_id(detected) -> None:
    stack, res, _ = detected
    out = drain(chemistry.run(res.atoms, 0.1, chemistry.ChemRecipe(register=False)))
    assert {"coordination", "ring6", "track_id"} <= set(out.atoms.columns)
    assert len(out.bonds) and {"atom_a", "atom_b"} <= set(out.bonds.columns)
    ids = out.atoms["atom_id"].to_numpy()
    assert (out.bonds["atom_a"].to_numpy() == ids[out.bonds["a"].to_numpy()]).all()
    # bulk graphene: most atoms 3-fold, most rings 6
    assert (out.atoms["coordination"] == 3).mean() > 0.6
    assert (out.rings["size"] == 6).mean() > 0.8


@pytest.mark.parametrize("name", ["pca", "gmm", "rvae"])
def test_latent_workflow_every_kind_of_model(detected, name) -> None:
    stack, res, _ = detected
    desc = latent.DescriptorRecipe(window=16)
    rec = latent.LatentRecipe(model=name, epochs=1, batch_size=64, max_train_windows=300)
    events: list = []
    out = drain(latent.run(stack, res.atoms, desc, rec), events.append)
    assert len(out.latents) == len(out.windows) > 0
    assert any(training_progress(e) is not None for e in events)
    card = out.model.card
    assert card["recipe"]["model"] == name and card["preprocessing"]["window"] == 16
    # encoding the atoms again with the model card's recipe gives the same latents
    enc = drain(encode.run(out.model, stack, res.atoms))
    again = enc.atoms[out.latents.columns].to_numpy()[out.windows.index]
    np.testing.assert_allclose(again, out.latents.to_numpy(), rtol=1e-5, atol=1e-5)


def test_model_kwargs_only_what_the_model_takes() -> None:
    from atomlens.models import make_model

    for name in latent.MODEL_NAMES:
        kw = latent.model_kwargs(latent.LatentRecipe(model=name), (16, 16))
        make_model(name, **kw)  # raises on a keyword the model does not take


def test_correction_session_edits_undo_and_save(detected, tmp_path) -> None:
    stack, res, _ = detected
    stack = Stack(stack.data, 0.1, "user", {}, str(tmp_path / "movie.npy"))
    np.save(tmp_path / "movie.npy", stack.data)
    seen: list = []
    s = correct.CorrectionSession(res.atoms, stack=stack)
    s.connect(seen.append)
    n0 = len(s.atoms)
    new = s.add(1, 50.0, 60.0, "Si")
    assert len(s.atoms) == n0 + 1 and s.corrected_frames == [1] and s.dirty
    first = int(s.atoms.loc[s.atoms["frame"] == 2, "atom_id"].iloc[0])
    s.move(first, 10.0, 11.0)
    s.set_species([new], "C")
    s.delete([new])
    assert new not in set(s.atoms["atom_id"]) and s.corrected_frames == [1, 2]
    assert [e.kind for e in seen] == ["edit"] * 4
    assert s.undo() and new in set(s.atoms["atom_id"])
    assert s.undo() and s.atoms.loc[s.atoms["atom_id"] == new, "cls"].item() == "Si"
    assert s.redo() and s.atoms.loc[s.atoms["atom_id"] == new, "cls"].item() == "C"
    moved = s.atoms.loc[s.atoms["atom_id"] == first]
    assert moved[["y", "x"]].to_numpy().tolist() == [[10.0, 11.0]] and moved["edited"].item()
    with pytest.raises(SettingsError, match="frames 0..2"):
        s.add(7, 1.0, 1.0)
    with pytest.raises(SettingsError, match="no atom with atom_id"):
        s.delete([10**9])
    folder = s.save(tmp_path / "p.atomlens")
    assert not s.dirty and seen[-1].kind == "saved"
    back = correct.CorrectionSession.load(folder)
    assert back.corrected_frames == [1, 2] and back.stack is not None
    pd.testing.assert_frame_equal(
        back.atoms[["frame", "y", "x", "cls", "atom_id"]].reset_index(drop=True),
        s.atoms[["frame", "y", "x", "cls", "atom_id"]].reset_index(drop=True),
        check_dtype=False,
        check_categorical=False,
    )


def test_session_without_movie_file_refuses_to_save(detected, tmp_path) -> None:
    s = correct.CorrectionSession(detected[1].atoms, stack=detected[0].data)
    s.add(0, 5.0, 5.0)
    with pytest.raises(SettingsError, match="does not know its movie"):
        s.save(tmp_path / "x.atomlens")


def test_autosave_rule(detected, tmp_path) -> None:
    stack = Stack(detected[0].data, 0.1, "user", {}, str(tmp_path / "m.npy"))
    s = correct.CorrectionSession(
        detected[1].atoms,
        stack=stack,
        recipe=correct.CorrectRecipe(autosave=True, autosave_s=5),
        project_path=str(tmp_path / "a.atomlens"),
    )
    assert not s.autosave_due()  # nothing changed
    s.mark_frames([0])
    assert not s.autosave_due(now=s._last_save + 1)
    assert s.autosave(now=s._last_save + 6) is not None and not s.dirty


@pytest.mark.slow
def test_session_retrain_redetect_and_replay(detected, tmp_path) -> None:
    """Retrain on a corrected frame, re-detect the others (corrected rows keep their
    atom_id), save, and replay the saved session's fine-tuning."""
    from atomlens.atoms.finetune import FinetuneFinished

    stack, res, _ = detected
    np.save(tmp_path / "movie.npy", stack.data)
    stack = Stack(stack.data, 0.1, "user", {}, str(tmp_path / "movie.npy"))
    s = correct.CorrectionSession(
        res.atoms,
        stack=stack,
        recipe=correct.CorrectRecipe(steps=3),
        project_path=str(tmp_path / "p.atomlens"),
    )
    s.delete([int(s.atoms["atom_id"].iloc[0])])  # frame 0 becomes corrected
    kept = s.atoms[s.atoms["frame"] == 0][["atom_id", "y", "x"]].reset_index(drop=True)
    events = []
    ft = drain(s.retrain(out=str(tmp_path / "ft.pt")), events.append)
    assert any(isinstance(e, FinetuneFinished) for e in events)
    assert ft is not None and s.new_model is not None and len(s.lineage) == 1
    rd = drain(s.redetect())
    assert rd.skipped_frames == [0] and rd.detected_frames == [1, 2]
    again = s.atoms[s.atoms["frame"] == 0][["atom_id", "y", "x"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(again, kept, check_dtype=False)
    assert s.atoms["atom_id"].is_unique and s.undo()  # re-detection is undoable
    folder = s.save()
    replayed = drain(correct.replay(folder, steps=2, out=str(tmp_path / "ft2.pt")))
    assert replayed is not None and (tmp_path / "ft2.pt").exists()
    back = correct.CorrectionSession.load(folder)
    assert len(back.lineage) == 2 and back.lineage[-1]["model"] == str(tmp_path / "ft2.pt")
