"""The whole chain as plain functions with one config: what the CLI and GUI call."""

from atomlens.pipeline.config import PipelineConfig, default_config_toml
from atomlens.pipeline.runner import RunResult, parse_frames, run_pipeline

__all__ = ["PipelineConfig", "RunResult", "default_config_toml", "parse_frames", "run_pipeline"]
