"""One training loop for every latent model: typed events, checkpoints, device, stop."""

from atomlens.train.loop import (
    CheckpointSaved,
    EpochEnd,
    Event,
    Finished,
    Started,
    StepEnd,
    fit_events,
    pick_device,
    resolve_micro_batch,
    select_subset,
)

__all__ = [
    "CheckpointSaved",
    "EpochEnd",
    "Event",
    "Finished",
    "Started",
    "StepEnd",
    "fit_events",
    "pick_device",
    "resolve_micro_batch",
    "select_subset",
]
