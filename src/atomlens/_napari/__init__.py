"""napari plugin shell for AtomLens: reader, writer, sample data and dock widgets.

Everything here is thin: widgets gather parameters, call headless functions from the
science modules (``io``, ``simulate``, ``segment``, ``descriptors``, ``models``, ``train``,
``latent``) and the pure display helpers in :mod:`atomlens.viz`, and turn results into
layers. Long work runs on napari worker threads.
"""
