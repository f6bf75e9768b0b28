"""Diffusers pipelines and models of hubkit methods (imported as ``hubkit.pipelines``), and
:func:`load_stack`: a stack's base with its components applied in order."""


def load_stack(*args, **kwargs):
    """:func:`hubkit.stacks.load_stack` (imported on first use)."""
    from hubkit.stacks import load_stack

    return load_stack(*args, **kwargs)
