"""The lattice-fit reference on a synthetic 2H MoS2 image with known columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from atomlens.atoms.lattice_reference import lattice_reference, score_tiles, tiles
from atomlens.atoms.match import match_atoms

A = 3.16  # Å


def _mos2_image(
    px: float = 0.15, size: int = 256, angle_deg: float = 17.0, seed: int = 0, vacancies: int = 6
):
    """Mo (amplitude 1) and S2 (0.45) Gaussian columns, a 4 % stretch along x, noise;
    ``vacancies`` S2 columns left out. Returns image and the truth table (pixels)."""
    rng = np.random.default_rng(seed)
    t = np.radians(angle_deg)
    a1 = A * np.array([np.sin(t), np.cos(t)])
    a2 = A * np.array([np.sin(t + 2 * np.pi / 3), np.cos(t + 2 * np.pi / 3)])
    n = int(size * px / A) + 4
    i, j = np.meshgrid(np.arange(-2 * n, 2 * n), np.arange(-2 * n, 2 * n), indexing="ij")
    cells = np.column_stack([i.ravel(), j.ravel()])
    rows = []
    for cls, off in (("Mo", (0, 0)), ("S", (1 / 3, 2 / 3))):
        yx = ((cells + off) @ np.stack([a1, a2])) / px + size / 2
        yx[:, 1] *= 1.04  # scan distortion
        yx[:, 1] -= 0.04 * size / 2
        keep = (yx > -3).all(1) & (yx < size + 3).all(1)
        rows.append(pd.DataFrame({"y": yx[keep, 0], "x": yx[keep, 1], "cls": cls}))
    truth = pd.concat(rows, ignore_index=True)
    inner = truth[
        (truth.cls == "S") & truth.y.between(40, size - 40) & truth.x.between(40, size - 40)
    ]
    gone = rng.choice(inner.index.to_numpy(), vacancies, replace=False)
    truth = truth.drop(index=gone).reset_index(drop=True)
    yy, xx = np.mgrid[:size, :size]
    img = np.zeros((size, size))
    s = 0.45 / px  # column width (Å -> px)
    for y, x, c in truth[["y", "x", "cls"]].itertuples(index=False):
        amp = 1.0 if c == "Mo" else 0.45
        sl = (slice(max(0, int(y) - 8), int(y) + 9), slice(max(0, int(x) - 8), int(x) + 9))
        img[sl] += amp * np.exp(-((yy[sl] - y) ** 2 + (xx[sl] - x) ** 2) / (2 * s * s))
    img += rng.normal(0, 0.12, img.shape)
    return img.astype(np.float32), truth.assign(frame=0), gone


def test_lattice_reference_finds_every_column_and_the_vacancies():
    px = 0.15
    img, truth, _ = _mos2_image(px)
    # the nominal pixel size is 15 % off: only a search hint
    ref, fit = lattice_reference(img, px * 1.15)
    # the columns are 4 % farther apart along x, so about 2 % fewer Å per pixel on average
    assert 0.97 < fit.pixel_size / px < 1.0
    border = 1.0 / px
    t = truth[truth.y.between(border, 255 - border) & truth.x.between(border, 255 - border)]
    ip, it = match_atoms(ref[["y", "x"]].to_numpy(), t[["y", "x"]].to_numpy(), 0.3 / px)
    assert len(it) / len(t) > 0.97  # recall within 0.3 Å
    r_in = ref[ref.y.between(border, 255 - border) & ref.x.between(border, 255 - border)]
    assert len(r_in) <= len(t) + 3  # no sites between columns, vacancies left empty
    # species: matched Mo are Mo, S2 are S
    assert (ref["cls"].to_numpy()[ip] == t["cls"].to_numpy()[it]).mean() > 0.99
    d = np.hypot(*(ref[["y", "x"]].to_numpy()[ip] - t[["y", "x"]].to_numpy()[it]).T) * px
    assert np.median(d) < 0.1
    sc = score_tiles(ref, t, px, tiles(img.shape, 128), class_map={"Mo": "Mo", "S": "S"})
    assert len(sc) == 4 and (sc.f1 > 0.95).all()
    assert (sc.class_ok_Mo == sc.matched_Mo).all()


def test_score_tiles_counts_near_the_tile_edge_once():
    truth = pd.DataFrame(
        {"frame": 0, "y": [10.0, 63.5, 64.5, 100.0], "x": [10.0, 50, 50, 100], "cls": "C"}
    )
    pred = truth.copy()
    pred.loc[1, "y"] = 64.6  # across the line between tiles 0 and 2: matched from tile 0
    pred.loc[3, "x"] = 108.0  # 0.8 Å off: no match within 0.5 Å, a false detection
    sc = score_tiles(pred, truth, 0.1, tiles((128, 128), 64), border_A=0.5)
    tot = sc[["ref", "det", "matched"]].sum()
    # 63.5 and 64.5 lie within 0.5 Å (5 px) of the line: neither is scored
    assert tot["ref"] == 2 and tot["matched"] == 1 and tot["det"] == 2


def _simulated_mos2(shift_A: tuple[float, float], seed: int, px: float = 0.13, size: int = 320):
    """2H MoS2 from the simulator (atomlens.simulate: Mo at the lattice points, the S2
    column at (1/3, 2/3), 1.1 Å probe, shot noise) with every S2 column moved by
    ``shift_A`` (Å, (y, x)): the image of a slightly tilted crystal or a comatic probe.
    Returns the image and the true columns (pixels) with their species."""
    from atomlens.simulate.materials import tmd_2h
    from atomlens.simulate.render import render

    rng = np.random.default_rng(seed)
    cols = tmd_2h(size * px, rng, "MoS2")
    yx = cols.yx_A.copy()
    yx[cols.z == 16] += np.asarray(shift_A)
    img = render(yx / px, cols.z, (size, size), px, 1.1, dose=2e5, rng=rng, weights=cols.count)
    yx = yx / px
    inner = np.all((yx >= 1.0 / px) & (yx <= size - 1 - 1.0 / px), axis=1)  # 1 Å border
    return img, yx[inner], np.where(cols.z == 42, "Mo", "S")[inner]


def _errors(ref: pd.DataFrame, truth: np.ndarray, cls: np.ndarray, sp: str, px: float):
    r = ref[ref.cls == sp][["y", "x"]].to_numpy()
    t = truth[cls == sp]
    ip, it = match_atoms(r, t, 0.6 / px)
    return (r[ip] - t[it]) * px, len(it) / len(t)


def test_reference_places_s2_where_the_image_shows_it():
    """The S2 sites follow a constant shift of the S2 column images (0.2 Å, two
    directions) to within 0.05 Å, stay put without one, and the Mo sites do not move."""
    px = 0.13
    for shift, seed in (((0.0, 0.0), 0), ((0.2, 0.0), 1), ((-0.1, 0.17), 0)):
        img, truth, cls = _simulated_mos2(shift, seed, px)
        new, fit = lattice_reference(img, px)
        old, _ = lattice_reference(img, px, measure_offsets=False)
        d_new, found = _errors(new, truth, cls, "S", px)
        d_old, _ = _errors(old, truth, cls, "S", px)
        assert found > 0.97
        assert np.hypot(*d_new.mean(0)) < 0.05, (shift, d_new.mean(0))
        assert np.median(np.hypot(*d_new.T)) < 0.05
        # the geometric sites are off by the shift
        assert abs(np.hypot(*d_old.mean(0)) - np.hypot(*shift)) < 0.05
        measured = fit.details["site_offsets"]["S"]
        assert measured["applied"] and np.allclose(measured["shift_A"], shift, atol=0.05)
        mo_new = new[new.cls == "Mo"][["y", "x"]].to_numpy()
        mo_old = old[old.cls == "Mo"][["y", "x"]].to_numpy()
        assert np.array_equal(mo_new, mo_old)
        d_mo, _ = _errors(new, truth, cls, "Mo", px)
        assert np.median(np.hypot(*d_mo.T)) < 0.05
