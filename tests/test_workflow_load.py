"""Reading a movie and calibrating it from its lattice: ``io`` reads, the workflow layer
calibrates (``atomlens.workflows.load.read_stack``), so ``io`` never imports ``chem``."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.errors import SettingsError
from atomlens.io import read_stack as read_file
from atomlens.workflows.load import calibrate_stack, read_stack
from tests.test_chem_fixtures import lattice_image

TRUE_PX = 0.12  # Å/px of the rendered honeycomb


@pytest.fixture
def bare_npy(tmp_path):
    """A honeycomb (a = 2.46 Å) at 0.12 Å/px saved as a bare .npy: no pixel size."""
    path = tmp_path / "bare.npy"
    np.save(path, np.stack([lattice_image(256, TRUE_PX, seed=s) for s in (5, 6)]))
    return path


def test_io_reader_refuses_to_calibrate_and_names_the_workflow(bare_npy):
    with pytest.raises(SettingsError, match=r"atomlens\.workflows\.load\.read_stack"):
        read_file(bare_npy, calibrate="graphene")
    assert read_file(bare_npy).pixel_size is None  # the file carries none


def test_workflow_reader_calibrates_a_bare_file(bare_npy):
    # a numeric lattice constant: both readings tried, atoms found by the peak finder
    st = read_stack(bare_npy, calibrate=2.46)
    assert st.pixel_size == pytest.approx(TRUE_PX, rel=0.02)
    assert st.pixel_size_source == "calibration" and st.n_frames == 2
    assert st.metadata["calibration"]["pixel_size"] == pytest.approx(st.pixel_size)
    # without calibrate it is the plain reader
    plain = read_stack(bare_npy, pixel_size=0.2)
    assert plain.pixel_size == 0.2 and plain.pixel_size_source == "user"
    assert "calibration" not in plain.metadata


def test_calibration_replaces_a_wrong_nominal_value_and_keeps_the_original(bare_npy):
    nominal = read_file(bare_npy, pixel_size=0.15)
    st = calibrate_stack(nominal, 2.46)
    assert st.pixel_size == pytest.approx(TRUE_PX, rel=0.02)
    assert st.metadata["calibration"]["discrepancy_pct"] == pytest.approx(25.0, abs=3.0)
    assert nominal.pixel_size == 0.15 and "calibration" not in nominal.metadata
    assert st.data is nominal.data  # the pixels are shared, not copied
