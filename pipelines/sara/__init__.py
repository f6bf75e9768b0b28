"""SaRA sparse adapters on diffusers pipelines (``load_sara``)."""

from .loading import load_sara, unload_sara

__all__ = ["load_sara", "unload_sara"]
