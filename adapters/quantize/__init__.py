"""Post-training quantization of a diffusers UNet (Conv2d and Linear) into a folder stock diffusers loads."""
