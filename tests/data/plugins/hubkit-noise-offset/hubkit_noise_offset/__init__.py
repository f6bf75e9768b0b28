"""Noise-offset LoRA: a hubkit method plugin distributed on its own (see hubkit's README, "Write a method
plugin")."""

from .method import NoiseOffsetConfig, NoiseOffsetLoRA

__all__ = ["NoiseOffsetConfig", "NoiseOffsetLoRA"]
