"""SPM (concept semi-permeable membrane): rank-1 adapters that erase concepts, per-prompt by facilitated
transport (``hubkit.pipelines.spm``). Lyu et al., CVPR 2024, arXiv 2312.16145."""

from hubkit.methods import lazy_exports

from .config import SPMConfig
from .layer import SPMLayer
from .model import SPMError, SPMNetwork, find_targets
from .serialization import WEIGHT_NAME, read_spm, save_spm

__getattr__ = lazy_exports(__name__, train=["TrainResult", "train_spm"])  # training code loads on first use

__all__ = [
    "WEIGHT_NAME",
    "SPMConfig",
    "SPMError",
    "SPMLayer",
    "SPMNetwork",
    "TrainResult",
    "find_targets",
    "read_spm",
    "save_spm",
    "train_spm",
]
