"""AtomLens: atom-resolved STEM movies from pixels to chemistry and order parameters.

Science lives in plain modules (``simulate``, ``segment``, ``atoms``, ``chem``,
``descriptors``, ``models``, ``train``, ``latent``, ``pipeline``); ``_napari`` is a thin
GUI shell over them. Positions are in pixels unless a name says ``_A`` (Ångström).
"""

__version__ = "0.1.0"
