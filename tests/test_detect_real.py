"""The shipped detector on real graphene STEM data (no per-file tuning).

Reference positions are the source authors' network output (``nn_rows_cols``) or their
refined Si/C annotations; see ../shared/data/README.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.atoms import detect, detection_scores
from atomlens.segment.model_file import load_detector

from .conftest import real_file


@pytest.fixture(scope="module")
def det():
    return load_detector()


def lattice_f1(atoms, ref: np.ndarray, shape: tuple[int, int], pixel_size: float) -> dict:
    """F1 within 1 Å against the reference, scored in the interior (both sets > 1 Å from
    the frame edge: the reference has no atoms within ~4 px of the edge, where we report
    partly cut atoms with ``border=True``); ``f1_all`` scores every atom."""
    yx = atoms[["y", "x"]].to_numpy()
    m = 1.0 / pixel_size

    def inside(p: np.ndarray) -> np.ndarray:
        return (p.min(1) >= m) & (p[:, 0] <= shape[0] - 1 - m) & (p[:, 1] <= shape[1] - 1 - m)

    s = detection_scores(yx[inside(yx)], ref[inside(ref)], m)
    s["f1_all"] = detection_scores(yx, ref, m)["f1"]
    return s


@pytest.mark.parametrize("pixel_size", [0.072, 0.078125, 0.0648, 0.0792])
def test_single_si_dopant_image(shared_data, det, pixel_size):
    """graphene_si-2nm: one Si on the bright dopant; lattice F1 >= 0.95 within 1 Å.

    0.072 is the FFT (true) pixel size, 0.078 the nominal one; 0.0648/0.0792 are ±10 %.
    """
    d = np.load(real_file(shared_data, "real/graphene_si-2nm.npz"))
    img, ref = d["image"], d["nn_rows_cols"]
    atoms = detect(img, det, pixel_size=pixel_size).atoms
    s = lattice_f1(atoms, ref, img.shape, pixel_size)
    assert s["f1"] >= 0.95 and s["f1_all"] >= 0.9, s
    si = atoms[atoms["cls"] == "Si"][["y", "x"]].to_numpy()
    assert len(si) == 1, si
    # the dopant: the brightest spot of the smoothed image
    from scipy import ndimage as ndi

    peak = np.unravel_index(np.argmax(ndi.gaussian_filter(img, 4)), img.shape)
    assert np.hypot(*(si[0] - peak)) * pixel_size < 1.0


@pytest.mark.parametrize("pixel_size", [0.078125, 0.0703, 0.0859])
def test_grain_boundary_image(shared_data, det, pixel_size):
    g = np.load(real_file(shared_data, "real/graphene_grainboundary-4nm.npz"))
    atoms = detect(g["image"], det, pixel_size=pixel_size).atoms
    s = lattice_f1(atoms, g["nn_rows_cols"], g["image"].shape, pixel_size)
    assert s["f1"] >= 0.95 and s["f1_all"] >= 0.9, s


def test_si_tracked_through_movie(shared_data, det):
    """graphene_si1c3_movie: the Si found within 1 Å of the annotation in >= 46/48 frames."""
    m = np.load(real_file(shared_data, "real/graphene_si1c3_movie.npz"))
    ps = 0.078125
    atoms = detect(m["frames"], det, pixel_size=ps).atoms
    hits = 0
    for t in range(len(m["frames"])):
        sel = (m["atom_frame"] == t) & (m["atom_element"] == "Si")
        ref = np.c_[m["atom_row"][sel], m["atom_col"][sel]]
        si = atoms[(atoms["frame"] == t) & (atoms["cls"] == "Si")][["y", "x"]].to_numpy()
        if len(si) and len(ref):
            d = np.hypot(*(si[:, None] - ref[None]).transpose(2, 0, 1))
            hits += int(d.min() * ps <= 1.0)
    assert hits >= 46, hits
