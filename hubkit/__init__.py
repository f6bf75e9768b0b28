"""hubkit: efficient diffusion methods as Hub-native plugins."""

__version__ = "0.1.0"
