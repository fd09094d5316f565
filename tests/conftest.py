"""Shared fixtures: real data beside the repository, small simulated movies."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real experimental files); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (it lives beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def bench_detect():
    """``bench/detect.py`` loaded as a module (its LibraryNet scoring and calibration
    helpers), once per session."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_detect", REPO / "bench" / "detect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def real_file(shared: Path, rel: str) -> Path:
    path = shared / rel
    if not path.exists():
        pytest.skip(f"{rel} not present in {shared}")
    return path
