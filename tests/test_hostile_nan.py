"""NaN/inf pixels (stripes after drift correction, borders) are masked, not refused:
no atoms are reported there and the rest of the frame is analysed as before (issue 17).
Checked against the simulator's truth on held-out frames."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.atoms import detect
from atomlens.atoms.evaluate import score_frames, synth_validation_set


@pytest.mark.parametrize("seed", [20_000, 20_017])
def test_nan_stripe_and_inf_border_are_masked_and_the_rest_analysed(seed):
    frames, truth = synth_validation_set(n_frames=2, size=192, seed=seed)
    hostile = frames.copy()
    hostile[:, 60:90, :] = np.nan  # a stripe, as left by drift correction
    hostile[1, :, :10] = np.inf  # a border
    atoms = detect(hostile, pixel_size=0.1).atoms
    assert np.isfinite(atoms[["y", "x"]].to_numpy()).all()
    in_stripe = (atoms["y"] > 59.5) & (atoms["y"] < 89.5)
    in_border = (atoms["frame"] == 1) & (atoms["x"] < 9.5)
    assert not in_stripe.any() and not in_border.any()

    def away(df):  # 5 px (0.5 Å) clear of the masked pixels
        near = ((df["y"] > 55) & (df["y"] < 95)) | ((df["frame"] == 1) & (df["x"] < 15))
        return df[~near]

    clean = score_frames(
        away(detect(frames, pixel_size=0.1).atoms), away(truth), frames.shape[1:], 0.1
    )
    masked = score_frames(away(atoms), away(truth), frames.shape[1:], 0.1)
    assert masked["f1"] >= 0.97, masked
    assert masked["f1"] >= clean["f1"] - 0.02, (masked, clean)
