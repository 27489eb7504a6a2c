"""Conclave core: settings, model backends, embeddings, errors, typed run events, the CLI."""

__version__ = "0.1.0"

__all__ = ["__version__"]
