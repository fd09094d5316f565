"""The ``border`` flag of detected atoms comes from the refined position in both
detection branches: the network's atoms (:func:`atoms_in_frame`) and a fine-tuned
model's spot classifier (:func:`atom_table`, then refinement). Spots whose integer
candidate pixel lies on the margin (not border) and whose true centre lies within a
pixel of it, on the border side, must be flagged the same by both."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from atomlens.atoms.detect import _classifier_atoms, atoms_in_frame, border_flags
from atomlens.atoms.spot_classifier import SpotClassifier, atom_table

PX = 0.3  # Å per pixel
BORDER_A = 3.0  # 10 px margin: border when y or x < 10 or > 53 on a 64-px frame
# true centres (y, x) px: the integer pixel and the centre fall on opposite sides of
# the margin for the first three (top, bottom, left edge), the last is well inside
SPOTS = np.array([[9.6, 32.3], [53.4, 20.2], [30.2, 9.7], [32.0, 40.0]])


def _gauss(shape, centres, sigma):
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    return sum(np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2)) for y, x in centres)


def _both_branches():
    rng = np.random.default_rng(0)
    raw = 10.0 * _gauss((64, 64), SPOTS, 1.5) + rng.normal(0, 0.05, (64, 64))
    prob = np.clip(_gauss((64, 64), SPOTS, 2.0), 0, 1)
    maps = np.stack([1 - prob, prob])  # (background, atom) on the frame's grid
    det = SimpleNamespace(classes=("background", "atom"))
    net = atoms_in_frame(raw, maps, det, PX, 0, border_A=BORDER_A, si_neighbours="off")
    # a spot classifier that keeps the candidates where the network is sure
    clf = SpotClassifier(("net",), np.zeros(1), np.ones(1), np.array([20.0]), -10.0, 0.5)
    cand = atom_table(clf, raw, prob, PX, 0, "atom", BORDER_A)
    spots = _classifier_atoms(cand, raw, maps[1:], det, "gaussian", PX, 1.0, BORDER_A)
    return cand, net, spots


def _in_order(table):
    """Rows matched to SPOTS (nearest), in SPOTS' order."""
    yx = table[["y", "x"]].to_numpy(float)
    rows = [int(np.argmin(np.hypot(*(yx - s).T))) for s in SPOTS]
    return table.iloc[rows].reset_index(drop=True)


def test_border_flag_is_taken_after_refinement_in_both_branches():
    cand, net, spots = _both_branches()
    assert len(cand) == len(net) == len(spots) == len(SPOTS)
    cand, net, spots = _in_order(cand), _in_order(net), _in_order(spots)
    # the candidates sit on integer pixels on the other side of the margin ...
    np.testing.assert_array_equal(cand[["y", "x"]].to_numpy(), np.round(SPOTS))
    assert cand["border"].tolist() == [False, False, False, False]
    # ... both branches refine to the true centres and flag them the same
    for table in (net, spots):
        np.testing.assert_allclose(table[["y", "x"]].to_numpy(float), SPOTS, atol=0.05)
        assert table["border"].tolist() == [True, True, True, False]
    assert net["border"].tolist() == spots["border"].tolist()
    want = border_flags(spots[["y", "x"]].to_numpy(float), (64, 64), PX, BORDER_A)
    assert spots["border"].tolist() == want.tolist()


def test_border_flags_edges_and_shapes():
    yx = np.array([[0.0, 5.0], [9.99, 30.0], [10.0, 10.0], [53.0, 53.0], [53.01, 30.0]])
    assert border_flags(yx, (64, 64), PX, BORDER_A).tolist() == [True, True, False, False, True]
    assert border_flags(np.zeros((0, 2)), (64, 64), PX).shape == (0,)
    # (T, Y, X) shapes use the last two axes
    assert border_flags(yx[:1], (3, 64, 64), PX, BORDER_A).tolist() == [True]
