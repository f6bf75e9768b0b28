"""The reference world: the ``shapes`` dataset, its judge and the tiny Stable Diffusion base model."""
