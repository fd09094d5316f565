"""The one exception family of AtomLens.

Every error a user can cause (a bad file, setting, project or model) is an
:class:`AtomLensError`; the CLI prints it as one line and exits with code 2, the napari
docks show it as a notification. Subclasses say which input was wrong. Messages name
the file or field, the problem, and the fix, in our own words.
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
