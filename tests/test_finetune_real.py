"""Fine-tuning on a few corrected tiles of a real MoS2 image improves detection on the
other tiles (a small version of ``bench/finetune_ood.py``'s ``real_mos2`` case).

The corrections are the lattice-fit reference (:mod:`atomlens.atoms.lattice_reference`),
which needs no detector, so the same set can train on one tile and score the others.
Skips when ``../shared/data/real`` is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
MOS2 = REAL / "MoS2_stem_Exp-000-2.npy"

pytestmark = pytest.mark.skipif(
    not MOS2.exists(), reason=f"real MoS2 image not found at {MOS2} (../shared/data absent)"
)


@pytest.fixture(scope="module")
def mos2():
    from atomlens.atoms.lattice_reference import lattice_reference
    from atomlens.io import read_stack

    st = read_stack(MOS2)
    frame = np.asarray(st.data[0], np.float32)
    ref, fit = lattice_reference(frame, float(st.pixel_size))
    return frame, ref, fit


def test_lattice_reference_on_real_mos2(mos2):
    frame, ref, fit = mos2
    # the lattice fit confirms the nominal 0.1758 Å/px of this image (FFT: 0.176)
    assert abs(fit.pixel_size - 0.1763) < 0.005
    # every site of the field is placed: ~ 2 columns per 8.64 Å² cell
    area = np.prod(frame.shape) * fit.pixel_size**2
    expected = 2 * area / (3.16**2 * np.sqrt(3) / 2)
    assert 0.9 * expected <= fit.details["sites_placed"] <= 1.05 * expected
    counts = ref["cls"].value_counts()
    assert counts["Mo"] > 0.9 * expected / 2 and counts["S"] > 0.85 * expected / 2
    # Mo columns are brighter than S2 columns, which are brighter than the hollows
    c = fit.details["species_median_contrast"]
    assert c["Mo"] > c["S"] > fit.details["hollow_contrast"]
    # geometry: Mo-Mo 3.16 Å, Mo-S2 a / sqrt(3) = 1.82 Å (nearest of three: shorter on
    # this image, whose scan distortion makes the lattice 3.6 % anisotropic)
    from scipy.spatial import cKDTree

    mo = ref[ref.cls == "Mo"][["y", "x"]].to_numpy()
    s = ref[ref.cls == "S"][["y", "x"]].to_numpy()
    d_mo = cKDTree(mo).query(mo, k=2)[0][:, 1] * fit.pixel_size
    d_s = cKDTree(s).query(mo)[0] * fit.pixel_size
    assert 0.9 * 3.16 < np.median(d_mo) < 1.05 * 3.16
    assert 1.5 < np.median(d_s) < 1.9
    # Mo columns are centred on the image: a few tenths of an Å off the ideal lattice
    assert ref.loc[ref.cls == "Mo", "refined"].mean() > 0.9


def test_finetune_on_one_tile_raises_f1_on_held_out_tiles(mos2):
    import torch

    from atomlens.atoms import detect
    from atomlens.atoms.finetune import finetune
    from atomlens.atoms.lattice_reference import score_tiles, tiles
    from atomlens.io import Stack
    from atomlens.segment.model_file import load_detector

    frame, ref, fit = mos2
    px = fit.pixel_size
    torch.set_num_threads(2)
    # the user's corrections: the lattice-fit atoms of the top-left 128 px tile
    t = 128
    r = ref[(ref.y < t) & (ref.x < t)]
    labels = pd.DataFrame(
        {"frame": 0, "y": r.y, "x": r.x, "cls": r.cls.astype(str), "edited": True}
    )
    base = load_detector(None)
    res = finetune(
        Stack(frame[None, :t, :t], px),
        labels,
        [0],
        base,
        steps=20,
        batch=4,
        seed=0,
        class_map={"Mo": "Si", "S": "C"},
    )
    assert res.reason == "done" and res.card["finetune"]["labels_per_species"]["Mo"] > 20
    # held out: the bottom-right quarter, never seen in training
    y0 = 256
    crop = frame[y0:, y0:]
    held = ref[(ref.y >= y0) & (ref.x >= y0)].assign(y=lambda d: d.y - y0, x=lambda d: d.x - y0)
    boxes = tiles(crop.shape, t)
    scores = {}
    for name, det in (("base", base), ("finetuned", res.detector)):
        # the networks compared alone: the graphene Si-neighbour search (on for C/Si
        # models) would also find S2 beside Mo called "Si" and mask the fine-tune gain
        pred = detect(Stack(crop[None], px), det, si_neighbours="off").atoms
        sc = score_tiles(pred, held, px, boxes)
        m, n_ref, n_det = sc.matched.sum(), sc.ref.sum(), sc.det.sum()
        scores[name] = {
            "f1": 2 * m / (n_ref + n_det),
            "recall": m / n_ref,
            "precision": m / max(n_det, 1),
            "tile_f1": sc.f1.to_numpy(),
        }
    b, a = scores["base"], scores["finetuned"]
    print({k: {kk: np.round(vv, 3) for kk, vv in v.items()} for k, v in scores.items()})
    # the shipped graphene model misses many dim S2 columns (recall ~0.8); one corrected
    # tile and 20 steps bring held-out F1 up to ~0.99 (0.88 -> 0.99 at 13118cf against
    # the geometric S2 sites; 0.91 -> 0.99 against the measured-offset reference of
    # cc0bd13, whose S2 sites the base model's detections meet more often)
    assert a["f1"] > b["f1"] + 0.06 and a["f1"] > 0.97
    assert a["recall"] > b["recall"] + 0.1 and a["precision"] > 0.85
    assert (a["tile_f1"] > b["tile_f1"]).all()


PT = REAL / "pt_single_atoms"


@pytest.mark.slow
@pytest.mark.skipif(not PT.exists(), reason=f"{PT} not found (../shared/data absent)")
def test_finetune_teaches_single_pt_atoms_from_three_labelled_images():
    """A new material: the graphene model finds ~0 of the hand-labelled Pt atoms; fine-
    tuned on the labels of 3 images (a short run: 75 steps) it finds most of them on the
    other 8 and calls them "Pt". The full 3-fold figures come from
    ``bench/finetune_pt.py`` (they fall short of the issue's F1 >= 0.85)."""
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from atomlens.atoms.finetune import finetune
    from atomlens.io import Stack
    from atomlens.segment.model_file import load_detector
    from finetune_pt import PIXEL_SIZE, load_pt, score

    torch.set_num_threads(2)
    names, images, labels = load_pt(PT)
    base = load_detector(None)
    train = [6, 7, 8]  # the bench's split 2
    test = [i for i in range(len(names)) if i not in train]
    atoms = pd.concat([labels[i].assign(frame=j) for j, i in enumerate(train)], ignore_index=True)
    res = finetune(Stack(images[train], PIXEL_SIZE), atoms, [0, 1, 2], base, steps=75, seed=0)
    assert res.detector.classes == ("background", "Pt")
    assert res.scores["after"]["f1"] > res.scores["before"]["f1"] + 0.4
    before = score(base, images, labels, test[:2])  # the base model is slow on 0.2 Å/px
    after = score(res.detector, images, labels, test)
    print({"base_2_images": before["f1"], "finetuned_8_images": after})
    assert before["f1"] < 0.1
    assert after["f1"] > 0.5  # bench (full run, split 2): 0.64
