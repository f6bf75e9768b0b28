"""Load a hubkit quantized UNet onto a stock pipeline with its calibrated static int8 activations (and the
CPU's int8 kernels), and take it off again."""

from .loading import load_quantized_unet, unload_quantized_unet

__all__ = ["load_quantized_unet", "unload_quantized_unet"]
