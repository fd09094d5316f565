"""Pipeline configuration, stage cache and frame selection (no models involved)."""

from __future__ import annotations

import pytest

from atomlens.pipeline import PipelineConfig, default_config_toml, parse_frames
from atomlens.pipeline.cache import stable_hash, stage_dir
from atomlens.pipeline.executor import frame_chunks


def test_config_files_round_trip_and_reject_typos(tmp_path):
    toml = tmp_path / "c.toml"
    default = PipelineConfig().latent.epochs
    text = default_config_toml()
    assert f"epochs = {default}" in text
    toml.write_text(text.replace(f"epochs = {default}", "epochs = 7"))
    cfg = PipelineConfig.from_file(toml)
    assert cfg.latent.epochs == 7
    assert cfg.detect.threshold == 0.5
    yml = tmp_path / "c.yaml"
    yml.write_text("detect:\n  threshold: 0.3\n")
    assert PipelineConfig.from_file(yml).detect.threshold == 0.3
    bad = tmp_path / "bad.json"
    bad.write_text('{"detect": {"treshold": 0.3}}')
    with pytest.raises(ValueError, match="unknown setting 'treshold' in \\[detect\\]"):
        PipelineConfig.from_file(bad)
    with pytest.raises(ValueError, match="unknown config section"):
        PipelineConfig.from_dict({"detector": {}})
    with pytest.raises(FileNotFoundError):
        PipelineConfig.from_file(tmp_path / "missing.toml")


def test_every_setting_is_documented_in_the_default_toml():
    text = default_config_toml()
    for section, values in PipelineConfig().to_dict().items():
        assert f"[{section}]" in text
        for key in values:
            assert key in text


def test_stage_keys_depend_on_settings_and_inputs(tmp_path):
    a = stage_dir(tmp_path, "detect", {"x": 1}, {"threshold": 0.5})
    b = stage_dir(tmp_path, "detect", {"x": 1}, {"threshold": 0.4})
    c = stage_dir(tmp_path, "detect", {"x": 1}, {"threshold": 0.5})
    assert a.key != b.key and a.key == c.key
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})
    work = a.begin()
    (work / "partial.bin").write_bytes(b"x")
    assert not a.done  # interrupted before finish(): not done, redone next time
    a.begin()
    assert not (work / "partial.bin").exists()
    a.finish({"atoms": 3})
    assert c.done and c.summary()["atoms"] == 3


def test_frame_selection():
    assert parse_frames(None, 5) == [0, 1, 2, 3, 4]
    assert parse_frames("1:4", 10) == [1, 2, 3]
    assert parse_frames("::3", 7) == [0, 3, 6]
    assert parse_frames("2,5", 10) == [2, 5]
    with pytest.raises(ValueError, match="out of range"):
        parse_frames("12", 10)
    assert frame_chunks([0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3], [4]]
