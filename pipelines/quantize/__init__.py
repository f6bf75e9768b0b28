"""Load a hubkit quantized UNet onto a stock pipeline with its calibrated static int8 activations."""

from .loading import load_quantized_unet

__all__ = ["load_quantized_unet"]
