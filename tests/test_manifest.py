"""The npe2 manifest: valid, importable, and in step with what ``atomlens.io`` reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_distribution("atomlens")


def test_npe2_validate_cli_passes() -> None:
    exe = Path(sys.executable).with_name("npe2")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "npe2"]
    res = subprocess.run(
        [*cmd, "validate", "atomlens", "--imports"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "valid" in res.stdout


def test_every_python_name_imports(manifest) -> None:
    manifest.validate_imports()


def test_reader_patterns_cover_every_supported_suffix(manifest) -> None:
    from atomlens.io import SUPPORTED_SUFFIXES

    readers = {r.command: r for r in manifest.contributions.readers}
    assert set(readers) == {"atomlens.get_reader", "atomlens.get_project_reader"}
    patterns = {p.lstrip("*") for p in readers["atomlens.get_reader"].filename_patterns}
    assert patterns == set(SUPPORTED_SUFFIXES)
    assert readers["atomlens.get_project_reader"].filename_patterns == ["*.atomlens"]


def test_writer_and_sample_contributions(manifest) -> None:
    writers = {w.command: w for w in manifest.contributions.writers}
    assert set(writers) == {"atomlens.write_atoms_csv", "atomlens.write_project"}
    csv = writers["atomlens.write_atoms_csv"]
    assert csv.layer_types == ["points"] and csv.filename_extensions == [".csv"]
    assert writers["atomlens.write_project"].filename_extensions == [".atomlens"]
    samples = {s.key: s for s in manifest.contributions.sample_data}
    assert samples["simulated_movie"].display_name == "Simulated graphene-Si movie"
    assert samples["pfm_movie"].display_name == "Simulated PFM domain-wall movie"
    titles = {w.display_name for w in manifest.contributions.widgets or []}
    commands = {c.id for c in manifest.contributions.commands}
    for w in manifest.contributions.widgets or []:
        assert w.command in commands
    assert len(titles) == len(manifest.contributions.widgets or [])
