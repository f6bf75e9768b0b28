"""SPM concept erasure on diffusers pipelines: facilitated transport (``load_spm``)."""

from .transport import FacilitatedTransport, load_spm, permeability, unload_spm

__all__ = ["FacilitatedTransport", "load_spm", "permeability", "unload_spm"]
