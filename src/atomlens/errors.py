"""The one exception family of AtomLens.

Every error a user can cause (a bad file, setting, project or model) is an
:class:`AtomLensError`; the CLI prints it as one line and exits with code 2, the napari
docks show it as a notification. Subclasses say which input was wrong. Messages name
the file or field, the problem, and the fix, in our own words (never a library's advice
to load a file unsafely).

The family::

    AtomLensError (ValueError)
        InputFileError        a file: missing, special, truncated, corrupt, too large
            StackError (io.stack), ProjectError (io.project), AtomsTableError
            (io.atoms_table), ModelFileError (segment.model_file); the ones for a
            missing path are also FileNotFoundError (io.gate.MissingFileError, ...)
        SettingsError         a CLI option, config value or recipe field
            FrameSelectionError, PixelSizeError, NetConfigError, TrainConfigError,
            SimConfigError, FinetuneError
        OutputError           an output that cannot be written, or an --out in use
        ModelError, AtomTableError, CalibrationError, DescriptorError, ChemSpaceError,
        TrajectoryError, WallError, PFMSimulationError: bad input to one module

See ``docs/robustness.md`` for the checks behind them.
"""

from __future__ import annotations


class AtomLensError(ValueError):
    """Base of every user-facing AtomLens error (a ``ValueError`` for old callers)."""


class InputFileError(AtomLensError):
    """A file that cannot be read safely: missing, special, truncated, corrupt, too large."""


class SettingsError(AtomLensError):
    """A setting (CLI option, config value, recipe field) with a wrong type or range."""


class FrameSelectionError(SettingsError):
    """A frame selection that does not parse or names frames the movie does not have."""


class OutputError(AtomLensError):
    """An output folder or file that cannot be written, or is in use by another run."""


class ModelError(AtomLensError):
    """Bad input for a latent model or its training (wrong window size, channels, values,
    schedule); the message names both sides and the fix."""
